"""Multi-head self-attention with optional per-head q/k LayerNorm and 2D RoPE."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from recon3d.networks.token_merging import MergePlan

from recon3d.networks.layers.rope2d import RopeTables, rotate

# Called with the attention's (normalised) input; returns a token-merging plan or None.
Planner = Callable[[torch.Tensor], "MergePlan | None"]


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

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None, planner: Planner | None = None) -> torch.Tensor:
        """``x [B, N, dim]``, ``rope`` from ``RotaryEmbedding2D.tables`` or None → ``[B, N, dim]``.

        With a ``planner`` (token merging, `recon3d.networks.token_merging`), attention
        runs on the merged q, k, v and each token takes its slot's output back before
        the output projection.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        plan = planner(x) if planner is not None else None
        if plan is None:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        else:
            def merged(t: torch.Tensor) -> torch.Tensor:  # [B,H,N,D] → [B,H,M,D]
                m = plan.merge(t.transpose(1, 2).reshape(b, n, c))
                return m.reshape(b, -1, self.num_heads, self.head_dim).transpose(1, 2)

            out = F.scaled_dot_product_attention(merged(q), merged(k), merged(v))
            out = plan.unmerge(out.transpose(1, 2).reshape(b, -1, c))
        return self.proj(out)
