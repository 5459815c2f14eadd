"""Starting cameras for bundle adjustment that do not trust the network blindly.

Matched keypoints are lifted to 3D with each view's predicted depth. Per verified pair a
RANSAC similarity (3D-3D, with scale, since depth is only known per view up to scale)
gives the relative pose; a maximum spanning tree over the pairs' inlier counts chains
them from a root view. Along each tree edge the network's own relative pose is used
when it agrees with the matches, and replaced by the matches' otherwise.

A view's pose is ``(R, t, s)``: ``X_cam = s * (R @ X_world + t)`` in that view's
predicted-depth units, so ``depth_world = depth_predicted / s``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

from recon3d.eval.metrics import rotation_angle_deg
from recon3d.geometry.align import Sim3, umeyama
from recon3d.refine.features import ransac_options


@dataclass
class PairMotion:
    """``X_j = sim.scale * (sim.rotation @ X_i) + sim.translation`` for camera points of views i, j."""

    sim: Sim3
    inliers: int


@dataclass
class InitialPoses:
    """rotations ``[S,3,3]``, translations ``[S,3]``, depth scales ``[S]`` (NaN: not reached),
    start ``S`` strings (``"network"``, ``"matches"``, ``"root"`` or ``""``)."""

    rotations: np.ndarray
    translations: np.ndarray
    scales: np.ndarray
    start: list[str]

    @property
    def reached(self) -> np.ndarray:
        return np.isfinite(self.scales)


def lift_keypoints(xy_original: np.ndarray, to_original: np.ndarray, intrinsics: np.ndarray,
                   depth: np.ndarray) -> np.ndarray:
    """Camera-frame 3D points of keypoints from one view's depth map.

    Args:
        xy_original: ``[N,2]`` keypoints in original-image pixels.
        to_original: ``[3,3]`` model pixel → original pixel; intrinsics ``[3,3]`` model pixels.
        depth: ``[H,W]`` predicted depth, sampled at the model pixel holding each keypoint.

    Returns:
        ``[N,3]`` float64 points, NaN where the keypoint falls outside the model image or
        its depth is not finite and positive.
    """
    height, width = depth.shape
    homogeneous = np.c_[xy_original, np.ones(len(xy_original))]
    model_xy = homogeneous @ np.linalg.inv(np.asarray(to_original, dtype=np.float64)).T
    u, v = model_xy[:, 0] / model_xy[:, 2], model_xy[:, 1] / model_xy[:, 2]
    col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    z = np.full(len(u), np.nan)
    z[inside] = depth[row[inside], col[inside]]
    z[~(np.isfinite(z) & (z > 0))] = np.nan
    k = np.asarray(intrinsics, dtype=np.float64)
    return np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=1)


def _batched_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Umeyama on ``[K,n,3]`` batches: scales ``[K]``, rotations ``[K,3,3]``, translations ``[K,3]``."""
    mean_s, mean_d = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    sc, dc = src - mean_s, dst - mean_d
    cov = np.einsum("kni,knj->kij", dc, sc) / src.shape[1]
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones((len(src), 3))
    sign[np.linalg.det(u) * np.linalg.det(vt) < 0, 2] = -1.0
    rotation = (u * sign[:, None, :]) @ vt
    var = (sc**2).sum((1, 2)) / src.shape[1]
    scale = (sigma * sign).sum(1) / np.maximum(var, 1e-300)
    translation = mean_d[:, 0] - scale[:, None] * np.einsum("kij,kj->ki", rotation, mean_s[:, 0])
    return scale, rotation, translation


_HYPOTHESES_PER_ROUND = 50


def ransac_similarity(src: np.ndarray, dst: np.ndarray, threshold: float = 0.15, iterations: int = 300,
                      min_inliers: int = 12, seed: int = 0) -> tuple[PairMotion | None, np.ndarray]:
    """Robust similarity ``dst ~ s R src + t`` between two views' camera-frame points.

    A correspondence is an inlier when its residual is below ``threshold`` times its
    distance to the target camera (depth errors grow with distance).

    Returns:
        The motion refitted on its inliers (None when fewer than ``min_inliers``) and the
        ``[N]`` inlier mask.
    """
    usable = np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    index = np.flatnonzero(usable)
    mask = np.zeros(len(src), dtype=bool)
    if len(index) < max(3, min_inliers):
        return None, mask
    s, d = src[index], dst[index]
    tolerance = threshold * np.linalg.norm(d, axis=1)
    rng = np.random.default_rng(seed)
    best_count, sim = -1, None
    for start in range(0, iterations, _HYPOTHESES_PER_ROUND):
        # Three distinct correspondences per hypothesis: those with the three smallest
        # random keys, drawn a round at a time (the rounds not run are never drawn).
        keys = rng.random((min(_HYPOTHESES_PER_ROUND, iterations - start), len(index)))
        batch = np.argpartition(keys, 2, axis=1)[:, :3]
        scale, rotation, translation = _batched_similarity(s[batch], d[batch])
        predicted = scale[:, None, None] * (s @ rotation.transpose(0, 2, 1)) + translation[:, None]
        counts = (np.linalg.norm(predicted - d[None], axis=2) < tolerance[None]).sum(1)
        counts[~(np.isfinite(scale) & (scale > 0))] = -1
        best = int(np.argmax(counts))
        if counts[best] > best_count:
            best_count, sim = int(counts[best]), Sim3(float(scale[best]), rotation[best], translation[best])
        # Stop once a hypothesis this good would have been drawn with 99.9 % confidence.
        inlier_ratio = best_count / len(index)
        if inlier_ratio > 0 and (start + len(batch)) * inlier_ratio**3 >= -np.log(1e-3):
            break
    if sim is None:  # every sample degenerate
        return None, mask
    inliers = np.zeros(len(index), dtype=bool)
    for _ in range(3):  # refit on the inliers, then re-collect them
        inliers = np.linalg.norm(sim.apply(s) - d, axis=1) < tolerance
        if inliers.sum() < 3:
            return None, mask
        sim = umeyama(s[inliers], d[inliers])
    inliers = np.linalg.norm(sim.apply(s) - d, axis=1) < tolerance
    mask[index[inliers]] = True
    if inliers.sum() < min_inliers or not sim.scale > 0:
        return None, mask
    return PairMotion(sim, int(inliers.sum())), mask


