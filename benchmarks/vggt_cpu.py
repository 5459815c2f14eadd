"""CPU forward time and peak memory of a VGGT-1B-size network with random weights.

Every configuration (frames x precision) runs in a fresh subprocess, so each peak RSS
is that configuration's own. A subprocess builds the model on the meta device, fills it
with a seeded cheap random init, runs one tiny warm-up forward (1 frame, 28x28) so that
one-off library set-up is not timed, then times the *first* full-size forward (one
full-size warm-up would double the run time at ~20-60 s a forward). Timings are wall
clock under ``torch.inference_mode``; ``--runs N`` times N forwards per configuration.

On CPUs without bf16 matrix instructions (no AVX512-BF16 or AMX, e.g. AMD Zen 3)
PyTorch runs bf16 matrix products on a slow fallback, so the bf16 rows take several
times the fp32 ones and dominate the run time.

    python benchmarks/vggt_cpu.py                      # 1, 2, 4 frames x fp32, bf16
    python benchmarks/vggt_cpu.py --frames 2 --precision fp32 --keep-all-layers
    python benchmarks/vggt_cpu.py --baseline-src /tmp/recon3d-before   # before/after

``--baseline-src`` runs every configuration a second time with ``recon3d`` imported
from another checkout (e.g. a ``git worktree`` of an older commit), alternating the
two so that machine noise hits both alike, and prints the time ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Official VGGT code on this kind of machine (2-core AMD EPYC), 392x518 input,
# seconds per forward; 4 frames was only measured at 294x518, so it has no entry.
OFFICIAL_SECONDS = {(1, "fp32"): 22.5, (2, "fp32"): 39.1, (2, "bf16"): 27.1}
OFFICIAL_SIZE = (392, 518)
SEED = 0


def _rss_gb() -> float:
    """Current resident set size of this process from /proc, in GB (1e9 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("VmRSS not in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _keep_all_layers(aggregator) -> None:
    """Make the aggregator return all its layers, as if no head-driven selection existed."""
    forward = aggregator.forward
    aggregator.forward = lambda images, keep_layers=None: forward(images, keep_layers=None)


def worker(args: argparse.Namespace) -> None:
    """One configuration in this process; prints a JSON line, saves outputs for comparison."""
    if args.src:
        sys.path.insert(0, args.src)
    import torch
    from common import random_network

    from recon3d.networks.precision import apply_precision, choose_precision
    from recon3d.networks.vggt import VGGT

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.precision == "int8":
        # Measured, not offered by recon3d (it misses the accuracy bound): torch.ao's dynamic
        # quantisation of the aggregator's linear layers, weights int8, activations fp32.
        choice_name = "int8"
        model = random_network(VGGT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
            torch.ao.quantization.quantize_dynamic(model.aggregator, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    else:
        choice = choose_precision(args.precision, "cpu")
        choice_name = choice.name
        # Applied while the network is on the meta device, so bf16-held weights are made in
        # bf16 (no fp32 copy first, as a loader converting tensor by tensor would do).
        model = random_network(lambda: apply_precision(VGGT(), choice, "cpu"))
        model.backbone_dtype = choice.autocast
    if args.keep_all_layers:
        _keep_all_layers(model.aggregator)
    if args.frames_chunk is not None:
        model.frames_chunk_size = args.frames_chunk
    build_s = time.perf_counter() - start
    model_gb = _rss_gb()

    images = torch.rand(args.frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(SEED))
    times, cpu_times = [], []
    with torch.inference_mode():
        model(torch.rand(1, 3, 28, 28))
        for _ in range(args.runs):
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            out = model(images)
            times.append(time.perf_counter() - start)
            cpu_times.append(_cpu_seconds() - cpu_start)
    torch.save({k: out[k] for k in ("pose_enc", "depth", "world_points")}, args.save)
    print(json.dumps({
        "chosen": choice_name,
        "seconds": times[0],
        "cpu_s": cpu_times[0],
        "best_s": min(times),
        "build_s": build_s,
        "model_rss_gb": model_gb,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }))


def run_config(args, frames: int, precision: str, keep_all: bool, src: str | None, save: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--frames", str(frames), "--precision", precision,
           "--threads", str(args.threads), "--runs", str(args.runs),
           "--height", str(args.height), "--width", str(args.width), "--save", str(save)]
    if keep_all:
        cmd.append("--keep-all-layers")
    if args.frames_chunk is not None:
        cmd += ["--frames-chunk", str(args.frames_chunk)]
    if src:
        cmd += ["--src", src]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def output_difference(path_a: Path, path_b: Path) -> dict[str, float]:
    """How far outputs B are from outputs A: depth and points relative to A's range, pose_enc absolute."""
    import torch

    a, b = torch.load(path_a), torch.load(path_b)

    def relative(key: str) -> float:
        ref = a[key].double()
        return ((b[key].double() - ref).abs().max() / (ref.max() - ref.min())).item()

    return {
        "depth_rel": relative("depth"),
        "points_rel": relative("world_points"),
        "pose_abs": (b["pose_enc"].double() - a["pose_enc"].double()).abs().max().item(),
    }


def machine() -> str:
    import torch

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "int8", "auto"],
                        default=["fp32", "auto", "int8"],
                        help="auto: what recon3d picks on this CPU (shown in the table)")
    parser.add_argument("--height", type=int, default=OFFICIAL_SIZE[0])
    parser.add_argument("--width", type=int, default=OFFICIAL_SIZE[1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1,
                        help="full-size forwards timed per configuration; 'best s' is the fastest")
    parser.add_argument("--keep-all-layers", action="store_true",
                        help="also run each configuration with all 24 aggregator layers kept (keep_layers=None)")
    parser.add_argument("--frames-chunk", type=int, metavar="N",
                        help="frames the DPT heads decode at once (default: the model's own setting)")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also run each configuration with recon3d imported from DIR and print ratios")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.frames, args.precision = args.frames[0], args.precision[0]
        worker(args)
        return

    official_size = (args.height, args.width) == OFFICIAL_SIZE
    variants = [("this", None)] + ([("baseline", args.baseline_src)] if args.baseline_src else [])
    layer_modes = [False, True] if args.keep_all_layers else [False]
    print(f"# {machine()}, {args.threads} threads, images {args.height}x{args.width}")
    print(f"# seconds: first full-size forward after a 1-frame 28x28 warm-up; best s: fastest of {args.runs}")
    # CPU seconds / wall seconds near the thread count means the forward had the cores
    # to itself; well below it, other processes took CPU time and the wall time is inflated.
    header = ("| code | frames | precision | layers kept | seconds | best s | official s | CPU s / wall "
              "| peak RSS GB | model RSS GB | peak - model GB |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    results: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            for precision in args.precision:
                for keep_all in layer_modes:
                    for code, src in variants:
                        key = (code, frames, precision, keep_all)
                        save = Path(tmp) / f"{code}-{frames}-{precision}-{int(keep_all)}.pt"
                        r = results[key] = run_config(args, frames, precision, keep_all, src, save)
                        r["save"] = save
                        official = OFFICIAL_SECONDS.get((frames, precision)) if official_size else None
                        rows.append(
                            f"| {code} | {frames} | {precision if precision != 'auto' else 'auto=' + r['chosen']} "
                            f"| {'all 24' if keep_all else 'heads only'} "
                            f"| {r['seconds']:.1f} | {r['best_s']:.1f} | {fmt(official, '.1f')} "
                            f"| {r['cpu_s'] / r['seconds']:.2f} | {r['peak_rss_gb']:.2f} | {r['model_rss_gb']:.2f} "
                            f"| {r['peak_rss_gb'] - r['model_rss_gb']:.2f} |"
                        )
                        print(rows[-1], flush=True)
        print("\n".join(["", "## Results", *rows]))
        if args.baseline_src:
            print("\n## This code vs baseline (time ratio < 1: faster; outputs: baseline as reference)")
            print("| frames | precision | layers kept | first-call time ratio | best time ratio | peak RSS ratio "
                  "| depth rel | points rel | pose abs |")
            print("|---|---|---|---|---|---|---|---|---|")
            for (code, frames, precision, keep_all), r in results.items():
                if code != "this":
                    continue
                base = results[("baseline", frames, precision, keep_all)]
                d = output_difference(base["save"], r["save"])
                print(f"| {frames} | {precision} | {'all 24' if keep_all else 'heads only'} "
                      f"| {r['seconds'] / base['seconds']:.3f} | {r['best_s'] / base['best_s']:.3f} "
                      f"| {r['peak_rss_gb'] / base['peak_rss_gb']:.3f} "
                      f"| {d['depth_rel']:.2e} | {d['points_rel']:.2e} | {d['pose_abs']:.2e} |")
        if args.keep_all_layers:
            print("\n## Keeping all 24 aggregator layers vs only those the heads read")
            print("| code | frames | precision | peak RSS all 24 GB | peak RSS heads only GB | difference GB |")
            print("|---|---|---|---|---|---|")
            for (code, frames, precision, keep_all), r in results.items():
                if keep_all:
                    few = results[(code, frames, precision, False)]
                    print(f"| {code} | {frames} | {precision} | {r['peak_rss_gb']:.2f} | {few['peak_rss_gb']:.2f} "
                          f"| {r['peak_rss_gb'] - few['peak_rss_gb']:.2f} |")
        if "fp32" in args.precision and len(args.precision) > 1:
            print("\n## Against fp32 in the same run (time ratio > 1: faster than fp32)")
            print("| frames | precision | speed vs fp32 | peak RSS / fp32 | model RSS / fp32 | depth max diff / range "
                  "| points max diff / range | pose_enc max abs diff |")
            print("|---|---|---|---|---|---|---|---|")
            for frames in args.frames:
                base = results[("this", frames, "fp32", False)]
                for precision in args.precision:
                    if precision == "fp32":
                        continue
                    r = results[("this", frames, precision, False)]
                    d = output_difference(base["save"], r["save"])
                    name = precision if precision != "auto" else f"auto={r['chosen']}"
                    print(f"| {frames} | {name} | {base['best_s'] / r['best_s']:.2f} "
                          f"| {r['peak_rss_gb'] / base['peak_rss_gb']:.2f} "
                          f"| {r['model_rss_gb'] / base['model_rss_gb']:.2f} "
                          f"| {d['depth_rel']:.2e} | {d['points_rel']:.2e} | {d['pose_abs']:.2e} |")


if __name__ == "__main__":
    main()
