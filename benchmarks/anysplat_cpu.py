"""AnySplat on the CPU: bf16 drift against the fp32 goldens, and learned vs geometric Gaussians.

Part 1: the two tiny parity models with the aggregator under bf16 autocast (as the
reference runs it on CUDA) against the fp32 golden outputs of ../shared/parity/anysplat.

Part 2: the full-size network (VGGT-1B backbone, random weights: speed and memory do not
depend on them) on 448x448 views: the forward split into the network proper and the
learned-Gaussian part (Gaussian head, voxel fusion, adapter), beside recon3d's
training-free pixel-aligned Gaussians built from the same prediction. One process, fp32.

    python benchmarks/anysplat_cpu.py [--views 2] [--threads 2] [--skip-full]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from common import cpu_model, random_network

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO.parent / "shared" / "parity" / "anysplat"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def drift_rows() -> list[list[str]]:
    from safetensors.torch import load_file

    from recon3d.networks.anysplat import AnySplat, AnySplatConfig

    rows = []
    images = load_file(PARITY / "inputs.safetensors")["images_s3"]
    for name in ("tiny_dino", "tiny_conv"):
        model = AnySplat(AnySplatConfig.from_json(PARITY / name / "model_config.json")).eval()
        model.load_checkpoint(load_file(PARITY / name / "weights.safetensors"))
        golden = load_file(PARITY / name / "outputs_s3.safetensors")
        model.backbone_dtype = torch.bfloat16
        with torch.no_grad():
            out = model(images)
        depth = golden["depth"]
        n_ref = int(golden["gaussians.means"].shape[1])
        n = int(out["gaussians"]["means"].shape[1])
        common = min(n, n_ref)
        rows.append([
            name,
            f"{(out['pose_enc'] - golden['pose_enc']).abs().max():.2e}",
            f"{(out['depth'] - depth).abs().max() / (depth.max() - depth.min()):.2e}",
            f"{n} vs {n_ref}",
            f"{(out['gaussians']['opacities'][:, :common] - golden['gaussians.opacities'][:, :common]).abs().max():.2e}"
            if n == n_ref else "voxels differ",
        ])
    return rows


def full_size_row(views: int) -> list[str]:
    import numpy as np

    from recon3d.gaussians import gaussians_from_prediction
    from recon3d.networks.anysplat import AnySplat
    from recon3d.networks.anysplat.adapter import adapt_gaussians
    from recon3d.networks.anysplat.fusion import fuse_batch
    from recon3d.types import Prediction

    model = random_network(AnySplat)
    images = torch.rand(1, views, 3, 448, 448, generator=torch.Generator().manual_seed(0))
    enc, config = model.encoder, model.config
    layers: dict = {}
    enc.aggregator.register_forward_hook(lambda module, args, output: layers.update(output))
    with torch.no_grad():
        start = time.perf_counter()
        out = model(images)
        total_s = time.perf_counter() - start
        # The learned-Gaussian part again, alone, on the forward's own layers and points.
        start = time.perf_counter()
        params = enc.gaussian_param_head(layers, images, enc.aggregator.patch_start_idx, model.frames_chunk_size)
        _, points, features = fuse_batch(out["world_points"], params, config.voxel_size)
        learned = adapt_gaussians(points, features, config.sh_degree, config.opacity_mapping, config.global_step)
        learned_s = time.perf_counter() - start
    n_learned = int(learned["means"].shape[1])
    w2c = torch.cat((out["extrinsics"][0], out["extrinsics"].new_tensor([0, 0, 0, 1.0]).expand(views, 1, 4)), 1)
    pred = Prediction(images=images[0].numpy(), extrinsics_w2c=w2c.numpy(), intrinsics=out["intrinsics"][0].numpy(),
                      depth=out["depth"][0, ..., 0].numpy(), depth_conf=out["depth_conf"][0].numpy(),
                      points=out["world_points"][0].numpy(), points_conf=out["depth_conf"][0].numpy(),
                      to_original=np.tile(np.eye(3, dtype=np.float32), (views, 1, 1)),
                      original_sizes=np.tile([448, 448], (views, 1)))
    start = time.perf_counter()
    geometric = gaussians_from_prediction(pred)
    geometric_s = time.perf_counter() - start
    return [str(views), f"{total_s:.1f}", f"{learned_s:.1f}", f"{n_learned:,}", f"{geometric_s:.2f}",
            f"{len(geometric):,}", f"{peak_rss_gb():.1f}"]


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    console = Console(width=220)
    header = f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}"
    drift = Table(title=f"AnySplat tiny parity models, aggregator under bf16 autocast vs the fp32 goldens; {header}")
    for column in ("model", "pose_enc max |d|", "depth max |d| / range", "voxels", "opacities max |d|"):
        drift.add_column(column)
    for row in drift_rows():
        drift.add_row(*row)
    console.print(drift)
    if args.skip_full:
        return
    full = Table(title=f"AnySplat full size (random weights), 448x448, fp32; {header}")
    for column in ("views", "forward s", "of which learned Gaussians s", "learned Gaussians",
                   "geometric Gaussians s", "geometric Gaussians", "peak RSS GB"):
        full.add_column(column)
    full.add_row(*full_size_row(args.views))
    console.print(full)


if __name__ == "__main__":
    main()
