"""Per-pixel keep masks for choosing which pixels become Gaussians or points.

Every filter returns a numpy bool mask, True where the pixel is kept, of shape
``[S,H,W]`` (or ``[S,1,1]`` for `frame_selection`, which broadcasts); masks combine
with ``&``. Images are ``[S,3,H,W]`` floats in [0,1] as in `recon3d.types.Prediction`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "confidence_percentile",
    "frame_selection",
    "sky_mask",
    "black_background",
    "white_background",
    "depth_edges",
]

# Images converted from 8 bits are k/255 rounded to float32; a sum or a comparison of
# such values must not flip at a threshold that is itself a multiple of 1/255.
_ROUNDING = 1e-6


def confidence_percentile(conf: np.ndarray, drop_percent: float) -> np.ndarray:
    """Drop the lowest ``drop_percent`` % of the confidences, as the VGGT demo does.

    The threshold is ``np.percentile(conf, drop_percent)`` (linear interpolation) over
    all views together; pixels at or above it are kept, and pixels with conf <= 1e-5 are
    always dropped. With distinct values, dropping p % of N pixels removes
    ``ceil(p/100 * (N-1))`` of them, the lowest ones.

    Args:
        conf: ``[S,H,W]`` confidences.
        drop_percent: in [0, 100].

    Returns:
        ``[S,H,W]`` bool keep mask.
    """
    if not 0.0 <= drop_percent <= 100.0:
        raise ValueError(f"drop_percent must be in [0, 100], got {drop_percent}")
    conf = np.asarray(conf)
    threshold = np.percentile(conf, drop_percent) if conf.size else 0.0
    return (conf >= threshold) & (conf > 1e-5)


def frame_selection(num_views: int, indices: Sequence[int]) -> np.ndarray:
    """Keep only the views in ``indices`` (negative indices count from the end).

    Returns:
        ``[S,1,1]`` bool mask that broadcasts against any ``[S,H,W]`` mask.
    """
    selected = np.zeros(num_views, dtype=bool)
    for index in indices:
        if not -num_views <= index < num_views:
            raise ValueError(f"view index {index} out of range for {num_views} views")
        selected[index] = True
    return selected[:, None, None]


def sky_mask(
    images: np.ndarray,
    *,
    min_brightness: float = 0.45,
    max_texture: float = 0.03,
    min_blue_excess: float = 0.03,
    max_white_saturation: float = 0.12,
    texture_window: int = 5,
) -> np.ndarray:
    """Heuristic sky removal: keep everything except sky-like regions touching the top.

    A pixel is a sky candidate when it is bright (mean RGB >= ``min_brightness``),
    smooth (the local mean over a ``texture_window``² window of the Sobel gradient
    magnitude of the grey image is <= ``max_texture``), and either blue-ish (blue exceeds
    both red and green by ``min_blue_excess``) or near-white (max - min channel <=
    ``max_white_saturation``). Sky is the union of the 8-connected candidate regions
    that touch the top row of the image, grown by ``texture_window // 2 + 1`` pixels
    into adjacent sky-coloured pixels (the texture window blurs the horizon); those
    pixels are dropped.

    This is an offline stand-in for the VGGT demo's learned ``skyseg.onnx``. Its limits:
    it assumes upright images (sky at the top); it misses dusk, sunset or dark overcast
    skies and textured clouds; it removes white or blue walls, ceilings and facades that
    are smooth and connected to the top border; sky seen only through gaps (under
    foliage, between buildings reaching the top) is kept when cut off from the top row.

    Args:
        images: ``[S,3,H,W]`` colours in [0,1].

    Returns:
        ``[S,H,W]`` bool keep mask (False on sky).
    """
    images = np.asarray(images, dtype=np.float32)
    grow = texture_window // 2 + 1
    keep = np.ones((images.shape[0], *images.shape[2:]), dtype=bool)
    for view, image in enumerate(images):
        red, green, blue = image
        grey = image.mean(axis=0)
        # Sobel's smoothing sums to 4 and its difference spans 2 pixels: /8 gives grey
        # levels per pixel.
        gradient = np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1)) / 8.0
        smooth = ndimage.uniform_filter(gradient, size=texture_window) <= max_texture
        blueish = (blue - np.maximum(red, green)) >= min_blue_excess
        whitish = (image.max(axis=0) - image.min(axis=0)) <= max_white_saturation
        sky_coloured = (grey >= min_brightness) & (blueish | whitish)
        labels, _ = ndimage.label(sky_coloured & smooth, structure=np.ones((3, 3)))
        sky = np.isin(labels, labels[0][labels[0] > 0])
        # The texture window smears the horizon's gradient into the sky; win back that
        # band, but only over sky-coloured pixels.
        sky = ndimage.binary_dilation(sky, np.ones((3, 3)), iterations=grow, mask=sky_coloured)
        keep[view] = ~sky
    return keep


def black_background(images: np.ndarray, threshold: float = 16 / 255) -> np.ndarray:
    """Keep pixels whose R+G+B is at least ``threshold`` (the VGGT demo's ``sum >= 16``).

    Args:
        images: ``[S,3,H,W]`` colours in [0,1].

    Returns:
        ``[S,H,W]`` bool keep mask.
    """
    return np.asarray(images, dtype=np.float64).sum(axis=1) >= threshold - _ROUNDING


def white_background(images: np.ndarray, threshold: float = 240 / 255) -> np.ndarray:
    """Drop pixels whose every channel exceeds ``threshold`` (the VGGT demo's ``> 240``).

    Args:
        images: ``[S,3,H,W]`` colours in [0,1].

    Returns:
        ``[S,H,W]`` bool keep mask.
    """
    return ~(np.asarray(images, dtype=np.float64) > threshold + _ROUNDING).all(axis=1)


def depth_edges(depth: np.ndarray, rel_threshold: float = 0.05) -> np.ndarray:
    """Drop pixels on depth discontinuities, where floating Gaussians appear.

    A pixel is dropped when any of its 8 neighbours has a depth differing from its own
    by more than ``rel_threshold`` times its own depth, so both sides of a step go.
    Neighbours outside the image or with an invalid depth (<= 0 or not finite, e.g. the
    synthetic scenes' sky) are not compared; invalid pixels themselves are kept here and
    left to other filters.

    Args:
        depth: ``[S,H,W]`` depths.
        rel_threshold: allowed relative difference (> 0).

    Returns:
        ``[S,H,W]`` bool keep mask.
    """
    depth = np.asarray(depth, dtype=np.float64)
    height, width = depth.shape[1:]
    valid = np.isfinite(depth) & (depth > 0)
    padded = np.pad(np.where(valid, depth, np.nan), ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    deviation = np.zeros_like(depth)
    for dv in range(3):
        for du in range(3):
            neighbour = padded[:, dv:dv + height, du:du + width]
            difference = np.abs(neighbour - depth)
            deviation = np.maximum(deviation, np.where(np.isnan(difference), 0.0, difference))
    return ~(valid & (deviation > rel_threshold * depth))
