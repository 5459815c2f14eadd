"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

from recon3d.train.loop import TrainConfig
from recon3d.zoo import recon3d_tiny_config


RECIPES: dict[str, TrainConfig] = {
    "recon3d-tiny": TrainConfig(
        model=recon3d_tiny_config(),
        steps=20000,
        lr=4e-4,
        warmup=500,
        max_views=8,
        # Multiples of 28: landscape, square and portrait. One draw in five is full size
        # (the sizes the model is used at, 18x14 patches); the rest are about half size,
        # whose steps cost a quarter as much on a CPU (0.8 s vs 3.2 s for 8 views).
        sizes_wh=[(504, 392), (392, 504)]
        + [(252, 196), (224, 224), (196, 252), (280, 224), (224, 280), (308, 224), (252, 168), (168, 252)],
        views_per_scene=12,
        pool_size=64,
        render_workers=1,
        new_scene_every=3,
        checkpoint_every=100,
        validate_every=500,
    ),
}
