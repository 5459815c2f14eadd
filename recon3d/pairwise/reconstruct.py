"""A whole scene from a two-view network: scene graph → pair inference → global alignment."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recon3d.networks.dust3r import DUSt3R

StageFn = Callable[[str], None]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PairwiseOptions:
    """How a DUSt3R-style network reconstructs more than two views.

    Attributes:
        scene_graph: which pairs run through the network (`recon3d.pairwise.graph`).
        align_iters: optimisation steps of the global alignment (two views use a
            closed form instead).
        align_lr: its peak learning rate.
        schedule: "cosine" or "linear" decay of the learning rate.
        align_stride: optimise the alignment on every N-th pixel, then solve full-resolution
            depth in closed form (`recon3d.pairwise.align.global_align`); "auto" picks N
            from the image size, 1 optimises every pixel.
        batch_size: pairs per network forward pass.
    """

    scene_graph: str = "complete"
    align_iters: int = 300
    align_lr: float = 0.01
    schedule: str = "cosine"
    batch_size: int = 8
    align_stride: int | str = "auto"


def predict_scene(
    model: DUSt3R,
    images: torch.Tensor,
    options: PairwiseOptions | None = None,
    *,
    on_stage: StageFn | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """Cameras, depth and points of ``images [S, 3, H, W]`` (in [0, 1]) in view 0's frame.

    Returns the arrays of a `recon3d.types.Prediction` (extrinsics_w2c, intrinsics,
    depth, depth_conf, points, points_conf). A single image is paired with itself,
    which gives its depth and focal length.
    """
    from recon3d.pairwise.align import global_align
    from recon3d.pairwise.graph import make_pairs
    from recon3d.pairwise.inference import predict_pairs

    options = options or PairwiseOptions()
    stage = on_stage or (lambda name: None)
    num_views = int(images.shape[0])
    if num_views == 1:
        images = images.expand(2, -1, -1, -1)
    # A single image is paired with its copy whatever the graph.
    pairs = make_pairs(int(images.shape[0]), options.scene_graph if num_views > 1 else "complete")
    stage("network")
    pointmaps = predict_pairs(model, images, pairs, batch_size=options.batch_size, on_progress=on_progress)
    stage("global alignment")
    # Pair outputs wait on the CPU (they can outgrow GPU memory while the network runs);
    # the alignment's hundreds of steps over them run on the network's device.
    aligned = global_align(
        pointmaps, niter=options.align_iters, lr=options.align_lr, schedule=options.schedule,
        device=next(model.parameters()).device, stride=options.align_stride,
        on_progress=None if on_progress is None else (lambda step, total, loss: on_progress(step, total)),
    )
    arrays = {
        "extrinsics_w2c": aligned.extrinsics_w2c, "intrinsics": aligned.intrinsics, "depth": aligned.depth,
        "depth_conf": aligned.depth_conf, "points": aligned.points, "points_conf": aligned.depth_conf,
    }
    return {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)[:num_views]) for k, v in arrays.items()}
