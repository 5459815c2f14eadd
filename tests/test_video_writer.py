"""Writing videos: MP4 encoding round trips, refusals, depth colour maps."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from recon3d.io.video_writer import colorize_depth, write_mp4

# ---------------------------------------------------------------- helpers


def _read_mp4(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_write_mp4_pads_odd_sizes_and_round_trips(tmp_path):
    u, v = np.meshgrid(np.linspace(0, 1, 45), np.linspace(0, 1, 31))
    base = np.stack([u, v, 1 - u], axis=-1)
    frames = np.stack([np.round(255 * np.clip(base * (0.5 + 0.1 * i), 0, 1)).astype(np.uint8) for i in range(5)])
    assert write_mp4(tmp_path / "clip.mp4", frames, fps=12) == 5
    decoded = _read_mp4(tmp_path / "clip.mp4")
    assert len(decoded) == 5 and decoded[0].shape == (32, 46, 3)
    for got, want in zip(decoded, frames):
        # Lossy (4:2:0 chroma) but close on a smooth image, far from a flipped or
        # channel-swapped one; the padding repeats the last row/column.
        assert np.abs(got[:31, :45].astype(int) - want).mean() < 5
        assert np.abs(got[31, :45].astype(int) - want[30]).mean() < 6
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_write_mp4_refuses_bad_input_without_leaving_files(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "empty.mp4", [])
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "float.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_colorize_depth_uses_viridis_ends():
    depth = np.array([[1.0, 2.0, 5.0, 9.0]])
    valid = np.array([[True, True, True, False]])
    rgb = colorize_depth(depth, valid, near=2.0, far=5.0)
    # matplotlib's viridis runs from #440154 to #fde725.
    np.testing.assert_array_equal(rgb[0], [[68, 1, 84], [68, 1, 84], [253, 231, 37], [0, 0, 0]])
