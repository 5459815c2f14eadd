"""Load input images (and video frames) as 8-bit RGB PIL images with unique names.

Every image leaves this module EXIF-oriented, in mode ``"RGB"``, with transparency
composited onto opaque white exactly as the VGGT reference does, so that preprocessing
sees the same pixels the reference would.
"""
from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from recon3d.errors import InputError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

MAX_MEGAPIXELS: float = 178
"""Default size limit of one image in megapixels (10^6 pixels); Pillow's own hard limit
(decompression-bomb error) is about the same, 2 * 89.5 Mpx."""

MIN_IMAGE_SIDE: int = 32
"""Smallest accepted image side in pixels: below it an image carries too little to
reconstruct, and upscaling it to the network's input size would invent the geometry."""

_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_UINT16_MAX = 65535.0

# Pillow's decompression-bomb limit is a module global; our own limit replaces it, and the
# lock keeps concurrent loads from restoring each other's value.
_PILLOW_LIMIT_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    """One input view: a unique name (file name or video frame id) and its RGB image."""

    name: str
    image: Image.Image

    @property
    def size_hw(self) -> tuple[int, int]:
        """Image size as (height, width) in pixels."""
        return self.image.height, self.image.width


def _one_line(exc: BaseException) -> str:
    """The exception's message with whitespace collapsed, or its type name if empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _unreadable(path: Path, exc: BaseException) -> InputError:
    return InputError(f"cannot read image '{path}': {_one_line(exc)}; check the file or remove it")


@contextlib.contextmanager
def _pillow_bomb_check_disabled() -> Iterator[None]:
    """Switch off Pillow's pixel-count check while opening, so ``max_megapixels`` decides."""
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Rescale a single-channel 16-bit, 32-bit integer or float image to 8-bit RGB.

    Integer modes are read as 16-bit data (0..65535 -> 0..255), which is where Pillow's
    PNG and TIFF decoders put it. Float images whose values all lie in [0, 1] are read
    as unit range, other float images as 16-bit data.
    """
    values = np.asarray(image).astype(np.float64)
    full_scale = _UINT16_MAX
    if image.mode == "F" and np.nanmin(values, initial=0.0) >= 0.0 and np.nanmax(values, initial=0.0) <= 1.0:
        full_scale = 1.0
    scaled = np.rint(np.clip(np.nan_to_num(values) / full_scale, 0.0, 1.0) * 255.0)
    return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit ``"RGB"``; transparent pixels become white.

    Transparency (alpha channels, palette or colour-key transparency) is blended onto an
    opaque white background with ``Image.alpha_composite``, as the VGGT reference does for
    RGBA. An ``"RGB"`` image without transparency is returned unchanged (same object).
    """
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _high_bit_depth_to_rgb(image)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def check_image_size(width: int, height: int, what: str) -> None:
    """Refuse an image (or video) with a side under ``MIN_IMAGE_SIDE`` pixels.

    Raises:
        InputError: naming ``what`` and its size.
    """
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"{what} is {width}x{height} pixels, smaller than the minimum of {MIN_IMAGE_SIDE} px "
                         "on a side; use larger images or leave it out")


def load_image(path: str | Path, *, max_megapixels: float | None = None) -> Image.Image:
    """Read an image file as an EXIF-oriented 8-bit RGB image.

    Args:
        path: image file.
        max_megapixels: refuse images with more pixels than this (in 10^6 pixels);
            defaults to the module-level ``MAX_MEGAPIXELS``.

    Returns:
        A fully decoded ``"RGB"`` image, width x height as displayed (EXIF orientation applied).

    Raises:
        InputError: the file is missing, unreadable, truncated, of an unsupported kind,
            or larger than the limit.
    """
    path = Path(path)
    limit = MAX_MEGAPIXELS if max_megapixels is None else max_megapixels
    try:
        with _pillow_bomb_check_disabled():
            opened = Image.open(path)
    # Pillow's format plugins raise a wide, undocumented set of exception types on
    # malformed input; every one of them means "this file cannot be used".
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    with opened:
        megapixels = opened.width * opened.height / 1e6
        if megapixels > limit:
            raise InputError(
                f"image '{path}' has {megapixels:.1f} megapixels, more than the limit of {limit:g}; "
                "downscale it, or raise the limit with max_megapixels= "
                "(or recon3d.io.images.MAX_MEGAPIXELS)"
            )
        try:
            # Decode everything now so that truncated files fail here, not in a later stage.
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))
        except Exception as exc:
            raise _unreadable(path, exc) from exc


def natural_sort_key(name: str) -> tuple[tuple[int | str, ...], str]:
    """Sort key that orders embedded numbers by value, so ``img2`` comes before ``img10``."""
    parts = re.split(r"(\d+)", name.lower())
    # re.split alternates text and digit runs starting with text, so positions never mix types.
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name
