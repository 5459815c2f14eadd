"""COLMAP sparse models (cameras, images, points3D) from a prediction, through pycolmap.

Cameras are rescaled to the original image size (via ``Prediction.to_original``), one
camera per image, PINHOLE or SIMPLE_PINHOLE. Image poses are world→camera (pycolmap's
``cam_from_world``; qvec w,x,y,z in the text files). Points are a seeded subsample of the
kept pixels; each one's track holds the pixel that predicted it and, in every other
view, the pixel it projects to when that pixel's own depth agrees within a tolerance (it
sees the same surface). Observations sit at pixel centres, as a feature detector's would,
so the model's mean reprojection error measures how well views agree.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recon3d.geometry.pixels import PixelGeometry, pixel_geometry
from recon3d.io.atomic import atomic_directory
from recon3d.types import FeatureTracks, Prediction

__all__ = ["CAMERA_MODELS", "colmap_cameras", "point_tracks", "build_reconstruction", "reconstruction_from_tracks",
           "write_colmap"]

log = logging.getLogger(__name__)

CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")
_WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                      ".webp": "WEBP"}


def colmap_cameras(pred: Prediction, model: str = "PINHOLE") -> list[tuple[int, int, list[float]]]:
    """Per view ``(width, height, params)`` of the camera at the original image size.

    ``params`` is ``[fx, fy, cx, cy]`` (PINHOLE) or ``[f, cx, cy]`` with f the mean of
    fx and fy (SIMPLE_PINHOLE).
    """
    if model not in CAMERA_MODELS:
        raise ValueError(f"camera model must be one of {CAMERA_MODELS}, got {model!r}")
    cameras = []
    for view in range(pred.num_views):
        # einsum, not @: 3x3 BLAS matmuls raise spurious 'invalid value' warnings on some CPUs.
        k = np.einsum("ij,jk->ik", pred.to_original[view].astype(np.float64), pred.intrinsics[view].astype(np.float64))
        height, width = (int(x) for x in pred.original_sizes[view])
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        params = [fx, fy, cx, cy] if model == "PINHOLE" else [(fx + fy) / 2, cx, cy]
        cameras.append((width, height, [float(p) for p in params]))
    return cameras


def point_tracks(
    points: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    extrinsics_w2c: np.ndarray,
    intrinsics: np.ndarray,
    chosen: np.ndarray,
    depth_tolerance: float = 0.01,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Observations of chosen pixels' points in every view that sees them.

    Args:
        points: ``[S,H,W,3]`` world points; ``depth`` ``[S,H,W]`` their camera z.
        valid: ``[S,H,W]`` pixels that may be observed.
        extrinsics_w2c, intrinsics: ``[S,4,4]``, ``[S,3,3]`` (model pixels).
        chosen: ``[N,3]`` (view, row, col) of the pixels that become 3D points.
        depth_tolerance: relative depth agreement for an observation in another view.

    Returns:
        ``xyz [N,3]`` and, per view, an ``[M_v,3]`` int array of (point index, row, col).
    """
    num_views, height, width = depth.shape
    xyz = points[chosen[:, 0], chosen[:, 1], chosen[:, 2]].astype(np.float64)
    observations = []
    for view in range(num_views):
        cam = xyz @ extrinsics_w2c[view, :3, :3].T.astype(np.float64) + extrinsics_w2c[view, :3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            pixel = cam @ intrinsics[view].T.astype(np.float64)
            u, v = pixel[:, 0] / pixel[:, 2], pixel[:, 1] / pixel[:, 2]
        inside = (cam[:, 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        index = np.nonzero(inside)[0]
        col, row = np.floor(u[index]).astype(np.int64), np.floor(v[index]).astype(np.int64)
        seen = valid[view, row, col] & (np.abs(depth[view, row, col] - cam[index, 2]) <= depth_tolerance * cam[index, 2])
        own = chosen[:, 0] == view
        # The predicting pixel always observes its own point, whatever the depth test says.
        rows = np.concatenate([np.stack([index[seen], row[seen], col[seen]], 1)[~own[index[seen]]],
                               np.stack([np.nonzero(own)[0], chosen[own, 1], chosen[own, 2]], 1)])
        observations.append(rows[np.argsort(rows[:, 0], kind="stable")])
    return xyz, observations


def reconstruction_from_tracks(
    names: Sequence[str],
    cameras: Sequence[tuple[int, int, list[float]]],
    camera_model: str,
    extrinsics_w2c: np.ndarray,
    tracks: FeatureTracks,
    views: Sequence[int] | None = None,
    shared_camera: bool = False,
):
    """A ``pycolmap.Reconstruction`` holding feature tracks (real 2D observations).

    Args:
        names: image name per view; cameras: per view ``(width, height, params)`` at the
            original size (`colmap_cameras`); camera_model: PINHOLE or SIMPLE_PINHOLE.
        extrinsics_w2c: ``[S,4,4]`` world-to-camera.
        tracks: points and their observations in original-image pixels.
        views: the views to include (default all); observations in other views are
            dropped, and so are tracks left with fewer than two observations.
        shared_camera: one camera (view ``views[0]``'s) for every image.

    Returns:
        ``(reconstruction, point_ids)``: image ids are view + 1; ``point_ids [T]`` is each
        track's point3D id, 0 for a dropped track.
    """
    import pycolmap

    views = list(range(len(names))) if views is None else [int(v) for v in views]
    included = np.isin(tracks.view, views)
    track_len = np.bincount(tracks.track[included], minlength=tracks.num_tracks)
    used = included & (track_len[tracks.track] >= 2)
    reconstruction = pycolmap.Reconstruction()
    point_tracks_ = [pycolmap.Track() for _ in range(tracks.num_tracks)]
    for view in views:
        width, height, params = cameras[view]
        camera_id = views[0] + 1 if shared_camera else view + 1
        if not reconstruction.exists_camera(camera_id):
            reconstruction.add_camera_with_trivial_rig(pycolmap.Camera(
                model=camera_model, width=width, height=height, params=params, camera_id=camera_id))
        mine = np.flatnonzero(used & (tracks.view == view))
        image = pycolmap.Image(name=names[view], keypoints=tracks.xy[mine].astype(np.float64), camera_id=camera_id,
                               image_id=view + 1)
        w2c = np.asarray(extrinsics_w2c[view], dtype=np.float64)
        reconstruction.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
        for point2d_index, track_index in enumerate(tracks.track[mine]):
            point_tracks_[track_index].add_element(view + 1, point2d_index)
    point_ids = np.zeros(tracks.num_tracks, dtype=np.int64)
    for index in np.flatnonzero(track_len >= 2):
        point_ids[index] = reconstruction.add_point3D(tracks.xyz[index].astype(np.float64), point_tracks_[index],
                                                      tracks.colors[index].astype(np.uint8))
    reconstruction.update_point_3d_errors()
    return reconstruction, point_ids


def build_reconstruction(
    pred: Prediction,
    keep: np.ndarray | None = None,
    *,
    camera_model: str = "PINHOLE",
    max_points: int = 100_000,
    point_source: str = "depth",
    depth_tolerance: float = 0.01,
    seed: int = 0,
    geometry: PixelGeometry | None = None,
):
    """A ``pycolmap.Reconstruction`` of the prediction (see the module docstring).

    When the prediction was refined (``recon3d.refine``), its feature tracks are the
    points3D, with their keypoints as observations; ``keep`` and ``max_points`` then do
    not apply. ``geometry`` is the prediction's per-pixel geometry when already computed
    (used when it comes from ``point_source``).
    """
    import pycolmap

    tracks = pred.refinement.tracks if pred.refinement is not None else None
    if tracks is not None:
        views = np.flatnonzero(pred.valid_cameras())
        return reconstruction_from_tracks(pred.names or [f"{v:04d}.png" for v in range(pred.num_views)],
                                          colmap_cameras(pred, camera_model), camera_model,
                                          pred.extrinsics_w2c, tracks, views)[0]

    geometry = pixel_geometry(pred, point_source, reuse=geometry)
    points, depth, valid = geometry.points, geometry.depth, geometry.usable
    if keep is not None:
        # Not in place: the geometry's mask is shared with the other exports.
        valid = valid & np.broadcast_to(np.asarray(keep, dtype=bool), valid.shape)
    candidates = np.argwhere(valid)
    if len(candidates) > max_points:
        rng = np.random.default_rng(seed)
        candidates = candidates[np.sort(rng.choice(len(candidates), max_points, replace=False))]
    if len(candidates) == 0:
        log.warning("no valid pixel for COLMAP points3D: the model has cameras and images only")
    xyz, observations = point_tracks(points, depth, valid, pred.extrinsics_w2c, pred.intrinsics, candidates,
                                     depth_tolerance)
    colors = pred.colors_u8()

    reconstruction = pycolmap.Reconstruction()
    tracks = [pycolmap.Track() for _ in range(len(xyz))]
    cameras_ok = pred.valid_cameras()
    if not cameras_ok.all():
        log.warning("COLMAP: leaving out views %s, whose cameras are not finite",
                    ", ".join(str(i) for i in np.nonzero(~cameras_ok)[0]))
    for view, (width, height, params) in enumerate(colmap_cameras(pred, camera_model)):
        if not cameras_ok[view]:
            continue
        image_id = view + 1
        camera = pycolmap.Camera(model=camera_model, width=width, height=height, params=params, camera_id=image_id)
        reconstruction.add_camera_with_trivial_rig(camera)
        obs = observations[view]
        centres = np.stack([obs[:, 2] + 0.5, obs[:, 1] + 0.5, np.ones(len(obs))], axis=1)
        keypoints = (centres @ pred.to_original[view].astype(np.float64).T)[:, :2]
        image = pycolmap.Image(name=pred.names[view] if pred.names else f"{view:04d}.png",
                               keypoints=keypoints, camera_id=image_id, image_id=image_id)
        w2c = pred.extrinsics_w2c[view].astype(np.float64)
        reconstruction.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
        for point2d_index, point_index in enumerate(obs[:, 0]):
            tracks[point_index].add_element(image_id, point2d_index)
    for point_index, (view, row, col) in enumerate(candidates):
        reconstruction.add_point3D(xyz[point_index], tracks[point_index], colors[view, row, col])
    reconstruction.update_point_3d_errors()
    return reconstruction


def _image_file_name(name: str) -> tuple[str, str]:
    suffix = Path(name).suffix.lower()
    return (name, _WRITABLE_SUFFIXES[suffix]) if suffix in _WRITABLE_SUFFIXES else (f"{name}.png", "PNG")


def write_colmap(
    out_dir: str | Path,
    pred: Prediction,
    keep: np.ndarray | None = None,
    *,
    images: Sequence | None = None,
    camera_model: str = "PINHOLE",
    max_points: int = 100_000,
    point_source: str = "depth",
    seed: int = 0,
    geometry: PixelGeometry | None = None,
) -> Path:
    """Write a COLMAP dataset folder, atomically: ``sparse/0/*.bin`` and ``sparse/0_text/*.txt``.

    With ``images`` (the original PIL images, in view order) they are saved under
    ``images/`` with the names the model uses, so gsplat's and nerfstudio's COLMAP
    loaders can train on the folder directly. Names without an image suffix (video
    frames) get ``.png`` appended, in the model and on disk. ``geometry`` is the
    prediction's per-pixel geometry when already computed (see `build_reconstruction`).

    Returns:
        ``out_dir``.
    """
    file_names = [_image_file_name(n)[0] for n in pred.names] if pred.names else None
    named = pred if file_names is None else _renamed(pred, file_names)
    reconstruction = build_reconstruction(named, keep, camera_model=camera_model, max_points=max_points,
                                          point_source=point_source, seed=seed, geometry=geometry)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        (tmp / "sparse" / "0").mkdir(parents=True)
        (tmp / "sparse" / "0_text").mkdir(parents=True)
        reconstruction.write_binary(str(tmp / "sparse" / "0"))
        reconstruction.write_text(str(tmp / "sparse" / "0_text"))
        if images is not None:
            for view, image in enumerate(images):
                file_name, fmt = _image_file_name(named.names[view])
                target = tmp / "images" / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                image.save(target, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out_dir


def _renamed(pred: Prediction, names: list[str]) -> Prediction:
    from dataclasses import replace

    return replace(pred, names=names)
