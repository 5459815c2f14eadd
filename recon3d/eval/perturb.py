"""Controlled corruptions of a prediction, to measure how much refinement recovers.

Used with a synthetic scene's exact prediction (`recon3d.synth.truth.scene_prediction`):
the ground truth is known, so the refined cameras can be scored exactly.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from recon3d.geometry.cameras import camera_centres
from recon3d.geometry.extent import scene_diagonal
from recon3d.types import Prediction


def perturb_prediction(pred: Prediction, seed: int, *, rotation_deg: float = 10.0, centre_fraction: float = 0.2,
                       focal_fraction: float = 0.15, depth_scale: tuple[float, float] = (0.8, 1.25),
                       depth_noise: float = 0.05) -> Prediction:
    """Every view's camera and depth corrupted independently.

    Each rotation is turned by ``rotation_deg`` about a random axis, each camera centre
    moved by ``centre_fraction`` of the scene size (`scene_diagonal` of the confident
    points) in a random direction, each focal
    length multiplied by ``1 ± focal_fraction`` (random sign), and each depth map
    multiplied by a log-uniform factor in ``depth_scale`` and by per-pixel noise
    ``1 + N(0, depth_noise)``. Points follow from the corrupted depth and cameras.
    """
    rng = np.random.default_rng(seed)
    num_views = pred.num_views
    w2c = pred.extrinsics_w2c.astype(np.float64)
    axes = rng.normal(size=(num_views, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = Rotation.from_rotvec(axes * np.radians(rotation_deg)).as_matrix()
    directions = rng.normal(size=(num_views, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    size = scene_diagonal(pred.points_from_depth()[pred.depth_conf > 1.0], trim_percent=2.0)
    centres = camera_centres(w2c) + centre_fraction * size * directions
    rotations = turn @ w2c[:, :3, :3]
    out_w2c = np.tile(np.eye(4), (num_views, 1, 1))
    out_w2c[:, :3, :3] = rotations
    out_w2c[:, :3, 3] = -np.einsum("sij,sj->si", rotations, centres)
    intrinsics = pred.intrinsics.astype(np.float64).copy()
    factor = 1.0 + focal_fraction * rng.choice([-1.0, 1.0], size=num_views)
    intrinsics[:, 0, 0] *= factor
    intrinsics[:, 1, 1] *= factor
    scale = np.exp(rng.uniform(np.log(depth_scale[0]), np.log(depth_scale[1]), size=num_views))
    noise = 1.0 + depth_noise * rng.normal(size=pred.depth.shape)
    depth = (pred.depth * scale[:, None, None] * noise).astype(np.float32)
    out = replace(pred, extrinsics_w2c=out_w2c.astype(np.float32), intrinsics=intrinsics.astype(np.float32),
                  depth=depth)
    return replace(out, points=out.points_from_depth())


def collapse_cameras(pred: Prediction, seed: int, depth_noise: float = 0.05) -> Prediction:
    """Every camera equal to the first (the failure of an untrained pose head), depth with
    per-pixel noise ``1 + N(0, depth_noise)``."""
    rng = np.random.default_rng(seed)
    w2c = np.repeat(pred.extrinsics_w2c[:1], pred.num_views, axis=0)
    depth = (pred.depth * (1.0 + depth_noise * rng.normal(size=pred.depth.shape))).astype(np.float32)
    out = replace(pred, extrinsics_w2c=w2c, depth=depth)
    return replace(out, points=out.points_from_depth())
