"""Frame curation (--select-frames sharp) on a rendered trajectory with blurred and repeated frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from recon3d.io.frame_selection import laplacian_variance, sharpest_per_slot
from recon3d.io.inputs import InputOptions, collect_inputs
from recon3d.io.video import load_video_frames
from recon3d.io.video_writer import write_mp4
from recon3d.synth import make_scene

BLURRED_AFTER = (2, 6)  # a blurred copy of frame k is inserted right after it
REPEATED_AFTER = (4, 9)  # an exact copy of frame k is inserted right after it


def test_laplacian_variance_matches_scipy() -> None:
    grey = np.random.default_rng(0).uniform(0, 255, (37, 53)).astype(np.float32)
    reference = ndimage.laplace(grey.astype(np.float64), mode="constant")[1:-1, 1:-1].var()
    assert laplacian_variance(grey) == pytest.approx(reference, rel=1e-6)


def test_sharpest_per_slot_is_the_argmax_of_each_slot() -> None:
    rng = np.random.default_rng(3)
    slots = np.sort(rng.integers(0, 12, 80))
    sharpness = rng.uniform(0, 1, 80)
    chosen = sharpest_per_slot(slots.tolist(), sharpness.tolist())
    expected = [int(np.flatnonzero(slots == s)[np.argmax(sharpness[slots == s])]) for s in np.unique(slots)]
    assert chosen == expected


@pytest.fixture(scope="module")
def sequence() -> tuple[list[np.ndarray], dict[int, str]]:
    """A 12-frame rendered trajectory with 2 blurred and 2 repeated frames inserted;
    returns the frames and, per inserted position, the reason it should be dropped for."""
    clean = make_scene("trajectory", 3, 12, (160, 120)).images
    frames, inserted = [], {}
    for k, frame in enumerate(clean):
        frames.append(frame)
        if k in BLURRED_AFTER:
            inserted[len(frames)] = "blurred"
            frames.append(np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(2.0))))
        if k in REPEATED_AFTER:
            inserted[len(frames)] = "near-duplicate"
            frames.append(frame.copy())
    return frames, inserted


def test_a_burst_folder_loses_exactly_the_inserted_frames(sequence, tmp_path: Path) -> None:
    frames, inserted = sequence
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"burst_{i:03d}.png")
    loaded = collect_inputs(tmp_path, InputOptions(select_frames="sharp"))
    assert set(loaded.dropped_frames) == {f"burst_{i:03d}.png" for i in inserted}
    assert [v.name for v in loaded.views] == [f"burst_{i:03d}.png" for i in range(len(frames)) if i not in inserted]
    for i, kind in inserted.items():
        assert loaded.dropped_frames[f"burst_{i:03d}.png"].startswith(kind)
    assert collect_inputs(tmp_path).dropped_frames == {}  # "all" keeps everything


def test_a_video_loses_exactly_the_inserted_frames(sequence, tmp_path: Path) -> None:
    frames, inserted = sequence
    clip = tmp_path / "walk.mp4"
    write_mp4(clip, frames, fps=10)
    dropped: dict[str, str] = {}
    views = load_video_frames(clip, every_n=1, select="sharp", dropped=dropped)
    assert set(dropped) == {f"walk_f{i:06d}" for i in inserted}
    assert all(dropped[f"walk_f{i:06d}"].startswith(kind) for i, kind in inserted.items())
    assert [v.name for v in views] == [f"walk_f{i:06d}" for i in range(len(frames)) if i not in inserted]


def test_video_sampling_takes_the_sharpest_frame_of_each_window(tmp_path: Path) -> None:
    clean = make_scene("trajectory", 3, 12, (160, 120)).images
    # Each 1/5 s window at 10 fps holds two consecutive views, one of them slightly soft
    # (not enough to count as blurred); the soft one comes first in every other window,
    # so taking the first frame of each window would pick it there.
    frames, sharp_positions = [], []
    for k, frame in enumerate(clean):
        soft = k % 2 == (k // 2) % 2
        frames.append(np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(0.3))) if soft else frame)
        if not soft:
            sharp_positions.append(k)
    clip = tmp_path / "soft.mp4"
    write_mp4(clip, frames, fps=10)
    dropped: dict[str, str] = {}
    views = load_video_frames(clip, fps=5, select="sharp", dropped=dropped)
    assert dropped == {}
    assert [v.name for v in views] == [f"soft_f{i:06d}" for i in sharp_positions]
    assert sharp_positions[1] == 2  # the second window starts with its sharp frame, the first with the soft one


def test_of_two_near_duplicates_the_sharper_is_kept(sequence, tmp_path: Path) -> None:
    frames, _ = sequence
    soft = np.asarray(Image.fromarray(frames[0]).filter(ImageFilter.GaussianBlur(0.4)))
    for i, frame in enumerate([soft, frames[0], frames[1]]):
        Image.fromarray(frame).save(tmp_path / f"shot_{i}.png")
    loaded = collect_inputs(tmp_path, InputOptions(select_frames="sharp"))
    assert [v.name for v in loaded.views] == ["shot_1.png", "shot_2.png"]
    assert loaded.dropped_frames["shot_0.png"].startswith("near-duplicate")
