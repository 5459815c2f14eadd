"""Closed-form starting point for global alignment of pairwise point maps.

Written from the DUSt3R paper's description (maximum spanning tree over the pair
graph, Procrustes alignment along the tree, focal length from a point map), not
from its code. Everything here is NumPy float64 on the CPU.

A point map ``X`` of view ``v`` in its own camera frame fixes the focal length:
pixel centres ``(u + 0.5, v + 0.5)`` satisfy ``u - cx = f x / z`` and
``v - cy = f y / z`` with the principal point at the image centre, which is solved
robustly (Weiszfeld, i.e. iteratively reweighted least squares on the Euclidean
residual, see ``estimate_focal``). Its pose is the similarity taking that point map onto the view's
points in the world, and its depth is the point map's ``z`` times that scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.spatial.transform import Rotation

from recon3d.errors import InputError
from recon3d.geometry.align import Sim3, umeyama
from recon3d.geometry.cameras import pixel_grid, unproject_depth

__all__ = [
    "InitialSolution",
    "calibrate_dlt",
    "estimate_focal",
    "initialise_mst",
    "pinhole_intrinsics",
    "log_weights",
    "pair_scores",
]


@dataclass
class InitialSolution:
    """Cameras, depths and edge similarities in a common world frame (float64).

    Attributes:
        cam2world: ``[S,4,4]`` rigid camera-to-world transforms.
        focals: ``[S]`` focal lengths in pixels (``fx = fy``).
        depths: ``[S,H,W]`` positive z-depths.
        edge_scale: ``[P]`` similarity scale of each pair (pair frame -> world); their
            product is 1.
        edge_rotation: ``[P,3,3]``.
        edge_translation: ``[P,3]``.
    """

    cam2world: np.ndarray
    focals: np.ndarray
    depths: np.ndarray
    edge_scale: np.ndarray
    edge_rotation: np.ndarray
    edge_translation: np.ndarray


def log_weights(conf: np.ndarray) -> np.ndarray:
    """Per-pixel weights ``log(conf)`` (0 for conf <= 1 or non-finite), same shape as ``conf``."""
    conf = np.nan_to_num(np.asarray(conf, dtype=np.float64), nan=1.0, posinf=1.0, neginf=1.0)
    return np.log(np.maximum(conf, 1.0))


def pair_scores(conf_i: np.ndarray, conf_j: np.ndarray) -> np.ndarray:
    """``[P]`` confidence of each pair: mean ``conf_i`` times mean ``conf_j`` over ``[P,H,W]``."""
    return conf_i.reshape(len(conf_i), -1).mean(1) * conf_j.reshape(len(conf_j), -1).mean(1)


def _usable(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[N]`` mask of finite points with positive weight (falls back to all finite points)."""
    finite = np.isfinite(points).all(-1)
    good = finite & (weights > 0)
    return good if good.sum() >= 3 else finite


