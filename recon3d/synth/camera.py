"""Pinhole cameras in OpenCV axes (x right, y down, z forward) for the synthetic scenes.

Pixels follow the continuous convention: an image spans ``[0,W] x [0,H]`` and pixel
``(v, u)`` has its centre at ``(u + 0.5, v + 0.5)``.
"""
from __future__ import annotations

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """``[4,4]`` float64 world-to-camera transform of a camera at ``eye`` facing ``target``.

    The camera is level (its x axis horizontal) before a ``roll`` (radians) about its
    optical axis that turns its x axis towards its y axis. ``eye``, ``target`` ``[3]`` in metres; they must not be
    vertically aligned.
    """
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, WORLD_UP)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    rot = np.stack([right, down, forward])
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c


def intrinsics_from_fov(fov_x: float, width: int, height: int) -> np.ndarray:
    """``[3,3]`` float64 K with square pixels, horizontal field of view ``fov_x`` (radians)
    and the principal point at the image centre ``(W/2, H/2)``."""
    f = 0.5 * width / np.tan(0.5 * fov_x)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def pixel_centres(width: int, height: int) -> np.ndarray:
    """``[H*W,2]`` float64 continuous coordinates ``(x, y)`` of pixel centres, row-major."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([u.ravel(), v.ravel()], axis=1)


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
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    cam = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.linalg.inv(K).T
    length = np.linalg.norm(cam, axis=1)
    dirs = (cam / length[:, None]) @ rot
    return -rot.T @ trans, dirs, cam[:, 2] / length
