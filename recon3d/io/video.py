"""Sample frames from a video file with PyAV.

Frames are chosen from the packet timestamps (a cheap demux pass, no decoding), then the
video is decoded once, front to back, keeping the chosen frames; seeking is avoided
because its accuracy depends on the container and keyframe spacing.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from recon3d.errors import InputError
from recon3d.io.frame_selection import SELECT_MODES, curate, evenly_spaced, score_frame, sharpest_per_slot
from recon3d.io.images import LoadedImage, check_image_size

logger = logging.getLogger(__name__)

DEFAULT_FPS = 1.0
"""Frames per second sampled when no sampling option is given (as in the VGGT demo)."""

_ROTATIONS = {
    90: Image.Transpose.ROTATE_90,
    -90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    -180: Image.Transpose.ROTATE_180,
}


def _read_error(path: Path, exc: BaseException) -> InputError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return InputError(f"cannot read video '{path}': {reason}; check the file or re-encode it as .mp4")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading; FFmpeg failures while it is open become InputError."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise _read_error(path, exc) from exc
    with container:
        try:
            yield container
        except av.FFmpegError as exc:
            raise _read_error(path, exc) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise InputError(f"'{path}' has no video stream; pass a file that contains video")
    return container.streams.video[0]


def _frame_times(container: av.container.InputContainer, stream: av.VideoStream) -> list[Fraction]:
    """Presentation times in seconds, from the first frame, of every frame in display order.

    Read from packet timestamps without decoding; packets without a timestamp fall back to
    ``index / frame rate``.
    """
    pts = [p.pts for p in container.demux(stream) if p.size > 0 and not p.is_discard]
    if pts and all(t is not None for t in pts) and stream.time_base is not None:
        ordered = sorted(pts)
        return [(t - ordered[0]) * stream.time_base for t in ordered]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        # Nothing tells the timing: assume one frame per second so that fps sampling stays
        # defined (every_n and num_frames only use the frame count).
        return [Fraction(i) for i in range(len(pts))]
    return [Fraction(i) / Fraction(rate) for i in range(len(pts))]


def _select_by_fps(times: list[Fraction], fps: float) -> list[int]:
    """Indices of the first frame at or after each multiple of ``1/fps`` seconds."""
    rate = Fraction(fps)
    selected = []
    next_time = Fraction(0)
    for i, t in enumerate(times):
        if t >= next_time:
            selected.append(i)
            next_time = (math.floor(t * rate) + 1) / rate
    return selected


def _check_options(
    every_n: int | None, fps: float | None, num_frames: int | None, max_frames: int | None
) -> None:
    if sum(x is not None for x in (every_n, fps, num_frames)) > 1:
        raise ValueError("give at most one of every_n, fps and num_frames")
    for name, value in (("every_n", every_n), ("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _upright(frame: av.VideoFrame) -> Image.Image:
    """The frame as an RGB image, turned as the container's display matrix asks."""
    image = frame.to_image()
    rotation = frame.rotation
    if rotation in _ROTATIONS:
        return image.transpose(_ROTATIONS[rotation])
    if rotation:
        logger.warning("ignoring display rotation of %s degrees (not a multiple of 90)", rotation)
    return image


