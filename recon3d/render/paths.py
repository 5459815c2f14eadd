"""Camera paths for novel-view videos, built from a set of input cameras.

Cameras follow the project conventions (OpenCV axes: x right, y down, z forward;
``extrinsics_w2c`` maps world to camera, ``X_cam = R @ X_world + t``; intrinsics in
pixels). Every function here takes and returns numpy arrays; outputs are float64.

* `orbit_path`: a circle of cameras around the scene's focus point, all looking at it.
* `interpolate_path`: a smooth path through the input cameras, in their order.
* `load_cameras`: the input cameras of a camera JSON file, a synthetic scene's
  ``cameras.json`` or a recon3d prediction ``.npz``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicHermiteSpline, make_interp_spline
from scipy.spatial.transform import Rotation, Slerp

from recon3d.errors import InputError
from recon3d.geometry.cameras import camera_centres, look_at

__all__ = [
    "CameraSet",
    "focus_point",
    "orbit_path",
    "interpolate_path",
    "keyframe_indices",
    "load_cameras",
]

# Optical axes spread by less than about 2 degrees (sin^2 ~ 1e-3) do not pin down a
# point along their common direction: the least-squares focus is then ill-conditioned.
_MIN_AXIS_SPREAD = 1e-3


def _optical_axes(extrinsics_w2c: np.ndarray) -> np.ndarray:
    """Unit viewing directions ``[S,3]`` in the world: the third rows of the rotations."""
    return np.asarray(extrinsics_w2c, dtype=np.float64)[:, 2, :3]


def _up_axis(extrinsics_w2c: np.ndarray) -> np.ndarray:
    """The cameras' mean "up" ``[3]`` (unit): the mean of their -y axes, since y points down."""
    up = -np.asarray(extrinsics_w2c, dtype=np.float64)[:, 1, :3].mean(axis=0)
    norm = np.linalg.norm(up)
    if norm < 1e-9:
        raise ValueError("the cameras' up axes cancel out; no common up direction")
    return up / norm


def focus_point(extrinsics_w2c: np.ndarray) -> np.ndarray:
    """The point ``[3]`` the cameras look at: closest to all optical axes (least squares).

    It minimises ``Σᵢ |(I - dᵢdᵢᵀ)(p - Cᵢ)|²``, the squared distances to the lines
    through the centres ``Cᵢ`` along the viewing directions ``dᵢ``. That solution is
    unreliable when the axes are (nearly) parallel, and lies behind most cameras when
    they look outwards (a room seen from its middle); then the focus is the
    coordinate-wise median of the cameras' look points ``Cᵢ + s·dᵢ``, with ``s`` the mean distance of the centres from
    their centroid (1 world unit if they coincide).

    Args:
        extrinsics_w2c: ``[S,4,4]`` world-to-camera transforms.

    Returns:
        ``[3]`` world point.
    """
    centres = camera_centres(extrinsics_w2c)
    axes = _optical_axes(extrinsics_w2c)
    projectors = np.eye(3) - axes[:, :, None] * axes[:, None, :]
    normal_matrix = projectors.sum(axis=0)
    eigenvalues = np.linalg.eigvalsh(normal_matrix)
    if eigenvalues[0] > _MIN_AXIS_SPREAD * eigenvalues[-1]:
        focus = np.linalg.solve(normal_matrix, np.einsum("sij,sj->i", projectors, centres))
        in_front = np.einsum("si,si->s", focus - centres, axes) > 0
        if in_front.mean() >= 0.5:
            return focus
    spread = np.linalg.norm(centres - centres.mean(axis=0), axis=1).mean()
    reach = spread if spread > 0 else 1.0
    return np.median(centres + reach * axes, axis=0)


