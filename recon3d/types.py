"""Data passed between recon3d's stages.

Conventions (fixed for the whole project, see docs/ARCHITECTURE.md):

* Cameras use OpenCV axes: x right, y down, z forward.
* ``extrinsics_w2c`` maps world points to camera points: ``X_cam = R @ X_world + t``.
  The world frame is the first camera's frame unless an alignment says otherwise.
* ``intrinsics`` are in pixels of the model's input images (``images``), with the
  continuous pixel convention: the image spans ``[0, W] x [0, H]`` and pixel ``(v, u)``
  has its centre at ``(u + 0.5, v + 0.5)``; the principal point of VGGT is ``(W/2, H/2)``.
* ``to_original[i]`` is a 3x3 affine map from model pixel coordinates of view ``i`` to
  pixel coordinates of the original image (same continuous convention), undoing the
  resize, crop and padding of preprocessing.
* Confidences are ``1 + exp(x) >= 1``; larger is more confident.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np


@dataclass
class Prediction:
    """Per-view output of a reconstruction network, float32 numpy arrays on the CPU.

    Attributes:
        images: ``[S,3,H,W]`` network input in [0,1].
        extrinsics_w2c: ``[S,4,4]`` world-to-camera transforms.
        intrinsics: ``[S,3,3]`` pinhole intrinsics in model pixels.
        depth: ``[S,H,W]`` z-depth along the camera axis (scene units, up to scale).
        depth_conf: ``[S,H,W]`` confidence of ``depth`` (>= 1).
        points: ``[S,H,W,3]`` world points from the point-map head.
        points_conf: ``[S,H,W]`` confidence of ``points`` (>= 1).
        to_original: ``[S,3,3]`` affine map from model pixels to original image pixels.
        original_sizes: ``[S,2]`` original image sizes as (height, width).
        names: one name per view (file name or video frame id).
        model_name: the network that produced the prediction.
        refinement: what geometric refinement (``recon3d.refine``) did, when it ran.
        gaussians: the learned 3D Gaussians of models with a Gaussian head (AnySplat), in
            the cameras' world frame; None otherwise. Not stored in ``.npz`` files (the
            Gaussian exports write them).
    """

    images: np.ndarray
    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    points: np.ndarray
    points_conf: np.ndarray
    to_original: np.ndarray
    original_sizes: np.ndarray
    names: list[str] = field(default_factory=list)
    model_name: str = ""
    refinement: Refinement | None = None
    gaussians: Gaussians | None = None

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size_hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def extrinsics_c2w(self) -> np.ndarray:
        """``[S,4,4]`` camera-to-world transforms (camera poses)."""
        return np.linalg.inv(self.extrinsics_w2c.astype(np.float64)).astype(np.float32)

    def points_from_depth(self) -> np.ndarray:
        """``[S,H,W,3]`` world points unprojected from ``depth`` through the cameras,
        pixel centres at +0.5 (the convention above)."""
        from recon3d.geometry.cameras import unproject_depth

        return unproject_depth(self.depth, self.extrinsics_w2c, self.intrinsics)

    def colors_u8(self) -> np.ndarray:
        """``[S,H,W,3]`` uint8 colours of ``images`` (rounded), for points and meshes."""
        return np.clip(np.rint(self.images.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)

    def valid_cameras(self) -> np.ndarray:
        """``[S]`` bool: views whose extrinsics and intrinsics are finite with positive
        focal lengths (an untrained or diverging network can predict fov 0, i.e. inf focal)."""
        k = self.intrinsics.astype(np.float64)
        finite = np.isfinite(self.extrinsics_w2c).all(axis=(1, 2)) & np.isfinite(k).all(axis=(1, 2))
        with np.errstate(invalid="ignore"):
            return finite & (k[:, 0, 0] > 0) & (k[:, 1, 1] > 0)

    def usable_pixels(self, points: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """``[S,H,W]`` bool: pixels with a finite point (from `view_points`), a finite
        positive depth, and a view whose camera is valid (`valid_cameras`)."""
        with np.errstate(invalid="ignore"):
            in_front = np.isfinite(depth) & (depth > 0)
        return np.isfinite(points).all(-1) & in_front & self.valid_cameras()[:, None, None]

    def view_points(self, source: str = "depth") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-pixel world points with their camera z-depth and confidence.

        Args:
            source: ``"depth"`` unprojects ``depth`` (`points_from_depth`); ``"points"``
                takes the point-map head's ``points``, whose depth is their z in each
                view's camera frame.

        Returns:
            ``points [S,H,W,3]`` float32, ``depth [S,H,W]`` float64, ``conf [S,H,W]``.
        """
        if source == "depth":
            return self.points_from_depth(), self.depth.astype(np.float64), self.depth_conf
        if source == "points":
            w2c = self.extrinsics_w2c.astype(np.float64)
            depth = (self.points.astype(np.float64) * w2c[:, None, None, 2, :3]).sum(-1) + w2c[:, None, None, 2, 3]
            return self.points, depth, self.points_conf
        raise ValueError(f"source must be 'depth' or 'points', got {source!r}")

    def save_npz(self, path: str | Path) -> None:
        """Write every field to a compressed ``.npz`` (atomically: temp file, then rename)."""
        from recon3d.io.atomic import atomic_path

        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("refinement", "gaussians")}
        arrays["names"] = np.asarray(self.names, dtype=str)
        arrays["model_name"] = np.asarray(self.model_name, dtype=str)
        if self.refinement is not None:
            arrays.update(self.refinement.to_arrays())
        import zipfile

        # np.savez_compressed deflates at level 6: 13 s for 8 views at 518x392. Level 1
        # is several times faster for a file a few percent larger, and np.load reads it.
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                for name, value in arrays.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    @classmethod
    def load_npz(cls, path: str | Path) -> Prediction:
        with np.load(path, allow_pickle=False) as data:
            kwargs = {f.name: data[f.name] for f in fields(cls) if f.name not in ("refinement", "gaussians")}
            kwargs["refinement"] = Refinement.from_arrays(data)
        kwargs["names"] = [str(n) for n in kwargs["names"]]
        kwargs["model_name"] = str(kwargs["model_name"])
        return cls(**kwargs)


