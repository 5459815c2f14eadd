"""Write frames as an H.264 ``.mp4`` with PyAV, atomically; colour-map depth frames.

H.264 in yuv420p (the pixel format every player decodes) stores chroma at half
resolution, so frame sides must be even: an odd side is padded by repeating the last
row or column once.
"""
from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from recon3d.io.atomic import atomic_path

__all__ = ["write_mp4", "colorize_depth"]

# Constant-rate-factor of libx264: 18 is visually lossless and still small for renders.
_CRF = "18"
# matplotlib's viridis (perceptually uniform, readable in grey) at 0, 1/16, ..., 1: the
# nearest of its 256 entries; linear interpolation stays within 6/255 of the full table.
_VIRIDIS = np.array([
    [0.267004, 0.004874, 0.329415],
    [0.282327, 0.094955, 0.417331],
    [0.278826, 0.175490, 0.483397],
    [0.258965, 0.251537, 0.524736],
    [0.229739, 0.322361, 0.545706],
    [0.199430, 0.387607, 0.554642],
    [0.172719, 0.448791, 0.557885],
    [0.149039, 0.508051, 0.557250],
    [0.127568, 0.566949, 0.550556],
    [0.120081, 0.622161, 0.534946],
    [0.153894, 0.680203, 0.504172],
    [0.239374, 0.735588, 0.455688],
    [0.360741, 0.785964, 0.387814],
    [0.506271, 0.828786, 0.300362],
    [0.668054, 0.861999, 0.196293],
    [0.835270, 0.886029, 0.102646],
    [0.993248, 0.906157, 0.143936],
])


def _codec() -> str:
    """libx264 where PyAV's FFmpeg has it (the PyPI wheels do), else FFmpeg's MPEG-4 Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _even(frame: np.ndarray) -> np.ndarray:
    """``frame`` ``[H,W,3]`` padded to even H and W by repeating its last row/column."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0) -> int:
    """Encode ``frames`` to an ``.mp4`` at ``path`` (temporary file, then rename).

    Frames are consumed one at a time, so a generator can render them while the video
    is written. All frames must share the first frame's size; odd sides are padded to
    even ones (see the module docstring), so the video may be one pixel wider or
    taller than the frames.

    Args:
        path: output file.
        frames: ``[N,H,W,3]`` uint8 RGB array, or an iterable of ``[H,W,3]`` uint8 frames.
        fps: frames per second (> 0); fractional rates such as 29.97 are kept exactly
            up to a denominator of 1001.

    Returns:
        The number of frames written.

    Raises:
        ValueError: no frames, a frame that is not ``[H,W,3]`` uint8, sizes that change,
            or a non-positive ``fps``.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with atomic_path(path) as tmp:
        # The temporary name ends in .part, so the container format is named explicitly.
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                frame = np.asarray(frame)
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"frames must be [H,W,3] uint8, got {frame.shape} {frame.dtype}")
                frame = _even(frame)
                if stream is None:
                    stream = container.add_stream(_codec(), rate=rate)
                    stream.width, stream.height = frame.shape[1], frame.shape[0]
                    stream.pix_fmt = "yuv420p"
                    if stream.codec_context.name == "libx264":
                        stream.options = {"crf": _CRF}
                elif (frame.shape[1], frame.shape[0]) != (stream.width, stream.height):
                    raise ValueError(
                        f"frame {count} is {frame.shape[1]}x{frame.shape[0]} after padding, "
                        f"the video {stream.width}x{stream.height}"
                    )
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
                count += 1
            if stream is None:
                raise ValueError("no frames to write")
            container.mux(stream.encode(None))
    return count


def colorize_depth(depth: np.ndarray, valid: np.ndarray, near: float, far: float) -> np.ndarray:
    """Colour-map depths with viridis: ``near`` dark purple, ``far`` yellow, invalid black.

    Depths are clipped to ``[near, far]`` and mapped linearly onto the 17-entry viridis
    table, interpolated linearly between its entries.

    Args:
        depth: ``[H,W]`` depths (any unit, same as ``near``/``far``).
        valid: ``[H,W]`` bool, False where nothing was rendered (drawn black).
        near: depth drawn with the first colour.
        far: depth drawn with the last colour (> ``near``).

    Returns:
        ``[H,W,3]`` uint8 RGB.
    """
    if not far > near:
        raise ValueError(f"far ({far}) must exceed near ({near})")
    position = np.clip((np.asarray(depth, dtype=np.float64) - near) / (far - near), 0.0, 1.0)
    position = np.nan_to_num(position, nan=0.0) * (len(_VIRIDIS) - 1)
    lower = np.minimum(position.astype(np.int64), len(_VIRIDIS) - 2)
    weight = (position - lower)[..., None]
    rgb = (1.0 - weight) * _VIRIDIS[lower] + weight * _VIRIDIS[lower + 1]
    rgb = np.where(np.asarray(valid, dtype=bool)[..., None], rgb, 0.0)
    return np.round(rgb * 255.0).astype(np.uint8)
