"""The AnySplat family: VGGT's cameras and depth plus learned 3D Gaussians, in one forward pass."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recon3d.networks.anysplat.adapter import to_gaussians
from recon3d.networks.anysplat.config import AnySplatConfig
from recon3d.networks.anysplat.model import SKIPPED_CHECKPOINT_PREFIXES, AnySplat
from recon3d.networks.families import ModelFamily, ProgressFn, StageFn

if TYPE_CHECKING:
    from recon3d.settings import ReconstructionSettings

# AnySplat's demo feeds 448x448 centre crops.
_INPUT_SIZE = 448


def _claims_config(data: Mapping[str, Any]) -> bool:
    # Ours name the architecture; the hub's (PyTorchModelHubMixin) hold the constructor's cfg dicts;
    # the parity folders' model_config.json has a Gaussian head beside the aggregator.
    return data.get("architecture") == "anysplat" or "encoder_cfg" in data or {"aggregator", "gs_head"} <= set(data)


def _config_from_json(data: dict[str, Any]) -> AnySplatConfig:
    """Our schema (the parity ``model_config.json`` plus ``architecture``) or the hub's ``encoder_cfg``."""
    if "encoder_cfg" not in data:
        return AnySplatConfig.from_dict(data)
    encoder = data["encoder_cfg"]
    # Everything else is hard-coded in the reference's constructor: the released sizes.
    defaults = AnySplatConfig()
    return AnySplatConfig(
        voxel_size=encoder.get("voxel_size", defaults.voxel_size),
        sh_degree=encoder.get("gaussian_adapter", {}).get("sh_degree", defaults.sh_degree),
    )


@torch.inference_mode()
def predict_tensors(model: AnySplat, images: torch.Tensor) -> dict[str, Any]:
    """Run ``model`` on ``images [S,3,H,W]`` in [0,1]; per-view fp32 arrays of a ``Prediction``.

    Keys: extrinsics_w2c ``[S,4,4]``, intrinsics ``[S,3,3]`` (pixels, AnySplat's +1e-3 focal
    decoding), depth/depth_conf ``[S,H,W]``, points ``[S,H,W,3]`` (from depth, as the Gaussians'
    means are), points_conf (the depth confidence) and ``gaussians``: the fused Gaussians as
    recon3d `Gaussians` (SH up to degree 3).
    """
    device = next(model.parameters()).device
    out = model(images.to(device)[None])
    bottom = out["extrinsics"].new_tensor([0.0, 0.0, 0.0, 1.0]).expand(images.shape[0], 1, 4)

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    return {
        "extrinsics_w2c": host(torch.cat((out["extrinsics"][0], bottom), dim=1)),
        "intrinsics": host(out["intrinsics"][0]),
        "depth": host(out["depth"][0, ..., 0]),
        "depth_conf": host(out["depth_conf"][0]),
        "points": host(out["world_points"][0]),
        "points_conf": host(out["depth_conf"][0]),
        # recon3d's PLY files and renderers stop at SH degree 3; AnySplat's degree-4 band is damped to <= 4e-4.
        "gaussians": to_gaussians(out["gaussians"], out["voxels"][0].coords.shape[0], max_sh_degree=3),
    }


def _predict(model: AnySplat, images: torch.Tensor, settings: ReconstructionSettings, on_stage: StageFn,
             on_progress: ProgressFn | None) -> dict[str, Any]:
    on_stage("network")
    return predict_tensors(model, images)


def _describe(c: AnySplatConfig) -> list[str]:
    v = c.vggt
    return [f"architecture: AnySplat (VGGT backbone: embed {v.embed_dim}, depth {v.depth}, heads {v.num_heads}, "
            f"patch embed {v.patch_embed.type}), Gaussian head features {c.gs_head.features}, SH degree "
            f"{c.sh_degree}, voxel size {c.voxel_size}",
            "predicts cameras, depth and 3D Gaussians fused per voxel in one forward pass"]


def _config_from_weights(state_dict: Mapping[str, torch.Tensor], path: Path) -> AnySplatConfig:
    # Only the released network is known without a config.json.
    return AnySplatConfig()


def _ignorable_keys(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> set[str]:
    return {k for k in state_dict if k.startswith(SKIPPED_CHECKPOINT_PREFIXES)}


FAMILY = ModelFamily(
    name="anysplat",
    title="AnySplat",
    config_type=AnySplatConfig,
    network_type=AnySplat,
    claims_config=_claims_config,
    config_from_json=_config_from_json,
    claims_weights=lambda state_dict: "encoder.gaussian_param_head.norm.weight" in state_dict,
    config_from_weights=_config_from_weights,
    ignorable_keys=_ignorable_keys,
    input_size=lambda config: _INPUT_SIZE,
    patch_size=lambda config: config.vggt.patch_size,
    default_preprocess=lambda config: "square-crop",
    describe=_describe,
    predict=_predict,
)
