"""Two-dimensional rotary position embedding (RoPE) on a grid of patches.

The head dimension is split in two halves: the first half is rotated by each token's
row coordinate, the second by its column coordinate. Within a half, channel ``j`` is
paired with channel ``j + d/2`` ("rotate half" layout) and rotated by the angle
``pos * base**(-2j/d)``.
"""
from __future__ import annotations

import torch
from torch import nn


def patch_positions(
    batch: int, grid_h: int, grid_w: int, num_special: int, device: torch.device
) -> torch.Tensor:
    """Integer (row, col) positions ``[batch, num_special + grid_h*grid_w, 2]``.

    Patches get ``(row + 1, col + 1)`` in row-major order; the special tokens that
    precede them (camera, registers) all sit at ``(0, 0)``.
    """
    rows = torch.arange(1, grid_h + 1, device=device)
    cols = torch.arange(1, grid_w + 1, device=device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid]).unsqueeze(0).expand(batch, -1, -1)


class RotaryEmbedding2D(nn.Module):
    """Applies 2D RoPE to queries or keys. Has no parameters and no state-dict entries."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = base

    def _cos_sin(
        self, positions: torch.Tensor, half_dim: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.base ** (
            -torch.arange(0, half_dim, 2, device=positions.device, dtype=torch.float32) / half_dim
        )
        angles = positions.to(torch.float32)[..., None] * inv_freq  # [B, N, half_dim/2]
        angles = torch.cat([angles, angles], dim=-1)  # [B, N, half_dim]
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-second, first], dim=-1) * sin

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [B, heads, N, head_dim]`` by ``positions [B, N, 2]`` (row, col)."""
        half = x.shape[-1] // 2
        cos_r, sin_r = self._cos_sin(positions[..., 0], half, x.dtype)
        cos_c, sin_c = self._cos_sin(positions[..., 1], half, x.dtype)
        x_row, x_col = x[..., :half], x[..., half:]
        return torch.cat(
            [self._rotate(x_row, cos_r, sin_r), self._rotate(x_col, cos_c, sin_c)], dim=-1
        )