SH_C0 = 0.28209479177387814


@dataclass
class Gaussians:
    """3D Gaussians in activated form (what renderers consume), as torch tensors.

    Attributes:
        means: ``[N,3]`` centres in world units.
        quats: ``[N,4]`` unit rotations, **w,x,y,z** order (rotation local → world).
        scales: ``[N,3]`` standard deviations along the local axes (linear, world units).
        opacities: ``[N]`` in [0,1].
        sh: ``[N,K,3]`` spherical-harmonic colour coefficients, K = (degree+1)^2; the DC
            term gives ``rgb = 0.5 + SH_C0 * sh[:,0]``.
    """

    means: "torch.Tensor"
    quats: "torch.Tensor"
    scales: "torch.Tensor"
    opacities: "torch.Tensor"
    sh: "torch.Tensor"

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours, as numpy arrays.

    Attributes:
        vertices: ``[V,3]`` float32 positions (world units).
        faces: ``[F,3]`` int64 vertex indices, counter-clockwise seen from the side the
            normals point to.
        vertex_colors: ``[V,3]`` uint8 RGB.
        vertex_normals: ``[V,3]`` float32 unit normals, or None when not computed.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray
    vertex_normals: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Mesh:
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8))

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


@dataclass
class FeatureTracks:
    """Multi-view feature tracks: 3D points and where each view observed them.

    Attributes:
        xyz: ``[T,3]`` float64 world points (the prediction's world frame and units).
        colors: ``[T,3]`` uint8 RGB.
        track: ``[M]`` int64 index into ``xyz`` of each observation.
        view: ``[M]`` int64 view of each observation.
        xy: ``[M,2]`` float64 keypoint positions in original-image pixels (continuous
            convention: the upper-left pixel's centre is at (0.5, 0.5)).
    """

    xyz: np.ndarray
    colors: np.ndarray
    track: np.ndarray
    view: np.ndarray
    xy: np.ndarray

    @property
    def num_tracks(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def num_observations(self) -> int:
        return int(self.track.shape[0])


@dataclass
class Refinement:
    """What geometric refinement did to a prediction (see ``recon3d.refine``).

    Attributes:
        method: ``"ba"`` (features, tracks and bundle adjustment).
        status: ``"refined"`` or ``"failed"`` (the network's cameras were kept).
        reason: why it failed, or a short summary when it did not.
        view_status: per view ``"refined"``, ``"kept"`` (network camera kept: the view
            had too few verified matches) or ``"failed"`` (the whole refinement failed).
        view_reason: per view, a few words on its status.
        view_start: per view, where bundle adjustment started from: ``"network"`` (its
            predicted pose agreed with its matches), ``"matches"`` (the predicted pose
            disagreed and was replaced) or ``""`` (not adjusted).
        reprojection_before: mean reprojection error (original pixels; COLMAP's definition:
            the mean over tracks of each track's mean) of the tracks lifted with the
            network's depth and cameras, in the network's cameras.
        reprojection_after: the same after bundle adjustment, measured on the stored
            (float32) cameras; NaN when refinement failed.
        depth_scale, depth_shift: ``[S]`` per-view fit ``depth_refined = scale * depth + shift``.
        seconds: wall time of the refinement.
        tracks: the adjusted tracks (None when refinement failed).
    """

    method: str
    status: str
    reason: str
    view_status: list[str]
    view_reason: list[str]
    view_start: list[str]
    reprojection_before: float
    reprojection_after: float
    depth_scale: np.ndarray
    depth_shift: np.ndarray
    seconds: float = 0.0
    tracks: FeatureTracks | None = None

    _SCALARS = ("method", "status", "reason", "reprojection_before", "reprojection_after", "seconds")
    _LISTS = ("view_status", "view_reason", "view_start")
    _ARRAYS = ("depth_scale", "depth_shift")
    _TRACK_FIELDS = ("xyz", "colors", "track", "view", "xy")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``refinement_*`` arrays for an ``.npz`` (no pickled objects)."""
        out = {f"refinement_{k}": np.asarray(getattr(self, k)) for k in self._SCALARS + self._ARRAYS}
        out.update({f"refinement_{k}": np.asarray(getattr(self, k), dtype=str) for k in self._LISTS})
        if self.tracks is not None:
            out.update({f"refinement_tracks_{k}": getattr(self.tracks, k) for k in self._TRACK_FIELDS})
        return out

    @classmethod
    def from_arrays(cls, data) -> Refinement | None:
        """Inverse of `to_arrays` over a mapping of arrays; None when it holds no refinement."""
        if "refinement_status" not in data:
            return None
        kwargs = {k: data[f"refinement_{k}"].item() for k in cls._SCALARS}
        kwargs.update({k: str(kwargs[k]) for k in ("method", "status", "reason")})
        kwargs.update({k: float(kwargs[k]) for k in ("reprojection_before", "reprojection_after", "seconds")})
        kwargs.update({k: [str(x) for x in data[f"refinement_{k}"]] for k in cls._LISTS})
        kwargs.update({k: np.asarray(data[f"refinement_{k}"]) for k in cls._ARRAYS})
        if "refinement_tracks_xyz" in data:
            kwargs["tracks"] = FeatureTracks(**{k: np.asarray(data[f"refinement_tracks_{k}"]) for k in cls._TRACK_FIELDS})
        return cls(**kwargs)
