"""What the benchmark scripts share: the CPU's name for their tables, and cheap random networks."""
from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name (benchmark tables must say which CPU kind they were measured on)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def random_network(build: Callable[[], torch.nn.Module], device: torch.device | str = "cpu") -> torch.nn.Module:
    """``build()``'s network in eval mode with seeded random weights made on ``device``.

    Built on the meta device, so no CPU copy is made for a GPU run, and filled in seconds
    instead of the minute a truncated-normal init of a billion parameters takes: matrices,
    kernels, tokens and tables N(0, 0.02), biases 0, norm weights 1, LayerScale 0.1 (between
    DINOv2's 1.0 and VGGT's 0.01). Ordinary magnitudes, so no denormals skew the timings;
    speed and memory do not depend on the values.
    """
    with torch.device("meta"):
        model = build()
    model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                param.zero_()
            elif leaf == "gamma":
                param.fill_(0.1)
            elif leaf == "weight" and param.dim() == 1:
                param.fill_(1.0)
            else:
                param.normal_(std=0.02, generator=generator)
    return model.eval()
