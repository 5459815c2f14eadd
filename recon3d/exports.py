"""Write a prediction out as the files users take elsewhere: one call, any set of formats.

| format      | files                        | opens in                                   |
|-------------|------------------------------|--------------------------------------------|
| ``npz``     | prediction.npz               | numpy; ``Prediction.load_npz``             |
| ``glb``     | scene.glb                    | Blender, three.js, the Gradio viewer       |
| ``ply``     | points.ply                   | MeshLab, CloudCompare, open3d              |
| ``mesh``    | mesh.ply, mesh.obj           | Blender, MeshLab, game engines             |
| ``colmap``  | colmap/{sparse/0, images}    | COLMAP, gsplat / nerfstudio trainers       |
| ``gaussians`` | gaussians.ply              | SuperSplat, gsplat, nerfstudio viewers     |
| ``splat``   | gaussians.splat              | antimatter15-style web viewers             |
| ``ply_compressed`` | gaussians.compressed.ply | SuperSplat, PlayCanvas (about 4x smaller) |

Every file is written atomically. The per-pixel geometry (`recon3d.geometry.pixels`) is
computed once and the pixels used are chosen once by `keep_mask`; every format takes both.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon3d import masks
from recon3d.errors import InputError
from recon3d.geometry.pixels import PixelGeometry, pixel_geometry
from recon3d.mesh import MeshOptions
from recon3d.types import Mesh, Prediction

__all__ = ["EXPORT_FORMATS", "FILTERS", "GAUSSIAN_SOURCES", "ExportOptions", "ExportReport", "chosen_gaussians",
           "keep_mask", "export_scene"]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("npz", "glb", "ply", "mesh", "colmap", "gaussians", "splat", "ply_compressed")
_GAUSSIAN_FORMATS = ("gaussians", "splat", "ply_compressed")
FILTERS = ("sky", "black", "white", "edges", "overlap")


@dataclass
class ExportOptions:
    """Which pixels to use and how to shape each export.

    Attributes:
        conf_percentile: drop this percentage of the least confident pixels (0-100).
        filters: pixel filters from ``FILTERS``: ``sky`` (offline heuristic, see
            `recon3d.masks.sky_mask`), ``black`` / ``white`` (background pixels), ``edges``
            (depth discontinuities, which make floaters), ``overlap`` (each surface point
            only from the view that samples it most finely, `recon3d.masks.best_view`:
            fewer, sharper Gaussians).
        views: indices of the views whose pixels are used (None: all).
        point_source: ``"depth"`` or ``"points"`` (point-map head).
        max_points: cap on the points of points.ply and the GLB point cloud (seeded).
        glb_geometry: ``"points"`` or ``"mesh"`` in scene.glb.
        frustums: draw the cameras in scene.glb.
        mesh: meshing options (for ``mesh``, and ``glb`` with ``glb_geometry="mesh"``).
        mesh_from_gaussians: fuse the depth rendered from the pixel-aligned Gaussians
            (TSDF only) instead of the predicted depth.
        colmap_camera: ``"PINHOLE"`` or ``"SIMPLE_PINHOLE"``.
        colmap_points: cap on COLMAP points3D.
        seed: subsampling seed.
        gaussians: the Gaussians of the Gaussian exports (and of ``mesh_from_gaussians``):
            ``learned`` (the model's Gaussian head, `Prediction.gaussians`), ``geometric``
            (pixel-aligned, built from depth, confidence and colour), or ``auto`` (learned
            when the model has a Gaussian head).
    """

    conf_percentile: float = 50.0
    filters: frozenset[str] = frozenset({"edges"})
    views: list[int] | None = None
    point_source: str = "depth"
    max_points: int = 1_000_000
    glb_geometry: str = "points"
    frustums: bool = True
    mesh: MeshOptions = field(default_factory=MeshOptions)
    mesh_from_gaussians: bool = False
    colmap_camera: str = "PINHOLE"
    colmap_points: int = 100_000
    seed: int = 0
    gaussians: str = "auto"


@dataclass
class ExportReport:
    """What `export_scene` wrote: files per format, and counts (``points``,
    ``gaussians``, ``mesh_faces``, ``colmap_points``) for the formats that have them."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def keep_mask(pred: Prediction, options: ExportOptions, geometry: PixelGeometry | None = None) -> np.ndarray:
    """``[S,H,W]`` bool: pixels that pass every filter chosen in ``options``, hold a
    finite point in front of their camera, and belong to a view with a valid camera.

    ``geometry`` is ``pred``'s per-pixel geometry when already computed (used when it
    comes from ``options.point_source``)."""
    geometry = pixel_geometry(pred, options.point_source, reuse=geometry)
    points, depth, conf = geometry.points, geometry.depth, geometry.conf
    # A copy: the filters below narrow it in place, and the geometry's mask is shared.
    keep = geometry.usable.copy()
    cameras_ok = pred.valid_cameras()
    if not cameras_ok.all():
        log.warning("views %s have non-finite or degenerate cameras: their pixels are left out",
                    ", ".join(str(i) for i in np.nonzero(~cameras_ok)[0]))
    finite_conf = np.where(np.isfinite(conf), conf, 0.0)
    keep &= masks.confidence_percentile(finite_conf, options.conf_percentile)
    unknown = set(options.filters) - set(FILTERS)
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(sorted(unknown))}; choose from {', '.join(FILTERS)}")
    if "sky" in options.filters:
        keep &= masks.sky_mask(pred.images)
    if "black" in options.filters:
        keep &= masks.black_background(pred.images)
    if "white" in options.filters:
        keep &= masks.white_background(pred.images)
    if "edges" in options.filters:
        keep &= masks.depth_edges(np.where(np.isfinite(depth), depth, 0.0))
    if options.views is not None:
        keep &= masks.frame_selection(pred.num_views, options.views)
    if "overlap" in options.filters:
        # Last: a pixel dropped by another filter must not win over the views that keep it.
        keep &= masks.best_view(points, depth, pred.extrinsics_w2c, pred.intrinsics, keep)
    return keep


