"""Resize, crop and pad images to the network's patch grid.

Modes ``"crop"`` and ``"pad"`` reproduce VGGT's ``load_and_preprocess_images`` bit for bit
(Pillow bicubic resize, ``/255`` in float32, white padding); ``"fit"`` keeps the whole image
at its aspect ratio; ``"long-crop"`` and ``"square-crop"`` are DUSt3R's 512 and 224 px
inputs. Every view also gets the affine map back to original image pixels.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from recon3d.errors import InputError
from recon3d.io.images import to_rgb

logger = logging.getLogger(__name__)

MODES = ("crop", "pad", "fit", "long-crop", "square-crop")
_PAD_VALUE = 1.0  # white, as in the reference


@dataclass
class PreprocessResult:
    """Network input and the way back to the original images.

    Attributes:
        images: ``[S,3,H,W]`` float32 in [0,1]; H and W are multiples of the patch size.
        to_original: ``[S,3,3]`` float64 affine maps, model pixel -> original pixel, in the
            continuous convention (an image spans ``[0,W] x [0,H]``, pixel centres at +0.5).
        original_sizes: ``[S,2]`` int64 original image sizes as (height, width).
    """

    images: torch.Tensor
    to_original: np.ndarray
    original_sizes: np.ndarray


@dataclass
class _Placement:
    """Where one resized image sits in the model grid (all in pixels)."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_top: int = 0
    crop_left: int = 0
    pad_top: int = 0
    pad_left: int = 0

    def to_original(self) -> np.ndarray:
        """``[3,3]`` affine map from model pixels to original pixels (continuous convention)."""
        scale_y = self.original_hw[0] / self.resized_hw[0]
        scale_x = self.original_hw[1] / self.resized_hw[1]
        return np.array(
            [
                [scale_x, 0.0, (self.crop_left - self.pad_left) * scale_x],
                [0.0, scale_y, (self.crop_top - self.pad_top) * scale_y],
                [0.0, 0.0, 1.0],
            ]
        )


def _scaled_side(side: int, other: int, target_size: int, patch_size: int) -> int:
    """``side`` scaled by ``target_size / other``, rounded (Python round) to whole patches.

    The expression and its operation order are the reference's, so ties round identically.
    """
    return max(patch_size, round(side * (target_size / other) / patch_size) * patch_size)


def _resized_hw(h: int, w: int, mode: str, target_size: int, patch_size: int) -> tuple[int, int]:
    """Size (height, width) an ``h x w`` image is resized to before any crop or padding."""
    if mode in ("long-crop", "square-crop"):
        # Aspect kept exactly (no rounding to whole patches): the crop does that.
        scale = target_size / (max(h, w) if mode == "long-crop" else min(h, w))
        return max(patch_size, round(h * scale)), max(patch_size, round(w * scale))
    if mode == "crop" or w >= h:
        return _scaled_side(h, w, target_size, patch_size), target_size
    return target_size, _scaled_side(w, h, target_size, patch_size)


