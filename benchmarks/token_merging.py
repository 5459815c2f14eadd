"""Token merging in global attention: merged sequence length, aggregator time and memory.

Part 1 (cheap): the merged length as a fraction of the dense one for VGGT-1B's patch
grid (37x28 at 518x392) at 2/10/50 frames, with random features (the fraction depends
on the grid and settings only, since every unprotected source is merged at ratio 1).

Part 2: aggregator forward time and peak resident memory, dense vs merged, for a
mid-size VGGT (embed 384, depth 12, 6 heads, conv patch embed; random weights) at
224x168 on the CPU, at several frame counts. Each measurement runs in a fresh process
(peak RSS is per process); dense and merged alternate so that machine noise hits both.

    python benchmarks/token_merging.py [--frames 8 16 32 64] [--threads 2] [--runs 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SPECIAL = 5


def length_fractions(frame_counts=(2, 10, 50), grid=(28, 37)) -> list[tuple[int, float, float]]:
    import torch

    from recon3d.networks.token_merging import MergeConfig, plan_merge

    rows = []
    for frames in frame_counts:
        n = frames * (SPECIAL + grid[0] * grid[1])
        x = torch.randn(1, n, 32, generator=torch.Generator().manual_seed(0))
        with_protection = plan_merge(x, frames, SPECIAL, grid, MergeConfig()).reduced_length / n
        without = plan_merge(x, frames, SPECIAL, grid, MergeConfig(protect_fraction=0.0)).reduced_length / n
        rows.append((frames, with_protection, without))
    return rows


def worker(frames: int, merged: bool, threads: int, size: tuple[int, int]) -> None:
    import torch

    from recon3d.networks.token_merging import MergeConfig
    from recon3d.networks.vggt import VGGT
    from recon3d.networks.vggt.config import VGGTConfig

    torch.set_num_threads(threads)
    base = VGGTConfig().to_dict()
    config = VGGTConfig.from_dict({**base, "embed_dim": 384, "depth": 12, "num_heads": 6,
                                   "patch_embed": {**base["patch_embed"], "type": "conv"},
                                   "dpt": {**base["dpt"], "intermediate_layer_idx": [2, 5, 8, 11]}})
    model = VGGT(config).init_weights(seed=0).eval()
    model.set_token_merging(MergeConfig() if merged else None)
    images = torch.rand(1, frames, 3, size[1], size[0], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.aggregator(images[:, :2], keep_layers=[])  # warm-up
        start = time.perf_counter()
        model.aggregator(images, keep_layers=config.layers_read_by_heads)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--size", default="224x168")
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.worker:
        worker(args.worker[0], bool(args.worker[1]), args.threads, size)
        return

    print("Merged length / dense length, 37x28 patch grid, random features")
    print("| frames | protection 10 % (default) | no protection |\n|---|---|---|")
    for frames, protected, unprotected in length_fractions():
        print(f"| {frames} | {protected:.2f} | {unprotected:.2f} |")

    results: dict[tuple[int, bool], list[dict]] = {}
    for frames in args.frames:
        for _ in range(args.runs):
            for merged in (False, True):
                out = subprocess.run([sys.executable, __file__, "--worker", str(frames), str(int(merged)),
                                      "--threads", str(args.threads), "--size", args.size],
                                     capture_output=True, text=True, check=True).stdout
                results.setdefault((frames, merged), []).append(json.loads(out.strip().splitlines()[-1]))
                print(f"  {frames} frames {'merged' if merged else 'dense'}: {results[(frames, merged)][-1]}",
                      file=sys.stderr, flush=True)
    grid = (size[1] // 14, size[0] // 14)
    print(f"\nAggregator, embed 384, depth 12, {size[0]}x{size[1]} ({grid[1]}x{grid[0]} patches), "
          f"{args.threads} threads, CPU, best of {args.runs}")
    print("| frames | tokens | dense s | merged s | speed-up | dense peak GB | merged peak GB | merged length |")
    print("|---|---|---|---|---|---|---|---|")
    fractions = dict((f, p) for f, p, _ in length_fractions(tuple(args.frames), grid))
    for frames in args.frames:
        dense = min(r["seconds"] for r in results[(frames, False)])
        merged = min(r["seconds"] for r in results[(frames, True)])
        print(f"| {frames} | {frames * (SPECIAL + grid[0] * grid[1]):,} | {dense:.2f} | {merged:.2f} | "
              f"{dense / merged:.2f}x | {max(r['peak_gb'] for r in results[(frames, False)]):.2f} | "
              f"{max(r['peak_gb'] for r in results[(frames, True)]):.2f} | {fractions[frames]:.2f} |")


if __name__ == "__main__":
    main()
