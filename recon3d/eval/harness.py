"""Evaluate a model (and the COLMAP baseline) on one scene folder; report as JSON and a table.

Two kinds of scene folder are understood:

* synthetic (``recon3d.synth`` layout: ``images/``, ``cameras.json``, ``geometry.npz``):
  exact cameras, z-depth and surface points, so camera, depth and geometry metrics;
* real photo sets with ``images/`` and ``colmap_reference/`` (a COLMAP model): camera
  metrics only, over the views COLMAP registered, matched by image name.

Views are matched between a method and the reference by image name (full name,
file name, then stem). A view the method was given but did not register (COLMAP
can drop views) makes every pair it belongs to a failure in the AUCs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.table import Table

from recon3d.errors import InputError
from recon3d.eval.metrics import AUC_THRESHOLDS, camera_metrics, depth_metrics, point_cloud_metrics, resample_to_model_grid
from recon3d.geometry.align import align_camera_centres
from recon3d.types import Prediction

if TYPE_CHECKING:
    from recon3d.settings import ReconstructionSettings

__all__ = ["SceneReference", "load_scene_reference", "select_views", "evaluate_prediction", "evaluate_baseline", "evaluate",
           "format_report", "run_eval_cli"]

# Cap per cloud for the geometry metrics: the sampling noise of a mean distance over
# 50k points is well below 1 %, and nearest-neighbour queries between clouds that lie
# far apart (an untrained model) slow down sharply with more points.
DEFAULT_MAX_POINTS = 50_000

CIRCULAR_NOTE = (
    "the reference is itself a COLMAP reconstruction (SIFT, exhaustive matching, incremental mapping), "
    "so the pycolmap baseline is scored against its own pipeline: its numbers are optimistic"
)


@dataclass
class SceneReference:
    """What a scene folder knows for certain.

    Attributes:
        kind: ``"synthetic"`` or ``"colmap"``.
        image_paths: every image of the scene, in natural order (what the methods get).
        names: ``R`` names of the views that have reference cameras.
        extrinsics_w2c: ``[R,4,4]`` float64 reference world-to-camera.
        depths: ``[R,H0,W0]`` z-depth in original pixels, 0 where unknown (None for real sets).
        surface_points: ``[R,H0,W0,3]`` world point seen at each original pixel centre,
            meaningful where ``depths > 0`` (None for real sets).
    """

    kind: str
    image_paths: list[Path]
    names: list[str]
    extrinsics_w2c: np.ndarray
    depths: np.ndarray | None = None
    surface_points: np.ndarray | None = None

    def index_of(self, name: str) -> int | None:
        """Reference view matching ``name`` by full name, file name, then stem; None if none (or ambiguous)."""
        for key in (lambda n: n, lambda n: Path(n).name, lambda n: Path(n).stem):
            hits = [i for i, n in enumerate(self.names) if key(n) == key(name)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                return None
        return None


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, natural order."""
    from recon3d.io.images import IMAGE_EXTENSIONS, natural_sort_key

    if not folder.is_dir():
        raise InputError(f"scene has no images folder: {folder}")
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise InputError(f"no images found in {folder}")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def load_scene_reference(scene_dir: str | Path) -> SceneReference:
    """Read a synthetic scene (``cameras.json``) or a real set (``colmap_reference/``).

    Raises:
        InputError: the folder has neither.
    """
    root = Path(scene_dir)
    if (root / "cameras.json").is_file():
        from recon3d.synth import read_scene

        scene = read_scene(root)
        files = {p.stem: p for p in _image_files(root / "images")}
        missing = [n for n in scene.names if n not in files]
        if missing:
            raise InputError(f"{root}: cameras.json names views without an image in images/: {', '.join(missing[:5])}")
        return SceneReference(
            kind="synthetic",
            image_paths=[files[n] for n in scene.names],
            names=list(scene.names),
            extrinsics_w2c=np.asarray(scene.extrinsics_w2c, dtype=np.float64),
            depths=np.asarray(scene.depths, dtype=np.float32),
            surface_points=scene.world_points().astype(np.float32),
        )
    if (root / "colmap_reference").is_dir():
        from recon3d.eval.colmap_reference import read_colmap_model

        model = read_colmap_model(root / "colmap_reference")
        return SceneReference(
            kind="colmap",
            image_paths=_image_files(root / "images"),
            names=model.names,
            extrinsics_w2c=model.extrinsics_w2c,
        )
    raise InputError(f"{root} is not an evaluation scene: it needs cameras.json (synthetic) or colmap_reference/ (real)")


