"""Where networks run: ``"auto"`` and explicit device names, resolved and described once."""
from __future__ import annotations

import os
import platform

import torch

from recon3d.errors import InputError


def available_cores(limit: int = 8) -> int:
    """CPU cores this process may run on (its affinity, not the machine's count), at most ``limit``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, limit))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → the current CUDA device when there is one, else the CPU.

    CUDA devices come back with their index (``cuda`` → ``cuda:0``), so that they compare
    equal to the device of a tensor on them.

    Raises:
        InputError: an unknown device name, or CUDA asked for where there is none.
    """
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but this torch build or machine has no CUDA; "
                             "use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def describe_device(device: torch.device) -> str:
    """A short line for users, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64, 2 threads)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"
