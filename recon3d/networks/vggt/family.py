"""The VGGT family: one forward pass over all views predicts cameras, depth and point maps."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recon3d.networks.families import ModelFamily, ProgressFn, StageFn
from recon3d.networks.vggt.config import VGGTConfig
from recon3d.networks.vggt.model import SKIPPED_CHECKPOINT_PREFIXES, VGGT

if TYPE_CHECKING:
    from recon3d.settings import ReconstructionSettings

log = logging.getLogger(__name__)

# The official Hugging Face config.json holds only the VGGT() constructor arguments.
_CONSTRUCTOR_KEYS = {"img_size", "patch_size", "embed_dim", "enable_camera", "enable_point", "enable_depth",
                     "enable_track"}


def _config_from_json(data: dict[str, Any]) -> VGGTConfig:
    data = {k: v for k, v in data.items() if k != "architecture"}
    return VGGTConfig(**data) if set(data) <= _CONSTRUCTOR_KEYS else VGGTConfig.from_dict(data)


def solved_cameras(out: Mapping[str, Any], intrinsics: torch.Tensor) -> torch.Tensor:
    """``[S,3,4]`` world-to-camera poses solved from the first batch entry's depth and point
    maps (`recon3d.geometry.pose_from_points`), each pixel weighted by the product of its
    depth and point confidences; ``intrinsics [S,3,3]``."""
    from recon3d.geometry.pose_from_points import cameras_from_points

    weights = out["depth_conf"][0] * out["world_points_conf"][0]
    return cameras_from_points(out["depth"][0, ..., 0].float(), out["world_points"][0].float(), weights, intrinsics)


def matched_cameras(out: Mapping[str, Any], head_extrinsics: torch.Tensor,
                    intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[S,3,4]`` world-to-camera poses solved from the first batch entry's descriptor
    matches and depth (`recon3d.geometry.pose_from_matches`), and that depth ``[S,H,W]``
    rescaled per view to the poses' units. ``head_extrinsics [S,3,4]`` are kept for views
    that no verified pair reaches."""
    from recon3d.geometry.cameras import to_homogeneous
    from recon3d.geometry.pose_from_matches import cameras_from_descriptors
    from recon3d.networks.vggt.descriptor_head import DESCRIPTOR_STRIDE

    depth = out["depth"][0, ..., 0].float()
    fallback = to_homogeneous(head_extrinsics).double().cpu().numpy()
    solved = cameras_from_descriptors(depth.cpu().numpy(), intrinsics.double().cpu().numpy(),
                                      out["descriptors"][0], fallback, DESCRIPTOR_STRIDE)
    if not solved.reached.all():
        log.info("cameras from matches: %d of %d views reached; the others keep the camera head's pose",
                 int(solved.reached.sum()), len(solved.reached))
    extrinsics = torch.from_numpy(solved.extrinsics_w2c[:, :3]).to(head_extrinsics)
    scale = torch.from_numpy(solved.depth_scale).to(depth)
    return extrinsics, depth * scale[:, None, None]


@torch.inference_mode()
def predict_tensors(model: VGGT, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Run ``model`` on ``images [S,3,H,W]`` in [0,1]; return per-view fp32 numpy arrays.

    Keys: extrinsics_w2c ``[S,4,4]``, intrinsics ``[S,3,3]``, depth/depth_conf ``[S,H,W]``,
    points ``[S,H,W,3]``, points_conf ``[S,H,W]``. A network without a point-map head
    gets its points from depth and cameras, with the depth confidence. A network whose
    config says ``cameras_from="points"`` gets its poses solved from depth and point maps
    (the camera head still gives the intrinsics), and then its points from depth and those
    poses, so that points, depth and cameras agree exactly (as pixel-aligned Gaussians and
    refinement need). ``cameras_from="matches"`` does the same with poses solved from
    descriptor matches, each view's depth rescaled to them.
    """
    from recon3d.geometry.cameras import pose_encoding_to_cameras, to_homogeneous, unproject_depth

    device = next(model.parameters()).device
    out = model(images.to(device))
    h, w = images.shape[-2:]
    extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"][0].float(), (h, w))

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    depth = out["depth"][0, ..., 0]
    solved = model.config.cameras_from != "head"
    if model.config.cameras_from == "points":
        extrinsics = solved_cameras(out, intrinsics)
    elif model.config.cameras_from == "matches":
        extrinsics, depth = matched_cameras(out, extrinsics, intrinsics)
    if "world_points" in out and not solved:
        points, points_conf = out["world_points"][0], out["world_points_conf"][0]
    else:
        points = unproject_depth(depth, extrinsics, intrinsics)
        points_conf = out["depth_conf"][0]
    return {
        "extrinsics_w2c": host(to_homogeneous(extrinsics)),
        "intrinsics": host(intrinsics),
        "depth": host(depth),
        "depth_conf": host(out["depth_conf"][0]),
        "points": host(points),
        "points_conf": host(points_conf),
    }


def _predict(model: VGGT, images: torch.Tensor, settings: ReconstructionSettings, on_stage: StageFn,
             on_progress: ProgressFn | None) -> dict[str, np.ndarray]:
    on_stage("network")
    model.set_token_merging(settings.token_merging)
    return predict_tensors(model, images)


def _describe(c: VGGTConfig) -> list[str]:
    lines = [f"architecture: VGGT, embed {c.embed_dim}, depth {c.depth}, heads {c.num_heads}, "
             f"patch embed {c.patch_embed.type}, camera trunk {c.camera_head.trunk_depth}, "
             f"DPT features {c.dpt.features} reading layers {c.dpt.intermediate_layer_idx}"]
    if c.enable_track:
        lines.append(f"note: the checkpoint's tracking head ({', '.join(SKIPPED_CHECKPOINT_PREFIXES)}*) is skipped "
                     "when loading: recon3d does not run point tracking")
    return lines


def _ignorable_keys(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> set[str]:
    return {k for k in state_dict if k.startswith(SKIPPED_CHECKPOINT_PREFIXES)}


FAMILY = ModelFamily(
    name="vggt",
    title="VGGT",
    config_type=VGGTConfig,
    network_type=VGGT,
    claims_config=lambda data: data.get("architecture") == "vggt",
    config_from_json=_config_from_json,
    # Unclaimed checkpoints are taken as VGGT-1B: the fallback family (see families.py).
    claims_weights=lambda state_dict: "aggregator.camera_token" in state_dict,
    config_from_weights=lambda state_dict, path: VGGTConfig(),
    ignorable_keys=_ignorable_keys,
    input_size=lambda config: config.img_size,
    patch_size=lambda config: config.patch_size,
    default_preprocess=lambda config: "crop",
    describe=_describe,
    predict=_predict,
)
