"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

from recon3d.networks.vggt import VGGTConfig
from recon3d.train.loop import TrainConfig


def tiny_model_config() -> VGGTConfig:
    """recon3d-tiny: a 28-pixel-patch VGGT at width 504.

    28-pixel patches give a quarter of the tokens of VGGT's 14-pixel patches at the
    same image size, so global attention costs a sixteenth: 8 views at 504x392 run in
    about a second on two CPU cores, and the model trains at the resolution it is used
    at (no position extrapolation). The point-map head is left out; points come from
    depth and cameras.
    """
    return VGGTConfig(
        img_size=504, patch_size=28, embed_dim=128, depth=8, num_heads=4,
        patch_embed={"type": "conv"},
        camera_head={"trunk_depth": 2, "num_heads": 4},
        dpt={"features": 32, "out_channels": [32, 64, 128, 128], "intermediate_layer_idx": [1, 3, 5, 7]},
        enable_point=False, enable_track=False,
    )


RECIPES: dict[str, TrainConfig] = {
    "recon3d-tiny": TrainConfig(
        model=tiny_model_config(),
        steps=30000,
        lr=4e-4,
        warmup=500,
        max_views=8,
        # Sizes of about 504 wide (multiples of 28), landscape, square and portrait.
        sizes_wh=[(504, 392), (504, 336), (448, 448), (392, 504), (504, 280)],
        views_per_scene=12,
        pool_size=64,
        render_workers=1,
        checkpoint_every=100,
        validate_every=500,
    ),
}
