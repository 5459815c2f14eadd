"""Compressed 3D Gaussian PLY files (SuperSplat / PlayCanvas ``.compressed.ply``).

The layout gsplat writes with ``export_splats(format="ply_compressed")`` and SuperSplat,
PlayCanvas and splat-transform read. Binary little-endian PLY with up to three elements:

``chunk`` (one per 256 Gaussians, in file order), 18 float32 properties::

    min_x min_y min_z max_x max_y max_z
    min_scale_x min_scale_y min_scale_z max_scale_x max_scale_y max_scale_z
    min_r min_g min_b max_r max_g max_b

``vertex`` (one per Gaussian), 4 uint32 properties; Gaussian i belongs to chunk i // 256:

* ``packed_position``: x, y, z normalised to the chunk's [min, max] and quantised to
  11, 10 and 11 bits (x in bits 21-31, y in 11-20, z in 0-10);
* ``packed_rotation``: the unit quaternion (w,x,y,z) with its largest-magnitude
  component made positive; bits 30-31 hold that component's index, bits 20-29, 10-19
  and 0-9 the other three in order, each mapped from [-1/√2, 1/√2] to 10 bits (the
  largest one is recovered as √(1 - a² - b² - c²));
* ``packed_scale``: log-scales, normalised to the chunk's range (clamped to ±20),
  11-10-11 bits like the position;
* ``packed_color``: R, G, B = 0.5 + SH_C0·f_dc normalised to the chunk's range, and
  A = opacity, 8 bits each (R in bits 24-31, ..., A in bits 0-7).

``sh`` (one per Gaussian, only for SH degree >= 1), uchar ``f_rest_0 ..``, channel-major
as in the INRIA layout, each ``clamp(floor((v / 8 + 0.5) * 256), 0, 255)``, so values
in [-4, 4) survive and a byte n reads back as the centre of its bin, ``((n + 0.5) / 256
- 0.5) * 8``.

Quantisation error per field (half a step, for a chunk whose range is r): positions
r/4094 along x and z and r/2046 along y; log-scales likewise; colours r/510; opacity
1/510; quaternion components 3·√2/2046 (the three stored ones √2/2046, the recovered
largest one at most three times that since it is >= 1/2); SH 1/64.

Sorting the Gaussians along a Morton (Z-order) curve before cutting chunks keeps each
chunk spatially compact, which is what makes the chunk ranges, hence the errors, small.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from recon3d.errors import InputError
from recon3d.io.atomic import atomic_path
from recon3d.io.ply import MAX_SH_DEGREE, drop_nonfinite
from recon3d.types import SH_C0, Gaussians

__all__ = [
    "CHUNK_SIZE",
    "CHUNK_FIELDS",
    "VERTEX_FIELDS",
    "morton_order",
    "write_ply_compressed",
    "read_ply_compressed",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 256
CHUNK_FIELDS = (
    [f"min_{a}" for a in "xyz"] + [f"max_{a}" for a in "xyz"]
    + [f"min_scale_{a}" for a in "xyz"] + [f"max_scale_{a}" for a in "xyz"]
    + [f"min_{c}" for c in "rgb"] + [f"max_{c}" for c in "rgb"]
)
VERTEX_FIELDS = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
# Log-scales outside this range are clamped (e^-20 is far below any meaningful size).
_LOG_SCALE_LIMIT = 20.0
# 3DGS rasterizers skip alpha below 1/255, so such Gaussians are never drawn.
_MIN_OPACITY = 1.0 / 255.0
_ROTATION_RANGE = math.sqrt(0.5)
_SH_RANGE = 4.0


def morton_order(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices ``[N]`` that sort ``points`` ``[N,3]`` along a 3D Morton (Z-order) curve.

    Coordinates are quantised to ``bits`` bits over the points' bounding box and their
    bits interleaved (x in the lowest position of each triple); ties keep input order.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = np.where(high > low, high - low, 1.0)
    top = (1 << bits) - 1
    cells = np.clip(np.floor((points - low) / extent * top + 0.5), 0, top).astype(np.uint64)
    code = np.zeros(len(points), dtype=np.uint64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def _quantise(unit: np.ndarray, bits: int) -> np.ndarray:
    """Values in [0,1] (clamped) to unsigned integers of ``bits`` bits, rounded."""
    top = (1 << bits) - 1
    return np.clip(np.floor(unit * top + 0.5), 0, top).astype(np.uint32)


def _dequantise(value: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return (value & top).astype(np.float64) / top


def _chunk_ranges(values: np.ndarray, chunk: np.ndarray, num_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max ``[C,D]`` of ``values`` ``[N,D]``."""
    low = np.full((num_chunks, values.shape[1]), np.inf)
    high = np.full((num_chunks, values.shape[1]), -np.inf)
    np.minimum.at(low, chunk, values)
    np.maximum.at(high, chunk, values)
    return low, high


