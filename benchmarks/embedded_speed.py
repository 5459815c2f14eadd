"""CPU inference time of the embedded default model (the model card's speed figure).

Runs the network (preprocessed images in, cameras and depth out) on N views of a
sample scene at the model's input size, warm-up once, then the median of R runs.

    python benchmarks/embedded_speed.py [--model recon3d-tiny] [--views 8] [--runs 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="recon3d-tiny")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scene", default=str(REPO / "assets" / "scenes" / "object_8" / "images"))
    args = parser.parse_args()

    import torch

    from recon3d.io.inputs import collect_inputs
    from recon3d.io.preprocess import preprocess_images
    from recon3d.networks.vggt.family import predict_tensors
    from recon3d.zoo import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    loaded = collect_inputs(args.scene).views[: args.views]
    batch = preprocess_images([x.image for x in loaded], mode="crop", target_size=model.config.img_size,
                              patch_size=model.config.patch_size)
    predict_tensors(model, batch.images)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        predict_tensors(model, batch.images)
        times.append(time.perf_counter() - start)
    height, width = batch.images.shape[-2:]
    print(f"| model | views | input | threads | median s | runs |\n|---|---|---|---|---|---|\n"
          f"| {args.model} | {len(loaded)} | {width}x{height} | {args.threads} | {statistics.median(times):.2f} "
          f"| {', '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
