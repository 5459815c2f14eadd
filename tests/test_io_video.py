"""Video frame sampling, checked on a synthetic clip whose frames show their own index."""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest

from recon3d.errors import InputError
from recon3d.io.images import LoadedImage
from recon3d.io.inputs import InputOptions, collect_inputs
from recon3d.io.video import load_video_frames

NUM_FRAMES = 30
FPS = 10
WIDTH, HEIGHT = 64, 48
GREY_STEP = 8  # frame i is a flat grey of level 8*i, easy to tell apart after lossy coding


def _write_clip(path: Path, num_frames: int = NUM_FRAMES, rotation: int | None = None) -> Path:
    """H.264 clip (with B-frames, so decode order differs from display order); frame i is
    grey level 8*i with a white 8x8 block in the stored top-left corner."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            array = np.full((HEIGHT, WIDTH, 3), GREY_STEP * i, dtype=np.uint8)
            array[:8, :8] = 255
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_clip(tmp_path_factory.mktemp("video") / "clip.mp4")


def _frame_index(view: LoadedImage) -> int:
    """The index a frame shows, read from its grey level away from the white block."""
    grey = np.asarray(view.image)[16:, 16:].mean()
    return round(grey / GREY_STEP)


def _indices(views: list[LoadedImage]) -> list[int]:
    shown = [_frame_index(v) for v in views]
    assert [v.name for v in views] == [f"clip_f{i:06d}" for i in shown]
    return shown


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [0, 10, 20]),  # default: one frame per second
        ({"every_n": 7}, [0, 7, 14, 21, 28]),
        ({"fps": 2.5}, list(range(0, 30, 4))),
        # first frame at or after k/3 s: frame ceil(10k/3)
        ({"fps": 3}, [math.ceil(10 * k / 3) for k in range(9)]),
        ({"num_frames": 4}, [0, 10, 19, 29]),  # linspace(0, 29, 4) = 0, 9.67, 19.33, 29
        ({"num_frames": 1}, [0]),
        ({"num_frames": 100}, list(range(30))),
        ({"every_n": 2, "max_frames": 3}, [0, 14, 28]),  # 15 candidates, positions 0, 7, 14
        ({"num_frames": 10, "max_frames": 2}, [0, 29]),
        ({"max_frames": 5}, [0, 10, 20]),  # cap above the count changes nothing
    ],
)
def test_frame_selection(clip: Path, options: dict, expected: list[int]) -> None:
    views = load_video_frames(clip, **options)
    assert _indices(views) == expected
    assert all(v.image.mode == "RGB" and v.size_hw == (HEIGHT, WIDTH) for v in views)


def test_conflicting_options(clip: Path) -> None:
    with pytest.raises(ValueError, match="at most one"):
        load_video_frames(clip, every_n=2, fps=1.0)
    with pytest.raises(ValueError, match="every_n"):
        load_video_frames(clip, every_n=0)


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    # A display matrix rotating 90 degrees counter-clockwise: stored 64x48 shows as 48x64,
    # and the stored top-left block shows at the bottom-left.
    path = _write_clip(tmp_path / "turned.mp4", num_frames=3, rotation=90)
    (view,) = load_video_frames(path, num_frames=1)
    assert view.size_hw == (WIDTH, HEIGHT)
    pixels = np.asarray(view.image).astype(int)
    assert pixels[WIDTH - 4, 3].min() > 200  # bottom-left
    assert pixels[3, 3].max() < 60  # top-left: frame 0 is black


def test_collect_inputs_takes_videos(clip: Path, tmp_path: Path) -> None:
    views = collect_inputs([clip], InputOptions(video_every_n=10)).views
    assert [v.name for v in views] == ["clip_f000000", "clip_f000010", "clip_f000020"]
    views = collect_inputs(clip, InputOptions(video_fps=1, video_max_frames=2)).views
    assert [v.name for v in views] == ["clip_f000000", "clip_f000020"]


def test_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("definitely not a video\n")
    with pytest.raises(InputError, match="fake.mp4") as info:
        load_video_frames(fake)
    assert "\n" not in str(info.value)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(InputError, match="no video stream"):
        load_video_frames(path)
