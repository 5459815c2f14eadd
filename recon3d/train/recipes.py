"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

import dataclasses
import math

from recon3d.train.loop import TrainConfig
from recon3d.zoo import recon3d_tiny_config

RECIPES: dict[str, TrainConfig] = {
    # Stage one: the network without its descriptor head (stage two adds and trains it).
    "recon3d-tiny": TrainConfig(
        model=dataclasses.replace(recon3d_tiny_config(), enable_descriptor=False, cameras_from="head"),
        # 16 scenes per optimiser step (two passes of 8): one scene per step gave at most
        # 7 pose targets per gradient, far below any published recipe.
        steps=500,
        batch=8,
        accumulate=2,
        lr=1e-3,
        warmup=40,
        max_views=8,
        # Small arcs of 2-4 views first, where every view overlaps the reference, widening
        # to whole rings of 8 views over the first third of the steps.
        curriculum=1 / 3,
        start_angle_deg=90.0,
        start_max_views=4,
        # Multiples of 28 around the working width of 252: landscape (twice), square,
        # portrait and a larger landscape. A batch holds one size.
        sizes_wh=[(252, 196), (252, 196), (224, 224), (196, 252), (280, 224)],
        # Natural-image statistics (dead leaves, 1/f noise) beside the classic patterns, so the
        # model does not learn one procedural look; the strokes family is never trained on.
        textures={"classic": 0.5, "training": 0.5},
        views_per_scene=12,
        # A scene is rendered once (about 0.4 s) and serves many samples: a new one each
        # step, 300 kept.
        pool_size=300,
        render_workers=0,
        new_scene_every=1,
        # Global layer 3 of 8 is taught to match: its first two heads must attend from each
        # patch to the patch that sees the same surface point in every other view.
        matching_weight=0.5,
        matching_layer=3,
        matching_heads=2,
        checkpoint_every=25,
        validate_every=50,
        log_every=5,
    ),
}

# Stage two of the embedded model: the descriptor head learns to match on top of the
# frozen stage-one network (`--init-from` the model folder the recipe above wrote, e.g.
# runs/recon3d-tiny/model), and inference solves the cameras from its matches. One 8-view scene per step:
# each gives 56 ordered view pairs of up to 256 supervised cells, so a step already sees
# about 10,000 correspondences.
RECIPES["recon3d-tiny-matching"] = dataclasses.replace(
    RECIPES["recon3d-tiny"],
    model=recon3d_tiny_config(),
    steps=3000,
    batch=1,
    accumulate=1,
    lr=1e-3,
    warmup=60,
    min_views=8,
    curriculum=0.0,
    sizes_wh=[(252, 196)],
    pool_size=80,
    new_scene_every=2,
    trainable=["descriptor_head."],
    camera_weight=0.0,
    depth_weight=0.0,
    points_weight=0.0,
    matching_weight=0.0,
    descriptor_weight=1.0,
    weight_decay=1e-4,
    # InfoNCE gradients of a fresh head run at norms of 15-50: clipping them to 1 (stage
    # one's setting) would shrink every update that much. The probe measured in
    # benchmarks/RESULTS.md (diagnostic 5) trained unclipped.
    grad_clip=math.inf,
    log_every=25,
    checkpoint_every=100,
    validate_every=300,
)
