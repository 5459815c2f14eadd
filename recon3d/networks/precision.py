"""Choice of compute precision for the transformer backbone.

Heads always run in fp32 (on CUDA without TF32, see ``full_fp32``) and outputs are always
fp32; only the backbone runs in reduced precision. Nothing here touches the CUDA API unless
the device is a CUDA device, so a CPU-only torch build works.

On the CPU, ``auto`` means bf16 where the CPU has native bf16 matrix instructions (AMX or
AVX512-BF16) and a short matrix-product measurement, cached per machine, confirms that bf16
is faster there; fp32 elsewhere, where bf16 is emulated and several times slower. In bf16
on the CPU the backbone's matrix weights are held in bf16 (half the memory, no cast per
call), and so are the heads' weights, which the heads widen layer by layer to compute in
fp32 (their arithmetic is unchanged; the weights are rounded to bf16 once). int8 dynamic
quantisation was measured and is not offered: on VGGT-1B-size networks it missed the
accuracy bound (see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# CPU feature flags (as /proc/cpuinfo names them) of native bf16 matrix instructions.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# bf16 is chosen on a CPU with native instructions when its matrix products measure at
# least this much faster than fp32 (a margin for the fp32 work around them).
MIN_BF16_SPEEDUP = 1.3


@dataclass(frozen=True)
class PrecisionChoice:
    """How a backbone runs: its ``autocast`` dtype (None: fp32), and the reason, for the one
    line the user is shown."""

    autocast: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags; empty where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> str | None:
    """The flag of the CPU's native bf16 matrix instructions (AMX first), or None."""
    flags = cpu_flags()
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def _cache_file() -> Path:
    root = os.environ.get("RECON3D_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recon3d"
    return Path(root) / "cpu_bf16.json"


def _measure_bf16_speedup(size: int = 768, repeats: int = 5) -> float:
    """fp32 time over bf16 time of a ``size``-square matrix product (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y  # the first call picks kernels and allocates
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


@functools.lru_cache(maxsize=1)
def bf16_speedup() -> float:
    """How many times faster bf16 matrix products run than fp32 on this CPU, cached on disk.

    Measured once per CPU kind, torch version and thread count (about 0.2 s) and kept in
    ``$RECON3D_CACHE_DIR/cpu_bf16.json`` (default ``~/.cache/recon3d``); a cache that
    cannot be read or written only costs a new measurement.
    """
    key = f"{cpu_native_bf16()}|{torch.__version__}|{torch.get_num_threads()}|{os.cpu_count()}"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    if isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    speedup = _measure_bf16_speedup()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**cached, key: speedup}), encoding="utf-8")
    except OSError:
        log.debug("could not write %s", path)
    return speedup


def choose_precision(precision: str, device: torch.device | str) -> PrecisionChoice:
    """The backbone precision for ``precision`` (one of ``PRECISIONS``) on ``device``.

    ``"auto"``: bf16 on CUDA devices of compute capability ≥ 8, fp16 on older ones; on the
    CPU bf16 where it has native bf16 matrix instructions that measure at least
    ``MIN_BF16_SPEEDUP`` times faster than fp32 (`bf16_speedup`), fp32 otherwise.
    Raises ValueError for an unknown precision.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return PrecisionChoice(dtype, "asked for")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        dtype = torch.bfloat16 if major >= 8 else torch.float16
        return PrecisionChoice(dtype, f"GPU of compute capability {major}.{minor}")
    if device.type != "cpu":
        return PrecisionChoice(None, f"no reduced precision on {device.type}")
    flag = cpu_native_bf16()
    if flag is None:
        return PrecisionChoice(None, "this CPU has no native bf16 matrix instructions")
    speedup = bf16_speedup()
    if speedup < MIN_BF16_SPEEDUP:
        return PrecisionChoice(None, f"the CPU has {flag}, but bf16 matrix products measured only "
                                            f"{speedup:.1f}x fp32 here")
    return PrecisionChoice(torch.bfloat16, f"the CPU has {flag}; bf16 matrix products measured "
                                                  f"{speedup:.1f}x fp32 here")


class _HeldLinear(nn.Linear):
    """A linear layer with its weight held in bf16 and applied in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.float(), self.bias)


class _HeldConv2d(nn.Conv2d):
    """A convolution with its weight held in bf16 and applied in fp32."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return super()._conv_forward(x, weight.float(), bias)


class _HeldConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution with its weight held in bf16 and applied in fp32."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return F.conv_transpose2d(x, self.weight.float(), self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)


_HELD_IN_BF16 = {nn.Linear: _HeldLinear, nn.Conv2d: _HeldConv2d, nn.ConvTranspose2d: _HeldConvTranspose2d}


def apply_precision(model: nn.Module, choice: PrecisionChoice, device: torch.device | str) -> nn.Module:
    """Set ``model`` (on ``device``, or on the meta device to be filled for ``device``) to run
    its backbone as ``choice`` says.

    The network's ``backbone_modules()`` are what runs in reduced precision. On the CPU in
    bf16 their linear and convolution weights are converted to bf16 once, where autocast
    would cast them on every call; norms, tokens and everything outside the backbone stay
    fp32. The other linear and convolution layers (the heads) hold their weights in bf16
    too, widened to fp32 one layer at a time as they run: VGGT-1B's heads are a fifth of its
    parameters, and in fp32 they alone kept its weights above 0.6x their fp32 size.
    """
    device = torch.device(device)
    model.backbone_dtype = choice.autocast
    if choice.autocast is torch.bfloat16 and device.type == "cpu":
        backbone = {id(module) for part in model.backbone_modules() for module in part.modules()}
        for module in model.modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if id(module) in backbone:
                module.to(torch.bfloat16)
            elif type(module) in _HELD_IN_BF16:
                module.__class__ = _HELD_IN_BF16[type(module)]
                module.weight = nn.Parameter(module.weight.to(torch.bfloat16), requires_grad=False)
    return model


def training_autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype of the aggregator while training (None: fp32).

    ``"auto"`` is bf16 on CUDA and on CPUs with native bf16 matrix instructions, where a
    training step of the embedded model runs markedly faster; fp32 on other CPUs, where
    bf16 is emulated and slower.
    """
    device = torch.device(device)
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_native_bf16() else None
    return choose_precision(precision, device).autocast


@contextlib.contextmanager
def full_fp32(device: torch.device | str) -> Iterator[None]:
    """Run the block in true fp32: no autocast, and on CUDA no TF32 in convolutions or matmuls.

    cuDNN allows TF32 by default, so on Ampere and newer GPUs "fp32" convolutions would
    keep only 10 mantissa bits; the heads are the precision-sensitive part of a network.
    """
    device = torch.device(device)
    with torch.autocast(device_type=device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        saved_matmul = matmul.allow_tf32
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            matmul.allow_tf32 = False
            try:
                yield
            finally:
                matmul.allow_tf32 = saved_matmul
