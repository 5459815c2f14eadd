"""Choice of compute precision for the transformer backbone.

Heads always run in fp32 and outputs are always fp32; only the aggregator runs under
autocast. Nothing here touches the CUDA API unless the device is a CUDA device, so a
CPU-only torch build works.
"""
from __future__ import annotations

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
