"""Accuracy on held-out procedural scenes (seeds never used in training).

Training draws scene seeds from ``recon3d.train.data.TRAIN_SEED_OFFSET`` upwards;
held-out scenes use seeds ``0 .. n-1`` of each kind.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from recon3d.eval.harness import SceneReference, evaluate_prediction
from recon3d.synth import SynthScene, make_scene

HEADLINE = ("auc@30", "abs_rel", "delta1", "chamfer")


def scene_reference(scene: SynthScene) -> SceneReference:
    """Ground truth of an in-memory synthetic scene, in the form the harness scores against."""
    return SceneReference(
        kind="synthetic", image_paths=[], names=list(scene.names),
        extrinsics_w2c=np.asarray(scene.extrinsics_w2c, dtype=np.float64),
        depths=np.asarray(scene.depths, dtype=np.float32),
        surface_points=scene.world_points().astype(np.float32),
    )


def headline(result: dict) -> dict[str, float]:
    """Pose AUC@30, median-scaled depth AbsRel and δ<1.25, and depth-map Chamfer of one scene."""
    depth = result["depth"]["median_scaled"]
    return {
        "auc@30": result["camera"]["auc@30"],
        "abs_rel": depth["abs_rel"],
        "delta1": depth["delta1"],
        "chamfer": result["geometry"]["depth_map"]["chamfer"],
    }


def evaluate_heldout(
    model: torch.nn.Module,
    kinds: Sequence[str] = ("object", "room", "trajectory"),
    num_scenes: int = 20,
    num_views: int = 8,
    size_wh: tuple[int, int] = (504, 378),
    on_scene: Callable[[str, int, dict[str, float]], None] | None = None,
    token_merging=None,
    textures: str = "classic",
) -> dict[str, dict[str, float]]:
    """Mean headline metrics per scene kind over seeds ``0 .. num_scenes-1``.

    Images are rendered at ``size_wh`` and go through the normal pipeline
    (preprocessing included), so the numbers are what a user of the model gets.
    ``token_merging`` (a `recon3d.networks.token_merging.MergeConfig`) runs the model
    with merged global attention. ``textures`` is the scenes' texture family
    (`recon3d.synth.textures.TEXTURE_FAMILIES`; "heldout" was never trained on).
    """
    from recon3d.pipeline import reconstruct
    from recon3d.refine import RefineOptions
    from recon3d.settings import ReconstructionSettings

    # The network alone: no geometric refinement, whatever the model's default.
    settings = ReconstructionSettings(token_merging=token_merging, refine=RefineOptions(method="none"))
    summary: dict[str, dict[str, float]] = {}
    for kind in kinds:
        rows = []
        for seed in range(num_scenes):
            scene = make_scene(kind, seed, num_views, size_wh, textures=textures)
            prediction = reconstruct([Image.fromarray(im) for im in scene.images], model, settings)
            prediction.names = list(scene.names)
            row = headline(evaluate_prediction(prediction, scene_reference(scene), max_points=20_000))
            rows.append(row)
            if on_scene:
                on_scene(kind, seed, row)
        summary[kind] = {key: float(np.nanmean([r[key] for r in rows])) for key in HEADLINE}
    return summary
