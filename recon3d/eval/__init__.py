"""Evaluation: pose, depth and geometry metrics, COLMAP references, a classical baseline, the harness.

``evaluate(scene_dir, model)`` runs a model (and, optionally, COLMAP) on a scene
with ground truth or a COLMAP reference and returns a JSON-ready report;
``format_report`` turns it into a table.
"""
from recon3d.eval.baseline import BaselineResult, run_colmap_baseline
from recon3d.eval.colmap_reference import ColmapModel, read_colmap_model
from recon3d.eval.harness import SceneReference, evaluate, evaluate_prediction, format_report, load_scene_reference, run_eval_cli
from recon3d.eval.metrics import camera_metrics, depth_metrics, point_cloud_metrics, relative_pose_errors

__all__ = [
    "BaselineResult",
    "ColmapModel",
    "SceneReference",
    "camera_metrics",
    "depth_metrics",
    "evaluate",
    "evaluate_prediction",
    "format_report",
    "load_scene_reference",
    "point_cloud_metrics",
    "read_colmap_model",
    "relative_pose_errors",
    "run_colmap_baseline",
    "run_eval_cli",
]
