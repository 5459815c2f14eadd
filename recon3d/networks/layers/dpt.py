"""Building blocks of DPT decoders (Ranftl et al. 2021), shared by VGGT and DUSt3R.

Attribute names (``resConfUnit1``, ``resConfUnit2``, ``conv1``, ``conv2``,
``out_conv``) are those of the released checkpoints, so state dicts load
unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResidualConvUnit", "FeatureFusionBlock", "resize_bilinear"]

# Some kernels (CUDA upsampling in particular) index with int32 and fail on
# larger tensors, so big batches are resized in pieces.
_MAX_ELEMENTS = 2**31 - 1


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (what both DPT variants use).

    Args:
        x: ``[N, C, h, w]`` feature map.
        size: output (H, W).

    Returns:
        ``[N, C, H, W]``.
    """
    size = (int(size[0]), int(size[1]))
    per_item = x.shape[1] * size[0] * size[1]
    step = max(1, _MAX_ELEMENTS // max(1, per_item))
    if x.shape[0] <= step:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    pieces = [
        F.interpolate(part, size=size, mode="bilinear", align_corners=True)
        for part in x.split(step, dim=0)
    ]
    return torch.cat(pieces, dim=0)


class ResidualConvUnit(nn.Module):
    """Pre-activation residual block: ``conv2(relu(conv1(relu(x)))) + skip``.

    Args:
        features: channels C (unchanged by the block).
        relu_skip: if True the skip adds ``relu(x)`` instead of ``x``. VGGT's
            reference applies an in-place ReLU to the block input, so its skip
            branch sees the rectified tensor; VGGT checkpoints were trained
            that way. DUSt3R/CroCo use a non-in-place ReLU (skip adds ``x``).

    Shapes: ``[N, C, H, W] -> [N, C, H, W]``.
    """

    def __init__(self, features: int, relu_skip: bool = False) -> None:
        super().__init__()
        self.relu_skip = relu_skip
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rectified = F.relu(x)
        out = self.conv2(F.relu(self.conv1(rectified)))
        return out + (rectified if self.relu_skip else x)


class FeatureFusionBlock(nn.Module):
    """RefineNet-style fusion: ``out_conv(up(rcu2(x + rcu1(skip))))``, computed as ``up(out_conv(...))``.

    Args:
        features: channels C of both inputs and of the output.
        has_residual: build ``resConfUnit1`` (the unit applied to the skip
            input). VGGT's coarsest block has none; DUSt3R's has one that is
            never run but is present in its checkpoints.
        relu_skip: passed to both residual units (see `ResidualConvUnit`).
    """

    def __init__(self, features: int, has_residual: bool = True, relu_skip: bool = False) -> None:
        super().__init__()
        # Registration order follows the checkpoints' key order.
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features, relu_skip) if has_residual else None  # noqa: N815
        self.resConfUnit2 = ResidualConvUnit(features, relu_skip)  # noqa: N815

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Fuse and upsample.

        Args:
            x: ``[N, C, h, w]`` coarser path.
            skip: optional ``[N, C, h, w]`` lateral features at the same size.
            size: output (H, W); default ``(2h, 2w)``.

        Returns:
            ``[N, C, H, W]``.
        """
        if skip is not None:
            if self.resConfUnit1 is None:
                raise ValueError("this fusion block was built without a skip input (has_residual=False)")
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (2 * x.shape[-2], 2 * x.shape[-1])
        # A 1x1 convolution commutes with bilinear resizing (every output pixel is an
        # affine combination of input pixels, weights summing to one), so it runs
        # before the upsampling, on 4x fewer pixels. Equal up to float rounding.
        return resize_bilinear(self.out_conv(x), size)
