"""Pose, depth and geometry metrics for reconstructions defined up to similarity.

Camera metrics follow VGGT / PoseDiffusion:

* For every unordered pair ``i < j`` the relative pose camera ``i`` -> camera ``j``,
  ``T_ij = w2c_j @ inv(w2c_i)`` (rotation ``R_j R_i^T``, translation ``R_j (c_i - c_j)``),
  is compared with the reference. This relative pose is invariant to any global
  similarity of the world frame (up to the translation's length), so no alignment
  is needed.
* Rotation error: the angle of ``R_pred^T R_gt`` in degrees, in [0, 180].
* Translation error: the angle between the lines of the two relative translations,
  ``arccos(|<t_pred, t_gt>| / (|t_pred| |t_gt|))`` in degrees, in [0, 90]. This is
  PoseDiffusion's ``min(err, 180 - err)``: the sign of a translation direction is
  ambiguous for an essential matrix, so a flipped direction is not penalised twice.
  A pair whose predicted or reference baseline has zero length gets 90 (the worst).
* AUC@T ("mAA"): the mean over thresholds ``t = 1, 2, ..., T`` degrees of the
  fraction of pairs with ``max(rot_err, trans_err) < t``. VGGT computes it as the
  mean of the cumulative 1-degree histogram, which is the same number except for
  an error of exactly ``T`` (its last bin is closed). Pairs that could not be
  evaluated (a view the method did not register) count as failures.
* ATE: RMSE of camera centres after the least-squares Sim(3) that maps predicted
  centres onto the reference centres, also divided by the reference trajectory's
  diameter (the largest distance between two reference centres).

Depth metrics (AbsRel, delta < 1.25) pool all valid pixels of a scene, after
median scaling per view or once per scene. Geometry metrics (accuracy,
completeness, Chamfer) use nearest neighbours between point clouds, normalised
by the diagonal of the reference cloud's bounding box.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from recon3d.geometry.align import Sim3, align_camera_centres
from recon3d.geometry.cameras import camera_centres, pixel_grid

__all__ = [
    "AUC_THRESHOLDS",
    "rotation_angle_deg",
    "relative_pose_errors",
    "pose_auc",
    "absolute_trajectory_error",
    "camera_metrics",
    "resample_to_model_grid",
    "depth_metrics",
    "point_cloud_metrics",
]

AUC_THRESHOLDS = (5, 15, 30)
DELTA_THRESHOLD = 1.25
# A relative translation shorter than this fraction of the longest one in the
# set is treated as zero length: its direction is noise.
_ZERO_BASELINE_FRACTION = 1e-9


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angle of ``rot_a^T rot_b`` in degrees, ``[...]`` from ``[...,3,3]`` rotations.

    Uses ``atan2(|axis part|, cos part)``, which stays accurate near 0 and 180
    degrees where ``arccos`` of the trace loses precision.
    """
    rel = np.swapaxes(np.asarray(rot_a, dtype=np.float64), -1, -2) @ np.asarray(rot_b, dtype=np.float64)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = np.stack(
        (rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]), axis=-1
    )
    sin = np.linalg.norm(axis, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def _line_angle_deg(vec_a: np.ndarray, vec_b: np.ndarray) -> np.ndarray:
    """Angle between the lines spanned by ``[P,3]`` vectors, degrees in [0, 90]; 90 for zero vectors."""
    norm_a = np.linalg.norm(vec_a, axis=-1)
    norm_b = np.linalg.norm(vec_b, axis=-1)
    dot = np.abs((vec_a * vec_b).sum(-1))
    cross = np.linalg.norm(np.cross(vec_a, vec_b), axis=-1)
    angle = np.degrees(np.arctan2(cross, dot))
    zero_a = norm_a <= _ZERO_BASELINE_FRACTION * norm_a.max(initial=0.0)
    zero_b = norm_b <= _ZERO_BASELINE_FRACTION * norm_b.max(initial=0.0)
    return np.where(zero_a | zero_b, 90.0, angle)


def _relative_poses(extrinsics_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``[P,3,3]`` and translations ``[P,3]`` of camera i -> camera j for all pairs i < j."""
    w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
    first, second = np.triu_indices(len(w2c), k=1)
    rot_i, rot_j = w2c[first, :3, :3], w2c[second, :3, :3]
    centres = camera_centres(w2c)
    rel_rot = rot_j @ np.swapaxes(rot_i, -1, -2)
    rel_trans = np.einsum("pab,pb->pa", rot_j, centres[first] - centres[second])
    return rel_rot, rel_trans


def relative_pose_errors(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative rotation and translation-direction errors over all pairs ``i < j``.

    Args:
        pred_w2c: ``[S,4,4]`` predicted world-to-camera.
        gt_w2c: ``[S,4,4]`` reference world-to-camera, same view order.

    Returns:
        ``rot_err_deg [P]`` and ``trans_err_deg [P]``, ``P = S(S-1)/2``, pairs in
        ``np.triu_indices(S, 1)`` order.
    """
    if np.shape(pred_w2c) != np.shape(gt_w2c):
        raise ValueError(f"camera arrays differ in shape: {np.shape(pred_w2c)} vs {np.shape(gt_w2c)}")
    pred_rot, pred_trans = _relative_poses(pred_w2c)
    gt_rot, gt_trans = _relative_poses(gt_w2c)
    return rotation_angle_deg(pred_rot, gt_rot), _line_angle_deg(pred_trans, gt_trans)


def pose_auc(rot_err_deg: np.ndarray, trans_err_deg: np.ndarray, max_threshold: int, num_failed: int = 0) -> float:
    """AUC@``max_threshold`` (mAA): mean over t = 1..T degrees of the fraction of pairs with max error < t.

    Args:
        rot_err_deg, trans_err_deg: ``[P]`` errors of the evaluated pairs (NaN counts as a failure).
        max_threshold: T in whole degrees.
        num_failed: pairs that could not be evaluated; they count in the denominator only.

    Returns:
        A value in [0, 1]; NaN when there is no pair at all.
    """
    worst = np.maximum(np.asarray(rot_err_deg, dtype=np.float64), np.asarray(trans_err_deg, dtype=np.float64))
    worst = np.where(np.isnan(worst), np.inf, worst)
    total = worst.size + num_failed
    if total == 0:
        return float("nan")
    thresholds = np.arange(1, max_threshold + 1, dtype=np.float64)
    fractions = (worst[None, :] < thresholds[:, None]).sum(axis=1) / total
    return float(fractions.mean())


def absolute_trajectory_error(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> tuple[float, float, Sim3]:
    """Camera-centre RMSE after Sim(3) alignment of predicted centres to reference centres.

    Args:
        pred_w2c, gt_w2c: ``[S,4,4]`` world-to-camera, same view order.

    Returns:
        ``(ate, ate_normalised, sim3)``: RMSE in reference units; the RMSE divided
        by the reference trajectory's diameter (NaN when all reference centres
        coincide); the alignment from the predicted to the reference world frame.
    """
    sim3 = align_camera_centres(pred_w2c, gt_w2c)
    gt_centres = camera_centres(gt_w2c)
    residual = sim3.apply(camera_centres(pred_w2c)) - gt_centres
    ate = float(np.sqrt((residual**2).sum(axis=1).mean()))
    diameter = float(pdist(gt_centres).max(initial=0.0)) if len(gt_centres) > 1 else 0.0
    return ate, (ate / diameter if diameter > 0 else float("nan")), sim3


def camera_metrics(
    pred_w2c: np.ndarray,
    gt_w2c: np.ndarray,
    *,
    num_failed_pairs: int = 0,
    thresholds: Sequence[int] = AUC_THRESHOLDS,
) -> dict[str, float | int]:
    """All camera metrics of one method on one scene.

    Args:
        pred_w2c, gt_w2c: ``[S,4,4]`` world-to-camera of the evaluated views, same order.
        num_failed_pairs: pairs of views the method failed on (unregistered), counted
            as failures in the AUCs.
        thresholds: AUC thresholds in degrees.

    Returns:
        ``auc@T`` per threshold, ``rot_err_median_deg``, ``trans_err_median_deg``,
        ``num_pairs`` (evaluated), ``num_failed_pairs``, ``ate``, ``ate_normalised``.
    """
    rot_err, trans_err = relative_pose_errors(pred_w2c, gt_w2c)
    ate, ate_normalised, _ = absolute_trajectory_error(pred_w2c, gt_w2c)
    out: dict[str, float | int] = {f"auc@{t}": pose_auc(rot_err, trans_err, t, num_failed_pairs) for t in thresholds}
    out["rot_err_median_deg"] = float(np.median(rot_err)) if rot_err.size else float("nan")
    out["trans_err_median_deg"] = float(np.median(trans_err)) if trans_err.size else float("nan")
    out["num_pairs"] = int(rot_err.size)
    out["num_failed_pairs"] = int(num_failed_pairs)
    out["ate"] = ate
    out["ate_normalised"] = ate_normalised
    return out


def resample_to_model_grid(
    values: np.ndarray, to_original: np.ndarray, model_hw: tuple[int, int], fill: float = 0.0
) -> np.ndarray:
    """Nearest-neighbour lookup of original-image values at each model pixel.

    Model pixel ``(v, u)`` has its centre at ``(u + 0.5, v + 0.5)``; ``to_original``
    maps it to original continuous coordinates ``(x, y)``, which fall inside the
    original pixel ``(floor(y), floor(x))``. Nearest neighbour (not bilinear) keeps
    depth edges sharp: no value is ever a blend of foreground and background.

    Args:
        values: ``[H0,W0]`` or ``[H0,W0,C]`` original-resolution values (e.g. z-depth;
            resizing does not change z-depth, so values are copied as they are).
        to_original: ``[3,3]`` affine map, model pixels -> original pixels.
        model_hw: (H, W) of the model grid.
        fill: value where the model pixel maps outside the original image (padding).

    Returns:
        ``[H,W]`` or ``[H,W,C]`` array of ``values``' dtype.
    """
    height, width = model_hw
    src_h, src_w = values.shape[:2]
    pixels = pixel_grid(height, width, homogeneous=True) @ np.asarray(to_original, dtype=np.float64).T
    col = np.floor(pixels[..., 0] / pixels[..., 2]).astype(np.int64)
    row = np.floor(pixels[..., 1] / pixels[..., 2]).astype(np.int64)
    inside = (col >= 0) & (col < src_w) & (row >= 0) & (row < src_h)
    out = np.full((height, width) + values.shape[2:], fill, dtype=values.dtype)
    out[inside] = values[row[inside], col[inside]]
    return out


def _median_scale(pred: np.ndarray, gt: np.ndarray) -> float:
    """``median(gt) / median(pred)``; 1 when the prediction's median is not positive (no usable scale)."""
    pred_median = float(np.median(pred)) if pred.size else 0.0
    return float(np.median(gt)) / pred_median if pred_median > 0 else 1.0


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, scaling: str = "view") -> dict[str, float | int | list[float]]:
    """AbsRel and delta < 1.25 over the valid pixels of a scene.

    Valid pixels have a finite reference depth > 0 and a finite prediction. The
    metrics pool every valid pixel of the scene (a view with more valid pixels
    weighs more). A non-positive scaled prediction fails the delta test.

    Args:
        pred_depth: ``[S,H,W]`` predicted z-depth (any scale).
        gt_depth: ``[S,H,W]`` reference z-depth on the same pixel grid, 0 or NaN where unknown.
        scaling: ``"view"`` (each view times median(gt)/median(pred) over its valid
            pixels), ``"scene"`` (one such ratio over all valid pixels), or ``"none"``.

    Returns:
        ``abs_rel`` = mean |d - d_gt| / d_gt, ``delta1`` = fraction with
        max(d / d_gt, d_gt / d) < 1.25, ``num_pixels``, and ``scales`` (one per view,
        the same value repeated for ``"scene"``).
    """
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"depth maps must both be [S,H,W], got {pred.shape} and {gt.shape}")
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if scaling == "view":
        scales = [_median_scale(p[m], g[m]) for p, g, m in zip(pred, gt, valid)]
    elif scaling == "scene":
        scales = [_median_scale(pred[valid], gt[valid])] * len(pred)
    elif scaling == "none":
        scales = [1.0] * len(pred)
    else:
        raise ValueError(f"scaling must be 'view', 'scene' or 'none', got {scaling!r}")
    scaled = pred * np.asarray(scales)[:, None, None]
    d, d_gt = scaled[valid], gt[valid]
    if d.size == 0:
        return {"abs_rel": float("nan"), "delta1": float("nan"), "num_pixels": 0, "scales": scales}
    # max(d/g, g/d) < 1.25  <=>  g/1.25 < d < 1.25 g for d > 0; written without dividing by d.
    within = (d > d_gt / DELTA_THRESHOLD) & (d < d_gt * DELTA_THRESHOLD)
    return {
        "abs_rel": float(np.mean(np.abs(d - d_gt) / d_gt)),
        "delta1": float(np.mean(within)),
        "num_pixels": int(d.size),
        "scales": scales,
    }


def _subsample(points: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= max_points:
        return points
    return points[np.sort(rng.choice(len(points), size=max_points, replace=False))]


def point_cloud_metrics(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    *,
    transform: Sim3 | None = None,
    max_points: int = 100_000,
    seed: int = 0,
) -> dict[str, float | int]:
    """Accuracy, completeness and Chamfer distance between a predicted and a reference cloud.

    Accuracy is the mean distance from each predicted point to its nearest
    reference point (are predicted points on the surface?); completeness the
    mean distance from each reference point to its nearest predicted point (is
    the surface covered?); Chamfer their mean. Non-finite points are dropped;
    each cloud is then subsampled (seeded, without replacement) to at most
    ``max_points``.

    The normalised values divide by the diagonal of the reference cloud's
    bounding box (taken before subsampling). The reference clouds we evaluate
    against are exact (synthetic depth), so the plain box is used: a
    percentile-trimmed box would only matter for a reference with outliers.

    Args:
        pred_points: ``[N,3]`` predicted points in the prediction's world frame.
        gt_points: ``[M,3]`` reference points.
        transform: maps predicted points into the reference frame (e.g. the Sim(3)
            from camera alignment); None when they are already there.
        max_points: subsampling cap per cloud.
        seed: subsampling seed.

    Returns:
        ``accuracy``, ``completeness``, ``chamfer`` (normalised), the same in
        reference units as ``accuracy_abs``, ``completeness_abs``, ``chamfer_abs``,
        ``scene_size`` (the normaliser) and the cloud sizes used. The distances are
        NaN when either cloud has no finite point.
    """
    pred = np.asarray(pred_points, dtype=np.float64).reshape(-1, 3)
    gt = np.asarray(gt_points, dtype=np.float64).reshape(-1, 3)
    pred = pred[np.isfinite(pred).all(axis=1)]
    gt = gt[np.isfinite(gt).all(axis=1)]
    if len(pred) == 0 or len(gt) == 0:
        nan = float("nan")
        return {"accuracy": nan, "completeness": nan, "chamfer": nan, "accuracy_abs": nan, "completeness_abs": nan,
                "chamfer_abs": nan, "scene_size": nan, "num_pred_points": len(pred), "num_gt_points": len(gt)}
    if transform is not None:
        pred = transform.apply(pred)
    scene_size = float(np.linalg.norm(gt.max(axis=0) - gt.min(axis=0)))
    pred = _subsample(pred, max_points, np.random.default_rng([seed, 0]))
    gt = _subsample(gt, max_points, np.random.default_rng([seed, 1]))
    accuracy = float(cKDTree(gt).query(pred, workers=-1)[0].mean())
    completeness = float(cKDTree(pred).query(gt, workers=-1)[0].mean())
    chamfer = (accuracy + completeness) / 2.0
    norm = scene_size if scene_size > 0 else float("nan")
    return {
        "accuracy": accuracy / norm,
        "completeness": completeness / norm,
        "chamfer": chamfer / norm,
        "accuracy_abs": accuracy,
        "completeness_abs": completeness,
        "chamfer_abs": chamfer,
        "scene_size": scene_size,
        "num_pred_points": int(len(pred)),
        "num_gt_points": int(len(gt)),
    }