def consistent_motions(candidates: Mapping[tuple[int, int], list[PairMotion]],
                       max_deg: float = 15.0) -> dict[tuple[int, int], PairMotion]:
    """One motion per pair, checked against the triangles it closes, weighted by support.

    For pairs (i,j), (j,k), (i,k) the rotations must compose: ``R_jk R_ij ~ R_ik``. Each
    pair may offer several candidate motions (from the essential matrix, from the depth);
    the one that the most triangles confirm wins (ties: the first), the other pairs of
    each triangle taken at their first candidate. Wrong pairs (repeated patterns matched
    to each other) rarely close a triangle, while true ones do: a pair that two or more
    triangles contradict and none confirms is removed (one bad triangle does not tell
    which of its pairs is wrong). The others get ``inliers * (1 + confirming triangles)``
    as their weight, so the spanning tree prefers pairs that other pairs confirm.
    """
    rotation = {}
    for (i, j), options in candidates.items():
        rotation[(i, j)] = options[0].sim.rotation
        rotation[(j, i)] = options[0].sim.rotation.T
    neighbours: dict[int, set[int]] = {}
    for i, j in candidates:
        neighbours.setdefault(i, set()).add(j)
        neighbours.setdefault(j, set()).add(i)
    kept = {}
    for (i, j), options in candidates.items():
        best, best_agree, best_disagree = options[0], -1, 0
        for motion in options:
            agree = disagree = 0
            for k in neighbours[i] & neighbours[j]:
                error = rotation_angle_deg(rotation[(j, k)] @ motion.sim.rotation, rotation[(i, k)])
                agree, disagree = agree + (error <= max_deg), disagree + (error > max_deg)
            if agree > best_agree:
                best, best_agree, best_disagree = motion, agree, disagree
        if best_agree or best_disagree < 2:
            kept[(i, j)] = PairMotion(best.sim, best.inliers * (1 + best_agree))
    return kept


def essential_motion(xy_i: np.ndarray, xy_j: np.ndarray, k_i: np.ndarray, k_j: np.ndarray, lifted_i: np.ndarray,
                     lifted_j: np.ndarray, max_error_px: float = 4.0, min_inliers: int = 15,
                     seed: int = 0, max_trials: int | None = None) -> PairMotion | None:
    """Relative motion from the essential matrix, with its scale from the predicted depth.

    The rotation and the translation's direction come from the keypoints alone (through
    the predicted intrinsics), so they do not suffer from depth errors; the depth only
    sets the two scalars of ``X_j = a R X_i + b t_unit`` (least squares on the inliers).

    Args:
        xy_i, xy_j: ``[N,2]`` matched keypoints in original pixels.
        k_i, k_j: ``[3,3]`` predicted intrinsics in original pixels.
        lifted_i, lifted_j: ``[N,3]`` the keypoints' camera points from predicted depth.
        max_trials: RANSAC's hypothesis cap (None: COLMAP's 100,000, which matches with a
            low inlier ratio can reach; learned matches cap it).

    Returns:
        The motion (inliers = essential-matrix inliers), or None when the essential matrix
        has too few inliers or the depth gives no positive scale.
    """
    import pycolmap

    def camera(k: np.ndarray):
        return pycolmap.Camera(model="PINHOLE", width=int(2 * k[0, 2]), height=int(2 * k[1, 2]),
                               params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2]])

    def estimate(min_trials: int):
        options = ransac_options(max_error_px, seed, min_trials, max_trials)
        return pycolmap.estimate_essential_matrix(xy_i, xy_j, camera(k_i), camera(k_j), options)

    # The matches are verified already: where nearly all fit one essential matrix, 100
    # hypotheses find it (COLMAP's floor of 1,000 made this 8x slower for the same
    # motion). Anything less (repeated patterns, planes) gets the full search: with 100,
    # such pairs sometimes ended on a wrong motion.
    result = estimate(100)
    if result is None or result["num_inliers"] < 0.9 * len(xy_i):
        result = estimate(1000)
    if result is None or result["num_inliers"] < min_inliers:
        return None
    rotation = np.asarray(result["cam2_from_cam1"].rotation.matrix(), dtype=np.float64)
    direction = np.asarray(result["cam2_from_cam1"].translation, dtype=np.float64)
    direction /= max(np.linalg.norm(direction), 1e-300)
    inliers = np.asarray(result["inlier_mask"], dtype=bool)
    usable = inliers & np.isfinite(lifted_i).all(1) & np.isfinite(lifted_j).all(1)
    if usable.sum() < 3:
        return None
    rotated = lifted_i[usable] @ rotation.T
    target = lifted_j[usable]
    # Columns: a multiplies R X_i, b multiplies the unit direction (the same for every row).
    design = np.stack([rotated.reshape(-1), np.tile(direction, len(rotated))], axis=1)
    weights = 1.0 / np.repeat(np.linalg.norm(target, axis=1), 3)  # relative residuals
    for _ in range(3):  # reweighted: down-weight rows whose residual is far above the median
        (a, b), *_ = np.linalg.lstsq(design * weights[:, None], target.reshape(-1) * weights, rcond=None)
        residual = np.abs(design @ (a, b) - target.reshape(-1)) * weights
        weights = weights / np.maximum(1.0, residual / (3 * np.median(residual) + 1e-12))
    if not a > 0:
        return None
    return PairMotion(Sim3(float(a), rotation, max(float(b), 0.0) * direction), int(result["num_inliers"]))