def select_views(paths: list[Path], max_views: int | None) -> list[Path]:
    """At most ``max_views`` paths, evenly spaced over the sequence (first and last kept) for a wide baseline."""
    if max_views is None or max_views >= len(paths):
        return list(paths)
    if max_views < 1:
        raise InputError(f"max_views must be at least 1, got {max_views}")
    picks = np.unique(np.round(np.linspace(0, len(paths) - 1, max_views)).astype(int))
    return [paths[i] for i in picks]


def _match_views(method_names: list[str], reference: SceneReference) -> tuple[list[int], list[int]]:
    """Indices (method, reference) of the method's views that have a reference camera."""
    pairs = [(k, reference.index_of(name)) for k, name in enumerate(method_names)]
    kept = [(k, r) for k, r in pairs if r is not None]
    return [k for k, _ in kept], [r for _, r in kept]


def _num_pairs(n: int) -> int:
    return n * (n - 1) // 2


def _camera_block(
    method_w2c: np.ndarray, method_names: list[str], reference: SceneReference, num_expected: int
) -> tuple[dict[str, Any], list[int], list[int]]:
    """Camera metrics of a method's registered views against the reference.

    ``num_expected`` counts the views the method was given that have a reference
    camera; pairs among them that the method did not register count as failures.
    """
    method_idx, ref_idx = _match_views(method_names, reference)
    failed = _num_pairs(num_expected) - _num_pairs(len(method_idx))
    if len(method_idx) < 2:
        nan = float("nan")
        block = {f"auc@{t}": (0.0 if failed else nan) for t in AUC_THRESHOLDS}
        block.update(rot_err_median_deg=nan, trans_err_median_deg=nan, num_pairs=0, num_failed_pairs=failed,
                     ate=nan, ate_normalised=nan)
        return block, method_idx, ref_idx
    block = camera_metrics(method_w2c[method_idx], reference.extrinsics_w2c[ref_idx], num_failed_pairs=failed)
    return block, method_idx, ref_idx


