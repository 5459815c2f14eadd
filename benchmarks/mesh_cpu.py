"""Mesh extraction on the CPU: time, accuracy and topology of each mesher.

Input: a synthetic scene's exact depth, cameras and colours (what a perfect network
would predict), 8 and 32 views at 518x392 by default. For each mesher the table gives
wall time, faces, Chamfer distance to the exact surface (normalised by the scene
diagonal; points sampled uniformly on the mesh against the pixels' true 3D points), and
whether the mesh is watertight and edge/vertex manifold. Open3D and torch use the
threads given (default 2, the CI machine's cores).

    python benchmarks/mesh_cpu.py [--views 8 32] [--kind room] [--size 518x392] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--kind", default="object", choices=["object", "room", "trajectory"])
    parser.add_argument("--size", default="518x392")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["grid", "tsdf", "poisson"])
    args = parser.parse_args()

    import os

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import open3d as o3d
    import torch

    from recon3d.eval.metrics import point_cloud_metrics
    from recon3d.mesh import MeshOptions, extract_mesh, mesh_stats
    from recon3d.mesh.open3d_bridge import to_open3d
    from recon3d.synth import make_scene
    from synthetic_truth import gt_prediction

    torch.set_num_threads(args.threads)
    width, height = (int(x) for x in args.size.split("x"))
    rows = []
    for views in args.views:
        scene = make_scene(args.kind, 0, views, (width, height))
        pred = gt_prediction(scene)
        truth = scene.world_points()[scene.masks]
        for method in args.methods:
            start = time.perf_counter()
            mesh = extract_mesh(pred, MeshOptions(method=method), keep=scene.masks)
            seconds = time.perf_counter() - start
            o3d.utility.random.seed(0)
            samples = np.asarray(to_open3d(mesh).sample_points_uniformly(200_000).points)
            chamfer = point_cloud_metrics(samples, truth)["chamfer"]
            stats = mesh_stats(mesh)
            rows.append((views, method, seconds, stats, chamfer))
            print(f"{views} views {method}: {seconds:.2f} s", flush=True)

    print(f"\n{args.kind} scene, {width}x{height}, {args.threads} threads")
    print("| views | method | seconds | faces | Chamfer / diagonal | watertight | edge manifold | vertex manifold |")
    print("|---|---|---|---|---|---|---|---|")
    for views, method, seconds, stats, chamfer in rows:
        print(f"| {views} | {method} | {seconds:.2f} | {stats['faces']:,} | {chamfer:.4f} | {stats['watertight']} "
              f"| {stats['edge_manifold']} | {stats['vertex_manifold']} |")


if __name__ == "__main__":
    main()
