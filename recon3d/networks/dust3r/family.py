"""The DUSt3R family: point maps of image pairs, fused by a global alignment."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recon3d.networks.dust3r.config import DUSt3RConfig
from recon3d.networks.dust3r.model import DUSt3R
from recon3d.networks.families import ModelFamily, ProgressFn, StageFn

if TYPE_CHECKING:
    from recon3d.settings import ReconstructionSettings


def _config_from_weights(state_dict: Mapping[str, torch.Tensor], path: Path) -> DUSt3RConfig:
    # The checkpoint fixes every size but the input resolution; the released files say it in their names.
    return DUSt3RConfig.from_state_dict(dict(state_dict), img_size=224 if "224" in path.name else 512)


def _predict(model: DUSt3R, images: torch.Tensor, settings: ReconstructionSettings, on_stage: StageFn,
             on_progress: ProgressFn | None) -> dict[str, np.ndarray]:
    from recon3d.pairwise.reconstruct import predict_scene

    return predict_scene(model, images, settings.pairwise, on_stage=on_stage, on_progress=on_progress)


def _describe(c: DUSt3RConfig) -> list[str]:
    return [f"architecture: DUSt3R, encoder {c.enc_embed_dim}x{c.enc_depth} ({c.enc_num_heads} heads), decoders "
            f"{c.dec_embed_dim}x{c.dec_depth} ({c.dec_num_heads} heads), {c.head_type} heads, input "
            f"{max(c.img_size)} px; runs on image pairs, then a global alignment (--scene-graph, --align-iters)"]


def _claims_config(data: Mapping[str, Any]) -> bool:
    return data.get("architecture") == "dust3r" or "enc_embed_dim" in data


FAMILY = ModelFamily(
    name="dust3r",
    title="DUSt3R",
    config_type=DUSt3RConfig,
    network_type=DUSt3R,
    claims_config=_claims_config,
    config_from_json=DUSt3RConfig.from_dict,
    claims_weights=lambda state_dict: "dec_blocks2.0.norm1.weight" in state_dict,
    config_from_weights=_config_from_weights,
    ignorable_keys=lambda model, state_dict: set(model.alias_keys()),
    input_size=lambda config: max(config.img_size),
    patch_size=lambda config: config.patch_size,
    default_preprocess=lambda config: "square-crop" if max(config.img_size) <= 224 else "long-crop",
    describe=_describe,
    predict=_predict,
)
