"""Held-out accuracy of training snapshots, one row per snapshot (the model card's learning curve).

    python benchmarks/learning_curve.py runs/snap-150 runs/snap-300 runs/tiny-v2/model --scenes 10

Each snapshot is a model folder (config.json + model.safetensors) saved during a run;
its step is read from the folder name's trailing number when there is one. Scenes are
the held-out seeds 0..N-1 of each kind, through the normal pipeline without refinement.
"""
from __future__ import annotations

import argparse
import re

import torch
from common import cpu_model
from rich.console import Console
from rich.table import Table

from recon3d.eval.heldout import evaluate_heldout
from recon3d.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshots", nargs="+", help="model folders, in training order")
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--kinds", nargs="+", default=["object"])
    parser.add_argument("--size", default="504x378")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    table = Table(title=f"learning curve: {args.scenes} held-out scenes per kind, {args.views} views, "
                        f"{args.size}, no refinement; {cpu_model()}")
    table.add_column("snapshot")
    table.add_column("step")
    for kind in args.kinds:
        table.add_column(f"{kind} AUC@30")
        table.add_column(f"{kind} AbsRel")
    for folder in args.snapshots:
        step = re.search(r"(\d+)/?$", folder)
        summary = evaluate_heldout(load_model(folder, device="cpu"), args.kinds, args.scenes, args.views,
                                   (width, height))
        cells = [f"{summary[k][m]:.3f}" for k in args.kinds for m in ("auc@30", "abs_rel")]
        table.add_row(folder, step.group(1) if step else "-", *cells)
        Console().print(f"{folder}: {summary}")
    Console().print(table)


if __name__ == "__main__":
    main()
