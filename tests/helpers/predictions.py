"""Hand-built predictions and cameras for the tests of Gaussians and masks."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from recon3d.types import Prediction


def make_prediction(
    depth: np.ndarray,
    w2c: np.ndarray,
    K: np.ndarray,
    *,
    images: np.ndarray | None = None,
    points: np.ndarray | None = None,
    seed: int = 0,
) -> Prediction:
    """A hand-built Prediction; unspecified images and confidences are random."""
    rng = np.random.default_rng(seed)
    num_views, height, width = depth.shape
    if images is None:
        images = rng.random((num_views, 3, height, width))
    if points is None:
        points = np.zeros((num_views, height, width, 3))
    return Prediction(
        images=images.astype(np.float32),
        extrinsics_w2c=w2c.astype(np.float32),
        intrinsics=K.astype(np.float32),
        depth=depth.astype(np.float32),
        depth_conf=(1 + rng.exponential(3.0, depth.shape)).astype(np.float32),
        points=points.astype(np.float32),
        points_conf=(1 + rng.exponential(3.0, depth.shape)).astype(np.float32),
        to_original=np.repeat(np.eye(3, dtype=np.float32)[None], num_views, axis=0),
        original_sizes=np.tile([height, width], (num_views, 1)),
    )


def camera(rotvec: list[float], trans: list[float]) -> np.ndarray:
    w2c = np.eye(4)
    w2c[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    w2c[:3, 3] = trans
    return w2c


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H,W,3]`` camera-frame rays (x, y, 1) through pixel centres (u+0.5, v+0.5)."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)), axis=-1)
