"""``render(...)``: draw 3D Gaussians into pinhole cameras with a chosen backend.

Backends give the same images (gsplat semantics, see :mod:`recon3d.render.projection`):

* ``"gsplat"``: gsplat's CUDA kernels (optional extra ``recon3d[gpu]``);
* ``"torch"``: tile-based PyTorch rasterizer, differentiable, any device;
* ``"cpu"``: C++ rasterizer for CPU inference (no gradients), built on first use;
* ``"auto"``: gsplat for CUDA tensors when its kernels load (or build); otherwise the C++ path for CPU
  tensors when no gradient is needed and it builds; otherwise torch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from recon3d.render.projection import FAR_PLANE, NEAR_PLANE, max_sh_degree
from recon3d.types import Gaussians

__all__ = ["BACKENDS", "MODES", "RenderOutput", "render", "select_backend"]

BACKENDS = ("auto", "gsplat", "torch", "cpu")
MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


@dataclass
class RenderOutput:
    """Rendered images of ``C`` cameras."""

    colors: Tensor
    """``[C,H,W,D]``: RGB (D=3), depth (D=1) or RGB then depth (D=4), per ``mode``."""
    alphas: Tensor
    """``[C,H,W,1]`` accumulated opacity ``Σ wᵢ`` (``1 - T``, the final transmittance)."""
    backend: str
    """The backend that ran: ``"gsplat"``, ``"torch"`` or ``"cpu"``."""


def _needs_grad(gaussians: Gaussians) -> bool:
    tensors = (gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.sh)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def select_backend(backend: str, gaussians: Gaussians) -> str:
    """Resolve ``backend`` (one of :data:`BACKENDS`) to the one that will run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu" and _needs_grad(gaussians):
        raise ValueError("backend='cpu' renders without gradients; use backend='torch' (or 'gsplat') to train")
    if backend != "auto":
        return backend
    if gaussians.means.is_cuda:
        from recon3d.render.gsplat_backend import gsplat_unavailable_reason

        reason = gsplat_unavailable_reason()
        if reason is None:
            return "gsplat"
        warnings.warn(f"recon3d: gsplat cannot run ({reason}); rendering with the slower torch backend",
                      RuntimeWarning, stacklevel=3)
        return "torch"
    if gaussians.means.device.type == "cpu" and not _needs_grad(gaussians):
        from recon3d.render.fast_cpu import fast_cpu_available, fast_cpu_unavailable_reason

        if fast_cpu_available():
            return "cpu"
        warnings.warn(
            f"recon3d: fast CPU rasterizer unavailable ({fast_cpu_unavailable_reason()}); "
            "rendering with the slower torch backend",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def render(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    backend: str = "auto",
    sh_degree: int | None = None,
    background: Tensor | None = None,
    mode: str = "RGB",
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
) -> RenderOutput:
    """Render Gaussians into ``C`` pinhole cameras.

    Args:
        gaussians: the scene (activated form, see :class:`recon3d.types.Gaussians`).
        viewmats: ``[C,4,4]`` world-to-camera transforms, OpenCV axes.
        Ks: ``[C,3,3]`` intrinsics in pixels; pixel ``(i, j)`` is sampled at
            ``(j + 0.5, i + 0.5)``.
        width: image width in pixels.
        height: image height in pixels.
        backend: one of :data:`BACKENDS` (see the module docstring).
        sh_degree: SH degree for colours; None uses every band stored in ``gaussians.sh``.
        background: ``[3]`` colour composited behind the Gaussians:
            ``colour + (1 - alpha) · background``; depth channels get none.
        mode: ``"RGB"``; ``"D"`` accumulated depth ``Σ wᵢ zᵢ`` (camera z);
            ``"ED"`` expected depth ``Σ wᵢ zᵢ / max(alpha, 1e-10)``; or
            ``"RGB+D"`` / ``"RGB+ED"`` with depth as the last channel.
        near_plane: Gaussians nearer than this (camera z) are dropped.
        far_plane: Gaussians farther than this are dropped.

    Returns:
        A :class:`RenderOutput` on the device of the Gaussians.

    Raises:
        ValueError: for inconsistent shapes or unknown options, or ``backend="cpu"`` for
            Gaussians that require gradients.
        GsplatUnavailable: ``backend="gsplat"`` without CUDA or gsplat.
        FastCPUUnavailable: ``backend="cpu"`` where the C++ rasterizer cannot be built.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n = len(gaussians)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be [C,4,4], got {tuple(viewmats.shape)}")
    if Ks.shape != (viewmats.shape[0], 3, 3):
        raise ValueError(f"Ks must be [C,3,3] with C={viewmats.shape[0]}, got {tuple(Ks.shape)}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    sh = gaussians.sh
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be [N,K,3] with N={n}, got {tuple(sh.shape)}")
    stored = max_sh_degree(sh.shape[1])
    degree = stored if sh_degree is None else sh_degree
    if not 0 <= degree <= min(stored, 3):
        raise ValueError(f"sh_degree must be in 0..{min(stored, 3)} for {sh.shape[1]} coefficients, got {degree}")
    if background is not None and background.shape != (3,):
        raise ValueError(f"background must be [3], got {tuple(background.shape)}")

    chosen = select_backend(backend, gaussians)
    if chosen == "gsplat":
        from recon3d.render.gsplat_backend import rasterize_gsplat as rasterize
    elif chosen == "cpu":
        from recon3d.render.fast_cpu import rasterize_cpu as rasterize
    else:
        from recon3d.render.torch_rasterizer import rasterize_torch as rasterize

    like = gaussians.means
    colors, alphas = rasterize(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, sh,
        viewmats.to(like), Ks.to(like), int(width), int(height),
        sh_degree=degree,
        with_rgb=mode.startswith("RGB"),
        with_depth=mode != "RGB",
        background=None if background is None else background.to(like),
        near_plane=near_plane,
        far_plane=far_plane,
    )
    if mode.endswith("ED"):
        colors = torch.cat((colors[..., :-1], colors[..., -1:] / alphas.clamp_min(1e-10)), dim=-1)
    return RenderOutput(colors=colors.to(like.device), alphas=alphas.to(like.device), backend=chosen)
