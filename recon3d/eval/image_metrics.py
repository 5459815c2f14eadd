"""Image-quality metrics for rendered views: PSNR and SSIM.

Images are float arrays ``[H,W,C]`` (or ``[H,W]``) with values in ``[0, max_val]``
(``[0,1]`` by default, the project's image convention).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["psnr", "ssim"]


def _pair(img: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 ``[H,W,C]`` (a channel axis added to ``[H,W]``), same shape."""
    img = np.asarray(img, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if img.shape != ref.shape or img.ndim not in (2, 3):
        raise ValueError(f"images must both be [H,W] or [H,W,C] of one shape, got {img.shape} and {ref.shape}")
    if img.ndim == 2:
        return img[..., None], ref[..., None]
    return img, ref


def psnr(img: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(max_val² / MSE)`` in dB.

    The MSE is the mean of the squared differences over every channel of the pixels in
    ``mask`` (all pixels when None). Identical images give ``inf``.

    Args:
        img: ``[H,W,C]`` or ``[H,W]`` image.
        ref: reference of the same shape.
        mask: ``[H,W]`` bool, the pixels to score.
        max_val: the largest possible pixel value (1 for [0,1] images, 255 for 8 bits).

    Raises:
        ValueError: mismatched shapes or an empty mask.
    """
    img, ref = _pair(img, ref)
    squared = (img - ref) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask must be [H,W] = {img.shape[:2]}, got {mask.shape}")
        squared = squared[mask]
    if squared.size == 0:
        raise ValueError("PSNR of no pixels: the mask is empty")
    mse = float(squared.mean())
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(max_val**2 / mse))


def ssim(
    img: np.ndarray,
    ref: np.ndarray,
    *,
    max_val: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Structural similarity (Wang et al. 2004), mean over valid windows and channels.

    Per channel, local statistics are Gaussian-weighted over a ``window``² window of
    standard deviation ``sigma`` pixels (weights normalised to sum 1): means μ,
    variances σ² = E[x²] - μ² and covariance σ_xy = E[xy] - μ_x μ_y (population
    moments, as in the paper's reference code). The SSIM map is

        ((2 μ_x μ_y + C1)(2 σ_xy + C2)) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)),

    C1 = (k1·max_val)², C2 = (k2·max_val)², evaluated only where the window lies inside
    the image (the reference code's "valid" filtering), then averaged. The result is 1
    for identical images and symmetric in its arguments.

    Args:
        img: ``[H,W,C]`` or ``[H,W]`` image, H and W at least ``window``.
        ref: reference of the same shape.
        max_val: the dynamic range of the pixel values.
        window: odd window side in pixels.
        sigma: standard deviation of the Gaussian weights in pixels.
        k1: luminance stabiliser.
        k2: contrast stabiliser.
    """
    img, ref = _pair(img, ref)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd size, got {window}")
    if min(img.shape[:2]) < window:
        raise ValueError(f"images of {img.shape[1]}x{img.shape[0]} are smaller than the {window}x{window} window")
    radius = window // 2
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()

    def local_mean(values: np.ndarray) -> np.ndarray:
        # The weights are separable; "valid" output keeps only windows inside the image.
        rows = ndimage.correlate1d(values, taps, axis=0, mode="constant")
        both = ndimage.correlate1d(rows, taps, axis=1, mode="constant")
        return both[radius:values.shape[0] - radius, radius:values.shape[1] - radius]

    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mu_x, mu_y = local_mean(img), local_mean(ref)
    var_x = local_mean(img * img) - mu_x**2
    var_y = local_mean(ref * ref) - mu_y**2
    cov = local_mean(img * ref) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