def _network_motion(extrinsics_w2c: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    rot = extrinsics_w2c[j, :3, :3] @ extrinsics_w2c[i, :3, :3].T
    return rot, extrinsics_w2c[j, :3, 3] - rot @ extrinsics_w2c[i, :3, 3]


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 180.0
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def chain_poses(num_views: int, motions: Mapping[tuple[int, int], PairMotion], network_w2c: np.ndarray,
                agree_deg: float = 5.0) -> InitialPoses:
    """Poses of every view connected to the root through a maximum spanning tree.

    The root is the view with the most inliers over its pairs; it keeps its network pose
    and depth scale 1. Views outside the root's component get
    NaN scales.

    Args:
        motions: ``(i, j), i < j`` → motion from view i's camera points to view j's.
        network_w2c: ``[S,4,4]`` predicted world-to-camera.
        agree_deg: the network's relative rotation is used along an edge when it is within
            this angle of the matches' (and its translation direction within 3x this).
    """
    network_w2c = np.asarray(network_w2c, dtype=np.float64)
    weights = np.zeros((num_views, num_views))
    for (i, j), motion in motions.items():
        weights[i, j] = weights[j, i] = motion.inliers
    # The best-connected view anchors the tree: errors then spread over the fewest edges.
    root = int(np.argmax(weights.sum(1)))
    # Maximum spanning tree = minimum spanning tree of the inverted weights.
    inverted = np.where(weights > 0, 1.0 / np.maximum(weights, 1), 0.0)
    tree = minimum_spanning_tree(csr_matrix(inverted))
    tree = tree + tree.T
    order, predecessors = breadth_first_order(tree, root, directed=False)

    rotations = np.repeat(np.eye(3)[None], num_views, 0)
    translations = np.zeros((num_views, 3))
    scales = np.full(num_views, np.nan)
    start = [""] * num_views
    rotations[root], translations[root], scales[root] = network_w2c[root, :3, :3], network_w2c[root, :3, 3], 1.0
    start[root] = "root"
    for child in order[1:]:
        parent = int(predecessors[child])
        motion = motions[(parent, child)] if (parent, child) in motions else _inverse(motions[(child, parent)])
        rel_rot, rel_scale = motion.sim.rotation, motion.sim.scale
        rel_trans = motion.sim.translation / rel_scale  # X_child = s (R X_parent + t)
        net_rot, net_trans = _network_motion(network_w2c, parent, child)
        agrees = (rotation_angle_deg(net_rot, rel_rot) <= agree_deg
                  and _angle_deg(net_trans, rel_trans) <= 3 * agree_deg)
        if agrees:
            rel_rot, rel_trans = net_rot, net_trans * np.linalg.norm(rel_trans) / max(np.linalg.norm(net_trans), 1e-300)
        start[child] = "network" if agrees else "matches"
        scales[child] = rel_scale * scales[parent]
        rotations[child] = rel_rot @ rotations[parent]
        translations[child] = rel_rot @ translations[parent] + rel_trans / scales[parent]
    return InitialPoses(rotations, translations, scales, start)


def _inverse(motion: PairMotion) -> PairMotion:
    sim = motion.sim
    rotation = sim.rotation.T
    return PairMotion(Sim3(1.0 / sim.scale, rotation, -rotation @ sim.translation / sim.scale), motion.inliers)
