"""Wavefront OBJ with per-vertex colours (the ``v x y z r g b`` extension).

Blender, MeshLab, trimesh and open3d read the three extra numbers as a vertex colour in
[0, 1]; readers that do not know the extension ignore them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.io.atomic import atomic_path
from recon3d.types import Mesh

__all__ = ["write_obj"]


def write_obj(path: str | Path, mesh: Mesh) -> None:
    """Write ``mesh`` as a text OBJ (1-based faces, vertex colours, normals if present), atomically."""
    colors = mesh.vertex_colors.astype(np.float64) / 255.0
    vertex_rows = np.concatenate([mesh.vertices.astype(np.float64), colors], axis=1)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"# recon3d mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces\n")
        np.savetxt(fh, vertex_rows, fmt="v %.7g %.7g %.7g %.4f %.4f %.4f")
        if mesh.vertex_normals is not None:
            np.savetxt(fh, mesh.vertex_normals.astype(np.float64), fmt="vn %.5f %.5f %.5f")
            np.savetxt(fh, np.repeat(mesh.faces + 1, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
        else:
            np.savetxt(fh, mesh.faces + 1, fmt="f %d %d %d")
