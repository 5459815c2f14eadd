"""AnySplat's Gaussian adapter: activations of the fused raw head channels.

Channel layout of the raw parameters (sh degree d, K = (d+1)^2): 0 opacity logit,
1:4 scale, 4:8 quaternion **x,y,z,w**, 8:8+3K SH channel-major ``(rgb, K)``, then the
fusion logit (consumed by the fusion, absent here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from recon3d.geometry.cameras import quat_xyzw_to_matrix
from recon3d.networks.anysplat.config import OpacityMapping
from recon3d.types import Gaussians

_SCALE_FACTOR = 1e-3
_SCALE_MAX = 0.3
_QUAT_EPS = 1e-8


def sh_mask(sh_degree: int) -> torch.Tensor:
    """``[(d+1)^2]`` fp32 damping of SH coefficients: 1 for the DC term, 0.1 * 0.25^l for degree l."""
    values = [1.0] + [0.1 * 0.25**degree for degree in range(1, sh_degree + 1) for _ in range(2 * degree + 1)]
    return torch.tensor(values, dtype=torch.float32)


def map_opacity(logits: torch.Tensor, mapping: OpacityMapping, step: int) -> torch.Tensor:
    """Linear opacity in [0,1] from logits: ``0.5 (1 - (1-p)^e + p^(1/e))``, p = sigmoid, e = 2^x."""
    x = mapping.initial + min(step / mapping.warm_up, 1.0) * (mapping.final - mapping.initial)
    exponent = 2.0**x
    p = torch.sigmoid(logits)
    return 0.5 * (1 - (1 - p) ** exponent + p ** (1 / exponent))


def covariances(scales: torch.Tensor, quats_xyzw: torch.Tensor) -> torch.Tensor:
    """``R diag(s)^2 R^T`` ``[..., 3, 3]`` from scales ``[..., 3]`` and quaternions ``[..., 4]`` (x,y,z,w)."""
    rs = quat_xyzw_to_matrix(quats_xyzw, eps=_QUAT_EPS) * scales[..., None, :]
    return rs @ rs.transpose(-1, -2)


def adapt_gaussians(
    points: torch.Tensor, features: torch.Tensor, sh_degree: int, mapping: OpacityMapping, step: int = 0
) -> dict[str, torch.Tensor]:
    """Activated Gaussians from fused points ``[B, n, 3]`` and raw features ``[B, n, 8 + 3K]``.

    Returns ``means [B,n,3]``, ``opacities [B,n]`` (linear), ``scales [B,n,3]`` (linear,
    scene units), ``rotations [B,n,4]`` (unit, x,y,z,w), ``harmonics [B,n,3,K]`` (masked,
    raw 3DGS coefficients) and ``covariances [B,n,3,3]``.
    """
    k = (sh_degree + 1) ** 2
    scales = (_SCALE_FACTOR * F.softplus(features[..., 1:4])).clamp_max(_SCALE_MAX)
    raw_quats = features[..., 4:8]
    rotations = raw_quats / (raw_quats.norm(dim=-1, keepdim=True) + _QUAT_EPS)
    harmonics = features[..., 8 : 8 + 3 * k].unflatten(-1, (3, k)) * sh_mask(sh_degree).to(features.device)
    return {
        "means": points,
        "scales": scales,
        "rotations": rotations,
        "harmonics": harmonics,
        "opacities": map_opacity(features[..., 0], mapping, step),
        "covariances": covariances(scales, rotations),
    }


def to_gaussians(gaussians: dict[str, torch.Tensor], n_voxels: int, batch: int = 0,
                 max_sh_degree: int | None = None) -> Gaussians:
    """recon3d `Gaussians` of one batch element of `adapt_gaussians`' padded output, padding dropped.

    Quaternions go from x,y,z,w to w,x,y,z and harmonics from ``[n,3,K]`` to ``sh [n,K,3]``;
    opacities are already linear and scales already standard deviations. ``max_sh_degree``
    keeps the bands up to that degree (recon3d's PLY files and renderers stop at 3; AnySplat's
    degree-4 band is damped to <= 4e-4 by `sh_mask`).
    """
    sh = gaussians["harmonics"][batch, :n_voxels].transpose(-1, -2)
    if max_sh_degree is not None:
        sh = sh[:, : (max_sh_degree + 1) ** 2]
    return Gaussians(
        means=gaussians["means"][batch, :n_voxels],
        quats=gaussians["rotations"][batch, :n_voxels][:, (3, 0, 1, 2)],
        scales=gaussians["scales"][batch, :n_voxels],
        opacities=gaussians["opacities"][batch, :n_voxels],
        sh=sh.contiguous(),
    )
