"""Exact ground truth of synthetic scenes in the forms tests need (camera points, pairwise point maps);
the whole-scene Prediction is `recon3d.synth.truth.scene_prediction`."""
from __future__ import annotations

import numpy as np
import torch

from recon3d.pairwise.pointmaps import PairwisePointmaps


def camera_points(scene) -> np.ndarray:
    """``[S,H,W,3]`` camera-frame points of every pixel centre; sky at 2x the farthest depth."""
    K = scene.intrinsics
    height, width = scene.depths.shape[1:]
    depth = np.where(scene.masks, scene.depths, 2.0 * scene.depths[scene.masks].max()).astype(np.float64)
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    x = (u - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * depth
    y = (v - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * depth
    return np.stack([x, y, depth], axis=-1)


def pairwise_from_scene(
    scene, pairs: list[tuple[int, int]], noise: float, seed: int
) -> PairwisePointmaps:
    """Noisy ground-truth pairwise point maps of ``scene`` at a random scale per pair."""
    rng = np.random.default_rng(seed)
    w2c = scene.extrinsics_w2c
    c2w = np.linalg.inv(w2c)
    world = np.einsum("sab,shwb->shwa", c2w[:, :3, :3], camera_points(scene)) + c2w[:, None, None, :3, 3]
    unit = float(np.median(scene.depths[scene.masks]))
    out: dict[str, list[np.ndarray]] = {"pts_i": [], "conf_i": [], "pts_j": [], "conf_j": []}
    for i, j in pairs:
        scale = np.exp(rng.uniform(np.log(0.5), np.log(2.0))) / unit
        for view, which in ((i, "i"), (j, "j")):
            pts = world[view] @ w2c[i, :3, :3].T + w2c[i, :3, 3]
            out["pts_" + which].append(scale * (pts + rng.normal(0.0, noise * unit, pts.shape)))
            conf = 1.0 + np.exp(rng.uniform(0.5, 2.5, pts.shape[:2]))
            out["conf_" + which].append(np.where(scene.masks[view], conf, 1.0))
    tensors = {k: torch.tensor(np.stack(v), dtype=torch.float32) for k, v in out.items()}
    return PairwisePointmaps(pairs=torch.tensor(pairs, dtype=torch.int64), num_views=scene.num_views, **tensors)
