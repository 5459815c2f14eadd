"""TSDF fusion of per-view depth maps into a coloured mesh (open3d's VoxelBlockGrid).

Voxel size and truncation are relative to the scene (diagonal / 512 and 4.5 voxels by
default) because feed-forward reconstructions come at an arbitrary scale. The volume is
open3d's hashed `VoxelBlockGrid` (tensor API): the legacy ``ScalableTSDFVolume`` of
open3d 0.20 extracts no surface at all, even from a single fronto-parallel plane.
"""
from __future__ import annotations

import numpy as np

from recon3d.geometry.cameras import unproject_depth
from recon3d.geometry.extent import scene_diagonal
from recon3d.mesh.open3d_bridge import from_open3d, import_open3d
from recon3d.types import Gaussians, Mesh

__all__ = ["tsdf_fusion", "rendered_depth"]


def tsdf_fusion(
    depth: np.ndarray,
    colors: np.ndarray,
    extrinsics_w2c: np.ndarray,
    intrinsics: np.ndarray,
    keep: np.ndarray | None = None,
    *,
    voxel_size: float | None = None,
    relative_voxel: float = 1 / 512,
    trunc_voxels: float = 4.5,
    min_views: int = 1,
) -> Mesh:
    """Fuse depth maps into a truncated signed distance volume and extract its surface.

    Pixels outside ``keep``, with non-finite or non-positive depth are not integrated.

    Args:
        depth: ``[S,H,W]`` camera z-depth.
        colors: ``[S,H,W,3]`` uint8 colours of the same pixels.
        extrinsics_w2c: ``[S,4,4]`` world-to-camera transforms, OpenCV axes.
        intrinsics: ``[S,3,3]`` pinhole K, pixel centres at +0.5 (recon3d's convention).
        keep: ``[S,H,W]`` bool mask of pixels to fuse (None: all).
        voxel_size: voxel edge in world units; None: ``relative_voxel`` times the
            diagonal of the fused points' (1-99 percentile) bounding box, or the median
            pixel footprint (depth / focal) if that is larger.
        trunc_voxels: truncation distance in voxels.
        min_views: keep surface only where at least this many views saw it.

    Returns:
        The zero-level surface with vertex colours and normals (empty when no pixel is
        valid).
    """
    o3d = import_open3d()
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if keep is not None:
        valid &= np.asarray(keep, dtype=bool)
    if not valid.any():
        return Mesh.empty()
    if voxel_size is None:
        points = unproject_depth(np.where(valid, depth, np.nan), extrinsics_w2c, intrinsics)
        diagonal = scene_diagonal(points[valid])
        if diagonal <= 0:
            return Mesh.empty()
        # Voxels finer than the pixels' footprint leave holes between the fused samples.
        focal = np.asarray(intrinsics, dtype=np.float64)[:, 0, 0][:, None, None]
        footprint = float(np.median((depth / focal)[valid]))
        voxel_size = max(relative_voxel * diagonal, footprint)
    o3c = o3d.core
    # The hash-map volume grows as blocks are touched; the initial count only sizes the
    # first allocation.
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=float(voxel_size), block_resolution=16,
        block_count=1000, device=o3c.Device("CPU:0"),
    )
    max_depth = float(depth[valid].max()) * 1.01
    for view in range(depth.shape[0]):
        if not valid[view].any():
            continue
        k = np.asarray(intrinsics[view], dtype=np.float64).copy()
        # open3d samples pixel (u, v) at integer coordinates; ours sit at +0.5.
        k[:2, 2] -= 0.5
        k = o3c.Tensor(k)
        w2c = o3c.Tensor(np.asarray(extrinsics_w2c[view], dtype=np.float64))
        view_depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(np.where(valid[view], depth[view], 0.0),
                                                                          dtype=np.float32)))
        view_color = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(colors[view], dtype=np.float32) / 255.0))
        blocks = grid.compute_unique_block_coordinates(view_depth, k, w2c, 1.0, max_depth, trunc_voxels)
        grid.integrate(blocks, view_depth, view_color, k, k, w2c, 1.0, max_depth, trunc_voxels)
    # Each view adds weight 1 to the voxels it sees; extract wherever one view has.
    mesh = grid.extract_triangle_mesh(weight_threshold=min_views - 0.5).to_legacy()
    mesh.compute_vertex_normals()
    return from_open3d(mesh)


def rendered_depth(
    gaussians: Gaussians,
    extrinsics_w2c: np.ndarray,
    intrinsics: np.ndarray,
    width: int,
    height: int,
    *,
    min_alpha: float = 0.5,
    backend: str = "auto",
) -> np.ndarray:
    """Expected depth ("ED") of Gaussians rendered at the given cameras, for TSDF fusion.

    Pixels whose accumulated opacity is below ``min_alpha`` get depth 0 (not fused):
    there the expected depth averages over too little to be a surface.

    Args:
        gaussians: the Gaussians to render.
        extrinsics_w2c: ``[S,4,4]`` world-to-camera transforms.
        intrinsics: ``[S,3,3]`` pinhole K in pixels of a ``width`` x ``height`` image.
        width, height: image size in pixels.
        min_alpha: accumulated opacity below which a pixel gets no depth.
        backend: rasterizer backend (`recon3d.render.render`).

    Returns:
        ``[S,H,W]`` float32 depth.
    """
    import torch

    from recon3d.render import render

    out = render(gaussians, torch.as_tensor(extrinsics_w2c, dtype=torch.float32),
                 torch.as_tensor(intrinsics, dtype=torch.float32), width, height, mode="ED", backend=backend)
    depth = out.colors[..., 0].detach().cpu().numpy()
    alpha = out.alphas[..., 0].detach().cpu().numpy()
    return np.where(alpha >= min_alpha, depth, 0.0).astype(np.float32)
