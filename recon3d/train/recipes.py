"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

from recon3d.networks.vggt import VGGTConfig
from recon3d.train.loop import TrainConfig


def recon3d_tiny_config() -> VGGTConfig:
    """The network the recon3d-tiny recipe trains: a 28-pixel-patch VGGT working at width 252.

    28-pixel patches at width 252 give 9x7 tokens per 4:3 view, so 8 views run in well
    under a second on two CPU cores and a training step costs a few tenths of a second:
    on a CPU budget the model gets many steps rather than fine pixels. It trains at the
    sizes it is used at (widths 168-280), so positions are never extrapolated. The
    point-map head is left out; points come from depth and cameras.

    Unlike VGGT-1B (DINOv2 tokens, LayerScale 0.01) it trains from scratch: its conv
    patch tokens are LayerNormed and its residual branches start at full weight
    (LayerScale 1.0). With VGGT's settings the conv tokens grew to norms near 160
    while the blocks added about 0.01 each, so the camera tokens of different views
    stayed equal to 0.2 % and every view got the same pose.
    """
    return VGGTConfig(
        img_size=252, patch_size=28, embed_dim=128, depth=8, num_heads=4, init_values=1.0,
        patch_embed={"type": "conv", "norm": True},
        camera_head={"trunk_depth": 2, "num_heads": 4, "init_values": 1.0},
        dpt={"features": 32, "out_channels": [32, 64, 128, 128], "intermediate_layer_idx": [1, 3, 5, 7]},
        enable_point=False, enable_track=False,
    )


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
