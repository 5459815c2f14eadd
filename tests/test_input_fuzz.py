"""Seeded fuzzing of the input stage with damaged copies of real images.

Whatever the bytes, loading either gives a usable RGB image or a one-line InputError, and
the command line ends with exit code 0 or 1: never a traceback, never a partial output file.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon3d.cli import main
from recon3d.errors import InputError
from recon3d.io.inputs import collect_inputs
from recon3d.types import Prediction

SCENE = Path(__file__).resolve().parents[1] / "assets" / "scenes" / "object_8" / "images"
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP"}


def _originals() -> dict[str, bytes]:
    """One real photo encoded in every format recon3d reads (suffix -> bytes)."""
    image = Image.open(sorted(SCENE.glob("*.png"))[0]).convert("RGB")
    encoded = {}
    for suffix, fmt in FORMATS.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        encoded[suffix] = buffer.getvalue()
    return encoded


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncate, flip bits, splice in noise, or several of these."""
    out = bytearray(data)
    for action in rng.choice(["truncate", "flip", "splice"], size=int(rng.integers(1, 3)), replace=False):
        if action == "truncate":
            out = out[: int(rng.integers(0, len(out)))]
        elif action == "flip" and out:
            for position in rng.integers(0, len(out), size=int(rng.integers(1, 40))):
                out[position] ^= 1 << int(rng.integers(0, 8))
        elif action == "splice":
            at = int(rng.integers(0, len(out) + 1))
            out[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return bytes(out)


def test_damaged_files_load_or_fail_with_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    outcomes = {"loaded": 0, "refused": 0}
    for case, (suffix, data) in enumerate(list(_originals().items()) * 40):
        path = tmp_path / f"case_{case:03d}.{suffix}"
        path.write_bytes(_mutate(data, rng))
        try:
            (view,) = collect_inputs(path).views
        except InputError as err:
            assert "\n" not in str(err) and path.name in str(err)
            outcomes["refused"] += 1
        else:
            assert view.image.mode == "RGB" and min(view.image.size) >= 32
            outcomes["loaded"] += 1
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0  # the mutations exercised both outcomes


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_the_command_line_survives_damaged_inputs(seed: int, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(seed)
    originals = _originals()
    good = tmp_path / "good.png"
    good.write_bytes(originals["png"])
    suffix = list(FORMATS)[seed % len(FORMATS)]
    damaged = tmp_path / f"damaged.{suffix}"
    damaged.write_bytes(_mutate(originals[suffix], rng))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.png").write_bytes(originals["png"])
    (folder / f"damaged.{suffix}").write_bytes(damaged.read_bytes())

    for run, inputs in enumerate(([damaged, good], [folder])):
        out_dir = tmp_path / f"out_{run}"
        out = out_dir / "prediction.npz"
        code = main(["predict", *map(str, inputs), "-o", str(out), "--model", "vggt-untrained-small",
                     "--mode", "fit"])
        stderr = capsys.readouterr().err
        assert code in (0, 1), stderr
        assert "Traceback" not in stderr and "internal error" not in stderr
        written = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
        if code == 0:
            assert written == ["prediction.npz"]  # nothing half-written beside it
            assert Prediction.load_npz(out).num_views in (1, 2)
        else:
            assert written == []
            assert len([line for line in stderr.splitlines() if line.strip()]) == 1, stderr