def load_video_frames(
    path: str | Path,
    *,
    every_n: int | None = None,
    fps: float | None = None,
    num_frames: int | None = None,
    max_frames: int | None = None,
    select: str = "all",
    dropped: dict[str, str] | None = None,
) -> list[LoadedImage]:
    """Decode a sample of a video's frames as RGB images.

    Args:
        path: video file (any container/codec FFmpeg reads).
        every_n: keep frames 0, n, 2n, ...
        fps: keep the first frame at or after each multiple of ``1/fps`` seconds.
        num_frames: keep this many frames evenly spaced over the whole video, first and
            last included.
        max_frames: cap on the number of frames; a larger selection is evenly subsampled
            (its first and last frame kept).
        At most one of every_n, fps and num_frames; with none, ``fps=DEFAULT_FPS`` (1).
        select: ``"all"``, or ``"sharp"`` to score every frame first (one extra decoding
            pass), drop blurred and near-duplicate frames (`recon3d.io.frame_selection`),
            and sample among the rest, taking the sharpest frame of each every_n block
            or 1/fps window.
        dropped: if given, filled with ``frame name -> reason`` for each frame that
            ``select="sharp"`` dropped.

    Returns:
        Frames in display order, upright (display rotation applied), named
        ``<stem>_f<index>`` with the 0-based frame index in 6 digits, e.g. ``clip_f000120``.

    Raises:
        ValueError: conflicting or non-positive sampling options.
        InputError: the file cannot be read as a video, has no video stream or no frames.
    """
    _check_options(every_n, fps, num_frames, max_frames)
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {', '.join(SELECT_MODES)}, not '{select}'")
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        check_image_size(stream.codec_context.width, stream.codec_context.height, f"video '{path}'")
        times = _frame_times(container, stream)
    if not times:
        raise InputError(f"video '{path}' has no frames; check the file or re-encode it")

    if select == "sharp":
        selected = _select_sharp(path, times, every_n, fps, num_frames, dropped)
    elif every_n is not None:
        selected = list(range(0, len(times), every_n))
    elif num_frames is not None:
        selected = evenly_spaced(len(times), num_frames)
    else:
        selected = _select_by_fps(times, DEFAULT_FPS if fps is None else fps)
    if max_frames is not None and len(selected) > max_frames:
        selected = [selected[i] for i in evenly_spaced(len(selected), max_frames)]
    if not selected:
        raise InputError(f"no frames could be decoded from video '{path}'; check the file or re-encode it")

    # A fresh open instead of seeking back: decoding then surely starts at the first frame.
    with _open(path) as container:
        frames = _decode_selected(container, _video_stream(container, path), path, set(selected))
    if not frames:
        raise InputError(f"no frames could be decoded from video '{path}'; check the file or re-encode it")
    if len(frames) < len(selected):
        logger.warning("video '%s': decoded %d of %d selected frames", path, len(frames), len(selected))
    return frames


def _frame_name(path: Path, index: int) -> str:
    return f"{path.stem}_f{index:06d}"


def _select_sharp(
    path: Path,
    times: list[Fraction],
    every_n: int | None,
    fps: float | None,
    num_frames: int | None,
    dropped: dict[str, str] | None,
) -> list[int]:
    """Frame indices chosen among the sharp, distinct frames (see ``load_video_frames``)."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        scores = [score_frame(_upright(frame)) for frame in container.decode(stream)]
    kept, reasons = curate(scores)
    if dropped is not None:
        dropped.update({_frame_name(path, i): why for i, why in sorted(reasons.items())})
    logger.debug("video '%s': %d of %d frames dropped as blurred or near-duplicate", path, len(reasons), len(scores))
    # Timestamps may list more packets than frames decode; keep indices that exist in both.
    kept = [i for i in kept if i < len(times)]
    sharpness = [scores[i].sharpness for i in kept]
    if num_frames is not None:
        return [kept[p] for p in evenly_spaced(len(kept), num_frames)]
    if every_n is not None:
        slots = [i // every_n for i in kept]
    else:
        rate = Fraction(DEFAULT_FPS if fps is None else fps)
        slots = [math.floor(times[i] * rate) for i in kept]
    return [kept[p] for p in sharpest_per_slot(slots, sharpness)]


def _decode_selected(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path, wanted: set[int]
) -> list[LoadedImage]:
    """Decode from the start, keeping the frames whose display-order index is in ``wanted``."""
    stream.thread_type = "AUTO"
    last = max(wanted)
    frames = []
    for index, frame in enumerate(container.decode(stream)):
        if index in wanted:
            frames.append(LoadedImage(_frame_name(path, index), _upright(frame)))
        if index >= last:
            break
    return frames
