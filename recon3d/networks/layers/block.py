"""Pre-norm transformer block with LayerScale, as used by DINOv2 and VGGT."""
from __future__ import annotations

import torch
from torch import nn

from recon3d.networks.layers.attention import Attention, Planner
from recon3d.networks.layers.rope2d import RopeTables


class Mlp(nn.Module):
    """``fc1 → GELU (erf form) → fc2``."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scaling ``x * gamma``."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """``x + ls1(attn(norm1(x))) `` then ``x + ls2(mlp(norm2(x)))`` on ``[B, N, dim]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias, qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None, planner: Planner | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, planner))
        return x + self.ls2(self.mlp(self.norm2(x)))
