"""VGGT's alternating-attention aggregator.

Each frame becomes ``[camera token, register tokens, patch tokens]``. The blocks
alternate between frame attention (tokens of one frame) and global attention (all
tokens of all frames of one scene). Frame 0 receives its own camera and register
tokens, which is what makes it the reference (world) frame.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from recon3d.networks.layers.block import Block
from recon3d.networks.layers.dinov2 import DinoV2, PatchEmbed
from recon3d.networks.layers.rope2d import RopeTables, RotaryEmbedding2D, patch_positions
from recon3d.networks.token_merging import MergeConfig, plan_merge
from recon3d.networks.vggt.config import VGGTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _per_frame_tokens(token: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """``token [1, 2, X, C]`` → ``[batch*frames, X, C]``: slot 0 for frame 0, slot 1 for the rest."""
    first = token[:, :1].expand(batch, 1, -1, -1)
    rest = token[:, 1:].expand(batch, frames - 1, -1, -1)
    return torch.cat([first, rest], dim=1).flatten(0, 1)


class Aggregator(nn.Module):
    def __init__(self, config: VGGTConfig):
        super().__init__()
        c = config
        self.patch_size = c.patch_size
        self.aa_order = list(c.aa_order)
        self.aa_block_size = c.aa_block_size
        pe = c.patch_embed
        if pe.type == "conv":
            self.patch_embed: nn.Module = PatchEmbed(c.patch_size, 3, c.embed_dim, norm=pe.norm)
        else:
            self.patch_embed = DinoV2(
                embed_dim=pe.embed_dim, depth=pe.depth, num_heads=pe.num_heads,
                mlp_ratio=pe.mlp_ratio, num_register_tokens=pe.num_register_tokens,
                img_size=pe.img_size, patch_size=pe.patch_size, qkv_bias=pe.qkv_bias,
                init_values=pe.init_values, interpolate_antialias=pe.interpolate_antialias,
                interpolate_offset=pe.interpolate_offset, norm_eps=pe.norm_eps,
            )
        self.rope = RotaryEmbedding2D(c.rope_freq) if c.rope_freq > 0 else None
        self.head_dim = c.embed_dim // c.num_heads

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                Block(c.embed_dim, c.num_heads, c.mlp_ratio, init_values=c.init_values,
                      qk_norm=c.qk_norm)
                for _ in range(c.depth)
            )

        self.frame_blocks = blocks()
        self.global_blocks = blocks()
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, c.embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, c.num_register_tokens, c.embed_dim))
        self.patch_start_idx = 1 + c.num_register_tokens
        # Token merging in global attention (None: dense); see recon3d.networks.token_merging.
        self.token_merging: MergeConfig | None = None

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """``[B,S,3,H,W]`` in [0,1] → ImageNet-normalised ``[B*S,3,H,W]``."""
        # Made per call rather than stored as buffers, so a model built on the meta
        # device and filled from a checkpoint has nothing left uninitialised.
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        return ((images - mean) / std).flatten(0, 1)

    def embed_frames(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B,S,3,H,W]`` in [0,1] → aggregator input tokens ``[B*S, P, C]``."""
        b, s = images.shape[:2]
        patches = self.patch_embed(self.normalize(images))
        return torch.cat(
            [
                _per_frame_tokens(self.camera_token, b, s).to(patches.dtype),
                _per_frame_tokens(self.register_token, b, s).to(patches.dtype),
                patches,
            ],
            dim=1,
        )

    def forward(
        self, images: torch.Tensor, keep_layers: Iterable[int] | None = None
    ) -> dict[int, torch.Tensor]:
        """Run the aggregator on ``images [B,S,3,H,W]`` in [0,1].

        Returns ``{layer index: [B, S, P, 2C]}`` for the layers in ``keep_layers`` (all
        when None); each is the frame-attention output concatenated with the
        global-attention output at that depth. Keeping only the layers the heads read
        is what lets long sequences fit in memory.
        """
        b, s, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        depth = len(self.frame_blocks)
        keep = set(range(depth) if keep_layers is None else keep_layers)
        tokens = self.embed_frames(images)
        p, c = tokens.shape[1:]
        rope: dict[str, RopeTables | None] = {"frame": None, "global": None}
        if self.rope is not None:
            # Every frame has the same positions: one frame's tables broadcast over the
            # batch in frame attention, and S copies in a row cover a whole scene.
            pos = patch_positions(1, h // self.patch_size, w // self.patch_size, self.patch_start_idx, images.device)
            rope["frame"] = self.rope.tables(pos, self.head_dim)
            rope["global"] = self.rope.tables(pos.repeat(1, s, 1), self.head_dim)
        planners = self._planners(s, (h // self.patch_size, w // self.patch_size), depth)
        outputs: dict[int, torch.Tensor] = {}
        for start in range(0, depth, self.aa_block_size):
            stage_outputs: dict[str, list[torch.Tensor]] = {}
            for kind in self.aa_order:
                blocks = self.frame_blocks if kind == "frame" else self.global_blocks
                # Frame attention sees one frame at a time; global attention sees the whole scene.
                shape = (b * s, p, c) if kind == "frame" else (b, s * p, c)
                tokens = tokens.reshape(shape)
                stage_outputs[kind] = []
                for index in range(start, min(start + self.aa_block_size, depth)):
                    planner = planners[index] if kind == "global" else None
                    tokens = blocks[index](tokens, rope[kind], planner)
                    stage_outputs[kind].append(tokens.reshape(b, s, p, c))
            for j in range(self.aa_block_size):
                if start + j in keep:
                    outputs[start + j] = torch.cat(
                        [stage_outputs["frame"][j], stage_outputs["global"][j]], dim=-1
                    )
        return outputs

    def _planners(self, frames: int, grid_hw: tuple[int, int], depth: int) -> list:
        """Per global block, a token-merging planner or None (dense).

        A plan is made from the first merged block's input and reused for
        ``reuse_blocks`` consecutive merged blocks.
        """
        config = self.token_merging
        if config is None or config.ratio == 0 or frames < max(2, config.min_frames):
            return [None] * depth
        cache: dict[str, object] = {}

        def planner_for(index: int):
            def planner(x: torch.Tensor):
                if (index - config.start_block) % config.reuse_blocks == 0 or "plan" not in cache:
                    cache["plan"] = plan_merge(x, frames, self.patch_start_idx, grid_hw, config)
                return cache["plan"]
            return planner

        return [planner_for(i) if i >= config.start_block else None for i in range(depth)]