def _orbit_normal(centres: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Unit normal ``[3]`` of the plane fitted to the centres ``[S,3]``, on ``up``'s side.

    The plane comes from the SVD of the centred positions; when the centres do not span
    a plane (fewer than 3 cameras, or nearly on a line: second singular value below a
    tenth of the first) the plane is taken perpendicular to ``up``.
    """
    if len(centres) >= 3:
        _, singular, vt = np.linalg.svd(centres - centres.mean(axis=0))
        if singular[1] > 0.1 * singular[0]:
            normal = vt[2]
            return normal if normal @ up >= 0 else -normal
    return up


def orbit_path(
    extrinsics_w2c: np.ndarray,
    intrinsics: np.ndarray,
    num_frames: int,
    *,
    radius_scale: float = 1.0,
    elevation_deg: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cameras on a circle around the scene's focus point, all looking at it.

    * focus: `focus_point` of the input cameras;
    * circle plane: fitted to the input camera centres (`_orbit_normal`); its normal ``n``
      points to the side of the cameras' mean up (the mean of their -y axes);
    * distance: every camera is ``radius_scale`` times the mean input distance to the
      focus away from the focus;
    * elevation: by default the angle above the plane through the focus perpendicular to
      ``n`` at which the fitted plane lies (so with ``radius_scale=1`` the cameras sit
      in the fitted plane); ``elevation_deg`` sets it instead. Changing ``radius_scale``
      keeps the elevation angle;
    * azimuth: frame k is ``360° k / num_frames`` from the first input camera's
      azimuth, counter-clockwise seen from the up side; the last frame stops one step
      short of the first, so the video loops;
    * roll: the image's up is the cameras' mean up (`recon3d.geometry.cameras.look_at`);
    * intrinsics: the first input camera's.

    Args:
        extrinsics_w2c: ``[S,4,4]`` input world-to-camera transforms.
        intrinsics: ``[S,3,3]`` input intrinsics (pixels).
        num_frames: number of output cameras (>= 1).
        radius_scale: multiplier (> 0) of the mean camera distance to the focus.
        elevation_deg: elevation in degrees, strictly within (-90, 90), or None.

    Returns:
        ``(w2c [N,4,4], K [N,3,3])`` float64 with N = ``num_frames``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if radius_scale <= 0:
        raise ValueError(f"radius_scale must be positive, got {radius_scale}")
    if elevation_deg is not None and not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation_deg must be within (-90, 90), got {elevation_deg}")
    w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
    focus = focus_point(w2c)
    centres = camera_centres(w2c)
    up = _up_axis(w2c)
    normal = _orbit_normal(centres, up)

    offsets = centres - focus
    mean_distance = np.linalg.norm(offsets, axis=1).mean()
    distance = mean_distance * radius_scale
    if elevation_deg is None:
        height = (centres.mean(axis=0) - focus) @ normal
        elevation = np.arcsin(np.clip(height / mean_distance, -1.0, 1.0))
    else:
        elevation = np.radians(elevation_deg)

    # In-plane basis: a towards the first camera, b = n x a (counter-clockwise about n).
    a_axis = offsets[0] - (offsets[0] @ normal) * normal
    if np.linalg.norm(a_axis) < 1e-9 * max(distance, 1e-12):
        # The first camera sits on the normal through the focus: any in-plane direction.
        a_axis = np.cross(normal, np.eye(3)[np.argmin(np.abs(normal))])
    a_axis /= np.linalg.norm(a_axis)
    b_axis = np.cross(normal, a_axis)

    azimuths = 2.0 * np.pi * np.arange(num_frames) / num_frames
    in_plane = np.cos(azimuths)[:, None] * a_axis + np.sin(azimuths)[:, None] * b_axis
    eyes = focus + distance * (np.cos(elevation) * in_plane + np.sin(elevation) * normal)
    path_w2c = np.stack([look_at(eye, focus, up) for eye in eyes])
    path_K = np.repeat(np.asarray(intrinsics, dtype=np.float64)[:1], num_frames, axis=0)
    return path_w2c, path_K


def keyframe_indices(num_cameras: int, num_frames: int) -> np.ndarray:
    """Frame index ``[S]`` at which `interpolate_path` passes through each input camera.

    Camera k sits at ``floor(k (N-1)/(S-1) + 1/2)``: the first at frame 0, the last at
    frame N-1, the others as evenly spread as integers allow (all exact when S-1
    divides N-1). A single camera sits at frame 0.
    """
    if num_cameras == 1:
        return np.zeros(1, dtype=np.int64)
    return np.floor(np.arange(num_cameras) * (num_frames - 1) / (num_cameras - 1) + 0.5).astype(np.int64)


def interpolate_path(
    extrinsics_w2c: np.ndarray, intrinsics: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth path through the input cameras in their order.

    Input camera k is reached exactly at frame `keyframe_indices` ``[k]``; between two
    keyframes:

    * rotations follow the quaternion slerp (the shortest arc) between them;
    * centres follow a Catmull-Rom spline: the cubic Hermite curve through the centres
      whose velocity at each keyframe is the central difference
      ``(C[k+1] - C[k-1]) / (f[k+1] - f[k-1])`` over frame indices ``f``
      (one-sided at the ends), so the path is C¹ and passes through every centre;
      with two cameras it is the straight segment between them;
    * intrinsics are interpolated linearly, entry by entry.

    Args:
        extrinsics_w2c: ``[S,4,4]`` input world-to-camera transforms, in path order.
        intrinsics: ``[S,3,3]`` input intrinsics (pixels).
        num_frames: number of output cameras, at least S (every input camera is a frame).

    Returns:
        ``(w2c [N,4,4], K [N,3,3])`` float64 with N = ``num_frames``.
    """
    w2c = np.asarray(extrinsics_w2c, dtype=np.float64)
    K = np.asarray(intrinsics, dtype=np.float64)
    num_cameras = len(w2c)
    if num_cameras < 1:
        raise ValueError("interpolate_path needs at least one camera")
    if num_frames < num_cameras:
        raise ValueError(f"num_frames ({num_frames}) must be at least the number of cameras ({num_cameras})")
    if num_cameras == 1:
        return np.repeat(w2c, num_frames, axis=0), np.repeat(K, num_frames, axis=0)

    keys = keyframe_indices(num_cameras, num_frames).astype(np.float64)
    frames = np.arange(num_frames, dtype=np.float64)
    centres = camera_centres(w2c)

    rotations = Slerp(keys, Rotation.from_matrix(w2c[:, :3, :3]))(frames).as_matrix()
    velocity = np.empty_like(centres)
    velocity[0] = (centres[1] - centres[0]) / (keys[1] - keys[0])
    velocity[-1] = (centres[-1] - centres[-2]) / (keys[-1] - keys[-2])
    velocity[1:-1] = (centres[2:] - centres[:-2]) / (keys[2:] - keys[:-2])[:, None]
    path_centres = CubicHermiteSpline(keys, centres, velocity, axis=0)(frames)
    path_K = make_interp_spline(keys, K, k=1, axis=0)(frames)

    path_w2c = np.zeros((num_frames, 4, 4))
    path_w2c[:, :3, :3] = rotations
    path_w2c[:, :3, 3] = -np.einsum("nij,nj->ni", rotations, path_centres)
    path_w2c[:, 3, 3] = 1.0
    # Keyframes are returned bit for bit, free of the spline's rounding.
    path_w2c[keys.astype(np.int64)] = w2c
    path_K[keys.astype(np.int64)] = K
    return path_w2c, path_K


@dataclass
class CameraSet:
    """Input cameras read from a file.

    Attributes:
        extrinsics_w2c: ``[S,4,4]`` float64 world-to-camera transforms.
        intrinsics: ``[S,3,3]`` float64 intrinsics in pixels of ``sizes_wh``.
        sizes_wh: ``[S,2]`` int image sizes as (width, height).
    """

    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    sizes_wh: np.ndarray


def _views_from_json(path: Path) -> list:
    """The list of per-view records of a camera JSON file (a list, or ``{"views": [...]}``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable camera JSON file ({err})") from err
    views = data.get("views") if isinstance(data, dict) else data
    if not isinstance(views, list) or not views:
        raise InputError(f'{path}: expected a non-empty list of cameras or {{"views": [...]}}')
    return views


def _camera_from_record(record: object, index: int, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``(w2c [4,4], K [3,3], (width, height))`` of one JSON camera record."""
    try:
        w2c = np.asarray(record["extrinsics_w2c"], dtype=np.float64)
        K = np.asarray(record["K"], dtype=np.float64)
        size = (int(record["width"]), int(record["height"]))
    except (TypeError, KeyError, ValueError) as err:
        raise InputError(
            f'{path}: camera {index} needs "extrinsics_w2c" (4x4), "K" (3x3), "width" and "height" ({err!r})'
        ) from err
    if w2c.shape != (4, 4) or K.shape != (3, 3) or min(size) < 1:
        raise InputError(f"{path}: camera {index} has extrinsics {w2c.shape}, K {K.shape}, size {size}")
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()):
        raise InputError(f"{path}: camera {index} holds NaN or Inf")
    return w2c, K, size


