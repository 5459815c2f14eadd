"""``refine_prediction``: feature tracks and bundle adjustment on top of any network's prediction.

Features are SIFT on the original photos, matched over all pairs (small sets), pairs
found by a coarse matching (medium sets) or pairs chosen from the predicted cameras (long
sequences), verified by a fundamental matrix. Each pair's motion comes from its
essential matrix or from a 3D similarity of the keypoints lifted with the predicted
depth, whichever the triangles of pairs confirm; cameras start from a spanning tree of
those motions, keeping the network's relative pose where it agrees (so a collapsed or
wrong prediction is replaced, a good one kept), then pycolmap adjusts poses, focal
lengths and track points (a second time from the adjusted focal length when it moved). Each view's dense depth is finally fitted
to the adjusted tracks (scale and shift), so depth, point maps, Gaussians and meshes
follow the refined cameras. When anything fails, the network's cameras are kept and the
``Refinement`` record says why: refinement never makes a scene worse silently.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image

from recon3d.devices import available_cores
from recon3d.errors import InputError
from recon3d.geometry.align import Sim3
from recon3d.io.colmap import colmap_cameras
from recon3d.refine.bundle import (
    bundle_adjust,
    mean_track_error,
    reprojection_errors,
    subset_tracks,
)
from recon3d.refine.features import (
    extract_features,
    match_descriptors,
    retrieve_pairs,
    select_pairs,
    verify_matches,
)
from recon3d.refine.initial import (
    InitialPoses,
    chain_poses,
    consistent_motions,
    essential_motion,
    lift_keypoints,
    ransac_similarity,
)
from recon3d.refine.tracks import build_tracks
from recon3d.types import FeatureTracks, Prediction, Refinement

log = logging.getLogger(__name__)

REFINE_METHODS = ("auto", "none", "ba")


@dataclass
class RefineOptions:
    """Settings of ``refine_prediction``.

    Attributes:
        method: ``"ba"``, ``"none"``, or ``"auto"``: ``"ba"`` for models whose own
            cameras are not usable yet (the zoo marks them, e.g. the embedded default),
            ``"none"`` otherwise (see `resolve`).
        max_features: SIFT keypoints per image.
        max_image_size: long side at which features are detected (larger photos shrink).
        peak_threshold: SIFT's contrast threshold (see `extract_features`).
        ratio: Lowe's ratio test threshold.
        min_pair_inliers: verified matches a pair needs to count.
        exhaustive_up_to: match every pair up to this many views; up to ``retrieval_up_to``
            views, pairs are chosen by a coarse matching (`retrieve_pairs`), beyond that
            from the predicted cameras and the input order (`select_pairs`).
        retrieval_up_to: see ``exhaustive_up_to``.
        pairs_per_view: partners each view picks when pairs are chosen.
        max_error_px: reprojection error above which an observation is an outlier.
        shared_intrinsics: ``"auto"`` (one camera when every photo has the same size),
            ``"yes"`` or ``"no"``.
        max_focal_change: a refined focal length outside [1/x, x] times the network's is
            not trusted: bundle adjustment runs again with the focal lengths fixed.
        min_tracks: fewer tracks than this and refinement gives up.
        max_triangle_deg: pair rotations that close a triangle within this angle confirm
            each other (`consistent_motions`); generous, since an error in the predicted
            focal length bends every pair's rotation by several degrees.
    """

    method: str = "auto"
    max_features: int = 3072
    max_image_size: int = 1600
    peak_threshold: float = 0.001
    ratio: float = 0.8
    min_pair_inliers: int = 15
    exhaustive_up_to: int = 12
    retrieval_up_to: int = 60
    pairs_per_view: int = 8
    max_error_px: float = 4.0
    shared_intrinsics: str = "auto"
    max_focal_change: float = 2.0
    min_tracks: int = 20
    max_triangle_deg: float = 15.0

    def resolve(self, model_info) -> RefineOptions:
        """These options with ``"auto"`` decided for the model described by ``model_info``
        (a ``recon3d.zoo.ModelInfo`` or None)."""
        if self.method != "auto":
            return self
        return replace(self, method="ba" if getattr(model_info, "refine_by_default", False) else "none")

    def __post_init__(self) -> None:
        if self.method not in REFINE_METHODS:
            raise InputError(f"refinement must be one of {', '.join(REFINE_METHODS)}, not '{self.method}'")
        if self.shared_intrinsics not in ("auto", "yes", "no"):
            raise InputError(f"shared_intrinsics must be auto, yes or no, not '{self.shared_intrinsics}'")


def refinement_summary(refinement: Refinement, names: Sequence[str]) -> dict:
    """A JSON-ready record of a refinement (for batch's manifest.json)."""

    def number(value: float) -> float | None:
        return round(float(value), 4) if np.isfinite(value) else None

    return {
        "method": refinement.method,
        "status": refinement.status,
        "reason": refinement.reason,
        "reprojection_before_px": number(refinement.reprojection_before),
        "reprojection_after_px": number(refinement.reprojection_after),
        "seconds": round(refinement.seconds, 3),
        "views": {name: {"status": refinement.view_status[v], "detail": refinement.view_reason[v],
                         "depth_scale": number(refinement.depth_scale[v]), "depth_shift": number(refinement.depth_shift[v])}
                  for v, name in enumerate(names)},
    }


class _Failure(Exception):
    """Refinement cannot proceed; the message is the reason recorded."""


def refine_prediction(
    pred: Prediction,
    images: Sequence[PIL.Image.Image],
    options: RefineOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Refine ``pred``'s cameras and depth with feature tracks and bundle adjustment.

    Args:
        pred: a network's prediction (any model).
        images: the original photos, one per view, in view order (``pred.to_original``
            maps the model's pixels into them).
        options: settings (method ``"none"`` returns ``pred`` unchanged; ``"auto"`` must
            be resolved first, `RefineOptions.resolve`).
        on_progress: called with ``(done, total)`` over feature extraction (one step an
            image) and matching (one step a pair).

    Returns:
        A new ``Prediction`` whose ``refinement`` says what happened per view; with
        status ``"failed"`` its cameras and depth are the network's.
    """
    options = options or RefineOptions(method="ba")
    if options.method == "none":
        return pred
    if options.method == "auto":
        raise ValueError("resolve refine method 'auto' for the model first (RefineOptions.resolve)")
    if len(images) != pred.num_views:
        raise InputError(f"refinement needs one original image per view: got {len(images)} for {pred.num_views} views")
    started = time.perf_counter()
    _quiet_pycolmap()
    try:
        refined = _refine(pred, images, options, on_progress or (lambda done, total: None))
    except _Failure as failure:
        log.warning("refinement failed, keeping the network's cameras: %s", failure)
        refined = replace(pred, refinement=_failed(pred.num_views, str(failure)))
    refined.refinement.seconds = time.perf_counter() - started
    return refined


def _quiet_pycolmap() -> None:
    """COLMAP logs every extractor and adjustment at INFO level and each failed solver
    step as a warning; recon3d reports its own progress and outcome, so only COLMAP's
    errors are let through."""
    import pycolmap

    pycolmap.logging.minloglevel = max(int(pycolmap.logging.minloglevel), 2)


def _failed(num_views: int, reason: str) -> Refinement:
    return Refinement("ba", "failed", reason, ["failed"] * num_views, [reason] * num_views, [""] * num_views,
                      float("nan"), float("nan"), np.ones(num_views, np.float32), np.zeros(num_views, np.float32))


def _refine(pred: Prediction, images: Sequence[PIL.Image.Image], options: RefineOptions,
            on_progress: Callable[[int, int], None]) -> Prediction:
    num_views = pred.num_views
    valid = pred.valid_cameras()
    if valid.sum() < 2:
        raise _Failure("fewer than two views with usable cameras")
    w2c = pred.extrinsics_w2c.astype(np.float64)
    to_original = pred.to_original.astype(np.float64)
    shared = _shares_camera(pred, np.flatnonzero(valid), options)
    k_model = pred.intrinsics.astype(np.float64)
    if shared:
        # One camera: the median of the per-view predictions is a better start than any
        # single view's (a per-view focal error also bends every pair's rotation).
        k_model[:] = np.median(k_model[valid], axis=0)

    # Progress counts images, then pairs; the pair count is known once features exist,
    # so the total starts as an estimate.
    complete = num_views * (num_views - 1) // 2
    guess = num_views + (complete if num_views <= options.exhaustive_up_to else
                         min(complete, num_views * options.pairs_per_view))
    features = extract_features(images, options.max_features, options.max_image_size, options.peak_threshold,
                                on_image=lambda done: on_progress(done, guess))
    if num_views <= options.exhaustive_up_to:
        pairs = [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]
    elif num_views <= options.retrieval_up_to:
        pairs = retrieve_pairs(features, options.pairs_per_view)
    else:
        step = 8  # a coarse grid of predicted points is enough to judge overlap
        coarse = pred.points_from_depth()[:, step // 2::step, step // 2::step]
        pairs = select_pairs(w2c, coarse, k_model, pred.image_size_hw, options.pairs_per_view)
    pairs = [(i, j) for i, j in pairs if valid[i] and valid[j]]
    total = num_views + len(pairs)
    on_progress(num_views, total)

    def match_pair(pair: tuple[int, int]) -> np.ndarray:
        i, j = pair
        candidates = match_descriptors(features[i].descriptors, features[j].descriptors, options.ratio)
        return verify_matches(features[i].keypoints, features[j].keypoints, candidates, options.max_error_px,
                              options.min_pair_inliers)

    matches: dict[tuple[int, int], np.ndarray] = {}
    # Two pairs at a time: torch's top-k and transposes run on one core each (1.4x on 2 cores).
    with ThreadPoolExecutor(2) as pool:
        for done, (pair, verified) in enumerate(zip(pairs, pool.map(match_pair, pairs))):
            if len(verified):
                matches[pair] = verified
            on_progress(num_views + done + 1, total)
    if not matches:
        raise _Failure(f"no pair of views has {options.min_pair_inliers} verified feature matches")

    # The network's own consistency, for the report: every verified track lifted with
    # its depth and cameras.
    rgb = [np.asarray(image.convert("RGB")) for image in images]
    tracks = _tracks(build_tracks([len(f) for f in features], matches), features, rgb)
    before = _network_error(pred, subset_tracks(tracks, valid[tracks.view]), w2c,
                            np.einsum("sij,sjk->sik", to_original, pred.intrinsics.astype(np.float64)))
    start_pred = replace(pred, intrinsics=k_model.astype(np.float32))
    adjusted, start, reached = _solve(start_pred, features, rgb, matches, valid, shared, options)
    # Pair motions computed with a wrong focal length are bent by several degrees, which
    # can leave views in a wrong minimum; once bundle adjustment has found the focal
    # length, start again from it. Where it could not move the focal length, search.
    from_original = np.linalg.inv(to_original)
    k_refined = np.einsum("sij,sjk->sik", from_original, adjusted.intrinsics)
    views = np.flatnonzero(reached)
    change = np.median(k_refined[views, 0, 0] / k_model[views, 0, 0])
    if abs(change - 1.0) > 0.03:
        k_again = k_model.copy()
        k_again[views] = k_refined[views]
        if shared:
            k_again[:] = np.median(k_refined[views], axis=0)
        try:
            again = _solve(replace(pred, intrinsics=k_again.astype(np.float32)), features, rgb, matches, valid,
                           shared, options)
        except _Failure as failure:
            log.info("second pass from the refined focal length failed (%s); keeping the first", failure)
        else:
            if again[2].sum() >= reached.sum():
                adjusted, start, reached = again
    else:
        def solve_with(factor: float):
            k_scaled = k_model.copy()
            k_scaled[:, :2, :2] *= factor
            return _solve(replace(pred, intrinsics=k_scaled.astype(np.float32)), features, rgb, matches, valid,
                          shared, options, refine_focal=False)

        adjusted, start, reached = _search_focal(solve_with, (adjusted, start, reached))
    return _refined_prediction(pred, adjusted, start, reached, before)


def _search_focal(solve_with: Callable[[float], tuple], current: tuple, step: float = 0.25,
                  max_steps: int = 3) -> tuple:
    """The best of whole solves with the focal lengths held at ``2**x`` times the start.

    Called when bundle adjustment left the focal lengths within 3 % of their start: either
    the start was right, or the adjustment stalled (each free round moved the points
    behind the cameras, or it crept a fraction of a percent). With little rotation in the
    tracks the focal length is tied to them only weakly, and the local adjustment cannot
    leave the basin its start put it in. Each pair's motion, and so that basin, depends on
    the focal length; over whole solves the lowest final error sits at the true focal
    length. Grid steps of ``step`` (in log2 focal) go out on each side, further while the
    best solve is the outermost one (up to ``max_steps``); a parabola through the best and
    its neighbours gives one more solve. Solves are compared by the views they reach, then
    by whether they kept 90 % of the observations that the best-kept solve did, then by
    mean reprojection error.

    Args:
        solve_with: a factor -> ``_solve``'s result with the focal lengths scaled by it and
            held fixed (raises ``_Failure``).
        current: ``_solve``'s result from the start (factor 1).
    """
    tried: dict[float, tuple | None] = {0.0: current}

    def attempt(x: float) -> None:
        try:
            tried[x] = solve_with(2.0**x)
        except _Failure:
            tried[x] = None

    def score(x: float) -> tuple[int, bool, float]:
        if tried[x] is None:
            return 0, True, np.inf
        adjusted, _, reached = tried[x]
        # A solve that dropped many more observations as outliers than another could show
        # a lower mean error for the wrong reason: it ranks behind those that kept 90 %.
        most = max(result[0].tracks.num_observations for result in tried.values() if result is not None)
        return -int(reached.sum()), adjusted.tracks.num_observations < 0.9 * most, adjusted.mean_error

    attempt(-step)
    attempt(step)
    for _ in range(max_steps - 1):
        grid = sorted(tried)
        best = min(grid, key=score)
        if best not in (grid[0], grid[-1]):
            break
        attempt(best + step * np.sign(best))
    grid = sorted(tried)
    at = grid.index(min(grid, key=score))
    if 0 < at < len(grid) - 1 and len({score(x)[:2] for x in grid[at - 1:at + 2]}) == 1:
        x = np.array(grid[at - 1:at + 2])
        curve, slope, _ = np.polyfit(x, [score(v)[2] for v in x], 2)
        vertex = -slope / (2 * curve) if curve > 0 else x[1]
        if x[0] < vertex < x[2] and np.min(np.abs(x - vertex)) > 0.02:
            attempt(float(vertex))
    best = min(tried, key=score)
    log.info("focal length searched over %d solves: %.3fx the start fits best", len(tried), 2.0**best)
    return tried[best]


def _solve(pred: Prediction, features, rgb: list[np.ndarray], matches: dict, valid: np.ndarray,
           shared: bool, options: RefineOptions, refine_focal: bool = True):
    """Start poses from the pairs, then bundle adjustment, with ``pred``'s intrinsics as
    the starting calibration (held fixed unless ``refine_focal``); returns
    ``(BundleResult, InitialPoses, reached views)``."""
    num_views = pred.num_views
    to_original = pred.to_original.astype(np.float64)
    k_model = pred.intrinsics.astype(np.float64)
    lifted = [lift_keypoints(f.keypoints, to_original[v], k_model[v], pred.depth[v].astype(np.float64))
              for v, f in enumerate(features)]
    k_original = np.einsum("sij,sjk->sik", to_original, k_model)
    # Two estimates per pair: the essential matrix (independent of depth errors, weak
    # without baseline) and a 3D similarity of the lifted keypoints (the reverse).
    def pair_candidates(pair: tuple[int, int]) -> list:
        (i, j), pair_matches = pair, matches[pair]
        a, b = pair_matches[:, 0], pair_matches[:, 1]
        from_epipolar = essential_motion(features[i].keypoints[a], features[j].keypoints[b], k_original[i],
                                         k_original[j], lifted[i][a], lifted[j][b], options.max_error_px,
                                         options.min_pair_inliers)
        from_depth, _ = ransac_similarity(lifted[i][a], lifted[j][b], min_inliers=options.min_pair_inliers)
        return [m for m in (from_epipolar, from_depth) if m is not None]

    # pycolmap's essential-matrix estimator releases the GIL: pairs run side by side.
    with ThreadPoolExecutor(available_cores()) as pool:
        candidates = {pair: found for pair, found in zip(matches, pool.map(pair_candidates, matches)) if found}
    motions = consistent_motions(candidates, options.max_triangle_deg)
    if not motions:
        raise _Failure("the feature matches disagree with the predicted depth in every pair")
    w2c = pred.extrinsics_w2c.astype(np.float64)
    start = chain_poses(num_views, motions, w2c)
    # Matches of pairs left out (contradicted by their triangles) do not make tracks.
    tracks = _tracks(build_tracks([len(f) for f in features], {pair: matches[pair] for pair in motions}),
                     features, rgb)
    reached = start.reached & valid
    tracks = subset_tracks(tracks, reached[tracks.view])
    start_w2c = w2c.copy()
    start_w2c[:, :3, :3], start_w2c[:, :3, 3] = start.rotations, start.translations
    xyz = _track_points(tracks, _lift_observations(pred, tracks), start_w2c, start.scales)
    tracks = subset_tracks(replace(tracks, xyz=xyz), np.isfinite(xyz).all(1)[tracks.track])
    if tracks.num_tracks < options.min_tracks:
        raise _Failure(f"only {tracks.num_tracks} feature tracks link the views (at least {options.min_tracks} needed)")
    adjusted = _adjust(pred, tracks, start_w2c, np.flatnonzero(reached), shared, options, refine_focal)
    if adjusted.tracks.num_tracks < options.min_tracks:
        raise _Failure(f"only {adjusted.tracks.num_tracks} tracks survived bundle adjustment")
    if not adjusted.mean_error <= options.max_error_px:
        raise _Failure(f"bundle adjustment ended at {adjusted.mean_error:.2f} px mean reprojection error")
    return adjusted, start, reached


def _tracks(track_list: list[np.ndarray], features, rgb: list[np.ndarray]) -> FeatureTracks:
    """FeatureTracks (xyz still zero) of (view, keypoint) tracks, coloured from the photos
    (``rgb``: one ``[H,W,3]`` uint8 array per view)."""
    if not track_list:
        raise _Failure("the verified matches form no multi-view track")
    lengths = np.array([len(t) for t in track_list])
    stacked = np.concatenate(track_list)
    xy = np.stack([features[v].keypoints[k] for v, k in stacked])
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    colors = np.stack([rgb[v][min(int(y), rgb[v].shape[0] - 1), min(int(x), rgb[v].shape[1] - 1)]
                       for v, (x, y) in zip(stacked[first, 0], xy[first])]).astype(np.uint8)
    return FeatureTracks(np.zeros((len(track_list), 3)), colors, np.repeat(np.arange(len(track_list)), lengths),
                         stacked[:, 0].astype(np.int64), xy)


def _lift_observations(pred: Prediction, tracks: FeatureTracks) -> np.ndarray:
    """``[M,3]`` camera-frame point of every observation from its view's predicted depth."""
    cam = np.full((tracks.num_observations, 3), np.nan)
    for view in np.unique(tracks.view):
        rows = np.flatnonzero(tracks.view == view)
        cam[rows] = lift_keypoints(tracks.xy[rows], pred.to_original[view], pred.intrinsics[view],
                                   pred.depth[view].astype(np.float64))
    return cam


def _track_points(tracks: FeatureTracks, obs_cam: np.ndarray, w2c: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``[T,3]`` per-track median of its observations lifted to the world (NaN without depth).

    ``obs_cam`` holds camera points in predicted-depth units; view v's pose is
    ``X_cam = scales[v] * (R_v X + t_v)``.
    """
    cam = obs_cam / scales[tracks.view, None]
    world = np.einsum("mji,mj->mi", w2c[tracks.view, :3, :3], cam - w2c[tracks.view, :3, 3])
    order = np.argsort(tracks.track, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(tracks.track, minlength=tracks.num_tracks))]
    xyz = np.full((tracks.num_tracks, 3), np.nan)
    for index in range(tracks.num_tracks):
        rows = world[order[bounds[index]:bounds[index + 1]]]
        rows = rows[np.isfinite(rows).all(1)]
        if len(rows):
            xyz[index] = np.median(rows, axis=0)
    return xyz


def _network_error(pred: Prediction, tracks: FeatureTracks, w2c: np.ndarray, k_original: np.ndarray) -> float:
    """Mean reprojection error of the tracks lifted with the network's own depth and cameras."""
    xyz = _track_points(tracks, _lift_observations(pred, tracks), w2c, np.ones(pred.num_views))
    return mean_track_error(reprojection_errors(xyz, tracks, w2c, k_original), tracks)


def _shares_camera(pred: Prediction, views: np.ndarray, options: RefineOptions) -> bool:
    """One camera for all views: asked for, or (auto) when every photo has the same size."""
    sizes = {tuple(int(x) for x in pred.original_sizes[v]) for v in views}
    return options.shared_intrinsics == "yes" or (options.shared_intrinsics == "auto" and len(sizes) == 1)


def _adjust(pred: Prediction, tracks: FeatureTracks, start_w2c: np.ndarray, views: np.ndarray, shared: bool,
            options: RefineOptions, refine_focal: bool = True):
    """Bundle adjustment starting from ``pred``'s intrinsics; focal lengths are fixed when
    they run away (or when not ``refine_focal``)."""
    k = pred.intrinsics.astype(np.float64)
    square = np.all(np.abs(k[views, 0, 0] / k[views, 1, 1] - 1.0) < 0.02)
    model = "SIMPLE_PINHOLE" if square else "PINHOLE"
    cameras = colmap_cameras(pred, model)
    names = pred.names or [f"{v:04d}" for v in range(pred.num_views)]
    names = [f"{v:04d}_{name}" for v, name in enumerate(names)]  # unique, whatever the input names
    start_focal = np.array([params[0] for _, _, params in cameras])  # fx, or f, comes first
    for free_focal in (True, False) if refine_focal else (False,):
        result = bundle_adjust(names, cameras, model, start_w2c, tracks, views, shared_camera=shared,
                               max_error_px=options.max_error_px, refine_focal=free_focal)
        change = result.intrinsics[views, 0, 0] / start_focal[views]
        if np.all((change > 1 / options.max_focal_change) & (change < options.max_focal_change)):
            return result
        log.info("refined focal lengths changed by up to %.2fx; adjusting again with them fixed", change.max())
    return result


def _fit_depth(predicted: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Robust ``target ~ scale * predicted + shift``.

    The scale is the median ratio. A shift is added only when it explains the tracks
    clearly better (median relative residual down by 30 %): with noisy predicted depth a
    least-squares line is biased flat (regression dilution), so a shift must earn its place.
    """
    ok = np.isfinite(predicted) & np.isfinite(target) & (predicted > 0) & (target > 0)
    d, z = predicted[ok], target[ok]
    if len(d) < 3:
        return 1.0, 0.0
    scale = float(np.median(z / d))
    residual = np.abs(z - scale * d) / z
    inliers = residual < 0.2
    if inliers.sum() >= 20 and np.ptp(d[inliers]) > 0.1 * np.median(d[inliers]):
        a, b = np.polyfit(d[inliers], z[inliers], 1)
        if a > 0 and a * d.min() + b > 0 and np.median(np.abs(z - a * d - b) / z) < 0.7 * np.median(residual):
            return float(a), float(b)
    return scale, 0.0


def _refined_prediction(pred: Prediction, adjusted, start: InitialPoses, reached: np.ndarray,
                        before: float) -> Prediction:
    num_views = pred.num_views
    tracks = adjusted.tracks
    observed = np.bincount(tracks.view, minlength=num_views)
    refined = reached & (observed >= 6)
    root = start.start.index("root")
    if not refined[root]:
        raise _Failure("the reference view lost its tracks in bundle adjustment")
    network_w2c = pred.extrinsics_w2c.astype(np.float64)
    # Put the adjusted scene in the network's frame: the root camera where the network
    # put it, and units in which the root view's depth keeps its predicted scale.
    obs_cam = _lift_observations(pred, tracks)
    root_rows = tracks.view == root
    root_z = (tracks.xyz[tracks.track[root_rows]] @ adjusted.extrinsics_w2c[root, 2, :3]) + adjusted.extrinsics_w2c[root, 2, 3]
    sigma = float(np.nanmedian(obs_cam[root_rows, 2] / root_z))
    r_root, t_root = adjusted.extrinsics_w2c[root, :3, :3], adjusted.extrinsics_w2c[root, :3, 3]
    r_net, t_net = network_w2c[root, :3, :3], network_w2c[root, :3, 3]
    to_network = Sim3(sigma, r_net.T @ r_root, r_net.T @ (sigma * t_root - t_net))
    w2c = network_w2c.copy()
    w2c[refined] = to_network.apply_to_w2c(adjusted.extrinsics_w2c[refined])
    tracks = subset_tracks(replace(tracks, xyz=to_network.apply(tracks.xyz)), refined[tracks.view])

    intrinsics = pred.intrinsics.astype(np.float64).copy()
    from_original = np.linalg.inv(pred.to_original.astype(np.float64))
    intrinsics[refined] = np.einsum("sij,sjk->sik", from_original[refined], adjusted.intrinsics[refined])
    depth = pred.depth.copy()
    depth_scale, depth_shift = np.ones(num_views, np.float32), np.zeros(num_views, np.float32)
    obs_cam = _lift_observations(pred, tracks)
    track_cam = np.einsum("mij,mj->mi", w2c[tracks.view, :3, :3], tracks.xyz[tracks.track]) + w2c[tracks.view, :3, 3]
    for view in np.flatnonzero(refined):
        rows = tracks.view == view
        depth_scale[view], depth_shift[view] = _fit_depth(obs_cam[rows, 2], track_cam[rows, 2])
        depth[view] = depth_scale[view] * pred.depth[view] + depth_shift[view]
    out = replace(pred, extrinsics_w2c=w2c.astype(np.float32), intrinsics=intrinsics.astype(np.float32), depth=depth)
    out = replace(out, points=out.points_from_depth(), points_conf=out.depth_conf.copy())

    # The error reported is the one of the arrays as stored (float32 cameras), as a COLMAP
    # export of this prediction will measure it.
    k_original = np.einsum("sij,sjk->sik", out.to_original.astype(np.float64), out.intrinsics.astype(np.float64))
    after = mean_track_error(reprojection_errors(tracks.xyz, tracks, out.extrinsics_w2c, k_original), tracks)
    observed = np.bincount(tracks.view, minlength=num_views)
    status, reason = [], []
    for view in range(num_views):
        if refined[view]:
            status.append("refined")
            reason.append(f"{observed[view]} observations; started from the "
                          + ("network's pose" if start.start[view] in ("network", "root") else "matches (the network's pose disagreed)"))
        else:
            status.append("kept")
            reason.append("camera not finite" if not pred.valid_cameras()[view] else
                          "too few verified matches with the other views" if not reached[view] else
                          "too few observations survived bundle adjustment")
    summary = (f"{int(refined.sum())}/{num_views} views refined, {tracks.num_tracks} tracks, "
               f"reprojection {before:.2f} -> {after:.2f} px")
    refinement = Refinement("ba", "refined", summary, status, reason,
                            [start.start[v] if refined[v] else "" for v in range(num_views)],
                            before, after, depth_scale, depth_shift, tracks=tracks)
    return replace(out, refinement=refinement)
