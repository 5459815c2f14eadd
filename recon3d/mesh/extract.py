"""Prediction → mesh: one entry point over the three meshers, plus clean-up."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recon3d.geometry.extent import scene_diagonal
from recon3d.geometry.pixels import PixelGeometry, pixel_geometry
from recon3d.mesh.cleanup import decimate, remove_small_components
from recon3d.mesh.grid import grid_triangulation
from recon3d.mesh.poisson import oriented_normals, poisson_surface, voxel_downsample
from recon3d.mesh.tsdf import rendered_depth, tsdf_fusion
from recon3d.types import Gaussians, Mesh, Prediction

__all__ = ["MESH_METHODS", "MeshOptions", "extract_mesh"]

log = logging.getLogger(__name__)

MESH_METHODS = ("tsdf", "poisson", "grid")


@dataclass
class MeshOptions:
    """How to mesh a prediction.

    Attributes:
        method: ``"tsdf"`` (fused, smooth, closed where seen), ``"poisson"``
            (watertight-ish, fills holes) or ``"grid"`` (fast per-view sheets).
        point_source: ``"depth"`` (unprojected depth maps) or ``"points"`` (point map).
        relative_voxel: TSDF voxel and Poisson point spacing, relative to the scene
            diagonal.
        trunc_voxels: TSDF truncation in voxels.
        poisson_depth: octree depth of the Poisson solve.
        density_quantile: Poisson trimming quantile.
        normal_knn: neighbours for the Poisson normals.
        max_depth_ratio: grid meshing's depth-edge test.
        min_component_fraction: components with fewer faces than this fraction of the
            mesh are dropped (0: keep all).
        target_faces: decimate to about this many faces (None: no decimation).
    """

    method: Literal["tsdf", "poisson", "grid"] = "tsdf"
    point_source: Literal["depth", "points"] = "depth"
    relative_voxel: float = 1 / 512
    trunc_voxels: float = 4.5
    poisson_depth: int = 9
    density_quantile: float = 0.02
    normal_knn: int = 30
    max_depth_ratio: float = 1.05
    min_component_fraction: float = 0.002
    target_faces: int | None = None


def extract_mesh(
    pred: Prediction,
    options: MeshOptions | None = None,
    *,
    keep: np.ndarray | None = None,
    gaussians: Gaussians | None = None,
    geometry: PixelGeometry | None = None,
) -> Mesh:
    """Mesh the surfaces seen by a prediction's views.

    Args:
        pred: the prediction.
        options: mesher and parameters (defaults: TSDF from the depth maps).
        keep: ``[S,H,W]`` bool mask of the pixels to use (e.g. confident, not sky).
        gaussians: for ``method="tsdf"``, fuse the depth these Gaussians render at the
            predicted cameras instead of the predicted depth (smoother, fewer floaters).
        geometry: the prediction's per-pixel geometry when already computed (an export
            computes it once for every format); used when it comes from
            ``options.point_source``.

    Returns:
        The cleaned mesh; empty, with a warning, when no pixel survives the mask.
    """
    options = options or MeshOptions()
    if options.method not in MESH_METHODS:
        raise ValueError(f"method must be one of {MESH_METHODS}, got {options.method!r}")
    geometry = pixel_geometry(pred, options.point_source, reuse=geometry)
    points, depth, conf = geometry.points, geometry.depth, geometry.conf
    valid = geometry.usable
    if keep is not None:
        # Not in place: the geometry's mask is shared with the other exports.
        valid = valid & np.broadcast_to(np.asarray(keep, dtype=bool), valid.shape)
    if not valid.any():
        log.warning("no valid pixel to mesh (all masked or invalid depth): the mesh is empty")
        return Mesh.empty()
    colors = pred.colors_u8()

    if options.method == "tsdf":
        if gaussians is not None:
            height, width = pred.image_size_hw
            depth = rendered_depth(gaussians, pred.extrinsics_w2c, pred.intrinsics, width, height)
            valid = depth > 0
        mesh = tsdf_fusion(depth, colors, pred.extrinsics_w2c, pred.intrinsics, valid,
                           relative_voxel=options.relative_voxel, trunc_voxels=options.trunc_voxels)
    elif options.method == "poisson":
        view_of_pixel = np.broadcast_to(np.arange(pred.num_views)[:, None, None], valid.shape)[valid]
        flat_points = points[valid].astype(np.float64)
        chosen = voxel_downsample(flat_points, options.relative_voxel * scene_diagonal(flat_points) or 1.0,
                                  priority=conf[valid])
        normals = oriented_normals(flat_points[chosen], geometry.camera_centres[view_of_pixel[chosen]],
                                   knn=options.normal_knn)
        mesh = poisson_surface(flat_points[chosen], normals, colors[valid][chosen], depth=options.poisson_depth,
                               density_quantile=options.density_quantile)
    else:
        mesh = grid_triangulation(points, depth, colors, valid, max_depth_ratio=options.max_depth_ratio)

    if options.method != "grid":
        mesh = remove_small_components(mesh, options.min_component_fraction)
    if options.target_faces is not None:
        mesh = decimate(mesh, options.target_faces)
    if mesh.num_faces == 0:
        log.warning("the %s mesh is empty", options.method)
    return mesh