def load_cameras(path: str | Path) -> CameraSet:
    """Read input cameras from a JSON camera file or a recon3d prediction ``.npz``.

    Accepted files:

    * ``.npz`` written by `recon3d.types.Prediction.save_npz` (sizes from its images);
    * ``.json`` holding a list of ``{"extrinsics_w2c": 4x4, "K": 3x3, "width", "height"}``,
      or an object with such a list under ``"views"`` (a synthetic scene's
      ``cameras.json``, see `recon3d.synth.write_scene`); other keys are ignored.

    Raises:
        InputError: missing, unreadable or malformed files.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"camera file '{path}' does not exist")
    if path.suffix.lower() == ".npz":
        from recon3d.types import Prediction

        try:
            pred = Prediction.load_npz(path)
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{path}: not a recon3d prediction .npz ({err})") from err
        height, width = pred.image_size_hw
        return CameraSet(
            extrinsics_w2c=pred.extrinsics_w2c.astype(np.float64),
            intrinsics=pred.intrinsics.astype(np.float64),
            sizes_wh=np.tile([width, height], (pred.num_views, 1)),
        )
    cameras = [_camera_from_record(r, i, path) for i, r in enumerate(_views_from_json(path))]
    return CameraSet(
        extrinsics_w2c=np.stack([c[0] for c in cameras]),
        intrinsics=np.stack([c[1] for c in cameras]),
        sizes_wh=np.array([c[2] for c in cameras], dtype=np.int64),
    )
