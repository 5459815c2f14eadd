"""Geometric refinement (``--refine ba``): accuracy from corrupted and collapsed starts, and
on real photo sets beside pycolmap's full SfM (prints tables).

    python benchmarks/refine.py                      # everything (about 10 minutes on 2 cores)
    python benchmarks/refine.py --skip-real --seeds 3

Synthetic: each scene's exact prediction corrupted (rotations 10 deg, camera centres moved
by 20 % of the scene size, focal +-15 %, depth x[0.8, 1.25] per view and 5 % noise per
pixel) or collapsed (every camera equal to the first, 5 % depth noise), then refined.
Real: ../shared/data sets with the embedded model, without and with refinement, against
their COLMAP references, beside pycolmap (SIFT, exhaustive matching, incremental mapping).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from rich.console import Console
from rich.table import Table

from common import cpu_model
from recon3d.eval.metrics import camera_metrics
from recon3d.eval.perturb import collapse_cameras, perturb_prediction
from recon3d.refine import RefineOptions, refine_prediction
from recon3d.synth import make_scene
from recon3d.synth.truth import scene_prediction

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# (kind, views) rows. Rooms at 8 views are a sparse capture: a view often shares
# only a wall of repeated pattern with the others; 16 views is a walk-through.
CASES = [("object", 16), ("room", 8), ("room", 16), ("trajectory", 8)]


def synthetic_rows(kinds: list[str], seeds: int, size: tuple[int, int]) -> list[list[str]]:
    rows = []
    for kind, views in (case for case in CASES if case[0] in kinds):
        for start in ("perturbed", "collapsed"):
            before, after, rot, refined, seconds = [], [], [], [], []
            for seed in range(seeds):
                scene = make_scene(kind, seed, views, size)
                truth = scene_prediction(scene)
                bad = perturb_prediction(truth, seed) if start == "perturbed" else collapse_cameras(truth, seed)
                began = time.perf_counter()
                out = refine_prediction(bad, [PIL.Image.fromarray(x) for x in scene.images])
                seconds.append(time.perf_counter() - began)
                before.append(camera_metrics(bad.extrinsics_w2c, scene.extrinsics_w2c)["auc@30"])
                metrics = camera_metrics(out.extrinsics_w2c, scene.extrinsics_w2c)
                after.append(metrics["auc@30"])
                rot.append(metrics["rot_err_median_deg"])
                refined.append(out.refinement.view_status.count("refined") / out.num_views)
            rows.append([kind, start, f"{views}", str(seeds), f"{np.mean(before):.3f}", f"{np.mean(after):.3f}",
                         f"{np.min(after):.3f}", f"{np.median(rot):.3f}", f"{np.mean(refined):.2f}",
                         f"{np.mean(seconds):.1f}"])
    return rows


def real_rows(sets: list[str], model: str) -> list[list[str]]:
    from recon3d.eval.harness import evaluate
    from recon3d.settings import ReconstructionSettings

    rows = []
    for name in sets:
        scene = SHARED / "data" / name
        plain = evaluate(scene, model, ReconstructionSettings(refine=RefineOptions(method="none")),
                         baseline=False)["methods"][0]
        report = evaluate(scene, model, ReconstructionSettings(refine=RefineOptions(method="ba")), baseline=True)
        refined, colmap = report["methods"]
        rows.append([name, str(refined["num_views"]), f"{plain['camera']['auc@30']:.3f}",
                     f"{refined['camera']['auc@30']:.3f}", f"{plain['time_s']:.1f}", f"{refined['time_s']:.1f}",
                     f"{colmap['camera']['auc@30']:.3f}", f"{colmap['registered_views']}/{colmap['num_views']}",
                     f"{colmap['time_s']:.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", default=sorted({kind for kind, _ in CASES}))
    parser.add_argument("--size", default="512x384", help="rendered image size WIDTHxHEIGHT")
    parser.add_argument("--model", default="recon3d-tiny", help="network for the real sets")
    parser.add_argument("--sets", nargs="+", default=["llff_fern", "kitchen"])
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(x) for x in args.size.split("x"))
    console = Console(width=200)
    console.print(f"CPU: {cpu_model()}, {args.threads} threads, torch {torch.__version__}")

    table = Table(title=f"refinement from corrupted starts ({width}x{height}, mean over seeds 0..{args.seeds - 1})")
    for column in ("kind", "start", "views", "seeds", "AUC@30 before", "AUC@30 after", "worst scene", "median rot err (deg)",
                   "views refined", "seconds"):
        table.add_column(column)
    for row in synthetic_rows(args.kinds, args.seeds, (width, height)):
        table.add_row(*row)
    console.print(table)

    if not args.skip_real:
        table = Table(title=f"real sets, model {args.model} (AUC@30 against colmap_reference/; times in seconds)")
        for column in ("set", "views", "AUC@30 network", "AUC@30 + refine", "time network", "time + refine",
                       "AUC@30 pycolmap", "pycolmap registered", "time pycolmap"):
            table.add_column(column)
        for row in real_rows(args.sets, args.model):
            table.add_row(*row)
        console.print(table)
        console.print("note: pycolmap's AUC is against a reference made by the same pipeline (circular).")


if __name__ == "__main__":
    main()
