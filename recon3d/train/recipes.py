"""Named training recipes. ``recon3d train recon3d-tiny`` reproduces the embedded model."""
from __future__ import annotations

from recon3d.networks.vggt import VGGTConfig
from recon3d.train.loop import TrainConfig


def recon3d_tiny_config() -> VGGTConfig:
    """The network the recon3d-tiny recipe trains: a 28-pixel-patch VGGT working at width 252.

    28-pixel patches at width 252 give 9x7 tokens per 4:3 view, so 8 views run in well
    under a second on two CPU cores: on a CPU budget the model gets many samples rather
    than fine pixels. It trains at the sizes it is used at (widths 196-280), so
    positions are never extrapolated.

    Cameras are read from geometry (``cameras_from="points"``): the point-map head
    predicts every pixel in the reference frame, and each view's pose is the rigid motion
    carrying its depth onto its point map (`recon3d.geometry.pose_from_points`). A pose
    regressed from one token per view let earlier runs ignore the other views and
    predict one mean pose; the camera head stays as an auxiliary task and gives the
    field of view.

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
        enable_point=True, enable_track=False, cameras_from="points",
    )


RECIPES: dict[str, TrainConfig] = {
    "recon3d-tiny": TrainConfig(
        model=recon3d_tiny_config(),
        # 16 scenes per optimiser step (two passes of 8): one scene per step gave at most
        # 7 pose targets per gradient, far below any published recipe.
        steps=900,
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
