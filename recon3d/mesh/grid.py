"""Per-view grid triangulation: the fast mesh, two triangles per valid 2x2 pixel block.

Each view's point map is already a surface parametrised by the pixel grid; linking
neighbouring pixels gives a mesh in one vectorised pass. Views are not merged, so
overlapping views give overlapping sheets, and nothing is watertight.
"""
from __future__ import annotations

import numpy as np

from recon3d.types import Mesh

__all__ = ["grid_triangulation"]


def grid_triangulation(
    points: np.ndarray,
    depth: np.ndarray,
    colors: np.ndarray,
    keep: np.ndarray | None = None,
    *,
    max_depth_ratio: float = 1.05,
) -> Mesh:
    """Triangulate each view's pixel grid, skipping blocks that straddle depth edges.

    The 2x2 block of pixels ``(v,u) (v,u+1) (v+1,u) (v+1,u+1)`` gives two triangles when
    all four pixels are kept, have finite points and positive depth, and the largest of
    their depths is at most ``max_depth_ratio`` times the smallest: a larger jump is an
    occlusion boundary, and a face across it would be a long sliver between foreground
    and background. Faces wind so that their normals face the camera.

    Args:
        points: ``[S,H,W,3]`` world points of every pixel.
        depth: ``[S,H,W]`` camera z-depth of the same pixels.
        colors: ``[S,H,W,3]`` uint8 colours.
        keep: ``[S,H,W]`` bool mask (None: all pixels).
        max_depth_ratio: (> 1) allowed depth ratio inside a block.

    Returns:
        One mesh holding every view's faces; only vertices used by a face are kept.
    """
    if max_depth_ratio <= 1:
        raise ValueError(f"max_depth_ratio must exceed 1, got {max_depth_ratio}")
    points = np.asarray(points)
    depth = np.asarray(depth, dtype=np.float64)
    num_views, height, width = depth.shape
    valid = np.isfinite(points).all(-1) & np.isfinite(depth) & (depth > 0)
    if keep is not None:
        valid &= np.asarray(keep, dtype=bool)
    safe_depth = np.where(valid, depth, np.nan)
    corners = [np.s_[:, :-1, :-1], np.s_[:, :-1, 1:], np.s_[:, 1:, :-1], np.s_[:, 1:, 1:]]
    block_valid = np.logical_and.reduce([valid[c] for c in corners])
    with np.errstate(invalid="ignore"):
        block_max = np.fmax.reduce([safe_depth[c] for c in corners])
        block_min = np.fmin.reduce([safe_depth[c] for c in corners])
        block_valid &= block_max <= max_depth_ratio * block_min
    view, row, col = np.nonzero(block_valid)
    top_left = (view * height + row) * width + col
    top_right, bottom_left = top_left + 1, top_left + width
    bottom_right = bottom_left + 1
    # Image x right, y down, z forward: (top_left, bottom_left, top_right) is wound so
    # that its normal points back at the camera (-z).
    faces = np.concatenate([
        np.stack([top_left, bottom_left, top_right], axis=1),
        np.stack([top_right, bottom_left, bottom_right], axis=1),
    ])
    used = np.zeros(num_views * height * width, dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return Mesh(
        vertices=points.reshape(-1, 3)[used].astype(np.float32),
        faces=new_index[faces].astype(np.int64),
        vertex_colors=np.asarray(colors, dtype=np.uint8).reshape(-1, 3)[used],
    )
