"""Dense matching descriptors for the embedded model (a recon3d addition, not in VGGT-1B).

A small convolutional stem reads the pixels at 1/4 resolution (local appearance, which
the 28-pixel patch tokens of the embedded model blur away), and the aggregator's last
layer adds each patch's multi-view context (which of several similar-looking places
this is). Their fusion gives one unit-length descriptor per 4x4 cell; cameras then come
from matching descriptors between views and lifting the matches with the predicted
depth (`recon3d.geometry.pose_from_matches`), as MASt3R's descriptors serve its
alignment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DescriptorHead", "DESCRIPTOR_STRIDE"]

# Pixels per descriptor cell along each axis.
DESCRIPTOR_STRIDE = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class DescriptorHead(nn.Module):
    """Descriptors ``[B,S,h,w,dim]`` (h = H/4, w = W/4), unit length, from images and tokens.

    Args:
        token_dim: channels of an aggregator layer (2 x embed_dim).
        patch_size: pixels per patch token.
        dim: descriptor length.
    """

    def __init__(self, token_dim: int, patch_size: int, dim: int = 32, width: int = 64):
        super().__init__()
        self.patch_size = patch_size
        self.stem = nn.Sequential(_conv(3, 16, 2), _conv(16, 32), _conv(32, width, 2), _conv(width, width))
        self.context = nn.Linear(token_dim, width)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * width, 96, 1), nn.ReLU(inplace=True), _conv(96, 96), nn.Conv2d(96, dim, 1),
        )

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, patch_start: int) -> torch.Tensor:
        """``images [B,S,3,H,W]`` in [0,1] (H, W multiples of the patch size and of 4) and the
        last aggregator layer ``tokens [B,S,P,token_dim]`` → ``[B,S,H/4,W/4,dim]``."""
        b, s, _, h, w = images.shape
        grid_h, grid_w = h // self.patch_size, w // self.patch_size
        local = self.stem(images.flatten(0, 1).float() - 0.5)
        context = self.context(tokens[:, :, patch_start:].float()).flatten(0, 1)
        context = context.transpose(1, 2).reshape(b * s, -1, grid_h, grid_w)
        context = F.interpolate(context, size=local.shape[-2:], mode="bilinear", align_corners=False)
        descriptors = F.normalize(self.fuse(torch.cat([local, context], dim=1)), dim=1)
        return descriptors.permute(0, 2, 3, 1).reshape(b, s, *descriptors.shape[-2:], -1)
