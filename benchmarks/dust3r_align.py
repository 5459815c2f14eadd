"""DUSt3R global alignment on the CPU: every pixel against the pixel grid + closed-form depth.

For each network (random weights: the alignment's cost does not depend on them), the pairs
of 8 views run once; then the alignment runs with ``stride=1`` (every pixel, the previous
default) and ``stride="auto"``, side by side in one process. Accuracy is checked on a
synthetic scene with exact cameras (pairwise maps = ground truth + 2 % noise), at the same
image size.

    python benchmarks/dust3r_align.py                       # tiny at 512x384, 224-linear at 224x224
    python benchmarks/dust3r_align.py --every-pixel-iters 30  # extrapolate stride 1 from 30 steps

With ``--every-pixel-iters N < --iters``, the every-pixel time is the measured start-up
(initialisation) plus the measured mean step time times ``--iters``, and says so.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import cpu_model

REPO = Path(__file__).resolve().parents[1]


def timed_align(pointmaps, iters: int, stride, measured_iters: int) -> tuple[float, str]:
    """Seconds for ``iters`` steps (extrapolated from ``measured_iters`` when fewer)."""
    from recon3d.pairwise.align import global_align

    steps: list[float] = []
    start = time.perf_counter()
    global_align(pointmaps, niter=measured_iters, stride=stride,
                 on_progress=lambda step, total, loss: steps.append(time.perf_counter()))
    total = time.perf_counter() - start
    if measured_iters >= iters:
        return total, "measured"
    step_s = (steps[-1] - steps[0]) / (len(steps) - 1)
    startup = total - step_s * measured_iters
    return startup + step_s * iters, f"extrapolated from {measured_iters} steps"


def accuracy(size_wh: tuple[int, int], stride, iters: int) -> tuple[float, float, float]:
    """Median rotation error (deg), max focal error (%) and dense point RMS (median depths)."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.pairwise import pairwise_from_scene
    from test_global_alignment import point_error, pose_focal_errors

    from recon3d.pairwise.align import global_align
    from recon3d.pairwise.graph import make_pairs
    from recon3d.synth import make_scene

    scene = make_scene("object", 0, 8, size_wh)
    result = global_align(pairwise_from_scene(scene, make_pairs(8, "complete"), 0.02, 0), niter=iters, stride=stride)
    rotation, focal = pose_focal_errors(result, scene)
    return float(np.median(rotation)), 100 * float(focal.max()), point_error(result, scene)


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
    from recon3d.pairwise.align import resolve_stride
    from recon3d.pairwise.graph import make_pairs
    from recon3d.pairwise.inference import predict_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--every-pixel-iters", type=int, default=300,
                        help="steps actually run with stride 1 (fewer: extrapolated to --iters)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--every-pixel-accuracy-up-to", type=int, default=224 * 224,
                        help="run the every-pixel accuracy check only up to this many pixels per view (it costs "
                             "as much as the every-pixel alignment itself)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = {
        "tiny": (DUSt3RConfig(enc_embed_dim=64, enc_depth=2, enc_num_heads=4, dec_embed_dim=48, dec_depth=2,
                              dec_num_heads=4, head_type="linear", img_size=(512, 512)), (384, 512)),
        "224-linear": (DUSt3RConfig(head_type="linear", img_size=(224, 224)), (224, 224)),
    }
    table = Table(title=f"DUSt3R global alignment, {args.views} views, complete graph, {args.iters} steps; "
                        f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}")
    for column in ("network", "size", "stride", "every pixel s", "grid s", "speed-up", "how",
                   "rot° 1 / grid", "focal % 1 / grid", "points 1 / grid"):
        table.add_column(column)
    for name, (config, (height, width)) in configs.items():
        model = DUSt3R(config).init_weights(seed=0).eval()
        images = torch.rand(args.views, 3, height, width, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # not inference mode: the alignment differentiates through these tensors
            pointmaps = predict_pairs(model, images, make_pairs(args.views, "complete"))
        stride = resolve_stride("auto", height, width)
        full_s, how = timed_align(pointmaps, args.iters, 1, min(args.every_pixel_iters, args.iters))
        grid_s, _ = timed_align(pointmaps, args.iters, "auto", args.iters)
        row = [name, f"{width}x{height}", str(stride), f"{full_s:.1f}", f"{grid_s:.1f}", f"{full_s / grid_s:.1f}x", how]
        if args.skip_accuracy:
            row += ["-", "-", "-"]
        else:
            grid = accuracy((width, height), "auto", args.iters)
            full = (accuracy((width, height), 1, args.iters) if width * height <= args.every_pixel_accuracy_up_to
                    else (float("nan"),) * 3)
            row += [f"{a:.{digits}f} / {b:.{digits}f}" for a, b, digits in zip(full, grid, (3, 2, 4))]
        table.add_row(*row)
        print(f"{name}: done", file=sys.stderr, flush=True)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
