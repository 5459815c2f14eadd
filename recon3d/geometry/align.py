"""Similarity (Sim(3)) and rigid alignment of corresponding 3D points (Umeyama, 1991).

Feed-forward models and COLMAP both reconstruct a scene up to a similarity
transform, so evaluation first finds the ``Sim3`` that best maps predicted
points (or camera centres) onto the reference in the least-squares sense:

    minimise  sum_i w_i || y_i - (s R x_i + t) ||^2   over s > 0, R in SO(3), t.

All arithmetic is float64. Degenerate inputs never produce NaN: a source whose
points all coincide has no defined rotation or scale, so the identity rotation
and unit scale are kept and only the centroids are matched; two points (or any
collinear set) leave the rotation about their common line free, and the SVD
picks one proper rotation that maps the line correctly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.geometry.cameras import camera_centres

__all__ = ["Sim3", "umeyama", "align_camera_centres"]

# Variance (relative to the squared coordinate magnitude) below which the
# source is treated as a single point: its rotation and scale are undefined.
_DEGENERATE_RELATIVE_VARIANCE = 1e-20


@dataclass(frozen=True)
class Sim3:
    """``x -> scale * rotation @ x + translation``.

    Attributes:
        scale: positive factor (0 only when the target points all coincide).
        rotation: ``[3,3]`` proper rotation (det = +1).
        translation: ``[3]`` in target units.
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> Sim3:
        return cls(1.0, np.eye(3), np.zeros(3))

    @property
    def matrix(self) -> np.ndarray:
        """``[4,4]`` homogeneous matrix ``[[sR, t], [0, 1]]``."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform ``[..., 3]`` points; returns float64 ``[..., 3]``."""
        points = np.asarray(points, dtype=np.float64)
        return self.scale * points @ self.rotation.T + self.translation

    def apply_to_w2c(self, extrinsics_w2c: np.ndarray) -> np.ndarray:
        """Express world-to-camera transforms of the source frame in the target frame.

        A camera ``X_cam = R_c X + t_c`` in the source world sees the target point
        ``Y = s R X + t`` as ``X_cam = R_c R^T (Y - t) / s + t_c``; camera units are
        rescaled by ``s`` as well so that the result stays rigid:
        ``R_c' = R_c R^T`` and ``t_c' = s t_c - R_c' t``.

        Args:
            extrinsics_w2c: ``[S,4,4]`` (or ``[S,3,4]``) in the source frame.

        Returns:
            ``[S,4,4]`` float64 world-to-camera transforms in the target frame.
        """
        extrinsics_w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
        rot = extrinsics_w2c[:, :3, :3] @ self.rotation.T
        trans = self.scale * extrinsics_w2c[:, :3, 3] - rot @ self.translation
        out = np.tile(np.eye(4), (len(extrinsics_w2c), 1, 1))
        out[:, :3, :3] = rot
        out[:, :3, 3] = trans
        return out


def umeyama(
    source: np.ndarray,
    target: np.ndarray,
    *,
    with_scale: bool = True,
    weights: np.ndarray | None = None,
) -> Sim3:
    """Least-squares similarity (or rigid) transform mapping ``source`` onto ``target``.

    Rows where either point (or the weight) is not finite are ignored, as are
    rows with zero weight.

    Args:
        source: ``[N,3]`` points to be moved.
        target: ``[N,3]`` corresponding points.
        with_scale: False fixes ``scale = 1`` (rigid alignment).
        weights: optional ``[N]`` non-negative weights.

    Returns:
        The ``Sim3`` with ``target ~ scale * rotation @ source + translation``.

    Raises:
        ValueError: mismatched shapes, negative weights, or no usable correspondence.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(f"umeyama needs two [N,3] arrays of equal shape, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),):
        raise ValueError(f"weights must have shape ({len(src)},), got {w.shape}")
    if np.any(w[np.isfinite(w)] < 0):
        raise ValueError("weights must be non-negative")
    usable = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & np.isfinite(w) & (w > 0)
    if not usable.any():
        raise ValueError("umeyama needs at least one finite correspondence with positive weight")
    src, dst, w = src[usable], dst[usable], w[usable] / w[usable].sum()

    mean_src = w @ src
    mean_dst = w @ dst
    src_c = src - mean_src
    dst_c = dst - mean_dst
    var_src = float(w @ (src_c**2).sum(1))
    magnitude = float(w @ (src**2).sum(1))
    if var_src <= _DEGENERATE_RELATIVE_VARIANCE * max(magnitude, 1.0):
        # Coincident source points: any rotation and scale fit equally well.
        return Sim3(1.0, np.eye(3), mean_dst - mean_src)

    cov = (dst_c * w[:, None]).T @ src_c
    u, sigma, vt = np.linalg.svd(cov)
    # Flip the weakest axis when U V^T would be a reflection (Umeyama's S matrix).
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = (u * sign) @ vt
    scale = float((sigma * sign).sum() / var_src) if with_scale else 1.0
    translation = mean_dst - scale * rotation @ mean_src
    return Sim3(scale, rotation, translation)


def align_camera_centres(pred_w2c: np.ndarray, gt_w2c: np.ndarray, *, with_scale: bool = True) -> Sim3:
    """Sim(3) mapping predicted camera centres onto ground-truth centres.

    Only the centres enter the fit, so with fewer than three non-collinear
    cameras the rotation about the line through them is not determined by the
    data (it does not affect the centre residuals, hence not the ATE).

    Args:
        pred_w2c: ``[S,4,4]`` predicted world-to-camera.
        gt_w2c: ``[S,4,4]`` reference world-to-camera, same view order.
        with_scale: False for a rigid fit (metric predictions).

    Returns:
        The ``Sim3`` from the predicted world frame to the reference world frame.
    """
    return umeyama(camera_centres(pred_w2c), camera_centres(gt_w2c), with_scale=with_scale)
