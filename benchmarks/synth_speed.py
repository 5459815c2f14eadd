"""Time recon3d.synth.make_scene on one CPU thread and print a table.

Usage: python benchmarks/synth_speed.py [--repeats N]
Target: 16 views at 256x256 in at most 2 s per scene.
"""
from __future__ import annotations

import os

# Thread limits must be set before numpy (or torch) is imported to take effect.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

from recon3d.synth import KINDS, make_scene  # noqa: E402

CASES = [(kind, 16, (256, 256)) for kind in KINDS]
CASES += [("trajectory", 100, (256, 256)), ("object", 8, (320, 240))]


def best_times(kind: str, views: int, size_wh: tuple[int, int], repeats: int) -> tuple[float, float]:
    """Fastest of ``repeats`` timings of one ``make_scene`` call: (wall, CPU) seconds.

    CPU time is shown too because it hardly changes when other processes share the cores.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        make_scene(kind, seed=0, num_views=views, size_wh=size_wh)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per case; the best is shown")
    args = parser.parse_args()
    print(f"{'kind':<12}{'views':>6}{'size':>10}{'seconds':>9}{'cpu s':>8}{'ms/view':>9}")
    for kind, views, (width, height) in CASES:
        wall, cpu = best_times(kind, views, (width, height), args.repeats)
        print(f"{kind:<12}{views:>6}{f'{width}x{height}':>10}{wall:>9.2f}{cpu:>8.2f}{1000 * wall / views:>9.0f}")


if __name__ == "__main__":
    main()
