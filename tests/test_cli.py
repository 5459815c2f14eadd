"""The command line as a user meets it: exit codes, one-line errors, written files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import assert_one_line_user_error, run_cli
from PIL import Image

from recon3d.types import Prediction

pytestmark = pytest.mark.slow  # every test runs the command line in a subprocess


def _write_photo(path: Path, size=(160, 120), seed=0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("predict", str(tmp_path / "empty"), "-o", str(tmp_path / "p.npz"), "--model", "vggt-untrained-small")
    assert_one_line_user_error(result, "no images")
    assert not (tmp_path / "p.npz").exists()


def test_folder_of_non_images(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "data.csv").write_text("1,2")
    result = run_cli("predict", str(folder), "-o", str(tmp_path / "p.npz"), "--model", "vggt-untrained-small")
    assert_one_line_user_error(result, "no images")


def test_corrupt_png_in_a_folder_is_skipped_or_with_strict_fatal(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write_photo(folder / "good.png")
    data = (folder / "good.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    result = run_cli("predict", str(folder), "-o", str(tmp_path / "p.npz"), "--model", "vggt-untrained-small")
    assert result.returncode == 0, result.stderr
    assert Prediction.load_npz(tmp_path / "p.npz").names == ["good.png"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("skipping ")]
    assert len(warnings) == 1 and "broken.png" in warnings[0]

    (tmp_path / "p.npz").unlink()
    result = run_cli("predict", str(folder), "-o", str(tmp_path / "p.npz"), "--model", "vggt-untrained-small",
                     "--strict")
    assert_one_line_user_error(result, "broken.png")
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".*part"))


def test_twenty_good_and_three_corrupt_images(tmp_path):
    folder = tmp_path / "scene"
    folder.mkdir()
    for i in range(20):
        _write_photo(folder / f"view_{i:02d}.png", size=(64, 48), seed=i)
    data = (folder / "view_00.png").read_bytes()
    corrupt = {"view_03b.png": data[:200], "view_11b.png": b"<html><body>404</body></html>",
               "view_17b.jpg": bytes(reversed(data))}
    for name, content in corrupt.items():
        (folder / name).write_bytes(content)
    out = tmp_path / "out"
    result = run_cli("reconstruct", str(folder), "-o", str(out), "--model", "vggt-untrained-small", "--mode", "fit",
                     "--export", "npz,ply")
    assert result.returncode == 0, result.stderr
    assert Prediction.load_npz(out / "prediction.npz").num_views == 20
    summary = result.stderr[result.stderr.index("skipped 3 unusable file(s)"):]
    assert all(name in summary for name in corrupt)

    strict = run_cli("reconstruct", str(folder), "-o", str(tmp_path / "strict"), "--model", "vggt-untrained-small",
                     "--strict")
    assert_one_line_user_error(strict, "view_03b.png")  # the first in the folder's order
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize(("args", "problem"), [
    (["predict", "photos", "-o", "x.npz", "--bogus"], "No such option: --bogus"),
    (["reconstruct"], "Missing argument"),
    (["reconstruct", "photos", "-o", "out", "--conf-percentile", "200"], "Invalid value for '--conf-percentile'"),
    (["reconstruct", "photos", "-o", "out", "--max-points", "many"], "Invalid value for '--max-points'"),
    (["predict", "photos", "-o", "x.npz", "--select-frames", "best"], "Invalid value for '--select-frames'"),
])
def test_usage_errors_print_the_usage_line(args, problem, tmp_path):
    result = subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Usage: recon3d {args[0]} [OPTIONS]"), result.stderr
    assert problem in result.stderr and "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_path_and_bad_model(tmp_path):
    result = run_cli("predict", str(tmp_path / "nope"), "-o", str(tmp_path / "p.npz"))
    assert_one_line_user_error(result, "nope")
    _write_photo(tmp_path / "a.png")
    result = run_cli("predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "p.npz"), "--model", "no-such-model")
    assert_one_line_user_error(result, "no-such-model")


def test_single_image_gives_a_valid_one_view_prediction(tmp_path):
    _write_photo(tmp_path / "only.png", size=(200, 150))
    out = tmp_path / "pred.npz"
    result = run_cli("predict", str(tmp_path / "only.png"), "-o", str(out), "--model", "vggt-untrained-small")
    assert result.returncode == 0, result.stderr
    pred = Prediction.load_npz(out)
    assert pred.num_views == 1 and pred.names == ["only.png"]
    h, w = pred.image_size_hw
    assert (h, w) == (392, 518)  # crop mode: width 518, 150/200*518 = 388.5 → 392
    assert pred.depth.shape == (1, h, w) and pred.points.shape == (1, h, w, 3)
    assert pred.extrinsics_w2c.shape == (1, 4, 4) and np.allclose(pred.extrinsics_w2c[0, 3], [0, 0, 0, 1])
    assert np.all(pred.depth_conf >= 1) and np.all(pred.points_conf >= 1)
    assert np.isclose(pred.intrinsics[0, 0, 2], w / 2) and np.isclose(pred.intrinsics[0, 1, 2], h / 2)
    assert tuple(pred.original_sizes[0]) == (150, 200)
    # The stored depth and cameras reproduce the independent unprojection.
    # Pixel centres at +0.5: compare one pixel of view 0 with a direct pinhole computation.
    v, u = 100, 200
    K, T = pred.intrinsics[0].astype(np.float64), pred.extrinsics_w2c[0].astype(np.float64)
    d = float(pred.depth[0, v, u])
    cam = np.array([(u + 0.5 - K[0, 2]) * d / K[0, 0], (v + 0.5 - K[1, 2]) * d / K[1, 1], d])
    world = T[:3, :3].T @ (cam - T[:3, 3])
    assert np.allclose(pred.points_from_depth()[0, v, u], world, rtol=1e-4, atol=1e-5)


def test_help_lists_every_option():
    result = run_cli("predict", "--help")
    assert result.returncode == 0
    for option in ("--output", "--model", "--device", "--precision", "--mode", "--fps", "--every-n", "--max-frames"):
        assert option in result.stdout


@pytest.mark.parametrize("args", [["models", "list"], ["models", "info", "vggt-1b"]])
def test_models_commands(args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "vggt-1b" in result.stdout
    if args[1] == "list":
        assert "CC BY-NC 4.0" in result.stdout
    else:
        assert "track_head" in result.stdout and "1,190,596,120" in result.stdout


def test_reconstruct_writes_the_chosen_exports(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        _write_photo(folder / f"view_{i}.jpg", seed=i)
    out = tmp_path / "out"
    result = run_cli("reconstruct", str(folder), "-o", str(out), "--model", "vggt-untrained-small",
                     "--export", "glb,ply,mesh,colmap", "--mesh", "grid", "--conf-percentile", "10")
    assert result.returncode == 0, result.stderr
    for name in ("scene.glb", "points.ply", "mesh.ply", "mesh.obj", "colmap/sparse/0/images.bin",
                 "colmap/images/view_0.jpg"):
        assert (out / name).is_file(), name
    assert not (out / "prediction.npz").exists()


def test_reconstruct_rejects_an_unknown_format(tmp_path):
    _write_photo(tmp_path / "a.png")
    result = run_cli("reconstruct", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--export", "glb,fbx")
    assert result.returncode == 2 and "Usage: recon3d reconstruct" in result.stderr, result.stderr
    assert "Invalid value for '--export': unknown value(s) fbx" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_reconstruct_sample_scene_with_every_export(tmp_path):
    import pycolmap
    import trimesh
    from plyfile import PlyData

    from recon3d.io.splat import read_splat

    scene = Path(__file__).resolve().parents[1] / "assets" / "scenes" / "object_8" / "images"
    images = [str(p) for p in sorted(scene.glob("*.png"))[:4]]
    out = tmp_path / "out"
    result = run_cli("reconstruct", *images, "-o", str(out), "--export", "all", "--mesh", "grid")
    assert result.returncode == 0, result.stderr
    assert "total" in result.stderr  # the per-stage summary table
    prediction = Prediction.load_npz(out / "prediction.npz")
    assert prediction.num_views == 4
    glb = trimesh.load(out / "scene.glb")
    assert len([n for n in glb.graph.nodes_geometry if n.startswith("camera_")]) == int(prediction.valid_cameras().sum())
    assert len(PlyData.read(out / "points.ply")["vertex"]) > 0
    assert len(PlyData.read(out / "mesh.ply")["face"]) == len(trimesh.load(out / "mesh.obj", process=False).faces)
    rec = pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0"))
    assert sorted(im.name for im in rec.images.values()) == [Path(p).name for p in images]
    assert sorted(p.name for p in (out / "colmap" / "images").iterdir()) == [Path(p).name for p in images]
    gaussian_count = len(PlyData.read(out / "gaussians.ply")["vertex"])
    assert gaussian_count > 0 and len(read_splat(out / "gaussians.splat")) == gaussian_count