def evaluate_prediction(
    prediction: Prediction,
    reference: SceneReference,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of one ``Prediction`` against a scene reference (no timing, no model run).

    Camera metrics use the predicted views that have a reference camera. With
    reference depth (synthetic scenes), depth is compared on the model's pixel
    grid (reference depth resampled by nearest neighbour through
    ``prediction.to_original``), and point clouds — the point-map head's points
    and the points unprojected from predicted depth and cameras, both restricted
    to pixels with reference depth — are moved into the reference frame by the
    Sim(3) aligning the camera centres and compared with the reference surface
    points of the same views (all their valid original pixels).

    Returns:
        ``{"registered_views", "camera", "depth", "geometry"}``; depth and geometry
        are None without reference depth.
    """
    num_expected = sum(reference.index_of(n) is not None for n in prediction.names)
    camera, pred_idx, ref_idx = _camera_block(prediction.extrinsics_w2c, prediction.names, reference, num_expected)
    result: dict[str, Any] = {"registered_views": len(pred_idx), "camera": camera, "depth": None, "geometry": None}
    if reference.depths is None or not pred_idx:
        return result

    model_hw = prediction.image_size_hw
    gt_depth = np.stack([
        resample_to_model_grid(reference.depths[r], prediction.to_original[k], model_hw) for k, r in zip(pred_idx, ref_idx)
    ])
    pred_depth = prediction.depth[pred_idx]
    result["depth"] = {
        "median_scaled": depth_metrics(pred_depth, gt_depth, "view"),
        "scene_scaled": depth_metrics(pred_depth, gt_depth, "scene"),
    }
    if reference.surface_points is None or len(pred_idx) < 2:
        return result
    gt_points = reference.surface_points[ref_idx][reference.depths[ref_idx] > 0]
    sim3 = align_camera_centres(prediction.extrinsics_w2c[pred_idx], reference.extrinsics_w2c[ref_idx])
    valid = gt_depth > 0
    result["geometry"] = {
        "point_map": point_cloud_metrics(prediction.points[pred_idx][valid], gt_points, transform=sim3,
                                         max_points=max_points, seed=seed),
        "depth_map": point_cloud_metrics(prediction.points_from_depth()[pred_idx][valid], gt_points,
                                         transform=sim3, max_points=max_points, seed=seed),
    }
    return result


def _json_ready(value: Any) -> Any:
    """Nested dicts/lists of plain Python values; NaN and infinities become None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _run_model(
    paths: list[Path], model: torch.nn.Module | None, settings: ReconstructionSettings,
    on_stage: Callable[[str], None],
) -> tuple[Prediction, float, float]:
    """``(prediction, load_time_s, reconstruct_time_s)``; loading is timed apart from inference."""
    from recon3d.pipeline import reconstruct
    from recon3d.zoo import cached_model

    start = time.perf_counter()
    if model is None:
        on_stage("load model")
        model = cached_model(settings.model, device=settings.device, precision=settings.precision)
    loaded = time.perf_counter()
    on_stage("reconstruct")
    prediction = reconstruct(paths, model, settings)
    return prediction, loaded - start, time.perf_counter() - loaded


def evaluate_baseline(
    paths: list[Path], reference: SceneReference, on_stage: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the pycolmap baseline on ``paths`` and score its cameras against ``reference``.

    Returns:
        The method's report entry (same keys as the model's; depth and geometry None).
    """
    from recon3d.eval.baseline import run_colmap_baseline

    (on_stage or (lambda name: None))("pycolmap baseline")
    result = run_colmap_baseline(paths)
    num_expected = sum(reference.index_of(p.name) is not None for p in paths)
    names = [] if result.model is None else result.model.names
    w2c = np.zeros((0, 4, 4)) if result.model is None else result.model.extrinsics_w2c
    camera, _, _ = _camera_block(w2c, names, reference, num_expected)
    return {
        "method": "pycolmap",
        "model": "COLMAP SIFT + exhaustive matching + incremental mapping (CPU)",
        "time_s": result.wall_time_s,
        "num_views": len(paths),
        "registered_views": result.num_registered,
        "num_models": result.num_models,
        "camera": camera,
        "depth": None,
        "geometry": None,
    }


def evaluate(
    scene_dir: str | Path,
    model: str | Path | torch.nn.Module | None = None,
    settings: ReconstructionSettings | None = None,
    *,
    max_views: int | None = None,
    baseline: bool = True,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a model (and optionally COLMAP) on a scene and score both against its reference.

    Args:
        scene_dir: a synthetic scene folder or a real set with ``colmap_reference/``.
        model: a loaded network, anything ``recon3d.load_model`` accepts, or None for
            ``settings.model``.
        settings: how the model runs (device, refinement, ...; its time counts in the
            model's); COLMAP always runs on the CPU.
        max_views: evaluate on at most this many views, evenly spaced over the set.
        baseline: also run the pycolmap baseline on the same images.
        max_points: subsampling cap per cloud for the geometry metrics.
        seed: subsampling seed.
        on_stage: called with a short stage name as work progresses.

    Returns:
        A JSON-ready dict: ``scene``, ``kind``, ``views`` (names evaluated), ``methods``
        (one dict per method: ``method``, ``model``, ``time_s``, ``num_views``,
        ``registered_views``, ``camera``, ``depth``, ``geometry``) and ``notes``.
        Missing or undefined numbers are None.
    """
    stage = on_stage or (lambda name: None)
    reference = load_scene_reference(scene_dir)
    paths = select_views(reference.image_paths, max_views)
    from recon3d.settings import ReconstructionSettings

    settings = settings or ReconstructionSettings()
    if model is not None and not isinstance(model, torch.nn.Module):
        settings, model = dataclasses.replace(settings, model=str(model)), None
    prediction, load_time, run_time = _run_model(paths, model, settings, stage)
    stage("metrics")
    methods = [{
        "method": "recon3d",
        "model": prediction.model_name + (" + refine" if prediction.refinement is not None else ""),
        "time_s": run_time,
        "load_time_s": load_time,
        "num_views": prediction.num_views,
        **evaluate_prediction(prediction, reference, max_points=max_points, seed=seed),
    }]
    notes = []
    if reference.kind == "colmap":
        notes.append("real set: camera metrics only, over the views registered in colmap_reference/")
    if baseline:
        methods.append(evaluate_baseline(paths, reference, stage))
        if reference.kind == "colmap":
            notes.append(CIRCULAR_NOTE)
    return _json_ready({
        "scene": str(Path(scene_dir)),
        "kind": reference.kind,
        "views": [p.name for p in paths],
        "methods": methods,
        "notes": notes,
    })


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _get(block: dict[str, Any] | None, *keys: str) -> float | None:
    """Nested lookup that yields None where any level is missing."""
    for key in keys:
        if block is None:
            return None
        block = block.get(key)
    return block


def format_report(report: dict[str, Any]) -> Table:
    """One row per method: pose AUCs, ATE, depth (median- and scene-scaled), Chamfer, time, registered views.

    ATE and Chamfer are relative to the reference's size (trajectory diameter,
    bounding-box diagonal of the surface points); Chamfer is that of the point-map head.
    """
    table = Table(title=f"{report['scene']} ({report['kind']}, {len(report['views'])} views)")
    columns = ["method", *[f"AUC@{t}" for t in AUC_THRESHOLDS], "ATE/diam", "AbsRel med", "δ1 med", "AbsRel scene",
               "δ1 scene", "Chamfer", "time s", "registered"]
    for name in columns:
        table.add_column(name, justify="left" if name == "method" else "right")
    for method in report["methods"]:
        camera, depth, geometry = method.get("camera"), method.get("depth"), method.get("geometry")
        label = method["method"] if method["method"] != "recon3d" else f"recon3d ({method['model']})"
        table.add_row(
            label,
            *[_fmt(_get(camera, f"auc@{t}")) for t in AUC_THRESHOLDS],
            _fmt(_get(camera, "ate_normalised"), 4),
            _fmt(_get(depth, "median_scaled", "abs_rel")),
            _fmt(_get(depth, "median_scaled", "delta1")),
            _fmt(_get(depth, "scene_scaled", "abs_rel")),
            _fmt(_get(depth, "scene_scaled", "delta1")),
            _fmt(_get(geometry, "point_map", "chamfer"), 4),
            _fmt(method.get("time_s"), 1),
            f"{method['registered_views']}/{method['num_views']}",
        )
    return table


def run_eval_cli(
    scene_dir: str | Path,
    settings: ReconstructionSettings,
    json_path: str | Path | None = None,
    max_views: int | None = None,
    baseline: bool = True,
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:
    """``recon3d eval``: evaluate, print the table and notes, write the report to ``json_path`` atomically.

    Arguments are those of ``evaluate``; ``json_path`` None writes no file.
    """
    from rich.console import Console

    from recon3d.io.atomic import atomic_path

    console = Console()
    with console.status("evaluating") as status:
        report = evaluate(scene_dir, settings=settings, max_views=max_views, baseline=baseline,
                          max_points=max_points, on_stage=lambda name: status.update(name))
    console.print(format_report(report))
    for note in report["notes"]:
        console.print(f"note: {note}")
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(report, indent=1, allow_nan=False))
    return report
