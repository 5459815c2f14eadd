"""Configuration of the VGGT network.

``VGGTConfig()`` is the released facebook/VGGT-1B configuration. ``from_json`` reads the
neutral ``model_config.json`` schema (field names follow the reference constructors'
arguments); ``to_json`` writes the same schema, so our own models ship a
``config.json`` that any VGGT re-implementation can read.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PatchEmbedConfig:
    """Patch embedder: ``"conv"`` (a strided convolution) or ``"dinov2"`` (a ViT)."""

    type: str = "dinov2"
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    img_size: int = 518
    patch_size: int = 14
    ffn_layer: str = "mlp"
    qkv_bias: bool = True
    init_values: float = 1.0
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    norm_eps: float = 1e-6
    # conv only: LayerNorm the patch tokens (as a ViT's output is). Without it a conv
    # embedder trained from scratch drifts to token norms far above what the residual
    # branches add, and the blocks barely change the tokens (the reference has none).
    norm: bool = False


@dataclass
class CameraHeadConfig:
    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    pose_encoding_type: str = "absT_quaR_FoV"
    num_iterations: int = 4


@dataclass
class DPTConfig:
    features: int = 256
    out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    intermediate_layer_idx: list[int] = field(default_factory=lambda: [4, 11, 17, 23])


@dataclass
class VGGTConfig:
    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qk_norm: bool = True
    rope_freq: float = 100
    init_values: float = 0.01
    aa_order: list[str] = field(default_factory=lambda: ["frame", "global"])
    aa_block_size: int = 1
    patch_embed: PatchEmbedConfig = field(default_factory=PatchEmbedConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    dpt: DPTConfig = field(default_factory=DPTConfig)
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True
    # recon3d's own models only: a head of dense matching descriptors
    # (recon3d.networks.vggt.descriptor_head), ``descriptor_dim`` long.
    enable_descriptor: bool = False
    descriptor_dim: int = 32
    # Where inference reads the cameras: "head" (the camera head, as VGGT does),
    # "points" (solved from depth and point maps, recon3d.geometry.pose_from_points;
    # needs the point head) or "matches" (solved from descriptor matches and depth,
    # recon3d.geometry.pose_from_matches; needs the descriptor head). recon3d's own
    # models only: official checkpoints use "head".
    cameras_from: str = "head"

    def __post_init__(self) -> None:
        if isinstance(self.patch_embed, dict):
            self.patch_embed = PatchEmbedConfig(**self.patch_embed)
        if isinstance(self.camera_head, dict):
            self.camera_head = CameraHeadConfig(**self.camera_head)
        if isinstance(self.dpt, dict):
            self.dpt = DPTConfig(**self.dpt)
        self.validate()

    def validate(self) -> None:
        head_dim, rest = divmod(self.embed_dim, self.num_heads)
        if rest or head_dim % 4:
            raise ValueError(
                f"embed_dim/num_heads must be an integer divisible by 4 for 2D RoPE, "
                f"got {self.embed_dim}/{self.num_heads}"
            )
        if self.patch_embed.type not in ("conv", "dinov2"):
            raise ValueError(f"patch_embed.type must be 'conv' or 'dinov2', got {self.patch_embed.type!r}")
        if self.patch_embed.type == "dinov2" and self.patch_embed.embed_dim != self.embed_dim:
            raise ValueError("the DINOv2 patch embedder's width must equal embed_dim")
        if self.cameras_from not in ("head", "points", "matches"):
            raise ValueError(f"cameras_from must be 'head', 'points' or 'matches', got {self.cameras_from!r}")
        if self.cameras_from == "points" and not (self.enable_point and self.enable_depth and self.enable_camera):
            raise ValueError("cameras_from='points' needs the point, depth and camera heads")
        if self.enable_descriptor and self.patch_size % 4:
            raise ValueError("the descriptor head needs a patch size that is a multiple of 4 (its cells are 4x4 pixels)")
        if self.cameras_from == "matches" and not (self.enable_descriptor and self.enable_depth and self.enable_camera):
            raise ValueError("cameras_from='matches' needs the descriptor, depth and camera heads")
        if self.depth % self.aa_block_size:
            raise ValueError("depth must be a multiple of aa_block_size")
        if sorted(self.aa_order) != ["frame", "global"]:
            raise ValueError(f"aa_order must hold 'frame' and 'global' once each, got {self.aa_order}")
        bad = [i for i in self.dpt.intermediate_layer_idx if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"dpt.intermediate_layer_idx {bad} outside 0..{self.depth - 1}")
        if len(self.dpt.out_channels) != 4 or len(self.dpt.intermediate_layer_idx) != 4:
            raise ValueError("the DPT heads read exactly four layers with four widths")

    @property
    def layers_read_by_heads(self) -> list[int]:
        """Aggregator layers that some enabled head reads (the only ones worth keeping)."""
        layers: set[int] = set()
        if self.enable_camera or self.enable_descriptor:
            layers.add(self.depth - 1)
        if self.enable_depth or self.enable_point:
            layers.update(self.dpt.intermediate_layer_idx)
        return sorted(layers)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VGGTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VGGT config fields: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> VGGTConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
