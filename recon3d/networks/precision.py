"""Choice of compute precision for the transformer backbone.

Heads always run in fp32 (on CUDA without TF32, see ``full_fp32``) and outputs are always
fp32; only the backbone runs under autocast. Nothing here touches the CUDA API unless the device is a CUDA device, so a
CPU-only torch build works.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
