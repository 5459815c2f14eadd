"""Camera rigs shared by the rendering tests."""
from __future__ import annotations

import numpy as np

from recon3d.geometry.cameras import look_at


def intrinsics(f: float, width: int, height: int) -> np.ndarray:
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def ring(target: np.ndarray, radius: float, height: float, count: int, phase: float = 0.3) -> np.ndarray:
    """``[count,4,4]`` level cameras on a horizontal circle (world z up) looking at ``target``."""
    angles = phase + 2 * np.pi * np.arange(count) / count
    eyes = target + np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(count, height)], axis=1)
    return np.stack([look_at(eye, target) for eye in eyes])
