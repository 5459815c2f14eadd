"""PLY files: 3D Gaussians in the INRIA 3DGS layout, plain coloured point clouds, meshes.

3DGS layout (binary little-endian, every property float32), in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1}
    opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

with K = (degree+1)^2 SH coefficients per channel. Values are stored *raw* (before
activation): opacity as a logit, scales as logs, rot as a w,x,y,z quaternion, normals as
zeros, and f_rest channel-major (all R coefficients of bands >= 1, then all G, then all
B). Peers that store sigmoid(opacity) in the logit field produce files in which every
opacity reads back in [0.5, 0.73]; the round-trip tests guard against that.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from recon3d.errors import InputError
from recon3d.gaussians.fusion import select_gaussians
from recon3d.io.atomic import atomic_path
from recon3d.types import Gaussians, Mesh

__all__ = [
    "MAX_SH_DEGREE",
    "gaussian_ply_fields",
    "drop_nonfinite",
    "write_gaussians_ply",
    "read_gaussians_ply",
    "write_points_ply",
    "write_mesh_ply",
]

logger = logging.getLogger(__name__)

MAX_SH_DEGREE = 3
# Opacities of exactly 0 or 1 have infinite logits; the clamp keeps the file finite.
_OPACITY_EPS = 1e-6
# Scales of 0 (e.g. flatten=0) have a log of -inf; exp(-69) is still far below any
# meaningful size.
_MIN_SCALE = 1e-30


def gaussian_ply_fields(sh_degree: int, normals: bool = True) -> list[str]:
    """Vertex property names of the INRIA layout for ``sh_degree``, in file order."""
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z"]
        + (["nx", "ny", "nz"] if normals else [])
        + [f"f_dc_{i}" for i in range(3)]
        + [f"f_rest_{i}" for i in range(num_rest)]
        + ["opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )


def drop_nonfinite(gaussians: Gaussians, path: str | Path) -> Gaussians:
    """``gaussians`` without the rows holding NaN or Inf, with a warning naming ``path``."""
    finite = (
        torch.isfinite(gaussians.means).all(-1)
        & torch.isfinite(gaussians.quats).all(-1)
        & torch.isfinite(gaussians.scales).all(-1)
        & torch.isfinite(gaussians.opacities)
        & torch.isfinite(gaussians.sh).flatten(1).all(-1)
    )
    dropped = int((~finite).sum())
    if dropped == 0:
        return gaussians
    logger.warning("%s: dropped %d of %d Gaussians holding NaN or Inf", path, dropped, len(gaussians))
    return select_gaussians(gaussians, finite)


def _check_degree(sh: torch.Tensor) -> int:
    degree = round(sh.shape[1] ** 0.5) - 1 if sh.ndim == 3 else -1
    if degree < 0 or sh.shape[2] != 3 or (degree + 1) ** 2 != sh.shape[1] or degree > MAX_SH_DEGREE:
        raise ValueError(
            f"sh must be [N,(d+1)^2,3] with degree d <= {MAX_SH_DEGREE}, got {tuple(sh.shape)}"
        )
    return degree


def write_gaussians_ply(path: str | Path, gaussians: Gaussians) -> None:
    """Write Gaussians (activated form) as an INRIA 3DGS PLY file, atomically.

    Opacities are clamped to [1e-6, 1-1e-6] before the logit and scales to at least
    1e-30 before the log; quaternions are normalised; rows with NaN or Inf are dropped
    with a warning. Any SH degree 0..3 is written; zero Gaussians give a valid file with
    ``element vertex 0``.
    """
    degree = _check_degree(gaussians.sh)
    gaussians = drop_nonfinite(gaussians, path)
    count = len(gaussians)
    sh = gaussians.sh.detach().cpu().to(torch.float64)
    opacity = gaussians.opacities.detach().cpu().to(torch.float64).clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
    quats = gaussians.quats.detach().cpu().to(torch.float64)
    columns = [
        gaussians.means.detach().cpu().to(torch.float64),
        torch.zeros(count, 3, dtype=torch.float64),
        sh[:, 0],
        sh[:, 1:].transpose(1, 2).reshape(count, 3 * (sh.shape[1] - 1)),  # channel-major f_rest
        torch.logit(opacity)[:, None],
        gaussians.scales.detach().cpu().to(torch.float64).clamp_min(_MIN_SCALE).log(),
        quats / quats.norm(dim=-1, keepdim=True),
    ]
    names = gaussian_ply_fields(degree)
    table = torch.cat(columns, dim=1).numpy().astype("<f4")
    vertices = np.ascontiguousarray(table).view([(name, "<f4") for name in names]).reshape(count)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<").write(str(tmp))


def _read_vertices(path: str | Path) -> np.ndarray:
    try:
        ply = PlyData.read(str(path))
    except (OSError, PlyParseError, ValueError) as err:
        raise InputError(f"{path}: not a readable PLY file ({err})") from err
    if "vertex" not in ply:
        raise InputError(f"{path}: PLY file has no 'vertex' element")
    return ply["vertex"].data


def _infer_degree(names: set[str], path: str | Path) -> int:
    num_rest = sum(name.startswith("f_rest_") for name in names)
    degrees = [d for d in range(MAX_SH_DEGREE + 1) if 3 * ((d + 1) ** 2 - 1) == num_rest]
    if not degrees:
        raise InputError(
            f"{path}: {num_rest} f_rest fields match no SH degree 0..{MAX_SH_DEGREE} "
            "(expected 0, 9, 24 or 45)"
        )
    return degrees[0]


def read_gaussians_ply(path: str | Path) -> Gaussians:
    """Read an INRIA 3DGS PLY file (with or without nx/ny/nz) into activated Gaussians.

    The SH degree is inferred from the number of ``f_rest_*`` fields (0, 9, 24 or 45 for
    degrees 0..3). Opacities are passed through a sigmoid, scales through exp, and
    quaternions (w,x,y,z) are normalised. Properties may be stored in any order and any
    numeric type.

    Raises:
        InputError: unreadable file, no vertex element, missing fields, or an f_rest
            count that matches no SH degree.
    """
    vertices = _read_vertices(path)
    names = set(vertices.dtype.names or ())
    degree = _infer_degree(names, path)
    fields = gaussian_ply_fields(degree, normals=False)
    missing = [name for name in fields if name not in names]
    if missing:
        raise InputError(f"{path}: not a 3D Gaussian PLY file, missing fields {', '.join(missing)}")

    # Columns in the writer's order (normals aside): xyz, f_dc, f_rest, opacity, scale, rot.
    table = np.stack([np.asarray(vertices[name], dtype=np.float32) for name in fields], axis=-1)
    table = torch.from_numpy(table)
    count, num_rest = len(vertices), (degree + 1) ** 2 - 1
    rest_end = 6 + 3 * num_rest
    rest = table[:, 6:rest_end].reshape(count, 3, num_rest).transpose(1, 2)
    quats = table[:, rest_end + 4:]
    return Gaussians(
        means=table[:, :3].contiguous(),
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=table[:, rest_end + 1:rest_end + 4].exp(),
        opacities=torch.sigmoid(table[:, rest_end]),
        sh=torch.cat((table[:, None, 3:6], rest), dim=1),
    )


def write_points_ply(
    path: str | Path,
    points: np.ndarray | torch.Tensor,
    colors: np.ndarray | torch.Tensor,
    normals: np.ndarray | torch.Tensor | None = None,
) -> None:
    """Write a coloured point cloud as a binary little-endian PLY file, atomically.

    Properties: ``x y z`` (float32), ``nx ny nz`` (float32, only when ``normals`` is
    given), ``red green blue`` (uchar), the layout open3d, MeshLab and plyfile read.
    Rows with NaN or Inf in points or normals are dropped with a warning.

    Args:
        points: ``[N,3]`` positions.
        colors: ``[N,3]`` uint8 in [0,255], or floats in [0,1] (rounded to 8 bits).
        normals: ``[N,3]`` optional normals.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors).reshape(-1, 3)
    if colors.dtype != np.uint8:
        colors = np.clip(np.rint(colors.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    if len(colors) != len(points):
        raise ValueError(f"{len(points)} points but {len(colors)} colours")
    fields: list[tuple[str, np.ndarray]] = [("x", points[:, 0]), ("y", points[:, 1]), ("z", points[:, 2])]
    finite = np.isfinite(points).all(-1)
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
        if len(normals) != len(points):
            raise ValueError(f"{len(points)} points but {len(normals)} normals")
        finite &= np.isfinite(normals).all(-1)
        fields += [("nx", normals[:, 0]), ("ny", normals[:, 1]), ("nz", normals[:, 2])]
    fields += [("red", colors[:, 0]), ("green", colors[:, 1]), ("blue", colors[:, 2])]
    if not finite.all():
        logger.warning("%s: dropped %d of %d points holding NaN or Inf", path, int((~finite).sum()), len(points))

    vertices = np.empty(int(finite.sum()), dtype=[(name, values.dtype.newbyteorder("<")) for name, values in fields])
    for name, values in fields:
        vertices[name] = values[finite]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<").write(str(tmp))


def write_mesh_ply(path: str | Path, mesh: Mesh) -> None:
    """Write a triangle mesh as a binary little-endian PLY, atomically.

    Vertex properties ``x y z`` (float32), ``nx ny nz`` (float32, when the mesh has
    normals), ``red green blue`` (uchar); faces as ``vertex_indices`` (uchar count,
    int32 indices), the layout open3d, MeshLab, Blender and plyfile read.
    """
    fields: list[tuple[str, np.ndarray]] = [(axis, mesh.vertices[:, i].astype(np.float32)) for i, axis in enumerate("xyz")]
    if mesh.vertex_normals is not None:
        fields += [(axis, mesh.vertex_normals[:, i].astype(np.float32)) for i, axis in enumerate(("nx", "ny", "nz"))]
    fields += [(channel, mesh.vertex_colors[:, i].astype(np.uint8)) for i, channel in enumerate(("red", "green", "blue"))]
    vertices = np.empty(mesh.num_vertices, dtype=[(name, values.dtype.newbyteorder("<")) for name, values in fields])
    for name, values in fields:
        vertices[name] = values
    faces = np.empty(mesh.num_faces, dtype=[("vertex_indices", "<i4", (3,))])
    faces["vertex_indices"] = mesh.faces.astype(np.int32)
    elements = [PlyElement.describe(vertices, "vertex"),
                PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"})]
    with atomic_path(path) as tmp:
        PlyData(elements, text=False, byte_order="<").write(str(tmp))