def _fit(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> Sim3:
    """Weighted Umeyama similarity ``target ~ s R source + t`` on ``[...,3]`` maps."""
    src, dst, w = source.reshape(-1, 3), target.reshape(-1, 3), weights.reshape(-1)
    keep = _usable(src, w) & np.isfinite(dst).all(-1)
    w = w[keep] if (w[keep] > 0).any() else np.ones(int(keep.sum()))
    return umeyama(src[keep], dst[keep], weights=w)


def estimate_focal(points: np.ndarray, weights: np.ndarray, iterations: int = 10) -> float:
    """Focal length (pixels) of a point map in its own camera frame, principal point at the centre.

    Fits ``(x/z, y/z) = (u - cx, v - cy) / f``, i.e. the point map's ray directions as a
    function of the exact pixel coordinates, so that noise in the points does not bias
    ``f`` low (as regressing pixels on noisy rays would). The Euclidean residual is
    minimised over ``1/f`` by Weiszfeld iterations from the weighted least-squares
    solution.

    Args:
        points: ``[H,W,3]`` camera-frame points of the view's pixels.
        weights: ``[H,W]`` non-negative weights.
        iterations: reweighting steps.

    Returns:
        The focal length; the image diagonal when no point lies in front of the camera.
    """
    height, width = points.shape[:2]
    fallback = float(np.hypot(width, height))
    centred = (pixel_grid(height, width) - np.array([width / 2, height / 2])).reshape(-1, 2)
    pts = points.reshape(-1, 3)
    w = weights.reshape(-1).astype(np.float64)
    z = pts[:, 2]
    ok = np.isfinite(pts).all(-1) & (z > 1e-12 * np.nanmax(np.abs(z), initial=1.0))
    if ok.sum() < 3:
        return fallback
    w = np.where(ok & (w > 0), w, 0.0) if (w[ok] > 0).any() else ok.astype(np.float64)
    ray = np.zeros_like(centred)
    ray[ok] = pts[ok, :2] / z[ok, None]
    dot, sq = (ray * centred).sum(-1), (centred**2).sum(-1)
    inverse = float((w * dot).sum() / max((w * sq).sum(), 1e-300))
    for _ in range(iterations):
        if inverse <= 0:
            break
        resid = np.linalg.norm(ray - inverse * centred, axis=-1)
        reweight = w / np.maximum(resid, 1e-8 * inverse * max(width, height))
        inverse = float((reweight * dot).sum() / max((reweight * sq).sum(), 1e-300))
    return 1.0 / inverse if inverse > 0 and np.isfinite(inverse) else fallback


def _linear_camera(pts: np.ndarray, pix: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Hartley-normalised DLT of the 3x4 projection, split by RQ into ``(focal, w2c [4,4])``."""
    mean3, scale3 = pts.mean(0), np.sqrt(3) / max(np.linalg.norm(pts - pts.mean(0), axis=1).mean(), 1e-300)
    mean2, scale2 = pix.mean(0), np.sqrt(2) / max(np.linalg.norm(pix - pix.mean(0), axis=1).mean(), 1e-300)
    t3 = np.diag([scale3] * 3 + [1.0])
    t3[:3, 3] = -scale3 * mean3
    t2 = np.diag([scale2, scale2, 1.0])
    t2[:2, 2] = -scale2 * mean2
    hom = np.c_[(pts - mean3) * scale3, np.ones(len(pts))]
    uv = (pix - mean2) * scale2
    rows = np.zeros((2 * len(pts), 12))
    rows[0::2, 0:4], rows[0::2, 8:12] = hom, -uv[:, :1] * hom
    rows[1::2, 4:8], rows[1::2, 8:12] = hom, -uv[:, 1:] * hom
    rows *= np.repeat(np.sqrt(w), 2)[:, None]
    proj = np.linalg.inv(t2) @ np.linalg.svd(rows, full_matrices=False)[2][-1].reshape(3, 4) @ t3
    if np.linalg.det(proj[:, :3]) < 0:
        proj = -proj
    k, rot = scipy.linalg.rq(proj[:, :3])
    signs = np.sign(np.diag(k))
    k, rot = k * signs, signs[:, None] * rot  # K S, S R with S = diag(signs), S S = I
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = np.linalg.solve(k, proj[:, 3])
    return float(0.5 * (k[0, 0] + k[1, 1]) / k[2, 2]), w2c


def calibrate_dlt(
    points: np.ndarray, pixels: np.ndarray, weights: np.ndarray, centre: tuple[float, float]
) -> tuple[float, np.ndarray]:
    """Focal length and world-to-camera pose from 3D-2D correspondences.

    Used for a view that is never the first view of a pair, so that no point map in its
    own frame exists: a linear fit of the projection (DLT) starts a robust reprojection
    refinement of rotation, translation and focal (principal point fixed at ``centre``),
    which is PnP with an unknown focal length.

    Args:
        points: ``[N,3]`` world points (N >= 6, not coplanar).
        pixels: ``[N,2]`` their pixel coordinates.
        weights: ``[N]`` non-negative weights.
        centre: principal point ``(cx, cy)`` in pixels.

    Returns:
        ``(focal, w2c [4,4])``.
    """
    keep = _usable(points, weights)
    pts, pix = points[keep], pixels[keep]
    w = np.where(weights[keep] > 0, weights[keep], 0.0) if (weights[keep] > 0).any() else np.ones(len(pts))
    if len(pts) > 4000:  # plenty for 7 unknowns; keeps the fits cheap
        pick = np.random.default_rng(0).choice(len(pts), 4000, replace=False)
        pts, pix, w = pts[pick], pix[pick], w[pick]
    focal, w2c = _linear_camera(pts, pix, w)
    sqrt_w = np.sqrt(w / w.mean())

    def residual(x: np.ndarray) -> np.ndarray:
        cam = pts @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[3:6]
        z = np.where(cam[:, 2] > 1e-9, cam[:, 2], 1e-9)
        proj = np.exp(x[6]) * cam[:, :2] / z[:, None] + np.asarray(centre)
        return ((proj - pix) * sqrt_w[:, None]).ravel()

    start = np.r_[Rotation.from_matrix(w2c[:3, :3]).as_rotvec(), w2c[:3, 3], np.log(max(focal, 1e-9))]
    fit = scipy.optimize.least_squares(residual, start, loss="soft_l1", f_scale=1.0, x_scale="jac", max_nfev=200)
    if fit.cost <= 0.5 * float((residual(start) ** 2).sum()):
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = Rotation.from_rotvec(fit.x[:3]).as_matrix(), fit.x[3:6]
        focal = float(np.exp(fit.x[6]))
    return focal, w2c


def _spanning_order(pairs: np.ndarray, scores: np.ndarray, num_views: int) -> tuple[int, list[tuple[int, int]]]:
    """Root view and the tree's pairs (index, newly reached view) in Prim order, maximising score.

    An undirected edge scores the sum of its directed pairs' scores; the pair used to
    cross it is its best-scoring direction.
    """
    best: dict[tuple[int, int], int] = {}
    total: dict[tuple[int, int], float] = {}
    for p, (i, j) in enumerate(pairs.tolist()):
        key = (min(i, j), max(i, j))
        total[key] = total.get(key, 0.0) + float(scores[p])
        if key not in best or scores[p] > scores[best[key]]:
            best[key] = p
    root = int(pairs[int(np.argmax(scores)), 0])
    known, order = {root}, []
    while len(known) < num_views:
        crossing = [key for key in total if (key[0] in known) != (key[1] in known)]
        if not crossing:
            missing = sorted(set(range(num_views)) - known)
            raise InputError(f"the image pairs leave view(s) {missing} unconnected from view {root}")
        key = max(crossing, key=lambda k: total[k])
        new = key[1] if key[0] in known else key[0]
        order.append((best[key], new))
        known.add(new)
    return root, order


def initialise_mst(
    pairs: np.ndarray,
    pts_i: np.ndarray,
    conf_i: np.ndarray,
    pts_j: np.ndarray,
    conf_j: np.ndarray,
    num_views: int,
) -> InitialSolution:
    """Cameras, depths and edge similarities by walking a maximum spanning tree of the pairs.

    The root's own point map defines the world; each view reached over a tree pair gets
    the world points that the pair predicts for it, once the pair's other view has been
    fitted onto its world points (weighted Umeyama). A view's camera then follows from
    its own point map (the best pair where it comes first) or, lacking one, from a DLT
    refined by PnP with unknown focal (``calibrate_dlt``).
    The world is finally scaled so that the edge scales multiply to 1.

    Args:
        pairs: ``[P,2]`` int view indices.
        pts_i, pts_j: ``[P,H,W,3]`` point maps in each pair's first view's frame.
        conf_i, conf_j: ``[P,H,W]`` confidences (>= 1).
        num_views: ``S``.

    Returns:
        The ``InitialSolution``.
    """
    height, width = pts_i.shape[1:3]
    w_i, w_j = log_weights(conf_i), log_weights(conf_j)
    scores = pair_scores(conf_i, conf_j)
    root, order = _spanning_order(pairs, scores, num_views)

    own: dict[int, int] = {}  # view -> best pair with the view first
    for p in np.argsort(-scores, kind="stable"):
        own.setdefault(int(pairs[p, 0]), int(p))
    world = {root: pts_i[own[root]]}
    world_w = {root: w_i[own[root]]}
    for p, new in order:
        i, j = int(pairs[p, 0]), int(pairs[p, 1])
        if new == j:
            sim = _fit(pts_i[p], world[i], w_i[p] * world_w[i])
            world[j], world_w[j] = sim.apply(pts_j[p]), w_j[p]
        else:
            sim = _fit(pts_j[p], world[j], w_j[p] * world_w[j])
            world[i], world_w[i] = sim.apply(pts_i[p]), w_i[p]

    cam2world = np.tile(np.eye(4), (num_views, 1, 1))
    focals, depths = np.zeros(num_views), np.zeros((num_views, height, width))
    pixels = pixel_grid(height, width).reshape(-1, 2)
    for v in range(num_views):
        if v in own:
            p = own[v]
            focals[v] = estimate_focal(pts_i[p], w_i[p])
            sim = _fit(pts_i[p], world[v], w_i[p] * world_w[v])
            cam2world[v, :3, :3], cam2world[v, :3, 3] = sim.rotation, sim.translation
            z = sim.scale * pts_i[p][..., 2]
        else:
            focals[v], w2c = calibrate_dlt(
                world[v].reshape(-1, 3), pixels, world_w[v].reshape(-1), (width / 2, height / 2)
            )
            cam2world[v] = np.linalg.inv(w2c)
            z = (world[v] @ w2c[:3, :3].T + w2c[:3, 3])[..., 2]
        depths[v] = _positive(z)

    points = _unproject(depths, cam2world, focals)
    scale, rot, trans = np.zeros(len(pairs)), np.zeros((len(pairs), 3, 3)), np.zeros((len(pairs), 3))
    for p, (i, j) in enumerate(pairs.tolist()):
        sim = _fit(
            np.concatenate([pts_i[p], pts_j[p]]), np.concatenate([points[i], points[j]]),
            np.concatenate([w_i[p], w_j[p]]),
        )
        scale[p], rot[p], trans[p] = sim.scale, sim.rotation, sim.translation
    gauge = np.exp(-np.log(np.maximum(scale, 1e-300)).mean())
    cam2world[:, :3, 3] *= gauge
    return InitialSolution(cam2world, focals, depths * gauge, scale * gauge, rot, trans * gauge)


def _positive(z: np.ndarray) -> np.ndarray:
    """Depths with non-finite or non-positive values replaced by a small positive depth."""
    good = np.isfinite(z) & (z > 0)
    floor = 1e-3 * float(np.median(z[good])) if good.any() else 1.0
    return np.where(good, np.maximum(z, floor), floor)


def pinhole_intrinsics(focals: np.ndarray, principal_points: np.ndarray) -> np.ndarray:
    """``[S,3,3]`` float64 K of square pixels from ``focals [S]`` and ``principal_points [S,2]`` (or ``[2]``)."""
    intrinsics = np.tile(np.eye(3), (len(focals), 1, 1))
    intrinsics[:, 0, 0] = intrinsics[:, 1, 1] = focals
    intrinsics[:, :2, 2] = principal_points
    return intrinsics


def _unproject(depths: np.ndarray, cam2world: np.ndarray, focals: np.ndarray) -> np.ndarray:
    """``[S,H,W,3]`` world points of ``[S,H,W]`` depths, principal point at the image centre."""
    height, width = depths.shape[1:]
    intrinsics = pinhole_intrinsics(focals, np.array([width / 2, height / 2]))
    return unproject_depth(depths, np.linalg.inv(cam2world), intrinsics).astype(np.float64)
