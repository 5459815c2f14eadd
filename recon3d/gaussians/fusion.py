"""Merging and thinning Gaussian sets: voxel fusion and pruning to a budget."""
from __future__ import annotations

import torch

from recon3d.types import Gaussians

__all__ = ["select_gaussians", "voxel_indices", "fuse_voxels", "prune_to_count"]


def select_gaussians(gaussians: Gaussians, index: torch.Tensor) -> Gaussians:
    """The Gaussians picked by ``index`` (a bool mask ``[N]`` or integer indices ``[M]``)."""
    return Gaussians(
        means=gaussians.means[index],
        quats=gaussians.quats[index],
        scales=gaussians.scales[index],
        opacities=gaussians.opacities[index],
        sh=gaussians.sh[index],
    )


def voxel_indices(means: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Integer voxel coordinates ``floor(p / voxel_size)`` of points ``[N,3]`` → ``[N,3]``.

    The grid is anchored at the world origin rather than at the scene's bounding box, so
    fusing a subset of a scene puts its points in the same voxels as the whole scene.
    """
    return torch.floor(means.to(torch.float64) / voxel_size).long()


def _voxel_keys(cells: torch.Tensor) -> torch.Tensor:
    """Integer keys ``[N]`` of voxel cells ``[N,3]``, sorted like the cells
    lexicographically; the cells themselves when the grid is too large for 63-bit keys.

    Linear keys make `torch.unique` a 1-D sort, an order of magnitude faster than its
    row-wise mode.
    """
    cells = cells - cells.amin(0)
    extent = (cells.amax(0) + 1).tolist()
    if extent[0] * extent[1] * extent[2] >= 2**62:
        return cells
    return (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]


def _scene_voxel_size(means: torch.Tensor, relative_voxel: float) -> float:
    """``relative_voxel`` times the bounding-box diagonal of ``means`` (1 if it is 0)."""
    diagonal = float((means.amax(0) - means.amin(0)).to(torch.float64).norm())
    return relative_voxel * diagonal if diagonal > 0 else 1.0


def fuse_voxels(
    gaussians: Gaussians,
    weights: torch.Tensor,
    voxel_size: float | None = None,
    relative_voxel: float = 1 / 512,
) -> Gaussians:
    """Replace the Gaussians falling in each voxel by their weighted average.

    Every attribute (means, linear scales, opacities, SH) becomes the ``weights``-weighted
    mean over the voxel's members, as in AnySplat's voxelisation (which weights by a
    softmax of its fusion confidence; pass such weights here if wanted). Averaging linear
    scales of differently oriented Gaussians is an approximation that is good when the
    members are similar, which voxels much smaller than the scene make likely.
    Quaternions q and -q are the same rotation, so each member is first flipped to the
    hemisphere of the voxel's highest-weight member, then the weighted sum is
    normalised. A voxel whose weights are all zero averages its members uniformly.

    Voxels are ``floor(mean / voxel_size)`` cells (`voxel_indices`). The output holds one
    Gaussian per occupied voxel, ordered by voxel coordinates (lexicographic x, y, z).

    Args:
        gaussians: N Gaussians.
        weights: ``[N]`` non-negative weights (e.g. confidence or opacity).
        voxel_size: cell edge in world units; None uses ``relative_voxel`` times the
            bounding-box diagonal of the means.
        relative_voxel: cell edge relative to the scene diagonal when ``voxel_size`` is None.

    Returns:
        The fused Gaussians (float32).
    """
    if len(gaussians) == 0:
        return gaussians
    weights = torch.as_tensor(weights, dtype=torch.float32, device=gaussians.means.device)
    if weights.shape != (len(gaussians),) or bool((weights < 0).any()):
        raise ValueError("weights must be a non-negative tensor of shape [N]")
    if voxel_size is None:
        voxel_size = _scene_voxel_size(gaussians.means, relative_voxel)
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")

    keys = _voxel_keys(voxel_indices(gaussians.means, voxel_size))
    _, inverse = torch.unique(keys, dim=0 if keys.ndim > 1 else None, return_inverse=True)
    num_voxels = int(inverse.max()) + 1

    def voxel_sum(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros((num_voxels, *values.shape[1:])).index_add_(0, inverse, values)

    total = voxel_sum(weights)
    weights = torch.where(total[inverse] > 0, weights, 1.0)
    total = voxel_sum(weights)

    def weighted_mean(values: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (values.ndim - 1)
        return voxel_sum(values.float() * weights.reshape(shape)) / total.reshape(shape)

    # The reference member of each voxel: the highest weight, lowest index on ties.
    best = weights.new_zeros(num_voxels).scatter_reduce(0, inverse, weights, "amax")
    order = torch.arange(len(gaussians), device=inverse.device)
    candidates = torch.where(weights == best[inverse], order, len(gaussians))
    reference = order.new_full((num_voxels,), len(gaussians)).scatter_reduce(0, inverse, candidates, "amin")
    quats = gaussians.quats.float()
    signs = torch.where((quats * quats[reference][inverse]).sum(-1) < 0, -1.0, 1.0)
    fused_quats = weighted_mean(quats * signs[:, None])

    return Gaussians(
        means=weighted_mean(gaussians.means),
        quats=fused_quats / fused_quats.norm(dim=-1, keepdim=True),
        scales=weighted_mean(gaussians.scales),
        opacities=weighted_mean(gaussians.opacities),
        sh=weighted_mean(gaussians.sh),
    )


def prune_to_count(gaussians: Gaussians, n: int, score: torch.Tensor | None = None) -> Gaussians:
    """Keep the ``n`` Gaussians with the highest score, in their original order.

    The default score is ``opacity * scale_x * scale_y * scale_z`` (opacity times a
    quantity proportional to the ellipsoid's volume), which drops small faint Gaussians
    first, as the antimatter15 ``.splat`` ordering does. Ties at the cut are broken
    arbitrarily by ``torch.topk``.

    Args:
        gaussians: N Gaussians.
        n: how many to keep (>= 0); all are kept when ``n >= N``.
        score: ``[N]`` optional score, higher is kept first.

    Returns:
        ``min(n, N)`` Gaussians.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if n >= len(gaussians):
        return gaussians
    if score is None:
        score = gaussians.opacities * gaussians.scales.prod(-1)
    kept = torch.topk(torch.as_tensor(score), n).indices.sort().values
    return select_gaussians(gaussians, kept)
