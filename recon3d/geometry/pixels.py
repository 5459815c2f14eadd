"""Per-pixel geometry of a prediction: world points, camera depth, confidence, normals.

Every export of a prediction (points, GLB, Gaussians, mesh, COLMAP) starts from the same
per-pixel quantities. `pixel_geometry` computes them once, and each consumer takes the
result through its ``geometry`` argument instead of unprojecting the depth again.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from recon3d.geometry import cameras
from recon3d.types import Prediction

__all__ = ["PixelGeometry", "pixel_geometry", "estimate_normals"]


def estimate_normals(points: torch.Tensor, camera_centres: torch.Tensor) -> torch.Tensor:
    """Unit surface normals of per-view point maps, oriented towards each view's camera.

    The normal of pixel (v, u) is the cross product of the point map's derivatives along
    the image axes, ``dP/du x dP/dv``, taken as central differences (one-sided on the
    image border, as ``torch.gradient`` does). It is flipped where it points away from
    the camera centre. Where the cross product vanishes or is not finite (a constant
    point map, or a NaN among the neighbours) the normal falls back to the unit
    direction from the point to the camera, i.e. a fronto-parallel disc.

    Central differences straddle depth discontinuities, so normals on silhouettes are
    unreliable; `recon3d.masks.depth_edges` removes those pixels.

    Args:
        points: ``[S,H,W,3]`` world points of each view (world units).
        camera_centres: ``[S,3]`` camera centres in the world frame.

    Returns:
        ``[S,H,W,3]`` float32 unit normals.
    """
    # Differences of nearby float32 values are exact, so float32 loses nothing here.
    points = points.float()
    d_dv, d_du = torch.gradient(points, dim=(1, 2))
    normals = torch.cross(d_du, d_dv, dim=-1)
    to_camera = camera_centres.float()[:, None, None, :] - points
    to_camera = to_camera / to_camera.norm(dim=-1, keepdim=True)
    length = normals.norm(dim=-1, keepdim=True)
    normals = torch.where(length > 0, normals / length, to_camera)
    facing = (normals * to_camera).sum(-1, keepdim=True)
    return torch.where(facing < 0, -normals, normals)


@dataclass(frozen=True, eq=False)
class PixelGeometry:
    """What every pixel of a prediction contributes, from one point source.

    Consumers must not modify the arrays: they are shared by every export.

    Attributes:
        source: ``"depth"`` (unprojected depth maps) or ``"points"`` (point-map head).
        points: ``[S,H,W,3]`` float32 world points (world units).
        depth: ``[S,H,W]`` float64 camera z-depth of the points.
        conf: ``[S,H,W]`` confidence of the source.
        usable: ``[S,H,W]`` bool: finite point, finite positive depth and a valid camera
            (`recon3d.types.Prediction.usable_pixels`).
        camera_centres: ``[S,3]`` float64 camera centres (world units).
    """

    source: str
    points: np.ndarray
    depth: np.ndarray
    conf: np.ndarray
    usable: np.ndarray
    camera_centres: np.ndarray

    @cached_property
    def normals(self) -> np.ndarray:
        """``[S,H,W,3]`` float32 unit normals facing each view's camera (`estimate_normals`),
        estimated on first use since only the point and Gaussian exports need them."""
        return estimate_normals(torch.as_tensor(self.points), torch.as_tensor(self.camera_centres)).numpy()


def pixel_geometry(pred: Prediction, source: str = "depth", *, reuse: PixelGeometry | None = None) -> PixelGeometry:
    """The per-pixel geometry of ``pred`` from ``source`` (`Prediction.view_points`).

    Args:
        pred: the prediction.
        source: ``"depth"`` or ``"points"``.
        reuse: geometry already computed for ``pred`` (e.g. by the export); returned as it
            is when it comes from ``source``, so that nothing is computed twice.

    Returns:
        The geometry; ``reuse`` when it fits.
    """
    if reuse is not None and reuse.source == source:
        return reuse
    points, depth, conf = pred.view_points(source)
    return PixelGeometry(source=source, points=points, depth=depth, conf=conf,
                         usable=pred.usable_pixels(points, depth),
                         camera_centres=cameras.camera_centres(pred.extrinsics_w2c))
