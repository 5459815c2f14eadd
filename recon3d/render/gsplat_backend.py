"""gsplat's CUDA rasterizer as a backend (optional extra ``recon3d[gpu]``).

gsplat is imported only when needed (this backend runs, or ``backend="auto"`` meets CUDA
tensors): importing it compiles or loads CUDA code, and it has no CPU path.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from recon3d.errors import Recon3DError
from recon3d.render.projection import EPS2D, TILE_SIZE

__all__ = ["GsplatUnavailable", "gsplat_available", "gsplat_unavailable_reason", "rasterize_gsplat"]

_HINT = ("install recon3d[gpu] and the CUDA toolkit (nvcc) on a CUDA machine, or use backend='cpu' (CPU tensors) "
         "or backend='torch' (any device)")


class GsplatUnavailable(Recon3DError):
    """gsplat or CUDA is missing."""


@functools.lru_cache(maxsize=1)
def gsplat_unavailable_reason() -> str | None:
    """Why gsplat's CUDA kernels cannot run here, or None when they can (checked once).

    ``import gsplat`` succeeds even where its kernels do not exist: a wheel without
    compiled kernels builds them with nvcc the first time ``gsplat.cuda._backend`` is
    imported, and leaves ``_C`` as None when no CUDA toolkit is found. So the check loads
    the kernels, which may take minutes on a first run while gsplat compiles them.
    """
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        from gsplat.cuda import _backend
    except ImportError as err:
        return f"gsplat is not installed ({err})"
    # A failed kernel build raises whatever torch's extension builder raises.
    except Exception as err:  # noqa: BLE001
        return f"gsplat's CUDA kernels failed to build ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    if getattr(_backend, "_C", None) is None:
        return "gsplat has no compiled CUDA kernels and found no CUDA toolkit (nvcc) to build them"
    return None


def gsplat_available() -> bool:
    """Whether gsplat's CUDA kernels can run here (see ``gsplat_unavailable_reason``)."""
    return gsplat_unavailable_reason() is None


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int,
    with_rgb: bool,
    with_depth: bool,
    background: Tensor | None,
    near_plane: float,
    far_plane: float,
) -> tuple[Tensor, Tensor]:
    """Render ``C`` cameras with ``gsplat.rasterization`` (classic mode, unpacked).

    Arguments and outputs are those of
    :func:`recon3d.render.torch_rasterizer.rasterize_torch`; tensors are moved to the
    CUDA device of ``means`` (or the current one when ``means`` is on the CPU).

    Raises:
        GsplatUnavailable: without CUDA or without gsplat.
    """
    reason = gsplat_unavailable_reason()
    if reason is not None:
        raise GsplatUnavailable(f"the gsplat backend cannot run: {reason}; {_HINT}")
    import gsplat

    device = means.device if means.is_cuda else torch.device("cuda")
    f32 = dict(dtype=torch.float32, device=device)
    n_cams = viewmats.shape[0]
    mode = {(True, False): "RGB", (False, True): "D", (True, True): "RGB+D"}[(with_rgb, with_depth)]
    backgrounds = None
    if background is not None and with_rgb:
        # gsplat appends the zero background of the depth channel itself.
        backgrounds = background.to(**f32).expand(n_cams, 3).contiguous()
    colors, alphas, _ = gsplat.rasterization(
        means.to(**f32), quats.to(**f32), scales.to(**f32), opacities.to(**f32),
        sh.to(**f32), viewmats.to(**f32), Ks.to(**f32), width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=EPS2D, sh_degree=sh_degree,
        packed=False, tile_size=TILE_SIZE, backgrounds=backgrounds, render_mode=mode,
        rasterize_mode="classic",
    )
    return colors, alphas
