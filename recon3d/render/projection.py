"""EWA projection of 3D Gaussians into pinhole cameras, and spherical-harmonic colours.

Everything here follows gsplat (1.5, ``rasterize_mode="classic"``, pinhole) so that
the backends of :mod:`recon3d.render` give interchangeable images:

* cameras are OpenCV world-to-camera ``viewmats [C,4,4]`` and pixel intrinsics
  ``Ks [C,3,3]``; a camera point ``(x, y, z)`` lands at ``(fx x/z + cx, fy y/z + cy)``
  in the continuous pixel frame where pixel ``(i, j)`` (row, column) is sampled at
  ``(j + 0.5, i + 0.5)``;
* the 2D covariance is ``J W Σ Wᵀ Jᵀ + eps2d·I`` with the Jacobian taken at the mean
  after clamping ``x/z`` and ``y/z`` to 1.3× the half-field of view;
* a Gaussian is culled (radius 0) when its depth is outside ``[near, far]``, when the
  dilated covariance is degenerate, or when its screen box misses the image.

The rasterizer constants shared by every backend live here too.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ALPHA_THRESHOLD",
    "EPS2D",
    "FAR_PLANE",
    "MAX_ALPHA",
    "NEAR_PLANE",
    "SIGMA_EXTENT",
    "TILE_SIZE",
    "TRANSMITTANCE_MIN",
    "Projection",
    "eval_sh",
    "max_sh_degree",
    "project_gaussians",
    "quat_scale_to_covar",
    "quat_to_rotmat",
    "view_colors",
]

EPS2D = 0.3
"""Dilation added to the 2D covariance (pixels²): the screen-space low-pass filter."""
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
ALPHA_THRESHOLD = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there."""
MAX_ALPHA = 0.99
"""Alpha is clamped to this (INRIA's value, fixed by DESIGN.md; gsplat 1.5 uses 0.999)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops at the first Gaussian that would bring its transmittance to or below this."""
TILE_SIZE = 16
SIGMA_EXTENT = 3.33
"""Screen boxes reach this many standard deviations: exp(-3.33²/2) < 1/255."""

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
          -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


