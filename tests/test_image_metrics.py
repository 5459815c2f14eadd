"""Image quality metrics (PSNR, SSIM) against closed forms, brute force and OpenCV."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from recon3d.eval.image_metrics import psnr, ssim

# ---------------------------------------------------------------- helpers


def _ssim_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one channel by explicit weighted sums over every full 11x11 window."""
    k = np.arange(11) - 5
    w = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_psnr_of_a_known_error():
    ref = np.random.default_rng(0).uniform(0.0, 0.9, (20, 30, 3))
    # MSE 0.01 gives 10 log10(1 / 0.01) = 20 dB.
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)
    assert psnr(ref, ref) == float("inf")
    # Error 0.1 on the left half only: 20 dB on that half, none on the right half.
    wrong = ref.copy()
    wrong[:, :15] += 0.1
    left = np.zeros((20, 30), dtype=bool)
    left[:, :15] = True
    assert psnr(wrong, ref, mask=left) == pytest.approx(20.0, abs=1e-9)
    assert psnr(wrong, ref, mask=~left) == float("inf")
    assert psnr(wrong, ref) == pytest.approx(10 * np.log10(1 / 0.005), abs=1e-9)


def test_psnr_matches_opencv_on_8_bits():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b, max_val=255.0) == pytest.approx(cv2.PSNR(a, b, 255.0), abs=1e-9)


def test_ssim_against_brute_force_and_closed_forms():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (16, 19, 3))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    expected = np.mean([_ssim_brute_force(x[..., c], y[..., c]) for c in range(3)])
    assert ssim(x, y) == pytest.approx(expected, abs=1e-10)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    # Constant images have no variance: SSIM = (2ab + C1) / (a² + b² + C1).
    a, b, c1 = 0.3, 0.6, 0.01**2
    assert ssim(np.full((12, 12, 3), a), np.full((12, 12, 3), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(3)
    u, v = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 32))
    x = np.stack([u, v, 0.5 + 0.4 * np.sin(8 * u)], axis=-1)
    scores = [ssim(np.clip(x + rng.normal(0, s, x.shape), 0, 1), x) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
