"""Random Gaussians, and random Gaussian scenes and cameras for the renderer tests (CPU and GPU)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from recon3d.types import Gaussians

# The CPU tests' intrinsics, for a 62x47 image.
SMALL_K = np.array([[52.0, 0.0, 30.2], [0.0, 50.0, 23.7], [0.0, 0.0, 1.0]])


def _quats(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _scene(rng, means, scales, opac_range, degree=3):
    n = len(means)
    sh = rng.normal(scale=0.25, size=(n, (degree + 1) ** 2, 3))
    sh[:, 0] = rng.normal(scale=0.6, size=(n, 3))
    return dict(means=means, quats=_quats(rng, n), scales=scales, opacities=rng.uniform(*opac_range, n), sh=sh)


def make_scenes(seed: int = 7, counts: tuple[int, int, int, int] = (200, 120, 100, 300),
                max_opacity: float = 1.0) -> dict[str, dict]:
    """Four scenes (numpy arrays, SH degree 3) that exercise the rasterizer's corner cases.

    ``counts`` are the sizes of the anisotropic, near-plane, off-screen and overlapping
    scenes; opacities are drawn up to ``max_opacity``.
    """
    rng = np.random.default_rng(seed)
    n_aniso, n_near, n_off, n_overlap = counts
    scenes = {}
    # Anisotropic: one axis up to 5x another.
    n = n_aniso
    means = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1.0, 1.0, n), rng.uniform(2.0, 5.0, n)], 1)
    scales = np.exp(rng.uniform(np.log(0.02), np.log(0.15), (n, 1))) * rng.uniform(0.2, 1.0, (n, 3))
    scales[:, 0] *= rng.uniform(2.0, 5.0, n)
    scenes["anisotropic"] = _scene(rng, means, scales, (0.05, max_opacity))
    # Behind the camera, crossing the near plane (the first 8 sit between the camera and
    # the plane, where they would cover the image if they were drawn) and just past it.
    n = n_near
    z = np.concatenate([rng.uniform(0.001, 0.009, 8), rng.uniform(-1.0, 0.8, n - 8)])
    means = np.stack([rng.uniform(-0.4, 0.4, n) * np.maximum(z, 0.01), rng.uniform(-0.3, 0.3, n), z], 1)
    scenes["near_plane"] = _scene(rng, means, rng.uniform(0.02, 0.2, (n, 3)), (0.05, max_opacity))
    # Off screen (x/z up to 3x the half field of view); large ones still reach the image.
    n = n_off
    z = rng.uniform(1.5, 4.0, n)
    means = np.stack([rng.uniform(-1.8, 1.8, n) * z, rng.uniform(-1.4, 1.4, n) * z, z], 1)
    scenes["off_screen"] = _scene(rng, means, rng.uniform(0.05, 1.0, (n, 3)), (0.05, max_opacity))
    # Hundreds overlapping at similar depths: pixels saturate and stop.
    n = n_overlap
    means = np.stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.25, 0.25, n), rng.uniform(2.8, 3.2, n)], 1)
    scenes["overlapping"] = _scene(rng, means, rng.uniform(0.03, 0.2, (n, 3)), (0.3, max_opacity))
    return scenes


def make_cameras(K: np.ndarray = SMALL_K) -> tuple[np.ndarray, np.ndarray]:
    """Two cameras with intrinsics ``K``: the identity and one turned 12° about y and 5°
    about x, shifted."""
    second = np.eye(4)
    second[:3, :3] = Rotation.from_euler("yx", [12, 5], degrees=True).as_matrix()
    second[:3, 3] = [0.3, -0.1, 0.2]
    viewmats = np.stack([np.eye(4), second])
    return viewmats, np.stack([K, K])


def to_gaussians(scene: dict, dtype=torch.float32, device=None) -> Gaussians:
    return Gaussians(*(torch.tensor(scene[k], dtype=dtype, device=device)
                       for k in ("means", "quats", "scales", "opacities", "sh")))


def random_gaussians(n: int, degree: int = 1, seed: int = 0) -> Gaussians:
    """``n`` seeded Gaussians of SH ``degree``: means within a few units of the origin, unit
    quaternions, scales 0.01-0.51, opacities 0.01-0.99 (strictly inside (0, 1), so their
    logits are finite)."""
    gen = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=gen)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 3,
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.rand(n, 3, generator=gen) * 0.5 + 0.01,
        opacities=torch.rand(n, generator=gen) * 0.98 + 0.01,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=gen) * 0.5,
    )