class Projection(NamedTuple):
    """Screen-space Gaussians for ``C`` cameras; entries with ``radii == 0`` are culled
    and hold finite placeholders."""

    means2d: Tensor
    """``[C,N,2]`` projected centres in pixels."""
    conics: Tensor
    """``[C,N,3]`` ``(a, b, c)`` of the inverse 2D covariance ``[[a, b], [b, c]]`` (1/pixels²)."""
    depths: Tensor
    """``[C,N]`` camera-space z of the centres (scene units)."""
    radii: Tensor
    """``[C,N,2]`` int32 half-extents of the screen boxes in pixels (x, y); 0 where culled."""


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from quaternions.

    Args:
        quats: ``[..., 4]`` quaternions **w, x, y, z**; normalised here (as gsplat does),
            so gradients stay tangent to the unit sphere.

    Returns:
        ``[..., 3, 3]`` rotations mapping the Gaussian's local axes to world axes.
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances ``Σ = R S Sᵀ Rᵀ``.

    Args:
        quats: ``[..., 4]`` rotations (w, x, y, z).
        scales: ``[..., 3]`` standard deviations along the local axes (scene units).

    Returns:
        ``[..., 3, 3]`` covariances (scene units²).
    """
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    opacities: Tensor | None = None,
    eps2d: float = EPS2D,
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
) -> Projection:
    """Project 3D Gaussians into ``C`` pinhole cameras (EWA splatting).

    Args:
        means: ``[N,3]`` centres (world units).
        quats: ``[N,4]`` rotations (w, x, y, z).
        scales: ``[N,3]`` standard deviations (world units).
        viewmats: ``[C,4,4]`` world-to-camera transforms (OpenCV axes).
        Ks: ``[C,3,3]`` intrinsics in pixels (skew is ignored, as in gsplat).
        width: image width in pixels.
        height: image height in pixels.
        opacities: ``[N]`` in [0,1]; when given, Gaussians below ``ALPHA_THRESHOLD`` are
            culled and boxes shrink to where ``alpha >= ALPHA_THRESHOLD`` can hold
            (gsplat's opacity-aware box). This changes no pixel, only the work.
        eps2d: dilation of the 2D covariance (pixels²).
        near_plane: Gaussians with camera z below this are culled.
        far_plane: Gaussians with camera z above this are culled.

    Returns:
        A :class:`Projection`, differentiable w.r.t. ``means``, ``quats`` and ``scales``.
    """
    rot, trans = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [C,1,3,3], [C,1,3]
    mean_c = (rot @ means[None, :, :, None])[..., 0] + trans  # [C,N,3]
    covar_c = rot @ quat_scale_to_covar(quats, scales)[None] @ rot.transpose(-1, -2)  # [C,N,3,3]

    x, y, z = mean_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled Gaussians may sit at z <= 0; a placeholder depth keeps their (unused)
    # values finite so no NaN leaks into the gradients of the others.
    z = torch.where(in_depth, z, torch.ones_like(z))

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C,1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # The Jacobian is evaluated with x/z and y/z clamped to 1.3x the frustum, so
    # Gaussians far outside the view do not get huge, smeared footprints.
    tan_half_x, tan_half_y = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_half_x
    lim_x_neg = cx / fx + 0.3 * tan_half_x
    lim_y_pos = (height - cy) / fy + 0.3 * tan_half_y
    lim_y_neg = cy / fy + 0.3 * tan_half_y
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x / z))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y / z))
    zeros = torch.zeros_like(z)
    jac = torch.stack(
        (fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)), dim=-1
    ).reshape(z.shape + (2, 3))
    cov2d = jac @ covar_c @ jac.transpose(-1, -2)  # [C,N,2,2]

    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    valid = in_depth & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack((c / det, -b / det, a / det), dim=-1)
    means2d = torch.stack((fx * x / z + cx, fy * y / z + cy), dim=-1)

    with torch.no_grad():
        extent = torch.full_like(z, SIGMA_EXTENT)
        if opacities is not None:
            opac = opacities.detach().to(z.dtype).expand_as(z)
            valid = valid & (opac >= ALPHA_THRESHOLD)
            # Beyond Mahalanobis distance sqrt(2 ln(o / threshold)), o·exp(-d²/2) < threshold.
            ratio = torch.clamp_min(opac / ALPHA_THRESHOLD, 1.0)
            extent = torch.minimum(extent, torch.sqrt(2.0 * torch.log(ratio)))
        radius_x = torch.ceil(extent * torch.sqrt(torch.clamp_min(a.detach(), 0.0)))
        radius_y = torch.ceil(extent * torch.sqrt(torch.clamp_min(c.detach(), 0.0)))
        mx, my = means2d.detach().unbind(-1)
        on_screen = (
            (mx + radius_x > 0) & (mx - radius_x < width) & (my + radius_y > 0) & (my - radius_y < height)
        )
        valid = valid & on_screen & ((radius_x > 0) | (radius_y > 0))
        radii = torch.stack((radius_x, radius_y), dim=-1).to(torch.int32) * valid[..., None]
    return Projection(means2d=means2d, conics=conics, depths=mean_c[..., 2], radii=radii)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate real spherical harmonics (Condon–Shortley phase, the 3DGS convention).

    Args:
        degree: highest band used, 0..3; the first ``(degree+1)²`` coefficients are read.
        dirs: ``[..., 3]`` view directions; normalised here (a zero vector keeps only
            the DC band).
        coeffs: ``[..., K, 3]`` coefficients, ``K >= (degree+1)²``.

    Returns:
        ``[..., 3]`` the SH sum (before the +0.5 offset and the clamp).
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    if coeffs.shape[-2] < (degree + 1) ** 2:
        raise ValueError(f"SH degree {degree} needs {(degree + 1) ** 2} coefficients, got {coeffs.shape[-2]}")
    out = _SH_C0 * coeffs[..., 0, :]
    if degree == 0:
        return out
    x, y, z = (v[..., None] for v in F.normalize(dirs, dim=-1).unbind(-1))
    out = out + _SH_C1 * (-y * coeffs[..., 1, :] + z * coeffs[..., 2, :] - x * coeffs[..., 3, :])
    if degree == 1:
        return out
    xx, yy, zz = x * x, y * y, z * z
    out = (
        out
        + _SH_C2[0] * x * y * coeffs[..., 4, :]
        + _SH_C2[1] * y * z * coeffs[..., 5, :]
        + _SH_C2[2] * (2 * zz - xx - yy) * coeffs[..., 6, :]
        + _SH_C2[3] * x * z * coeffs[..., 7, :]
        + _SH_C2[4] * (xx - yy) * coeffs[..., 8, :]
    )
    if degree == 2:
        return out
    return (
        out
        + _SH_C3[0] * y * (3 * xx - yy) * coeffs[..., 9, :]
        + _SH_C3[1] * x * y * z * coeffs[..., 10, :]
        + _SH_C3[2] * y * (4 * zz - xx - yy) * coeffs[..., 11, :]
        + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[..., 12, :]
        + _SH_C3[4] * x * (4 * zz - xx - yy) * coeffs[..., 13, :]
        + _SH_C3[5] * z * (xx - yy) * coeffs[..., 14, :]
        + _SH_C3[6] * x * (xx - 3 * yy) * coeffs[..., 15, :]
    )


def view_colors(means: Tensor, sh: Tensor, campos: Tensor, degree: int) -> Tensor:
    """RGB of each Gaussian seen from one camera: ``max(SH(mean - campos) + 0.5, 0)``.

    Args:
        means: ``[N,3]`` centres (world units).
        sh: ``[N,K,3]`` SH coefficients.
        campos: ``[3]`` camera centre in world coordinates.
        degree: SH degree to evaluate.

    Returns:
        ``[N,3]`` colours, non-negative (not clamped above, as in gsplat).
    """
    return torch.clamp_min(eval_sh(degree, means - campos, sh) + 0.5, 0.0)


def max_sh_degree(num_coeffs: int) -> int:
    """Largest degree ``d`` with ``(d+1)² <= num_coeffs``."""
    return math.isqrt(num_coeffs) - 1
