"""Screened Poisson surface reconstruction from confident points (open3d).

The recipe of HART: confident points, normals from their neighbours oriented towards
the camera that predicted each point (a stronger cue than tangent-plane propagation,
which flips whole regions on thin structures), screened Poisson, then trim the
low-density vertices where the solver extrapolates a surface no point supports.
"""
from __future__ import annotations

import numpy as np

from recon3d.geometry.extent import scene_diagonal
from recon3d.mesh.open3d_bridge import from_open3d, import_open3d, point_cloud
from recon3d.types import Mesh

__all__ = ["voxel_downsample", "oriented_normals", "poisson_surface"]


def voxel_downsample(points: np.ndarray, voxel_size: float, priority: np.ndarray | None = None) -> np.ndarray:
    """Indices of one point per occupied voxel: the one with the highest ``priority``.

    Keeping a real point (rather than the voxel's average) keeps its colour and the
    camera it came from.

    Args:
        points: ``[N,3]`` positions.
        voxel_size: voxel edge (> 0).
        priority: ``[N]`` scores, e.g. confidences (None: the first point wins).

    Returns:
        ``[M]`` sorted indices into ``points``.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    cells = np.floor(np.asarray(points, np.float64) / voxel_size).astype(np.int64)
    order = np.arange(len(points)) if priority is None else np.argsort(-np.asarray(priority), kind="stable")
    _, first = np.unique(cells[order], axis=0, return_index=True)
    return np.sort(order[first])


def oriented_normals(points: np.ndarray, camera_centres: np.ndarray, knn: int = 30) -> np.ndarray:
    """Unit normals from the ``knn`` nearest neighbours, each flipped to face its camera.

    Args:
        points: ``[N,3]`` positions.
        camera_centres: ``[N,3]`` centre of the camera that predicted each point.
        knn: neighbours in the local plane fit.

    Returns:
        ``[N,3]`` float64 unit normals with ``n · (camera - p) >= 0``.
    """
    o3d = import_open3d()
    cloud = point_cloud(points)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=knn))
    normals = np.asarray(cloud.normals)
    facing = ((np.asarray(camera_centres, np.float64) - points) * normals).sum(-1)
    return np.where(facing[:, None] < 0, -normals, normals)


def poisson_surface(
    points: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray,
    *,
    depth: int = 9,
    density_quantile: float = 0.02,
    crop_margin: float = 0.02,
) -> Mesh:
    """Screened Poisson surface of oriented points, trimmed where it has no support.

    Args:
        points: ``[N,3]`` positions.
        normals: ``[N,3]`` unit normals pointing out of the surface (towards the viewer).
        colors: ``[N,3]`` uint8 colours (interpolated onto the vertices).
        depth: octree depth (9: a 512³ grid over the points' bounding cube).
        density_quantile: vertices whose Poisson density (how many points support them)
            falls below this quantile are removed, with their faces.
        crop_margin: faces with a vertex farther than this fraction of the scene diagonal
            outside the points' bounding box are removed as well.

    Returns:
        The trimmed mesh (empty for fewer than 10 points).
    """
    o3d = import_open3d()
    points = np.asarray(points, np.float64)
    if len(points) < 10:
        return Mesh.empty()
    cloud = point_cloud(points, colors, normals)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth, linear_fit=False)
    densities = np.asarray(densities)
    drop = densities < np.quantile(densities, density_quantile)
    margin = crop_margin * scene_diagonal(points, trim_percent=0.0)
    vertices = np.asarray(mesh.vertices)
    drop |= ((vertices < points.min(0) - margin) | (vertices > points.max(0) + margin)).any(axis=1)
    mesh.remove_vertices_by_mask(drop)
    mesh.compute_vertex_normals()
    return from_open3d(mesh)
