"""GLB scenes (binary glTF 2.0) through trimesh: a point cloud or mesh plus camera frusta.

glTF is y-up with cameras looking down -z; recon3d's world is the first camera's
OpenCV frame (y down, z forward). Everything is moved by ``GL_FROM_CV @ w2c[0]``, which
puts the first camera at the origin looking down -z, the way viewers expect to open a
scene. Each camera is its own node (``camera_000`` ...), whose transform is the camera's
pose in glTF axes, holding a frustum drawn in the camera's own (OpenGL) frame.
"""
from __future__ import annotations

import colorsys
import logging
from collections.abc import Sequence

import numpy as np

from recon3d.geometry.cameras import camera_centres
from recon3d.io.atomic import atomic_path
from recon3d.types import Mesh

__all__ = ["GL_FROM_CV", "glb_world_transform", "camera_frustum", "write_glb"]

log = logging.getLogger(__name__)

# OpenCV camera axes (x right, y down, z forward) to OpenGL's (x right, y up, z back).
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def glb_world_transform(extrinsics_w2c: np.ndarray) -> np.ndarray:
    """``[4,4]`` map from recon3d world coordinates to the GLB's: first camera at the origin."""
    return GL_FROM_CV @ np.asarray(extrinsics_w2c[0], dtype=np.float64)


def camera_frustum(intrinsics: np.ndarray, width: int, height: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A thin-walled pyramid of a pinhole camera in its OpenGL frame (apex at the origin).

    Args:
        intrinsics: ``[3,3]`` K in pixels.
        width, height: the image size K refers to.
        size: distance of the image plane from the apex (world units).

    Returns:
        ``vertices [5,3]`` (apex, then the image corners top-left, top-right,
        bottom-right, bottom-left) and ``faces [6,3]`` (four sides, two for the image).
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    corners_px = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    x = (corners_px[:, 0] - k[0, 2]) / k[0, 0] * size
    y = (corners_px[:, 1] - k[1, 2]) / k[1, 1] * size
    # OpenCV (x, y, z=size) in OpenGL axes is (x, -y, -size).
    vertices = np.concatenate([np.zeros((1, 3)), np.stack([x, -y, np.full(4, -size)], axis=1)])
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1], [1, 3, 2], [1, 4, 3]])
    return vertices, faces


def _view_colors(count: int) -> np.ndarray:
    """``[count,4]`` uint8 RGBA colours spread around the hue circle."""
    rgb = [colorsys.hsv_to_rgb(i / max(count, 1), 0.85, 0.95) for i in range(count)]
    return np.concatenate([np.rint(np.asarray(rgb).reshape(-1, 3) * 255), np.full((count, 1), 255)], axis=1).astype(np.uint8)


def write_glb(
    path,
    extrinsics_w2c: np.ndarray,
    *,
    points: np.ndarray | None = None,
    point_colors: np.ndarray | None = None,
    mesh: Mesh | None = None,
    intrinsics: np.ndarray | None = None,
    image_size_wh: tuple[int, int] | None = None,
    camera_names: Sequence[str] | None = None,
    frustum_size: float | None = None,
    valid_cameras: np.ndarray | None = None,
) -> None:
    """Write a GLB holding a coloured point cloud and/or mesh and optional camera frusta.

    Args:
        path: the ``.glb`` file (written atomically).
        extrinsics_w2c: ``[S,4,4]`` cameras; the first defines the GLB's origin.
        points: ``[N,3]`` world points (recon3d frame) or None.
        point_colors: ``[N,3]`` uint8 colours of ``points``.
        mesh: a mesh in the recon3d world frame, or None.
        intrinsics: ``[S,3,3]`` K; with ``image_size_wh``, draws one frustum per camera.
        image_size_wh: the image size K refers to.
        camera_names: node names' suffixes (default: view indices).
        frustum_size: frustum depth in world units (default: 1/20 of the diagonal of the
            geometry and camera centres).
        valid_cameras: ``[S]`` bool; cameras marked False get no frustum. The first
            camera must be valid: it defines the GLB frame.
    """
    import trimesh

    extrinsics_w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
    valid = np.ones(len(extrinsics_w2c), bool) if valid_cameras is None else np.asarray(valid_cameras, bool)
    # Without a usable first camera the scene stays in recon3d's world frame (OpenGL axes).
    to_glb = glb_world_transform(extrinsics_w2c) if valid[0] else GL_FROM_CV.copy()
    scene = trimesh.Scene()
    extent_points = [camera_centres(extrinsics_w2c[valid])]
    if points is not None and len(points):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        extent_points.append(points)
        colors = np.asarray(point_colors, dtype=np.uint8).reshape(-1, 3)
        cloud = trimesh.PointCloud(trimesh.transform_points(points, to_glb),
                                   colors=np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1))
        scene.add_geometry(cloud, node_name="points", geom_name="points")
    if mesh is not None and mesh.num_faces:
        extent_points.append(mesh.vertices.astype(np.float64))
        tri = trimesh.Trimesh(trimesh.transform_points(mesh.vertices.astype(np.float64), to_glb), mesh.faces,
                              vertex_colors=mesh.vertex_colors, process=False)
        scene.add_geometry(tri, node_name="mesh", geom_name="mesh")
    if intrinsics is not None and image_size_wh is not None:
        from recon3d.geometry.extent import scene_diagonal

        if frustum_size is None:
            frustum_size = scene_diagonal(np.concatenate(extent_points), trim_percent=0.0) / 20.0 or 0.1
        names = list(camera_names) if camera_names is not None else [str(i) for i in range(len(extrinsics_w2c))]
        colors = _view_colors(len(extrinsics_w2c))
        width, height = image_size_wh
        for view, w2c in enumerate(extrinsics_w2c):
            if not valid[view]:
                continue
            vertices, faces = camera_frustum(intrinsics[view], width, height, frustum_size)
            frustum = trimesh.Trimesh(vertices, faces, face_colors=np.tile(colors[view], (len(faces), 1)), process=False)
            pose = to_glb @ np.linalg.inv(w2c) @ GL_FROM_CV
            scene.add_geometry(frustum, node_name=f"camera_{view:03d}_{names[view]}", geom_name=f"frustum_{view:03d}",
                               transform=pose)
    if scene.is_empty:
        log.warning("%s: nothing to show (no valid point, face or camera): writing an empty scene", path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_empty_glb() if scene.is_empty else scene.export(file_type="glb"))


def _empty_glb() -> bytes:
    """A valid GLB holding one empty scene (trimesh refuses to export empty scenes)."""
    import json
    import struct

    document = json.dumps({"asset": {"version": "2.0", "generator": "recon3d"}, "scene": 0,
                           "scenes": [{"nodes": []}]}).encode()
    document += b" " * (-len(document) % 4)  # chunks are 4-byte aligned, JSON padded with spaces
    chunk = struct.pack("<II", len(document), 0x4E4F534A) + document
    return struct.pack("<III", 0x46546C67, 2, 12 + len(chunk)) + chunk