def _crop_hw(h: int, w: int, mode: str, target_size: int, patch_size: int) -> tuple[int, int]:
    """Centre-crop size of a resized ``h x w`` image in the DUSt3R modes."""
    if mode == "square-crop":
        return target_size, target_size
    if h == w:
        # The 512 px models saw no square images in training: a square becomes 4:3.
        return (w * 3 // 4) // patch_size * patch_size, w // patch_size * patch_size
    return h // patch_size * patch_size, w // patch_size * patch_size


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> ``[3,H,W]`` float32 in [0,1], dividing by 255 as torchvision does."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div(255)


def _pad_to(tensor: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, int, int]:
    """White-pad ``[3,h,w]`` to ``[3,height,width]``, the floor half on top/left.

    Returns the padded tensor and the (top, left) padding in pixels.
    """
    pad_h = height - tensor.shape[1]
    pad_w = width - tensor.shape[2]
    top, left = pad_h // 2, pad_w // 2
    padded = F.pad(tensor, (left, pad_w - left, top, pad_h - top), mode="constant", value=_PAD_VALUE)
    return padded, top, left


def _fit_one(
    image: Image.Image, mode: str, target_size: int, patch_size: int
) -> tuple[torch.Tensor, _Placement]:
    """Resize one image and apply the mode's crop or padding; ``[3,H,W]`` and its placement."""
    rgb = to_rgb(image)
    h, w = rgb.height, rgb.width
    new_h, new_w = _resized_hw(h, w, mode, target_size, patch_size)
    # DUSt3R's inputs were made with Lanczos when shrinking, bicubic when enlarging.
    shrink = mode in ("long-crop", "square-crop") and new_h * new_w < h * w
    resample = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
    tensor = _to_tensor(rgb.resize((new_w, new_h), resample))
    placement = _Placement(original_hw=(h, w), resized_hw=(new_h, new_w))
    if mode in ("long-crop", "square-crop"):
        crop_h, crop_w = _crop_hw(new_h, new_w, mode, target_size, patch_size)
        placement.crop_top, placement.crop_left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        tensor = tensor[:, placement.crop_top : placement.crop_top + crop_h, placement.crop_left : placement.crop_left + crop_w]
    elif mode == "crop" and new_h > target_size:
        placement.crop_top = (new_h - target_size) // 2
        tensor = tensor[:, placement.crop_top : placement.crop_top + target_size, :]
    elif mode == "pad":
        tensor, placement.pad_top, placement.pad_left = _pad_to(tensor, target_size, target_size)
    return tensor, placement


def preprocess_images(
    images: Sequence[Image.Image], mode: str = "crop", target_size: int = 518, patch_size: int = 14
) -> PreprocessResult:
    """Bring images to the network's input grid.

    Modes:
        ``"crop"``: width -> ``target_size``, height scaled and rounded to whole patches; a
            height over ``target_size`` is centre-cropped to it (VGGT default).
        ``"pad"``: long side -> ``target_size``, other side scaled and rounded to whole
            patches, then white-padded to ``target_size x target_size``.
        ``"fit"``: long side -> ``target_size``, other side scaled and rounded to whole
            patches (at least one); no crop, no padding.
        ``"long-crop"``: long side -> ``target_size`` at the same aspect, then both sides
            centre-cropped down to whole patches; a square becomes 4:3 landscape
            (DUSt3R 512 px models).
        ``"square-crop"``: short side -> ``target_size``, then a centre square of
            ``target_size`` (DUSt3R 224 px models).
    Resizing is Pillow bicubic. If the views then differ in size, each is white-padded to
    the largest height and width (floor half on top/left) and a warning is logged.

    ``to_original[i]`` maps continuous model pixel coordinates (x, y, 1) of view ``i`` (the
    image spans ``[0,W] x [0,H]``, pixel centres at +0.5) to the same coordinates in the
    original image: it removes the padding offset, adds back the cropped rows and scales
    each axis by original size / resized size. Points in the padding map outside the
    original image.

    Args:
        images: S PIL images (any mode; converted to RGB on white like ``load_image``).
        mode: one of ``MODES``.
        target_size: output width (crop) or long side (pad, fit) in pixels.
        patch_size: output sides are multiples of it.

    Raises:
        InputError: ``images`` is empty.
        ValueError: unknown mode, or ``target_size`` not a multiple of ``patch_size``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if target_size <= 0 or patch_size <= 0 or target_size % patch_size:
        raise ValueError(f"target_size {target_size} must be a positive multiple of patch_size {patch_size}")
    if len(images) == 0:
        raise InputError("no images to process; pass at least one image or video frame")

    tensors, placements = zip(*(_fit_one(im, mode, target_size, patch_size) for im in images))
    shapes = {tuple(t.shape[1:]) for t in tensors}
    height = max(h for h, _ in shapes)
    width = max(w for _, w in shapes)
    if len(shapes) > 1:
        logger.warning(
            "images have different sizes after preprocessing %s; padding each with white to %dx%d (HxW)",
            sorted(shapes),
            height,
            width,
        )
    padded = []
    for tensor, placement in zip(tensors, placements):
        tensor, top, left = _pad_to(tensor, height, width)
        placement.pad_top += top
        placement.pad_left += left
        padded.append(tensor)

    return PreprocessResult(
        images=torch.stack(padded),
        to_original=np.stack([p.to_original() for p in placements]),
        original_sizes=np.array([p.original_hw for p in placements], dtype=np.int64),
    )
