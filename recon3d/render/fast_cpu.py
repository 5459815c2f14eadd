"""Fast CPU rendering for inference (no gradients): a small C++ renderer.

``csrc/rasterize_cpu.cpp`` does, per camera, projection, SH colours, a depth radix sort,
tile binning and compositing on ``torch.get_num_threads()`` threads, in float32, with the
maths of :mod:`recon3d.render.projection` and the torch backend (gsplat's rules). It is a
second implementation, so the tests compare it with the torch backend. Its speed comes
from one pass per Gaussian in registers, SIMD over the pixels of a tile row, tiles that
stop once all their pixels have stopped, and rows skipped where the ``alpha >= 1/255``
ellipse does not reach.

Why C++ loaded with ctypes, and not numba or a torch extension:

* compile time: the source uses no torch or Python headers, so one ``c++ -O3`` call
  builds it on first use in a few seconds (3.4 CPU-seconds with g++ 12);
  ``torch.utils.cpp_extension`` needs ninja and tens of seconds per build to parse
  torch's headers, and numba JIT-compiles a parallel kernel for seconds in each fresh
  cache;
* CI and installs: nothing new to install (numba would add numba and llvmlite, whose
  releases each support a bounded range of numpy and Python versions, so they can hold
  back upgrades); CI needs only the g++ it already has. Wheels stay pure Python: the
  library is built into the user cache (``$RECON3D_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/recon3d`` or ``~/.cache/recon3d``), keyed by the source, the flags
  and the CPU, since it is tuned for the local CPU (``-march=native``, retried without it
  where a compiler refuses that);
* threads: ``std::thread`` with a shared tile counter balances load dynamically, with no
  OpenMP runtime that could clash with the libgomp torch bundles (Apple clang has none);
* speed: see ``benchmarks/render_cpu.py`` (300k Gaussians at 512×384 on 2 threads,
  against the torch backend).

Without a working compiler :func:`fast_cpu_available` is False and
:func:`fast_cpu_unavailable_reason` says why; ``render(backend="auto")`` then falls back
to the torch backend with a warning, and ``backend="cpu"`` raises
:class:`FastCPUUnavailable`.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from recon3d.errors import Recon3DError
from recon3d.geometry.cameras import camera_centres
from recon3d.render.projection import (
    ALPHA_THRESHOLD,
    EPS2D,
    MAX_ALPHA,
    SIGMA_EXTENT,
    TRANSMITTANCE_MIN,
)

__all__ = ["FastCPUUnavailable", "fast_cpu_available", "fast_cpu_unavailable_reason", "rasterize_cpu"]

_SOURCE = Path(__file__).with_name("csrc") / "rasterize_cpu.cpp"
# -fno-math-errno and -fno-trapping-math change no result; they let the compiler turn the
# per-pixel selects into SIMD code.
_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math")
_NATIVE = ("-march=native",)


class FastCPUUnavailable(Recon3DError):
    """The C++ renderer could not be built or loaded on this machine."""


def _cache_dir() -> Path:
    root = os.environ.get("RECON3D_CACHE_DIR")
    if root:
        return Path(root) / "ext"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "recon3d" / "ext"


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            lines = [ln for ln in fh.read().splitlines()[:64] if ln.startswith(("model name", "flags", "Features"))]
        if lines:
            return "\n".join(lines)
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compile(compiler: str, flags: tuple[str, ...], out: Path) -> str | None:
    """Compile the source to ``out`` atomically; the compiler's complaint on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler, *flags, str(_SOURCE), "-o", tmp], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            return " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        os.replace(tmp, out)  # concurrent first uses each write a whole file
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build() -> Path:
    """Path of the compiled library, compiling it unless the cache has it."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise FastCPUUnavailable("no C++ compiler found (install g++ or set CXX)")
    source = _SOURCE.read_bytes()
    errors = []
    for flags in (_FLAGS + _NATIVE, _FLAGS):
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), _cpu_id().encode()])).hexdigest()[:16]
        lib_path = _cache_dir() / f"rasterize_cpu_{key}.so"
        if lib_path.exists():
            return lib_path
        err = _compile(compiler, flags, lib_path)
        if err is None:
            return lib_path
        errors.append(err)
    raise FastCPUUnavailable(f"compiling {_SOURCE.name} with {compiler} failed: {errors[-1]}")


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | FastCPUUnavailable:
    """The library, built on first use; or why it is unavailable."""
    try:
        lib = ctypes.CDLL(str(_build()))
    except FastCPUUnavailable as err:
        return err
    except (OSError, subprocess.SubprocessError) as err:
        return FastCPUUnavailable(f"building or loading the C++ renderer failed: {err}")
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.recon3d_render.argtypes = (
        [i64] + [ptr] * 5 + [i32, i32] + [ptr] * 3 + [i32, i32] + [f32] * 7 + [i32, i32] + [ptr] * 4 + [i32]
    )
    lib.recon3d_render.restype = i32
    return lib


def fast_cpu_available() -> bool:
    """Whether the C++ renderer is built (building it now if needed) and loadable."""
    return not isinstance(_load(), FastCPUUnavailable)


def fast_cpu_unavailable_reason() -> str | None:
    """Why the fast CPU path cannot run, or None when it can."""
    lib = _load()
    return str(lib) if isinstance(lib, FastCPUUnavailable) else None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@torch.no_grad()
def rasterize_cpu(
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
    blend_counts: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Render ``C`` cameras on the CPU with the C++ renderer (float32, no autograd).

    Arguments and outputs are those of
    :func:`recon3d.render.torch_rasterizer.rasterize_torch`: ``[C,H,W,D]`` features
    (D = 3·with_rgb + with_depth, depth = accumulated camera z) and ``[C,H,W,1]`` alphas.
    ``blend_counts``, when given, receives per camera the number of pixel-Gaussian
    composites (a measure of work, for benchmarks).

    Raises:
        FastCPUUnavailable: when the library cannot be built or loaded.
    """
    lib = _load()
    if isinstance(lib, FastCPUUnavailable):
        raise lib
    f32 = dict(dtype=torch.float32, device="cpu")
    means, quats, scales, opacities, sh, viewmats, Ks = (
        t.detach().to(**f32).contiguous() for t in (means, quats, scales, opacities, sh, viewmats, Ks)
    )
    campos = camera_centres(viewmats).contiguous()
    dim = 3 * with_rgb + with_depth
    bg = None
    if background is not None and with_rgb:
        bg = torch.zeros(dim, **f32)
        bg[:3] = background.to(**f32)
    n_cams = viewmats.shape[0]
    colors = torch.empty((n_cams, height, width, dim), **f32)
    alphas = torch.empty((n_cams, height, width), **f32)
    n_blends = ctypes.c_int64(0)
    for cam in range(n_cams):
        status = lib.recon3d_render(
            means.shape[0], _ptr(means), _ptr(quats), _ptr(scales), _ptr(opacities), _ptr(sh), sh.shape[1],
            sh_degree, _ptr(viewmats[cam]), _ptr(Ks[cam]), _ptr(campos[cam]), width, height,
            EPS2D, near_plane, far_plane, ALPHA_THRESHOLD, MAX_ALPHA, TRANSMITTANCE_MIN, SIGMA_EXTENT,
            int(with_rgb), int(with_depth), _ptr(bg), _ptr(colors[cam]), _ptr(alphas[cam]),
            ctypes.addressof(n_blends), torch.get_num_threads(),
        )
        if status == 2:
            raise MemoryError("the CPU rasterizer ran out of memory")
        if status != 0:
            raise RuntimeError(f"the CPU rasterizer failed (status {status}: 1 = bad arguments, 3 = no threads)")
        if blend_counts is not None:
            blend_counts.append(n_blends.value)
    return colors, alphas[..., None]
