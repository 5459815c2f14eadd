"""Tile-based Gaussian rasterizer in plain PyTorch: differentiable, runs on any device.

The image is cut into 16×16 tiles; each tile gets the list of Gaussians whose screen box
overlaps it, front to back. Groups of tiles walk their lists in depth batches: a batch is
a ``[tiles, 256, batch]`` tensor of alphas, composited with a cumulative product that
carries each pixel's transmittance from batch to batch; tiles whose pixels have all
stopped leave the walk. Autograd provides the gradients. Compositing follows gsplat's
forward kernel exactly:

* ``alpha = min(MAX_ALPHA, o · exp(-½ dᵀ conic d))`` with ``d`` = mean − pixel centre;
* a Gaussian is skipped at a pixel when the exponent is positive or alpha < 1/255;
* a pixel stops at the first Gaussian that would take its transmittance to
  ``TRANSMITTANCE_MIN`` or below, and that Gaussian is not composited.

The vectorised form of the stopping rule: with ``T_k`` the running product of
``1 - alpha`` up to and including Gaussian ``k``, Gaussian ``k`` is composited iff
``T_k > TRANSMITTANCE_MIN``. Before the stop every inclusive product is above the bound;
from the stopping Gaussian on, the products only fall, so all later ones are dropped.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from recon3d.geometry.cameras import camera_centres
from recon3d.render.projection import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TILE_SIZE,
    TRANSMITTANCE_MIN,
    project_gaussians,
    view_colors,
)

__all__ = ["TileIntersections", "intersect_tiles", "rasterize_to_pixels", "rasterize_torch", "tile_ranges"]


class TileIntersections(NamedTuple):
    """Per-tile Gaussian lists of one image, concatenated tile by tile (row-major tiles)."""

    gauss_ids: Tensor
    """``[I]`` int64 Gaussian indices; within a tile, nearest first."""
    offsets: Tensor
    """``[tiles_y * tiles_x + 1]`` int64 start of each tile's run in ``gauss_ids``."""
    tiles_x: int
    tiles_y: int


def tile_ranges(means2d: Tensor, radii: Tensor, tiles_x: int, tiles_y: int, tile_size: int = TILE_SIZE) -> Tensor:
    """Half-open tile ranges covered by each Gaussian's screen box, as gsplat bins them.

    Args:
        means2d: ``[N,2]`` centres in pixels.
        radii: ``[N,2]`` box half-extents in pixels (x, y).
        tiles_x: number of tile columns.
        tiles_y: number of tile rows.
        tile_size: tile side in pixels.

    Returns:
        ``[N,4]`` int64 ``(x0, x1, y0, y1)`` with ``0 <= x0 <= x1 <= tiles_x`` (likewise y).
    """
    centre = means2d.detach() / tile_size
    half = radii.to(centre.dtype) / tile_size
    lo = torch.floor(centre - half)
    hi = torch.ceil(centre + half)
    x0, y0 = lo.unbind(-1)
    x1, y1 = hi.unbind(-1)
    return torch.stack(
        (x0.clamp(0, tiles_x), x1.clamp(0, tiles_x), y0.clamp(0, tiles_y), y1.clamp(0, tiles_y)), dim=-1
    ).to(torch.int64)


def intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int = TILE_SIZE
) -> TileIntersections:
    """Bin Gaussians to the tiles their boxes overlap, each tile's list sorted by depth.

    Args:
        means2d: ``[N,2]`` centres in pixels.
        radii: ``[N,2]`` int box half-extents (0 = culled, never binned).
        depths: ``[N]`` camera z; ties keep index order.
        width: image width in pixels.
        height: image height in pixels.
        tile_size: tile side in pixels.

    Returns:
        The :class:`TileIntersections` of the image.
    """
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    device = means2d.device
    ranges = tile_ranges(means2d, radii, tiles_x, tiles_y, tile_size)
    counts = (ranges[:, 1] - ranges[:, 0]) * (ranges[:, 3] - ranges[:, 2])
    counts = torch.where((radii > 0).all(-1), counts, torch.zeros_like(counts))

    # Emit intersections Gaussian by Gaussian in depth order; a stable sort by tile
    # then leaves every tile's run ordered by depth.
    order = torch.sort(depths.detach(), stable=True).indices
    per_gauss = counts[order]
    gauss_ids = torch.repeat_interleave(order, per_gauss)
    starts = torch.cumsum(per_gauss, 0) - per_gauss
    local = torch.arange(gauss_ids.numel(), device=device) - torch.repeat_interleave(starts, per_gauss)
    box = ranges[gauss_ids]
    box_w = box[:, 1] - box[:, 0]
    tile_ids = (box[:, 2] + local // box_w) * tiles_x + box[:, 0] + local % box_w
    tile_ids, perm = torch.sort(tile_ids, stable=True)
    gauss_ids = gauss_ids[perm]

    per_tile = torch.bincount(tile_ids, minlength=tiles_x * tiles_y)
    offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return TileIntersections(gauss_ids=gauss_ids, offsets=offsets, tiles_x=tiles_x, tiles_y=tiles_y)


def _composite_group(
    tiles: Tensor,
    isect: TileIntersections,
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    tile_size: int,
    batch: int,
) -> tuple[Tensor, Tensor]:
    """Composite a group of tiles, walking their Gaussian lists ``batch`` at a time.

    Args:
        tiles: ``[G]`` int64 tile indices.
        isect: the image's tile lists.
        means2d: ``[N,2]``; conics: ``[N,3]``; colors: ``[N,D]``; opacities: ``[N]``.
        width, height: image size (pixels past it never hold a tile's walk open).
        tile_size: tile side in pixels.
        batch: Gaussians per tile per step.

    Returns:
        ``[G,P,D]`` accumulated features and ``[G,P]`` alphas ``Σ wᵢ``, ``P = tile_size²``.
    """
    device, dtype = means2d.device, means2d.dtype
    start = isect.offsets[tiles]
    count = isect.offsets[tiles + 1] - start
    pix = torch.arange(tile_size * tile_size, device=device)
    px = (tiles % isect.tiles_x)[:, None] * tile_size + pix % tile_size  # [G,P] integer coordinates
    py = (tiles // isect.tiles_x)[:, None] * tile_size + pix // tile_size
    done = (px >= width) | (py >= height)
    px, py = px.to(dtype) + 0.5, py.to(dtype) + 0.5

    trans = means2d.new_ones(px.shape)
    acc = colors.new_zeros(px.shape + (colors.shape[-1],))
    alpha_sum = colors.new_zeros(px.shape)
    live = torch.arange(tiles.numel(), device=device)
    first = 0
    while True:
        live = live[(count[live] > first) & ~done[live].all(-1)]
        if live.numel() == 0:
            break
        # No wider than the longest remaining list, so short lists waste no slots.
        slots = torch.arange(min(batch, int((count[live] - first).max())), device=device)
        in_list = first + slots < count[live, None]  # [L,B]
        gids = isect.gauss_ids[torch.where(in_list, start[live, None] + first + slots, 0)]
        dx = means2d[gids, 0][:, None, :] - px[live][:, :, None]  # [L,P,B]
        dy = means2d[gids, 1][:, None, :] - py[live][:, :, None]
        con = conics[gids]
        a, b, c = (con[..., k][:, None, :] for k in range(3))
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        # Clamping the exponent keeps exp finite where sigma < 0 (masked out below; an
        # inf there would turn a zero gradient into NaN).
        alpha = torch.clamp_max(opacities[gids][:, None, :] * torch.exp(-torch.clamp_min(sigma, 0.0)), MAX_ALPHA)
        used = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & in_list[:, None, :] & ~done[live][:, :, None]
        alpha = torch.where(used, alpha, torch.zeros_like(alpha))

        t0 = trans[live][:, :, None]
        running = torch.cumprod(1.0 - alpha, dim=-1)
        kept = t0 * running > TRANSMITTANCE_MIN
        before = t0 * torch.cat((torch.ones_like(running[..., :1]), running[..., :-1]), dim=-1)
        weights = torch.where(kept, alpha * before, torch.zeros_like(alpha))
        # Out-of-place updates: the carried transmittance is needed by autograd.
        acc = acc.index_put((live,), acc[live] + weights @ colors[gids])
        alpha_sum = alpha_sum.index_put((live,), alpha_sum[live] + weights.sum(-1))
        kept_factor = torch.where(kept, 1.0 - alpha, torch.ones_like(alpha))
        trans = trans.index_put((live,), t0[..., 0] * torch.prod(kept_factor, dim=-1))
        done[live] |= (used & ~kept).any(-1)
        first += slots.numel()
    return acc, alpha_sum


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    isect: TileIntersections,
    width: int,
    height: int,
    *,
    background: Tensor | None = None,
    tile_size: int = TILE_SIZE,
    tiles_per_group: int = 64,
    batch: int = 256,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of screen-space Gaussians into one image.

    Args:
        means2d: ``[N,2]`` centres in pixels.
        conics: ``[N,3]`` inverse 2D covariances ``(a, b, c)``.
        colors: ``[N,D]`` per-Gaussian features (RGB, depth, ...).
        opacities: ``[N]`` in [0,1].
        isect: tile lists from :func:`intersect_tiles`.
        width: image width in pixels.
        height: image height in pixels.
        background: ``[D]`` added with weight ``1 - alpha`` (the final transmittance).
        tile_size: tile side in pixels (must match ``isect``).
        tiles_per_group: tiles composited together; with ``batch`` it bounds memory to
            ``tiles_per_group · tile_size² · batch`` pixel-Gaussian pairs per step.
        batch: Gaussians per tile per step.

    Returns:
        ``[H,W,D]`` composited features and ``[H,W,1]`` alphas. An alpha is summed as
        ``Σ wᵢ`` rather than taken as ``1 - T`` (equal in exact arithmetic): the sum keeps
        its relative precision for faint pixels, where expected depth divides by it.
    """
    n_tiles = isect.tiles_x * isect.tiles_y
    per_pixel = tile_size * tile_size
    counts = isect.offsets[1:] - isect.offsets[:-1]
    # Similar list lengths in a group waste fewer padded slots.
    order = torch.argsort(counts, descending=True)
    order = order[counts[order] > 0]

    out_rgb = colors.new_zeros((n_tiles, per_pixel, colors.shape[-1]))
    out_alpha = colors.new_zeros((n_tiles, per_pixel))
    if order.numel():
        groups = order.split(tiles_per_group)
        parts = [
            _composite_group(g, isect, means2d, conics, colors, opacities, width, height, tile_size, batch)
            for g in groups
        ]
        out_rgb = out_rgb.index_copy(0, order, torch.cat([p[0] for p in parts]))
        out_alpha = out_alpha.index_copy(0, order, torch.cat([p[1] for p in parts]))
    if background is not None:
        out_rgb = out_rgb + (1.0 - out_alpha[..., None]) * background

    def to_image(x: Tensor) -> Tensor:
        x = x.reshape(isect.tiles_y, isect.tiles_x, tile_size, tile_size, -1)
        x = x.permute(0, 2, 1, 3, 4).reshape(isect.tiles_y * tile_size, isect.tiles_x * tile_size, -1)
        return x[:height, :width]

    return to_image(out_rgb), to_image(out_alpha[..., None])


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int,
    with_rgb: bool,
    with_depth: bool,
    background: Tensor | None,
    near_plane: float,
    far_plane: float,
) -> tuple[Tensor, Tensor]:
    """Render ``C`` cameras with the torch rasterizer.

    Args:
        means, quats, scales, opacities, sh: the Gaussians (``[N,3]``, ``[N,4]`` w,x,y,z,
            ``[N,3]``, ``[N]``, ``[N,K,3]``), all on one device and dtype.
        viewmats: ``[C,4,4]`` world-to-camera; Ks: ``[C,3,3]`` pixel intrinsics.
        width, height: image size in pixels.
        sh_degree: SH degree used for colours.
        with_rgb: render the 3 colour channels.
        with_depth: render accumulated camera z (``Σ wᵢ zᵢ``) as the last channel.
        background: ``[3]`` colour behind the Gaussians (depth's background is 0).
        near_plane, far_plane: depth culling bounds.

    Returns:
        ``[C,H,W,D]`` features (D = 3·with_rgb + with_depth) and ``[C,H,W,1]`` alphas.
    """
    proj = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height,
        opacities=opacities, near_plane=near_plane, far_plane=far_plane,
    )
    campos = camera_centres(viewmats)
    bg = None
    if background is not None and with_rgb:
        bg = torch.cat((background, background.new_zeros(1))) if with_depth else background
    out_colors, out_alphas = [], []
    for cam in range(viewmats.shape[0]):
        visible = torch.nonzero((proj.radii[cam] > 0).all(-1))[:, 0]
        feats = []
        if with_rgb:
            feats.append(view_colors(means[visible], sh[visible], campos[cam], sh_degree))
        if with_depth:
            feats.append(proj.depths[cam, visible, None])
        isect = intersect_tiles(
            proj.means2d[cam, visible].detach(), proj.radii[cam, visible], proj.depths[cam, visible], width, height
        )
        rgb, alpha = rasterize_to_pixels(
            proj.means2d[cam, visible], proj.conics[cam, visible], torch.cat(feats, dim=-1),
            opacities[visible], isect, width, height, background=bg,
        )
        out_colors.append(rgb)
        out_alphas.append(alpha)
    return torch.stack(out_colors), torch.stack(out_alphas)
