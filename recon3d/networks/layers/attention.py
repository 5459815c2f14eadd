"""Multi-head self-attention with optional per-head q/k LayerNorm and 2D RoPE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon3d.networks.layers.rope2d import RopeTables, rotate


class Attention(nn.Module):
    """Self-attention over ``[B, N, dim]`` tokens.

    Order of operations: qkv projection → q/k LayerNorm over the head dimension (when
    ``qk_norm``) → RoPE on q and k (when RoPE tables are given) →
    scaled dot-product attention with scale ``1/sqrt(head_dim)`` → output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """``x [B, N, dim]``, ``rope`` from ``RotaryEmbedding2D.tables`` or None → ``[B, N, dim]``."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))
