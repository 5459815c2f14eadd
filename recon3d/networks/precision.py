"""Choice of compute precision for the transformer backbone.

Heads always run in fp32 (on CUDA without TF32, see ``full_fp32``) and outputs are always
fp32; only the backbone runs under autocast. Nothing here touches the CUDA API unless the device is a CUDA device, so a
CPU-only torch build works.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def backbone_autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype for the backbone, or None for plain fp32.

    ``"auto"`` means bf16 on CUDA devices of compute capability ≥ 8, fp16 on older
    CUDA devices, and fp32 on the CPU (where bf16 is optional: it is faster on CPUs
    with bf16 instructions but changes the numbers).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# CPU feature flags (as /proc/cpuinfo names them) of native bf16 matrix instructions.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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


def training_autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype of the aggregator while training (None: fp32).

    ``"auto"`` is bf16 on CUDA and on CPUs with native bf16 matrix instructions, where a
    training step of the embedded model runs markedly faster; fp32 on other CPUs, where
    bf16 is emulated and slower.
    """
    device = torch.device(device)
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_native_bf16() else None
    return backbone_autocast_dtype(precision, device)


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
