"""DINOv2 vision transformer with register tokens (the VGGT patch embedder).

State-dict names follow the released DINOv2 / VGGT checkpoints: ``cls_token``,
``pos_embed``, ``register_tokens``, ``mask_token``, ``patch_embed.proj``,
``blocks.{i}``, ``norm``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recon3d.networks.layers.block import Block


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution: ``[B,3,H,W]`` → ``[B, H/p * W/p, dim]``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm: bool = False):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class DinoV2(nn.Module):
    """ViT with a cls token, register tokens and a learned, interpolated position table.

    ``forward`` returns the final-LayerNorm patch tokens (``x_norm_patchtokens``),
    ``[B, H/p * W/p, embed_dim]``.
    """

    def __init__(
        self,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        img_size: int = 518,
        patch_size: int = 14,
        qkv_bias: bool = True,
        init_values: float = 1.0,
        interpolate_antialias: bool = True,
        interpolate_offset: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # Unused without masked inputs; kept because the checkpoints contain it.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, init_values=init_values,
                  norm_eps=norm_eps)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position table ``[1, 1 + grid_h*grid_w, dim]`` resized (bicubic) to the patch grid."""
        table = self.pos_embed
        stored = int(math.isqrt(table.shape[1] - 1))
        if grid_h == stored and grid_w == stored:
            return table
        cls_pos, grid_pos = table[:, :1], table[:, 1:]
        dim = table.shape[-1]
        grid_pos = grid_pos.float().reshape(1, stored, stored, dim).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            # Legacy DINOv2 behaviour: a scale factor nudged by the offset.
            scale = ((grid_h + self.interpolate_offset) / stored,
                     (grid_w + self.interpolate_offset) / stored)
            grid_pos = F.interpolate(grid_pos, scale_factor=scale, mode="bicubic",
                                     antialias=self.interpolate_antialias)
        else:
            grid_pos = F.interpolate(grid_pos, size=(grid_h, grid_w), mode="bicubic",
                                     antialias=self.interpolate_antialias)
        grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([cls_pos, grid_pos.to(cls_pos.dtype)], dim=1)

    def tokens_in(self, images: torch.Tensor) -> torch.Tensor:
        """Transformer input ``[B, 1 + R + N, dim]``: cls+pos, registers (no pos), patches+pos."""
        b, _, h, w = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        x = x + self.interpolated_pos_embed(h // self.patch_size, w // self.patch_size).to(x.dtype)
        registers = self.register_tokens.expand(b, -1, -1)
        return torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B,3,H,W]`` (normalised) → patch tokens ``[B, N, dim]``."""
        x = self.tokens_in(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]