def _normalise(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(values - low) / (high - low)``, 0 where the range is empty."""
    span = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)


def _pack_11_10_11(unit: np.ndarray) -> np.ndarray:
    return (_quantise(unit[:, 0], 11) << 21) | (_quantise(unit[:, 1], 10) << 11) | _quantise(unit[:, 2], 11)


def _unpack_11_10_11(packed: np.ndarray) -> np.ndarray:
    return np.stack([_dequantise(packed >> 21, 11), _dequantise(packed >> 11, 10), _dequantise(packed, 11)], axis=1)


def _pack_rotation(quats: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[N,4]`` (w,x,y,z) as 2 + 3x10-bit words ``[N]``."""
    largest = np.argmax(np.abs(quats), axis=1)
    rows = np.arange(len(quats))
    quats = quats * np.where(quats[rows, largest] < 0, -1.0, 1.0)[:, None]
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    small = quats[rows[:, None], others] / (2 * _ROTATION_RANGE) + 0.5
    packed = largest.astype(np.uint32) << 30
    for k, shift in enumerate((20, 10, 0)):
        packed |= _quantise(small[:, k], 10) << shift
    return packed


def _unpack_rotation(packed: np.ndarray) -> np.ndarray:
    small = np.stack([(_dequantise(packed >> s, 10) - 0.5) * 2 * _ROTATION_RANGE for s in (20, 10, 0)], axis=1)
    largest = (packed >> 30).astype(np.int64)
    quats = np.empty((len(packed), 4))
    rows = np.arange(len(packed))
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    quats[rows[:, None], others] = small
    quats[rows, largest] = np.sqrt(np.clip(1.0 - (small**2).sum(axis=1), 0.0, None))
    return quats / np.linalg.norm(quats, axis=1, keepdims=True)


def write_ply_compressed(path: str | Path, gaussians: Gaussians, *, sort: bool = True) -> None:
    """Write Gaussians (activated form) as a compressed PLY file, atomically.

    About 16 bytes per Gaussian plus 3·((d+1)² - 1) for SH degree d, against 62 + 12·
    ((d+1)² - 1) in the 3DGS PLY. Rows with NaN or Inf are dropped with a warning, as are
    Gaussians with opacity below 1/255 (never drawn), like gsplat does. Quaternions are
    normalised; log-scales are clamped to ±20; SH coefficients of bands >= 1 to [-4, 4).

    Args:
        path: output file (by convention ``*.compressed.ply``).
        gaussians: SH degree 0..3.
        sort: order the Gaussians along a Morton curve (`morton_order`) before cutting
            chunks of 256; False keeps their order (larger chunk ranges, larger errors).
    """
    sh_all = gaussians.sh
    degree = round(sh_all.shape[1] ** 0.5) - 1 if sh_all.ndim == 3 else -1
    if degree < 0 or (degree + 1) ** 2 != sh_all.shape[1] or sh_all.shape[2] != 3 or degree > MAX_SH_DEGREE:
        raise ValueError(f"sh must be [N,(d+1)^2,3] with degree d <= {MAX_SH_DEGREE}, got {tuple(sh_all.shape)}")
    gaussians = drop_nonfinite(gaussians, path)
    means = gaussians.means.detach().cpu().numpy().astype(np.float64)
    opacities = gaussians.opacities.detach().cpu().numpy().astype(np.float64)
    visible = opacities >= _MIN_OPACITY
    if not visible.all():
        logger.info("%s: left out %d Gaussians with opacity below 1/255", path, int((~visible).sum()))
    order = np.flatnonzero(visible)
    if sort:
        order = order[morton_order(means[order])]
    count = len(order)
    num_chunks = -(-count // CHUNK_SIZE)
    chunk = np.arange(count) // CHUNK_SIZE

    means = means[order]
    opacities = opacities[order]
    log_scales = np.log(np.clip(gaussians.scales.detach().cpu().numpy().astype(np.float64)[order], 1e-30, None))
    log_scales = np.clip(log_scales, -_LOG_SCALE_LIMIT, _LOG_SCALE_LIMIT)
    quats = gaussians.quats.detach().cpu().numpy().astype(np.float64)[order]
    quats = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    sh = gaussians.sh.detach().cpu().numpy().astype(np.float64)[order]
    rgb = 0.5 + SH_C0 * sh[:, 0]

    ranges = [_chunk_ranges(values, chunk, num_chunks) for values in (means, log_scales, rgb)]
    chunks = np.empty(num_chunks, dtype=[(name, "<f4") for name in CHUNK_FIELDS])
    columns = np.concatenate([np.concatenate(pair, axis=1) for pair in ranges], axis=1).astype(np.float32)
    for k, name in enumerate(CHUNK_FIELDS):
        chunks[name] = columns[:, k]
    # Normalise against the float32 bounds that the file stores, so that a reader's
    # lerp between them reproduces the quantised value.
    stored = [(columns[:, 6 * k:6 * k + 3].astype(np.float64), columns[:, 6 * k + 3:6 * k + 6].astype(np.float64))
              for k in range(3)]
    unit_position, unit_scale, unit_rgb = (_normalise(values, low[chunk], high[chunk])
                                           for values, (low, high) in zip((means, log_scales, rgb), stored))

    vertices = np.empty(count, dtype=[(name, "<u4") for name in VERTEX_FIELDS])
    vertices["packed_position"] = _pack_11_10_11(unit_position)
    vertices["packed_rotation"] = _pack_rotation(quats)
    vertices["packed_scale"] = _pack_11_10_11(unit_scale)
    vertices["packed_color"] = (
        (_quantise(unit_rgb[:, 0], 8) << 24) | (_quantise(unit_rgb[:, 1], 8) << 16)
        | (_quantise(unit_rgb[:, 2], 8) << 8) | _quantise(opacities, 8)
    )
    elements = [PlyElement.describe(chunks, "chunk"), PlyElement.describe(vertices, "vertex")]
    if degree > 0:
        rest = sh[:, 1:].transpose(0, 2, 1).reshape(count, -1)  # channel-major, as f_rest
        coded = np.clip(np.floor((rest / (2 * _SH_RANGE) + 0.5) * 256), 0, 255).astype(np.uint8)
        table = np.empty(count, dtype=[(f"f_rest_{k}", "u1") for k in range(rest.shape[1])])
        for k in range(rest.shape[1]):
            table[f"f_rest_{k}"] = coded[:, k]
        elements.append(PlyElement.describe(table, "sh"))
    with atomic_path(path) as tmp:
        PlyData(elements, text=False, byte_order="<").write(str(tmp))


def read_ply_compressed(path: str | Path) -> Gaussians:
    """Read a compressed PLY file into activated Gaussians, in file order.

    Accepts chunks with 18 properties or with the 12 of older files (no colour range:
    colours are then the bytes / 255). The SH degree follows from the ``sh`` element's
    property count (none: degree 0).

    Raises:
        InputError: unreadable file, or not a compressed Gaussian PLY.
    """
    try:
        ply = PlyData.read(str(path))
    except (OSError, PlyParseError, ValueError) as err:
        raise InputError(f"{path}: not a readable PLY file ({err})") from err
    names = [element.name for element in ply.elements]
    if "chunk" not in names or "vertex" not in names:
        raise InputError(f"{path}: not a compressed Gaussian PLY (needs 'chunk' and 'vertex' elements)")
    vertices, chunks = ply["vertex"].data, ply["chunk"].data
    missing = [n for n in (*VERTEX_FIELDS, *CHUNK_FIELDS[:12]) if n not in (vertices.dtype.names or ()) + (
        chunks.dtype.names or ())]
    if missing:
        raise InputError(f"{path}: not a compressed Gaussian PLY, missing fields {', '.join(missing)}")
    count = len(vertices)
    if len(chunks) != -(-count // CHUNK_SIZE):
        raise InputError(f"{path}: {len(chunks)} chunks for {count} Gaussians (expected one per {CHUNK_SIZE})")
    chunk = np.arange(count) // CHUNK_SIZE

    def lerp(prefix: str, axes: str, unit: np.ndarray) -> np.ndarray:
        low = np.stack([np.asarray(chunks[f"min_{prefix}{a}"], np.float64) for a in axes], axis=1)[chunk]
        high = np.stack([np.asarray(chunks[f"max_{prefix}{a}"], np.float64) for a in axes], axis=1)[chunk]
        return low + (high - low) * unit

    packed = {name: np.asarray(vertices[name]).astype(np.uint32) for name in VERTEX_FIELDS}
    means = lerp("", "xyz", _unpack_11_10_11(packed["packed_position"]))
    scales = np.exp(lerp("scale_", "xyz", _unpack_11_10_11(packed["packed_scale"])))
    colour = packed["packed_color"]
    unit_rgb = np.stack([_dequantise(colour >> s, 8) for s in (24, 16, 8)], axis=1)
    has_range = all(f"min_{c}" in chunks.dtype.names for c in "rgb")
    rgb = lerp("", "rgb", unit_rgb) if has_range else unit_rgb
    opacities = _dequantise(colour, 8)

    rest = np.zeros((count, 0, 3))
    if "sh" in names:
        table = ply["sh"].data
        fields = [n for n in table.dtype.names if n.startswith("f_rest_")]
        degrees = [d for d in range(1, MAX_SH_DEGREE + 1) if 3 * ((d + 1) ** 2 - 1) == len(fields)]
        if not degrees or len(table) != count:
            raise InputError(f"{path}: sh element with {len(fields)} f_rest fields for {len(table)} rows")
        coded = np.stack([np.asarray(table[f"f_rest_{k}"], np.float64) for k in range(len(fields))], axis=1)
        values = ((coded + 0.5) / 256 - 0.5) * 2 * _SH_RANGE
        rest = values.reshape(count, 3, -1).transpose(0, 2, 1)
    sh = np.concatenate([((rgb - 0.5) / SH_C0)[:, None, :], rest], axis=1)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return Gaussians(
        means=tensor(means),
        quats=tensor(_unpack_rotation(packed["packed_rotation"])),
        scales=tensor(scales),
        opacities=tensor(opacities),
        sh=tensor(sh),
    )
