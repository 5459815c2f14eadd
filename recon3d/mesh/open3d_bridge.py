"""Conversions between recon3d's numpy `Mesh` and open3d geometry (imported lazily)."""
from __future__ import annotations

import numpy as np

from recon3d.types import Mesh


def import_open3d():
    """open3d, or a one-line error saying how to install it."""
    try:
        import open3d
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from recon3d.errors import Recon3DError

        raise Recon3DError(
            f"meshing needs open3d ({exc}); install it with `pip install open3d-cpu` "
            "(and the Debian package libusb-1.0-0)"
        ) from exc
    return open3d


def to_open3d(mesh: Mesh):
    """``open3d.geometry.TriangleMesh`` with the mesh's vertices, faces and colours."""
    o3d = import_open3d()
    result = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(mesh.vertices.astype(np.float64)),
        o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)),
    )
    result.vertex_colors = o3d.utility.Vector3dVector(mesh.vertex_colors.astype(np.float64) / 255.0)
    if mesh.vertex_normals is not None:
        result.vertex_normals = o3d.utility.Vector3dVector(mesh.vertex_normals.astype(np.float64))
    return result


def from_open3d(mesh) -> Mesh:
    """`Mesh` from an ``open3d.geometry.TriangleMesh`` (grey where it has no colours)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3)
    if mesh.has_vertex_colors():
        colors = np.clip(np.rint(np.asarray(mesh.vertex_colors) * 255.0), 0, 255).astype(np.uint8)
    else:
        colors = np.full((len(vertices), 3), 128, np.uint8)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float32) if mesh.has_vertex_normals() else None
    return Mesh(vertices, np.asarray(mesh.triangles, dtype=np.int64).reshape(-1, 3), colors.reshape(-1, 3), normals)


def point_cloud(points: np.ndarray, colors: np.ndarray | None = None, normals: np.ndarray | None = None):
    """``open3d.geometry.PointCloud`` from ``[N,3]`` points, uint8 colours and normals."""
    o3d = import_open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64).reshape(-1, 3)))
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(np.asarray(colors, np.float64).reshape(-1, 3) / 255.0)
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, np.float64).reshape(-1, 3))
    return cloud
