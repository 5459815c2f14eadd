"""Bundle adjustment of cameras, intrinsics and track points with pycolmap (Ceres)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from recon3d.io.colmap import reconstruction_from_tracks
from recon3d.types import FeatureTracks


@dataclass
class BundleResult:
    """extrinsics_w2c ``[S,4,4]`` and intrinsics ``[S,3,3]`` (original pixels) of the adjusted
    views (others unchanged); tracks with adjusted points and only the observations kept;
    errors ``[M]`` per kept observation in pixels."""

    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    tracks: FeatureTracks
    errors: np.ndarray

    @property
    def mean_error(self) -> float:
        return mean_track_error(self.errors, self.tracks)


def reprojection_errors(xyz: np.ndarray, tracks: FeatureTracks, extrinsics_w2c: np.ndarray,
                        intrinsics: np.ndarray) -> np.ndarray:
    """``[M]`` pixel distance between each observation and its track point projected
    through ``extrinsics_w2c [S,4,4]`` and ``intrinsics [S,3,3]`` (original pixels);
    inf for a point behind the camera."""
    w2c = np.asarray(extrinsics_w2c, dtype=np.float64)[tracks.view]
    k = np.asarray(intrinsics, dtype=np.float64)[tracks.view]
    cam = np.einsum("mij,mj->mi", w2c[:, :3, :3], xyz[tracks.track]) + w2c[:, :3, 3]
    pix = np.einsum("mij,mj->mi", k, cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.linalg.norm(pix[:, :2] / pix[:, 2:] - tracks.xy, axis=1)
    return np.where(cam[:, 2] > 0, error, np.inf)


def mean_track_error(errors: np.ndarray, tracks: FeatureTracks) -> float:
    """COLMAP's mean reprojection error: the mean over tracks of each track's mean error
    (finite errors only; NaN when there is none)."""
    finite = np.isfinite(errors)
    counts = np.bincount(tracks.track[finite], minlength=tracks.num_tracks)
    sums = np.bincount(tracks.track[finite], weights=errors[finite], minlength=tracks.num_tracks)
    seen = counts > 0
    return float((sums[seen] / counts[seen]).mean()) if seen.any() else float("nan")


def subset_tracks(tracks: FeatureTracks, keep: np.ndarray) -> FeatureTracks:
    """Observations ``keep``; tracks left with fewer than two are removed and renumbered."""
    counts = np.bincount(tracks.track[keep], minlength=tracks.num_tracks)
    alive = counts >= 2
    keep = keep & alive[tracks.track]
    renumber = np.cumsum(alive) - 1
    return FeatureTracks(tracks.xyz[alive], tracks.colors[alive], renumber[tracks.track[keep]],
                         tracks.view[keep], tracks.xy[keep])


def _calibration(camera_model: str, params: list[float]) -> np.ndarray:
    """``[3,3]`` K of a PINHOLE (fx, fy, cx, cy) or SIMPLE_PINHOLE (f, cx, cy) camera."""
    fx, fy, cx, cy = params if camera_model == "PINHOLE" else (params[0], params[0], params[1], params[2])
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _options(refine_focal: bool, loss_scale_px: float):
    import pycolmap

    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = refine_focal
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.loss_function_scale = loss_scale_px
    options.ceres.solver_options.max_num_iterations = 100
    # pycolmap's default (0) never stops on the cost: every solve ran all 100 iterations
    # for changes far below a pixel. Ceres' own default stops when an iteration lowers the
    # cost by less than this fraction.
    options.ceres.solver_options.function_tolerance = 1e-6
    # COLMAP keeps Ceres on one thread below 50,000 residuals; fern's problems (about
    # 40,000) solve 10-15 % faster on two (same result).
    options.ceres.min_num_residuals_for_cpu_multi_threading = 0
    return options


def bundle_adjust(
    names: Sequence[str],
    cameras: Sequence[tuple[int, int, list[float]]],
    camera_model: str,
    extrinsics_w2c: np.ndarray,
    tracks: FeatureTracks,
    views: Sequence[int],
    *,
    shared_camera: bool,
    max_error_px: float = 4.0,
    refine_focal: bool = True,
) -> BundleResult:
    """Adjust poses, focal lengths and points of ``views`` with a robust (Cauchy) loss.

    Four rounds, the first with the intrinsics fixed; after the second and third,
    observations whose error exceeds ``3 * max_error_px`` and then ``max_error_px`` are
    dropped (a track left with fewer than two observations goes with them).

    Args:
        names, cameras, camera_model, shared_camera: as `reconstruction_from_tracks`.
        extrinsics_w2c: ``[S,4,4]`` starting world-to-camera; tracks: starting points.
        views: the views to adjust (connected by tracks).
    """
    import pycolmap

    w2c = np.array(extrinsics_w2c, dtype=np.float64)
    cams = list(cameras)
    intrinsics = np.zeros((len(names), 3, 3))
    for view in views:
        intrinsics[view] = _calibration(camera_model, cams[view][2])
    # Intrinsics stay fixed in the first round: with outliers still in, a free focal
    # length can bend a weakly linked block of views into a wrong minimum. Nothing is
    # dropped before the focal length has been adjusted: a wrong starting focal length
    # alone puts good observations far from their points.
    schedule = ((False, None), (refine_focal, 3 * max_error_px), (refine_focal, max_error_px), (refine_focal, None))
    for refine_round_focal, drop_above in schedule:
        before_round = (w2c.copy(), intrinsics.copy(), list(cams), tracks)
        reconstruction, point_ids = reconstruction_from_tracks(names, cams, camera_model, w2c, tracks, views,
                                                               shared_camera)
        config = pycolmap.BundleAdjustmentConfig()
        for view in views:
            config.add_image(int(view) + 1)
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        pycolmap.create_default_bundle_adjuster(_options(refine_round_focal, loss_scale_px=max_error_px / 2), config,
                                                reconstruction).solve()
        for view in views:
            image = reconstruction.images[view + 1]
            w2c[view, :3, :] = image.cam_from_world().matrix()
            intrinsics[view] = image.camera.calibration_matrix()
            cams[view] = (image.camera.width, image.camera.height, [float(p) for p in image.camera.params])
        xyz = tracks.xyz.copy()
        points = reconstruction.points3D
        for index in np.flatnonzero(point_ids):
            if int(point_ids[index]) in points:
                xyz[index] = points[int(point_ids[index])].xyz
            else:  # removed by the adjuster
                point_ids[index] = 0
        tracks = subset_tracks(replace(tracks, xyz=xyz), np.isin(tracks.view, views) & (point_ids[tracks.track] > 0))
        errors = reprojection_errors(tracks.xyz, tracks, w2c, intrinsics)
        # The reprojection error cannot tell a point from its mirror image behind the
        # camera; an adjustment that moved the structure behind the cameras is undone.
        if np.isfinite(errors).mean() < 0.9:
            w2c, intrinsics, cams, tracks = before_round
            break
        limit = np.inf if drop_above is None else drop_above
        tracks = subset_tracks(tracks, np.isfinite(errors) & (errors <= limit))
        if tracks.num_tracks == 0:
            break
    errors = reprojection_errors(tracks.xyz, tracks, w2c, intrinsics)
    return BundleResult(w2c, intrinsics, tracks, errors)
