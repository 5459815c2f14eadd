"""Read a COLMAP model (text or binary) into plain arrays: the reference cameras.

pycolmap parses the model; this module only flattens it. COLMAP stores each
image's pose as world-to-camera (``QW QX QY QZ TX TY TZ`` in images.txt), uses
OpenCV camera axes and the continuous pixel convention (the upper-left pixel's
centre is at (0.5, 0.5)) — the same conventions as ``recon3d.types``, so poses
and ``K`` are taken over unchanged. Lens distortion parameters (SIMPLE_RADIAL,
RADIAL, OPENCV, ...) are kept in ``camera_params`` but not applied: ``K`` holds
the focal lengths and principal point only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon3d.errors import InputError

__all__ = ["ColmapModel", "read_colmap_model", "model_from_reconstruction"]


@dataclass
class ColmapModel:
    """The registered images of a COLMAP reconstruction, ordered by image id.

    Attributes:
        names: ``S`` image names as stored by COLMAP (paths relative to the image folder).
        extrinsics_w2c: ``[S,4,4]`` float64 world-to-camera, OpenCV axes.
        intrinsics: ``[S,3,3]`` float64 K in original image pixels.
        image_sizes: ``[S,2]`` int64 (height, width) of each image's camera.
        camera_models: ``S`` COLMAP model names (``"PINHOLE"``, ``"SIMPLE_RADIAL"``, ...).
        camera_params: ``S`` float64 arrays, COLMAP's raw parameter list per image.
        points: ``[N,3]`` float64 sparse 3D points (world frame).
    """

    names: list[str]
    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    image_sizes: np.ndarray
    camera_models: list[str]
    camera_params: list[np.ndarray]
    points: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.names)


def model_from_reconstruction(reconstruction) -> ColmapModel:
    """Flatten a ``pycolmap.Reconstruction``; images without a pose (unregistered) are left out."""
    names, w2c, intrinsics, sizes, models, params = [], [], [], [], [], []
    for image_id in sorted(reconstruction.images):
        image = reconstruction.images[image_id]
        if not image.has_pose:
            continue
        camera = image.camera
        pose = np.eye(4)
        pose[:3, :] = image.cam_from_world().matrix()
        names.append(image.name)
        w2c.append(pose)
        # Copies: pycolmap's arrays can be views into memory freed with the reconstruction.
        intrinsics.append(np.array(camera.calibration_matrix(), dtype=np.float64))
        sizes.append((camera.height, camera.width))
        models.append(camera.model.name)
        params.append(np.array(camera.params, dtype=np.float64))
    points = [np.array(p.xyz, dtype=np.float64) for p in reconstruction.points3D.values()]
    return ColmapModel(
        names=names,
        extrinsics_w2c=np.asarray(w2c, dtype=np.float64).reshape(-1, 4, 4),
        intrinsics=np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3),
        image_sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
        camera_models=models,
        camera_params=params,
        points=np.asarray(points, dtype=np.float64).reshape(-1, 3),
    )


def read_colmap_model(model_dir: str | Path) -> ColmapModel:
    """Read the COLMAP model in ``model_dir`` (cameras, images, points3D; .txt or .bin).

    Raises:
        InputError: the folder is missing or the model cannot be parsed.
    """
    import pycolmap

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"COLMAP model folder not found: {model_dir}")
    try:
        reconstruction = pycolmap.Reconstruction(str(model_dir))
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the COLMAP model in {model_dir}: {first_line}") from exc
    return model_from_reconstruction(reconstruction)
