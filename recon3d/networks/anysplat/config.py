"""Configuration of the AnySplat network (VGGT backbone + Gaussian head + voxel fusion).

``AnySplatConfig.from_json`` reads the neutral ``model_config.json`` schema of the parity
data (``tiny_*/model_config.json``, ``anysplat_released_model_config.json``): field names
follow the reference constructors' arguments.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon3d.networks.vggt.config import CameraHeadConfig, DPTConfig, PatchEmbedConfig, VGGTConfig

# The GS head's output: opacity logit, scale (3), quaternion xyzw (4), 3 x (degree+1)^2 SH, fusion logit.
_NON_SH_CHANNELS = 1 + 3 + 4 + 1


@dataclass
class OpacityMapping:
    """Training-time opacity sharpening; (0, 0, 1) is the identity on sigmoid at step 0."""

    initial: float = 0.0
    final: float = 0.0
    warm_up: int = 1


@dataclass
class GSHeadConfig:
    """Sizes of the DPT Gaussian head (the released head: features 256, head features 128/128)."""

    features: int = 256
    out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    intermediate_layer_idx: list[int] = field(default_factory=lambda: [4, 11, 17, 23])
    head_features_1: int = 128
    head_features_2: int = 128


@dataclass
class AnySplatConfig:
    """The released ``lhjiang/anysplat`` network by default.

    Attributes:
        vggt: aggregator, camera head and depth head (no point or track head).
        gs_head: sizes of the Gaussian head.
        sh_degree: SH degree of the Gaussians (the head emits ``9 + 3 (degree+1)^2`` channels).
        voxel_size: fusion voxel edge in scene units (runtime setting).
        opacity_mapping: opacity sharpening schedule, evaluated at ``global_step``.
        global_step: training step the mapping is evaluated at (0 at inference).
        intrinsics_eps: added to tan(fov/2) when decoding focal lengths (AnySplat's +1e-3).
    """

    vggt: VGGTConfig = field(default_factory=lambda: VGGTConfig(enable_point=False, enable_track=False))
    gs_head: GSHeadConfig = field(default_factory=GSHeadConfig)
    sh_degree: int = 4
    voxel_size: float = 0.002
    opacity_mapping: OpacityMapping = field(default_factory=OpacityMapping)
    global_step: int = 0
    intrinsics_eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.vggt.enable_point or self.vggt.enable_track or not (self.vggt.enable_camera and self.vggt.enable_depth):
            raise ValueError("AnySplat keeps VGGT's camera and depth heads only")
        if self.gs_head.head_features_1 != self.gs_head.features // 2:
            raise ValueError("the GS head's input_merger width must equal features // 2 (what output_conv1 emits)")
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")

    @property
    def gs_channels(self) -> int:
        """Output channels of the Gaussian head (84 for degree 4)."""
        return _NON_SH_CHANNELS + 3 * (self.sh_degree + 1) ** 2

    @property
    def layers_read_by_heads(self) -> list[int]:
        """Aggregator layers read by the camera, depth and Gaussian heads."""
        return sorted(set(self.vggt.layers_read_by_heads) | set(self.gs_head.intermediate_layer_idx))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnySplatConfig:
        """From the parity ``model_config.json`` schema (aggregator / camera_head / depth_head / gs_head)."""
        agg, cam, depth, gs = data["aggregator"], data["camera_head"], data["depth_head"], data["gs_head"]
        pe = dict(agg["patch_embed"])
        patch_embed = PatchEmbedConfig(**{k: v for k, v in pe.items() if k in PatchEmbedConfig.__dataclass_fields__})
        vggt = VGGTConfig(
            img_size=agg["img_size"], patch_size=agg["patch_size"], embed_dim=agg["embed_dim"], depth=agg["depth"],
            num_heads=agg["num_heads"], mlp_ratio=agg["mlp_ratio"], num_register_tokens=agg["num_register_tokens"],
            qk_norm=agg["qk_norm"], rope_freq=agg["rope_freq"], init_values=agg["init_values"],
            aa_order=list(agg["aa_order"]), aa_block_size=agg["aa_block_size"], patch_embed=patch_embed,
            camera_head=CameraHeadConfig(
                trunk_depth=cam["trunk_depth"], num_heads=cam["num_heads"], mlp_ratio=cam["mlp_ratio"],
                init_values=cam["init_values"], pose_encoding_type=cam["pose_encoding_type"],
                num_iterations=cam["num_iterations"]),
            dpt=DPTConfig(features=depth["features"], out_channels=list(depth["out_channels"]),
                          intermediate_layer_idx=list(depth["intermediate_layer_idx"])),
            enable_point=False, enable_track=False,
        )
        mapping = data.get("opacity_mapping", {})
        return cls(
            vggt=vggt,
            gs_head=GSHeadConfig(features=gs["features"], out_channels=list(gs["out_channels"]),
                                 intermediate_layer_idx=list(gs["intermediate_layer_idx"]),
                                 head_features_1=gs["head_features_1"], head_features_2=gs["head_features_2"]),
            sh_degree=data["gaussian_adapter"]["sh_degree"],
            voxel_size=data["voxel_size"],
            opacity_mapping=OpacityMapping(initial=mapping.get("initial", 0.0), final=mapping.get("final", 0.0),
                                           warm_up=mapping.get("warm_up", 1)),
            global_step=mapping.get("global_step", 0),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> AnySplatConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data (for comparing configs; not the ``model_config.json`` schema)."""
        return dataclasses.asdict(self)
