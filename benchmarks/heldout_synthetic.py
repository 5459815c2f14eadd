"""Accuracy of a model on held-out procedural scenes, per scene kind (prints a table).

    python benchmarks/heldout_synthetic.py --model recon3d-tiny --scenes 20 --views 8
"""
from __future__ import annotations

import argparse
import json

import torch
from common import cpu_model
from rich.console import Console
from rich.table import Table

from recon3d.eval.heldout import HEADLINE, evaluate_heldout
from recon3d.networks.token_merging import parse_merge_option
from recon3d.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="recon3d-tiny")
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", default="504x378", help="rendered image size WIDTHxHEIGHT")
    parser.add_argument("--kinds", nargs="+", default=["object", "room", "trajectory"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("--merge", default="off", help="token merging: off, auto or a ratio (as recon3d --merge)")
    parser.add_argument("--textures", default="classic",
                        help="texture family of the scenes (classic, natural, mixed, training, heldout)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    model = load_model(args.model, device="cpu")
    console = Console()
    summary = evaluate_heldout(
        model, args.kinds, args.scenes, args.views, (width, height),
        on_scene=lambda kind, seed, row: console.print(kind, seed, {k: round(v, 4) for k, v in row.items()}),
        token_merging=parse_merge_option(args.merge), textures=args.textures,
    )
    table = Table(title=f"{args.model} on held-out procedural scenes ({args.scenes} per kind, {args.views} views, "
                        f"{args.size}, merge {args.merge}, textures {args.textures}; {cpu_model()})")
    table.add_column("kind")
    for key in HEADLINE:
        table.add_column(key)
    for kind, row in summary.items():
        table.add_row(kind, *(f"{row[k]:.4f}" for k in HEADLINE))
    console.print(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
