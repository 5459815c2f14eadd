"""DUSt3R on the CPU: pair inference plus global alignment for one scene, random weights.

For each configuration, 8 views (by default) of a synthetic object scene at the model's
input size go through the scene graph's pairs (each image encoded once, then decoders
and heads per batch of pairs) and the global alignment; the table gives the seconds of
each part. Random weights make the point maps meaningless but cost the same to compute;
the alignment runs its full iteration count either way.

    python benchmarks/dust3r_pairs.py [--configs tiny 224-linear 512-dpt] [--views 8]
                                      [--graph complete] [--align-iters 300] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig

CONFIGS = {
    # The parity suite's tiny_dpt_smallhead sizes, at 512x384 inputs.
    "tiny": (DUSt3RConfig(enc_embed_dim=64, enc_depth=2, enc_num_heads=4, dec_embed_dim=48, dec_depth=12,
                          dec_num_heads=4, dpt={"feature_dim": 32, "last_dim": 16, "layer_dims": (12, 24, 48, 96),
                                                "hooks_idx": (0, 6, 9, 12)}), (384, 512)),
    "224-linear": (DUSt3RConfig(head_type="linear", img_size=(224, 224)), (224, 224)),
    "512-linear": (DUSt3RConfig(head_type="linear"), (384, 512)),
    "512-dpt": (DUSt3RConfig(), (384, 512)),
}


def scene_images(views: int, hw: tuple[int, int]) -> torch.Tensor:
    from recon3d.synth import make_scene

    scene = make_scene("object", 0, views, (hw[1], hw[0]))
    return torch.from_numpy(scene.images).permute(0, 3, 1, 2).float() / 255


def run(name: str, views: int, graph: str, align_iters: int) -> dict[str, float]:
    from recon3d.pairwise.align import global_align
    from recon3d.pairwise.graph import make_pairs
    from recon3d.pairwise.inference import predict_pairs

    config, hw = CONFIGS[name]
    model = DUSt3R(config).init_weights(seed=0).eval()
    images = scene_images(views, hw)
    pairs = make_pairs(views, graph)
    start = time.perf_counter()
    pointmaps = predict_pairs(model, images, pairs)
    pair_seconds = time.perf_counter() - start
    start = time.perf_counter()
    global_align(pointmaps, niter=align_iters)
    align_seconds = time.perf_counter() - start
    return {"pairs": len(pairs), "pair_s": pair_seconds, "align_s": align_seconds, "h": hw[0], "w": hw[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "224-linear", "512-dpt"], choices=list(CONFIGS))
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--graph", default="complete")
    parser.add_argument("--align-iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.views} views, scene graph {args.graph}, {args.align_iters} alignment iterations, "
          f"{args.threads} threads, random weights")
    print("| config | input | pairs | pair inference (s) | per pair (s) | global alignment (s) | total (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.configs:
        r = run(name, args.views, args.graph, args.align_iters)
        print(f"| {name} | {r['w']}x{r['h']} | {r['pairs']} | {r['pair_s']:.1f} | {r['pair_s'] / r['pairs']:.2f} "
              f"| {r['align_s']:.1f} | {r['pair_s'] + r['align_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
