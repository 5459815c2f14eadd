"""Decoder block of DUSt3R: self-attention, cross-attention to the other view, MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon3d.networks.layers.attention import Attention
from recon3d.networks.layers.block import Mlp
from recon3d.networks.layers.rope2d import RopeTables, rotate


class CrossAttention(nn.Module):
    """Attention of ``x [B, N, dim]`` to ``y [B, M, dim]``, with 2D RoPE on both sides.

    Queries rotate by the positions of ``x``, keys by those of ``y``; separate q, k, v
    projections with biases, scale ``1/sqrt(head_dim)``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, heads, N, head_dim]

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope_x: RopeTables, rope_y: RopeTables) -> torch.Tensor:
        q = rotate(self._heads(self.projq(x)), rope_x)
        k = rotate(self._heads(self.projk(y)), rope_y)
        out = F.scaled_dot_product_attention(q, k, self._heads(self.projv(y)))
        return self.proj(out.transpose(1, 2).flatten(-2))


class DecoderBlock(nn.Module):
    """``x += attn(norm1 x)``; ``x += cross(norm2 x, norm_y y)``; ``x += mlp(norm3 x)``.

    ``y`` is the other view's tokens from the previous layer (the two decoder streams
    never see each other's current layer).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_eps: float):
        super().__init__()
        # Registration order follows the checkpoints' key order.
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope_x: RopeTables, rope_y: RopeTables) -> torch.Tensor:
        """``x [B, N, dim]``, ``y [B, M, dim]`` → updated ``x [B, N, dim]``."""
        x = x + self.attn(self.norm1(x), rope_x)
        x = x + self.cross_attn(self.norm2(x), self.norm_y(y), rope_x, rope_y)
        return x + self.mlp(self.norm3(x))
