"""Scene size, the yardstick for every scale-free parameter (voxels, truncation, frusta).

Feed-forward reconstructions have an arbitrary global scale, so sizes are set relative
to the scene: voxel = diagonal / 512, camera frustum = diagonal / 20, and so on.
"""
from __future__ import annotations

import numpy as np

__all__ = ["scene_diagonal"]


def scene_diagonal(points: np.ndarray, trim_percent: float = 1.0) -> float:
    """Diagonal of the bounding box of ``points`` after trimming outliers per axis.

    The box spans the ``trim_percent`` to ``100 - trim_percent`` percentiles of each
    coordinate, so a few stray points (floaters, a far background pixel) do not inflate
    the scene. Non-finite rows are ignored.

    Args:
        points: ``[..., 3]`` positions.
        trim_percent: percent trimmed at each end of each axis, in [0, 50).

    Returns:
        The diagonal length (world units); 0.0 for fewer than two finite points.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 2:
        return 0.0
    low, high = np.percentile(points, [trim_percent, 100.0 - trim_percent], axis=0)
    return float(np.linalg.norm(high - low))
