"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

from recon3d.train.loop import TrainConfig
from recon3d.zoo import recon3d_tiny_config


RECIPES: dict[str, TrainConfig] = {
    "recon3d-tiny": TrainConfig(
        model=recon3d_tiny_config(),
        steps=11000,
        lr=4e-4,
        warmup=500,
        max_views=8,
        # Multiples of 28 around the model's working width of 252 (7-10 patches across):
        # landscape, square and portrait. A step of 8 views at 252x196 costs about 0.35 s
        # on two CPU cores, against 2.4 s at 504x392, so the same hours buy seven times
        # the steps; relative camera pose needs many steps far more than fine pixels.
        sizes_wh=[(252, 196), (280, 224), (224, 168), (252, 168), (224, 224), (196, 252), (168, 224), (224, 280)],
        views_per_scene=12,
        pool_size=64,
        # On a 2-core machine one process renders between steps (a scene every 4 steps,
        # about 0.15 s a step) instead of a worker fighting the training threads.
        render_workers=0,
        new_scene_every=4,
        checkpoint_every=100,
        validate_every=500,
    ),
}
