"""CPU rendering speed: the torch backend against the fast C++ path.

A plausible scene: 300k Gaussians (SH degree 3) with means in a box in front of the
camera and small scales, rendered to 512x384 on 2 threads. Each backend is warmed up
once, then timed 3 times; the runs alternate between backends, so the ratio of the
medians holds even when another process shares the machine (the table also shows CPU
seconds, which that sharing inflates less than wall time).

    python benchmarks/render_cpu.py [--gaussians 300000] [--threads 2]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from recon3d.render import render
from recon3d.render.fast_cpu import fast_cpu_available, fast_cpu_unavailable_reason, rasterize_cpu
from recon3d.types import Gaussians


def make_scene(n: int, seed: int = 0) -> Gaussians:
    """Means in a 4x3x4 box 2-6 units in front of the camera, scales 0.01-0.03."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=gen) * torch.tensor([4.0, 3.0, 4.0]) + torch.tensor([-2.0, -1.5, 2.0])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    scales = torch.exp(math.log(0.01) + math.log(3.0) * torch.rand(n, 3, generator=gen))
    opacities = 0.05 + 0.95 * torch.rand(n, generator=gen)
    sh = 0.3 * torch.randn(n, 16, 3, generator=gen)
    return Gaussians(means, quats, scales, opacities, sh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=300_000)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not fast_cpu_available():
        raise SystemExit(f"fast CPU path unavailable: {fast_cpu_unavailable_reason()}")
    torch.set_num_threads(args.threads)

    scene = make_scene(args.gaussians)
    w, h = args.width, args.height
    Ks = torch.tensor([[[0.8 * w, 0.0, w / 2], [0.0, 0.8 * w, h / 2], [0.0, 0.0, 1.0]]])
    viewmats = torch.eye(4)[None]
    counts: list[int] = []
    rasterize_cpu(
        scene.means, scene.quats, scene.scales, scene.opacities, scene.sh, viewmats, Ks, w, h,
        sh_degree=3, with_rgb=True, with_depth=False, background=None, near_plane=0.01, far_plane=1e10,
        blend_counts=counts,
    )
    blends = counts[0]

    backends = ("torch", "cpu")
    wall: dict[str, list[float]] = {b: [] for b in backends}
    cpu: dict[str, list[float]] = {b: [] for b in backends}
    outputs = {}
    with torch.no_grad():
        for b in backends:
            outputs[b] = render(scene, viewmats, Ks, w, h, backend=b)  # warm-up (and build)
        for _ in range(args.repeats):
            for b in backends:
                t0, c0 = time.perf_counter(), time.process_time()
                render(scene, viewmats, Ks, w, h, backend=b)
                wall[b].append(time.perf_counter() - t0)
                cpu[b].append(time.process_time() - c0)
    diff = (outputs["torch"].colors - outputs["cpu"].colors).abs().max().item()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.threads} threads, load average {load:.2f} on {os.cpu_count()} CPUs; "
          f"{blends / 1e6:.1f} M blends per frame; max |torch - cpu| = {diff:.1e}")
    print(f"| Gaussians | resolution | backend | seconds (median of {args.repeats}) | CPU seconds | M blends/s |")
    print("|---:|---|---|---:|---:|---:|")
    for b in backends:
        sec = statistics.median(wall[b])
        print(f"| {args.gaussians:,} | {w}x{h} | {b} | {sec:.3f} | {statistics.median(cpu[b]):.3f} "
              f"| {blends / sec / 1e6:.1f} |")
    ratio = statistics.median(t / c for t, c in zip(wall["torch"], wall["cpu"], strict=True))
    print(f"cpu is {ratio:.1f}x faster than torch (median of side-by-side ratios)")


if __name__ == "__main__":
    main()
