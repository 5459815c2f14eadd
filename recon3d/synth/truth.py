"""A synthetic scene's exact ground truth as a ``Prediction`` (for tests, benchmarks and checks)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon3d.types import Prediction


def scene_prediction(scene, views: Sequence[int] | None = None, *, to_original: np.ndarray | None = None) -> Prediction:
    """A Prediction with a synthetic scene's exact images, cameras, depth and points.

    Confidence is 11 where the pixel sees a surface and 1 (the floor of ``1 + exp``)
    on sky. ``to_original`` (``[3,3]``, default identity) maps every view's model pixels
    to a pretend original image, whose size follows from it.
    """
    views = list(range(scene.num_views)) if views is None else list(views)
    masks = scene.masks[views]
    conf = np.where(masks, 11.0, 1.0).astype(np.float32)
    height, width = masks.shape[1:]
    affine = np.eye(3) if to_original is None else np.asarray(to_original, dtype=np.float64)
    original_hw = [int(round(height * affine[1, 1])), int(round(width * affine[0, 0]))]
    return Prediction(
        images=(scene.images[views].astype(np.float32) / 255).transpose(0, 3, 1, 2),
        extrinsics_w2c=scene.extrinsics_w2c[views].astype(np.float32),
        intrinsics=scene.intrinsics[views].astype(np.float32),
        depth=scene.depths[views],
        depth_conf=conf,
        points=scene.world_points()[views].astype(np.float32),
        points_conf=conf,
        to_original=np.repeat(affine.astype(np.float32)[None], len(views), axis=0),
        original_sizes=np.tile(original_hw, (len(views), 1)),
        names=[scene.names[v] for v in views],
    )
