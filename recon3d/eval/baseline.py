"""Classical structure-from-motion baseline: COLMAP through pycolmap, on the CPU.

SIFT features, exhaustive matching and incremental mapping with COLMAP's
defaults, except a single shared camera (the sets we evaluate come from one
camera) and a smaller minimum model size so that tiny test scenes can register.
Everything runs in a temporary folder that is removed afterwards.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recon3d.errors import InputError
from recon3d.eval.colmap_reference import ColmapModel, model_from_reconstruction

__all__ = ["BaselineResult", "run_colmap_baseline"]

# COLMAP's default (10) discards models of small test scenes; 3 views are the
# fewest for which relative-pose metrics have more than one pair.
_MIN_MODEL_SIZE = 3


@dataclass
class BaselineResult:
    """Outcome of one pycolmap run.

    Attributes:
        model: registered cameras and sparse points of the largest reconstruction
            (None when nothing registered).
        wall_time_s: seconds for extraction, matching and mapping together.
        num_images: images given to COLMAP.
        num_models: reconstructions COLMAP produced (more than one: the set split).
    """

    model: ColmapModel | None
    wall_time_s: float
    num_images: int
    num_models: int

    @property
    def num_registered(self) -> int:
        return 0 if self.model is None else self.model.num_images


def _stage_images(image_paths: Sequence[Path], folder: Path) -> None:
    """Link (or copy, where links are not allowed) the images into one folder under their file names."""
    folder.mkdir()
    for path in image_paths:
        target = folder / path.name
        if target.exists():
            raise InputError(f"two input images share the file name {path.name!r}; the COLMAP baseline needs unique names")
        try:
            os.symlink(path.resolve(), target)
        except OSError:
            target.write_bytes(path.read_bytes())


def run_colmap_baseline(
    image_paths: Sequence[str | Path],
    *,
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = True,
    num_threads: int = -1,
    seed: int = 0,
) -> BaselineResult:
    """Reconstruct ``image_paths`` with COLMAP (SIFT, exhaustive matching, incremental mapping).

    Args:
        image_paths: image files; their file names must be unique (they name the views).
        camera_model: COLMAP camera model for the shared (or per-image) camera.
        single_camera: one camera for all images (True) or one per image.
        num_threads: CPU threads, -1 for all.
        seed: COLMAP's random seed (RANSAC), for repeatable runs.

    Returns:
        The largest reconstruction (by registered images) and the wall time.
    """
    import pycolmap

    paths = [Path(p) for p in image_paths]
    if not paths:
        raise InputError("the COLMAP baseline needs at least one image")
    with tempfile.TemporaryDirectory(prefix="recon3d-colmap-") as tmp:
        work = Path(tmp)
        images_dir, database, output = work / "images", work / "database.db", work / "sparse"
        _stage_images(paths, images_dir)
        output.mkdir()

        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = num_threads
        extraction.use_gpu = False
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = num_threads
        matching.use_gpu = False
        mapping = pycolmap.IncrementalPipelineOptions()
        mapping.num_threads = num_threads
        mapping.random_seed = seed
        mapping.min_model_size = _MIN_MODEL_SIZE

        start = time.perf_counter()
        pycolmap.extract_features(
            database,
            images_dir,
            image_names=[p.name for p in paths],
            camera_mode=pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
        reconstructions = pycolmap.incremental_mapping(database, images_dir, output, options=mapping)
        elapsed = time.perf_counter() - start

    largest = max(reconstructions.values(), key=lambda r: r.num_reg_images(), default=None)
    return BaselineResult(
        model=None if largest is None else model_from_reconstruction(largest),
        wall_time_s=elapsed,
        num_images=len(paths),
        num_models=len(reconstructions),
    )