def _points_and_colors(
    pred: Prediction, geometry: PixelGeometry, keep: np.ndarray, options: ExportOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept pixels' ``points [N,3]`` float32, ``colors [N,3]`` uint8 and unit
    ``normals [N,3]`` float32, a seeded subsample of at most ``options.max_points``."""
    index = np.argwhere(keep)
    if len(index) > options.max_points:
        rng = np.random.default_rng(options.seed)
        index = index[np.sort(rng.choice(len(index), options.max_points, replace=False))]
    at = (index[:, 0], index[:, 1], index[:, 2])
    return geometry.points[at], pred.colors_u8()[at], geometry.normals[at]


GAUSSIAN_SOURCES = ("auto", "learned", "geometric")


def chosen_gaussians(pred: Prediction, options: ExportOptions, keep: np.ndarray | None = None,
                     geometry: PixelGeometry | None = None, on_stage: Callable[[str], None] | None = None):
    """The Gaussians the exports write: the model's learned ones or pixel-aligned ones, as
    ``options.gaussians`` says. ``keep`` and ``geometry`` are computed when not given.

    Raises:
        InputError: ``learned`` asked of a model without a Gaussian head.
    """
    stage = on_stage or (lambda name: None)
    if options.gaussians not in GAUSSIAN_SOURCES:
        raise ValueError(f"gaussians must be one of {', '.join(GAUSSIAN_SOURCES)}, not {options.gaussians!r}")
    if options.gaussians == "learned" and pred.gaussians is None:
        raise InputError(f"model {pred.model_name} has no Gaussian head; use --gaussians geometric (or auto)")
    if options.gaussians != "geometric" and pred.gaussians is not None:
        stage("taking the learned Gaussians")
        return pred.gaussians
    from recon3d.gaussians import gaussians_from_prediction

    geometry = pixel_geometry(pred, options.point_source, reuse=geometry)
    keep = keep_mask(pred, options, geometry) if keep is None else keep
    stage("building Gaussians")
    return gaussians_from_prediction(pred, source=options.point_source, keep=keep, geometry=geometry)


def export_scene(
    pred: Prediction,
    out_dir: str | Path,
    formats: Sequence[str],
    options: ExportOptions | None = None,
    *,
    original_images: Sequence | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ExportReport:
    """Write the chosen ``formats`` of ``pred`` into ``out_dir``.

    Args:
        pred: the prediction.
        out_dir: output folder (created).
        formats: names from `EXPORT_FORMATS`.
        options: filters and per-format settings.
        original_images: the input PIL images, copied into the COLMAP folder.
        on_stage: called with a short description before each piece of work.

    Returns:
        The files written per format and the sizes of what they hold.
    """
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FORMATS)}")
    options = options or ExportOptions()
    stage = on_stage or (lambda name: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    written = report.files
    points_wanted = "ply" in formats or ("glb" in formats and options.glb_geometry == "points")
    mesh_wanted = "mesh" in formats or ("glb" in formats and options.glb_geometry == "mesh")
    fuse_rendered = mesh_wanted and options.mesh_from_gaussians and options.mesh.method == "tsdf"
    gaussians_wanted = any(f in formats for f in _GAUSSIAN_FORMATS) or fuse_rendered

    stage("per-pixel geometry")
    geometry = pixel_geometry(pred, options.point_source)
    if points_wanted or gaussians_wanted:
        # Estimated now (they are cached) so that their time counts in this stage.
        geometry.normals
    stage("pixel masks")
    keep = keep_mask(pred, options, geometry)
    if not keep.any():
        log.warning("no pixel passes the filters (confidence percentile %.0f): geometry exports will be empty",
                    options.conf_percentile)

    mesh: Mesh | None = None
    gaussians = None
    if gaussians_wanted:
        gaussians = chosen_gaussians(pred, options, keep, geometry, stage)
    if mesh_wanted:
        from recon3d.mesh import extract_mesh

        stage(f"meshing ({options.mesh.method})")
        mesh = extract_mesh(pred, options.mesh, keep=keep, gaussians=gaussians if fuse_rendered else None,
                            geometry=geometry)
        report.counts["mesh_faces"] = mesh.num_faces

    if "npz" in formats:
        stage("writing prediction.npz")
        pred.save_npz(out_dir / "prediction.npz")
        written["npz"] = [out_dir / "prediction.npz"]
    if points_wanted:
        stage("sampling the point cloud")
        points, colors, normals = _points_and_colors(pred, geometry, keep, options)
        report.counts["points"] = len(points)
    if "ply" in formats:
        from recon3d.io.ply import write_points_ply

        stage("writing points.ply")
        write_points_ply(out_dir / "points.ply", points, colors, normals)
        written["ply"] = [out_dir / "points.ply"]
    if "glb" in formats:
        from recon3d.io.glb import write_glb

        stage("writing scene.glb")
        height, width = pred.image_size_hw
        content = {"mesh": mesh} if options.glb_geometry == "mesh" else {"points": points, "point_colors": colors}
        write_glb(out_dir / "scene.glb", pred.extrinsics_w2c,
                  intrinsics=pred.intrinsics if options.frustums else None, image_size_wh=(width, height),
                  camera_names=pred.names or None, valid_cameras=pred.valid_cameras(), **content)
        written["glb"] = [out_dir / "scene.glb"]
    if "mesh" in formats:
        from recon3d.io.obj import write_obj
        from recon3d.io.ply import write_mesh_ply

        stage("writing mesh.ply and mesh.obj")
        write_mesh_ply(out_dir / "mesh.ply", mesh)
        write_obj(out_dir / "mesh.obj", mesh)
        written["mesh"] = [out_dir / "mesh.ply", out_dir / "mesh.obj"]
    if "colmap" in formats:
        from recon3d.io.colmap import write_colmap

        stage("writing the COLMAP model")
        write_colmap(out_dir / "colmap", pred, keep, images=original_images, camera_model=options.colmap_camera,
                     max_points=options.colmap_points, point_source=options.point_source, seed=options.seed,
                     geometry=geometry)
        report.counts["colmap_points"] = min(int(keep.sum()), options.colmap_points)
        written["colmap"] = [out_dir / "colmap"]
    if any(f in formats for f in _GAUSSIAN_FORMATS):
        report.counts["gaussians"] = len(gaussians)
    if "gaussians" in formats:
        from recon3d.io.ply import write_gaussians_ply

        stage("writing gaussians.ply")
        write_gaussians_ply(out_dir / "gaussians.ply", gaussians)
        written["gaussians"] = [out_dir / "gaussians.ply"]
    if "splat" in formats:
        from recon3d.io.splat import write_splat

        stage("writing gaussians.splat")
        write_splat(out_dir / "gaussians.splat", gaussians)
        written["splat"] = [out_dir / "gaussians.splat"]
    if "ply_compressed" in formats:
        from recon3d.io.ply_compressed import write_ply_compressed

        stage("writing gaussians.compressed.ply")
        write_ply_compressed(out_dir / "gaussians.compressed.ply", gaussians)
        written["ply_compressed"] = [out_dir / "gaussians.compressed.ply"]
    return report
