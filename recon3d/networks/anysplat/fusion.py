"""AnySplat's voxelization with confidence-softmax fusion of per-pixel Gaussians.

Pixels whose world points fall in the same voxel become one Gaussian: the raw head
outputs and the points are averaged with softmax weights of the head's fusion logit
(its last channel), per voxel. Voxels are sorted lexicographically by integer key.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Padding of batch elements with fewer voxels than the largest one (the reference's values).
PAD_FEATURE = -1e10
PAD_POINT = -1e4
# Added to each voxel's weight sum, so fused weights sum to slightly below 1 (as in the reference).
_WEIGHT_EPS = 1e-6


@dataclass
class VoxelFusion:
    """Fusion of one batch element (n voxels, N pixels in (view, row, col) order).

    Attributes:
        coords: ``[n, 3]`` int32 voxel keys, sorted lexicographically.
        inverse: ``[N]`` int64 voxel index of every pixel.
        counts: ``[n]`` int64 pixels per voxel.
        conf_max: ``[n]`` max fusion logit per voxel.
        weight_sum: ``[n]`` sum of exp(logit - conf_max) per voxel.
        weights: ``[N]`` per-pixel fusion weight.
        points: ``[n, 3]`` fused world points (scene units).
        features: ``[n, C-1]`` fused raw head channels (all but the fusion logit).
    """

    coords: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    conf_max: torch.Tensor
    weight_sum: torch.Tensor
    weights: torch.Tensor
    points: torch.Tensor
    features: torch.Tensor


def voxel_keys(points: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Integer voxel keys ``[N, 3]`` int32 of ``points [N, 3]`` fp32: round-half-even(p / voxel_size).

    A true fp32 division by a full tensor: torch turns division by a scalar into a
    multiplication by its reciprocal, which can move points across rounding boundaries.
    """
    divisor = torch.full_like(points, voxel_size)
    return torch.round(points / divisor).to(torch.int32)


def fuse_voxels(points: torch.Tensor, params: torch.Tensor, voxel_size: float) -> VoxelFusion:
    """Fuse one batch element's pixels into voxels.

    Args:
        points: ``[N, 3]`` fp32 world points.
        params: ``[N, C]`` raw head outputs; channel C-1 is the fusion logit.
        voxel_size: voxel edge in scene units.
    """
    keys = voxel_keys(points, voxel_size)
    coords, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    n = coords.shape[0]
    logits, features = params[:, -1], params[:, :-1]
    conf_max = logits.new_zeros(n).scatter_reduce(0, inverse, logits, "amax", include_self=False)
    # Subtracting the voxel's max keeps exp() finite whatever the logits' range.
    expo = torch.exp(logits - conf_max[inverse])
    weight_sum = expo.new_zeros(n).index_add_(0, inverse, expo)
    weights = expo / (weight_sum[inverse] + _WEIGHT_EPS)
    fused_points = points.new_zeros(n, 3).index_add_(0, inverse, points * weights[:, None])
    fused_features = features.new_zeros(n, features.shape[1]).index_add_(0, inverse, features * weights[:, None])
    return VoxelFusion(coords, inverse, counts, conf_max, weight_sum, weights, fused_points, fused_features)


def fuse_batch(
    points: torch.Tensor, params: torch.Tensor, voxel_size: float
) -> tuple[list[VoxelFusion], torch.Tensor, torch.Tensor]:
    """Fuse each batch element and pad to the largest voxel count.

    Args:
        points: ``[B, S, H, W, 3]`` world points.
        params: ``[B, S, C, H, W]`` raw head outputs (channel C-1: fusion logit).
        voxel_size: voxel edge in scene units.

    Returns:
        per-element fusions, padded points ``[B, n, 3]`` (pad -1e4) and padded
        features ``[B, n, C-1]`` (pad -1e10), n = max voxel count.
    """
    channels = params.shape[2]
    fusions = [
        fuse_voxels(p.reshape(-1, 3), f.permute(0, 2, 3, 1).reshape(-1, channels), voxel_size)
        for p, f in zip(points, params)
    ]
    n = max(f.coords.shape[0] for f in fusions)
    padded_points = points.new_full((len(fusions), n, 3), PAD_POINT)
    padded_features = params.new_full((len(fusions), n, channels - 1), PAD_FEATURE)
    for b, fusion in enumerate(fusions):
        padded_points[b, : fusion.points.shape[0]] = fusion.points
        padded_features[b, : fusion.features.shape[0]] = fusion.features
    return fusions, padded_points, padded_features
