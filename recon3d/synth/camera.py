"""Pinhole cameras in OpenCV axes (x right, y down, z forward) for the synthetic scenes.

Pixels follow the continuous convention: an image spans ``[0,W] x [0,H]`` and pixel
``(v, u)`` has its centre at ``(u + 0.5, v + 0.5)``. Look-at cameras and the pixel-centre
grid are `recon3d.geometry.cameras.look_at` and `recon3d.geometry.cameras.pixel_grid`.
"""
from __future__ import annotations

import numpy as np

from recon3d.geometry.cameras import camera_centres


def intrinsics_from_fov(fov_x: float, width: int, height: int) -> np.ndarray:
    """``[3,3]`` float64 K with square pixels, horizontal field of view ``fov_x`` (radians)
    and the principal point at the image centre ``(W/2, H/2)``."""
    f = 0.5 * width / np.tan(0.5 * fov_x)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def camera_rays(
    w2c: np.ndarray, K: np.ndarray, xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World rays through continuous pixel coordinates ``xy`` ``[N,2]``.

    Returns:
        origin: ``[3]`` camera centre (world, metres).
        dirs: ``[N,3]`` unit world directions.
        z_per_length: ``[N]`` z-depth gained per unit of ray length, so that
            ``depth = t * z_per_length`` for a hit at ray length ``t``.
    """
    cam = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.linalg.inv(K).T
    length = np.linalg.norm(cam, axis=1)
    dirs = (cam / length[:, None]) @ w2c[:3, :3]
    return camera_centres(w2c), dirs, cam[:, 2] / length
