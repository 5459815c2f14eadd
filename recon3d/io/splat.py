"""antimatter15 ``.splat`` files: 32 bytes per Gaussian, no header, DC colour only.

Per Gaussian (little-endian)::

    bytes  0-11  position, 3 x float32
    bytes 12-23  scale, 3 x float32, linear
    bytes 24-27  R, G, B, A uint8: RGB = (0.5 + SH_C0 * f_dc) * 255, A = opacity * 255
    bytes 28-31  quaternion w, x, y, z (normalised) as uint8 q * 128 + 128

Quantisation: colours and opacity to 1/255, quaternion components to 1/128.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon3d.errors import InputError
from recon3d.io.atomic import atomic_path
from recon3d.io.ply import drop_nonfinite
from recon3d.types import SH_C0, Gaussians

__all__ = ["SPLAT_DTYPE", "write_splat", "read_splat"]

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def _to_byte(values: np.ndarray) -> np.ndarray:
    # Rounding (the reference converter truncates) halves the worst quantisation error.
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def write_splat(path: str | Path, gaussians: Gaussians) -> None:
    """Write Gaussians (activated form) as a ``.splat`` file, atomically.

    Gaussians are sorted by ``scale_x * scale_y * scale_z * opacity`` descending (stable),
    the order of the antimatter15 converter, so large opaque splats stream first. Only
    the SH DC term is kept. Rows with NaN or Inf are dropped with a warning; zero
    Gaussians give an empty file.
    """
    gaussians = drop_nonfinite(gaussians, path)
    means = gaussians.means.detach().cpu().numpy().astype(np.float64)
    scales = gaussians.scales.detach().cpu().numpy().astype(np.float64)
    opacities = gaussians.opacities.detach().cpu().numpy().astype(np.float64)
    rgb = 0.5 + SH_C0 * gaussians.sh[:, 0].detach().cpu().numpy().astype(np.float64)
    quats = gaussians.quats.detach().cpu().numpy().astype(np.float64)
    quats = quats / np.linalg.norm(quats, axis=-1, keepdims=True)

    order = np.argsort(-(scales.prod(-1) * opacities), kind="stable")
    records = np.empty(len(gaussians), dtype=SPLAT_DTYPE)
    records["position"] = means[order]
    records["scale"] = scales[order]
    records["rgba"] = _to_byte(np.concatenate((rgb, opacities[:, None]), axis=-1)[order] * 255)
    records["rot"] = _to_byte(quats[order] * 128 + 128)
    with atomic_path(path) as tmp:
        records.tofile(tmp)


def read_splat(path: str | Path) -> Gaussians:
    """Read a ``.splat`` file into activated Gaussians with SH degree 0.

    Colours become SH DC coefficients ``(rgb - 0.5) / SH_C0``, opacity is ``A / 255``,
    and the quaternion ``(byte - 128) / 128`` is normalised.

    Raises:
        InputError: unreadable file or a size that is not a multiple of 32 bytes.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read .splat file ({err})") from err
    if len(data) % SPLAT_DTYPE.itemsize:
        raise InputError(f"{path}: size {len(data)} is not a multiple of {SPLAT_DTYPE.itemsize} bytes")
    records = np.frombuffer(data, dtype=SPLAT_DTYPE)
    rgba = records["rgba"].astype(np.float32) / 255
    quats = (records["rot"].astype(np.float32) - 128) / 128
    quats = torch.from_numpy(quats)
    return Gaussians(
        means=torch.from_numpy(records["position"].astype(np.float32)),
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.from_numpy(records["scale"].astype(np.float32)),
        opacities=torch.from_numpy(rgba[:, 3].copy()),
        sh=torch.from_numpy((rgba[:, None, :3] - 0.5) / SH_C0),
    )
