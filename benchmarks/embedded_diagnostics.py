"""Does a VGGT-family model use the other views? Three diagnostics on held-out scenes.

    python benchmarks/embedded_diagnostics.py --model recon3d-tiny --scenes 10

1. Swap: run scene A, then A's view 0 with views 1..S-1 of another scene B. A network
   that reads the other views changes view 0's depth and camera token; one that took
   the monocular shortcut does not.
2. Rotation error against the true rotation angle of each view relative to view 0,
   binned, with the correlation of predicted and true angles (a mean-pose network
   predicts about the same angle whatever the truth).
3. Per global-attention layer, the attention mass (full softmax, mean over heads) on
   the patch of another view that sees the same surface point, as a multiple of
   uniform attention.
4. What the cameras lack: poses solved in closed form from the network's own depth and
   intrinsics (patch centres lifted, a RANSAC similarity per pair, chained over a
   spanning tree as refinement does), once with the true patch correspondences (what
   a perfect matching step would give) and once with mutual nearest neighbours of the
   network's last-layer patch tokens (what the network's features give); for a model
   with a descriptor head, also its own matches through the solve it ships with
   (`recon3d.geometry.pose_from_matches`).

Images are rendered at the model's working width (4:3, height a multiple of the patch)
and fed to the network directly. Seeds are the held-out ones (below training's).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from common import cpu_model
from rich.console import Console
from rich.table import Table

from recon3d.eval.metrics import camera_metrics
from recon3d.geometry.cameras import pose_encoding_to_cameras, to_homogeneous
from recon3d.geometry.pose_from_matches import cell_points
from recon3d.networks.vggt.family import matched_cameras, solved_cameras
from recon3d.refine.initial import chain_poses, ransac_similarity
from recon3d.synth import make_scene
from recon3d.train.data import sample_from_scene
from recon3d.train.matching import attention_on_matches, capture_queries_keys
from recon3d.zoo import load_model

ANGLE_BINS = (0, 30, 60, 90, 180)


SOURCES = {"rot_head": "camera head", "rot_points": "solved from points", "rot_matches": "solved from descriptor matches"}


def angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angles ``[N]`` in degrees of ``rot_a^T rot_b`` for ``[N,3,3]`` rotations."""
    cos = (np.einsum("nji,njk->nik", rot_a, rot_b).trace(axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@torch.no_grad()
def run(model, images: torch.Tensor) -> dict:
    """Network outputs for ``[S,3,H,W]`` plus the last layer's camera tokens and both kinds of cameras."""
    layers = {}
    hook = model.aggregator.register_forward_hook(lambda m, a, out: layers.update(out))
    try:
        out = model(images)
    finally:
        hook.remove()
    h, w = images.shape[-2:]
    extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"][0].float(), (h, w))
    last = layers[model.config.depth - 1][0]
    result = {"depth": out["depth"][0, ..., 0], "camera_token": last[:, 0],
              "patch_tokens": last[:, model.aggregator.patch_start_idx:], "intrinsics": intrinsics,
              "rot_head": extrinsics[:, :3, :3].double().numpy()}
    if "world_points" in out:
        solved = solved_cameras(out, intrinsics)
        result["rot_points"] = solved[:, :3, :3].double().numpy()
    if "descriptors" in out:
        matched, _ = matched_cameras(out, extrinsics, intrinsics)
        result["rot_matches"] = matched[:, :3, :3].double().numpy()
        result["w2c_matches"] = to_homogeneous(matched).double().numpy()
    return result


def cameras_from_matches(depth: torch.Tensor, intrinsics: torch.Tensor, matches: np.ndarray, patch: int) -> np.ndarray:
    """``[S,4,4]`` world-to-camera poses from ``depth [S,H,W]``, ``intrinsics [S,3,3]`` and patch
    correspondences ``matches [S,S,P]`` (-1: none): patch centres lifted with the depth, a
    RANSAC similarity per pair, chained over a maximum spanning tree. Views it cannot reach
    keep the identity (their pairs then count as errors)."""
    views = depth.shape[0]
    points = cell_points(depth.double().numpy(), intrinsics.double().numpy(), patch)
    motions = {}
    for i in range(views):
        for j in range(i + 1, views):
            found = np.flatnonzero(matches[i, j] >= 0)
            motion, _ = ransac_similarity(points[i, found], points[j, matches[i, j, found]], threshold=0.1,
                                          min_inliers=6)
            if motion is not None:
                motions[(i, j)] = motion
    w2c = np.repeat(np.eye(4)[None], views, 0)
    if motions:
        start = chain_poses(views, motions, w2c, agree_deg=0.0)
        w2c[:, :3, :3], w2c[:, :3, 3] = start.rotations, start.translations
    return w2c


def token_matches(tokens: torch.Tensor) -> np.ndarray:
    """``[S,S,P]`` mutual nearest neighbours (cosine) of patch tokens ``[S,P,C]`` between views."""
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1)
    best = torch.einsum("ipc,jqc->ijpq", unit, unit).argmax(-1)  # [S,S,P]
    back = best.transpose(0, 1).gather(2, best)  # the match's own best match in view i
    out = torch.where(back == torch.arange(tokens.shape[1]), best, -1)
    out[torch.arange(len(tokens)), torch.arange(len(tokens))] = -1
    return out.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="recon3d-tiny")
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--kind", default="object")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", precision="fp32").eval()
    patch = model.config.patch_size
    width = model.config.img_size
    height = max(patch, round(width * 0.75 / patch) * patch)
    generator = torch.Generator().manual_seed(0)

    def sample(seed: int):
        scene = make_scene(args.kind, seed, args.views, (width, height))
        return sample_from_scene(scene, np.arange(args.views), generator, augment=False, patch=patch)

    swap_depth, swap_token, rows = [], [], []
    solved_auc: dict[str, list[float]] = {"true patch correspondences": [], "network's patch tokens": []}
    mass = np.zeros(model.config.depth)
    for seed in range(args.scenes):
        a, b = sample(seed), sample(seed + 1000)
        out_a = run(model, a.images)
        mixed = torch.cat([a.images[:1], b.images[1:]])
        out_mixed = run(model, mixed)
        swap_depth.append(float((out_a["depth"][0] - out_mixed["depth"][0]).abs().mean() / out_a["depth"][0].mean()))
        swap_token.append(float((out_a["camera_token"][0] - out_mixed["camera_token"][0]).norm()
                                / out_a["camera_token"][0].norm()))
        truth = a.extrinsics[1:, :3, :3].double().numpy()
        true_angle = angle_deg(np.repeat(np.eye(3)[None], len(truth), 0), truth)
        for source in SOURCES:
            if source in out_a:
                predicted = out_a[source][1:]
                rows += [{"source": source, "true": float(t), "error": float(e), "predicted": float(p)}
                         for t, e, p in zip(true_angle, angle_deg(predicted, truth),
                                            angle_deg(np.repeat(np.eye(3)[None], len(truth), 0), predicted))]
        truth_w2c = np.repeat(np.eye(4)[None], args.views, 0)
        truth_w2c[:, :3] = a.extrinsics.double().numpy()
        for name, matches in zip(solved_auc, (a.matches.numpy(), token_matches(out_a["patch_tokens"]))):
            w2c = cameras_from_matches(out_a["depth"], out_a["intrinsics"], matches, patch)
            solved_auc[name].append(camera_metrics(w2c, truth_w2c)["auc@30"])
        if "w2c_matches" in out_a:
            solved_auc.setdefault("the descriptor head's matches", []).append(
                camera_metrics(out_a["w2c_matches"], truth_w2c)["auc@30"])
        for layer, block in enumerate(model.aggregator.global_blocks):
            with capture_queries_keys(block.attn) as captured:
                model(a.images)
            uniform = 1.0 / captured["q"].shape[2]
            mass[layer] += attention_on_matches(captured["q"], captured["k"], a.matches[None],
                                                model.aggregator.patch_start_idx) / uniform / args.scenes

    console = Console()
    title = f"{args.model}: {args.scenes} held-out {args.kind} scenes, {args.views} views at {width}x{height}; {cpu_model()}"
    swap = Table(title="1. swap views 1..S-1 for another scene's: change of view 0's outputs")
    swap.add_column("relative change of view 0's depth (mean)")
    swap.add_column("relative change of view 0's camera token")
    swap.add_row(f"{np.mean(swap_depth):.2e}", f"{np.mean(swap_token):.2e}")
    console.print(title)
    console.print(swap)
    rot = Table(title="2. rotation error (deg) against the true angle from view 0")
    rot.add_column("cameras")
    for lo, hi in zip(ANGLE_BINS[:-1], ANGLE_BINS[1:]):
        rot.add_column(f"true {lo}-{hi}°: median error (n)")
    rot.add_column("corr(predicted angle, true angle)")
    summary: dict = {"model": args.model, "cpu": cpu_model(), "swap_depth": float(np.mean(swap_depth)),
                     "swap_camera_token": float(np.mean(swap_token)), "attention_mass_over_uniform": mass.tolist()}
    for source in SOURCES:
        picked = [r for r in rows if r["source"] == source]
        if not picked:
            continue
        cells = []
        for lo, hi in zip(ANGLE_BINS[:-1], ANGLE_BINS[1:]):
            errors = [r["error"] for r in picked if lo <= r["true"] < hi]
            cells.append(f"{np.median(errors):.1f} ({len(errors)})" if errors else "-")
        corr = float(np.corrcoef([r["predicted"] for r in picked], [r["true"] for r in picked])[0, 1])
        rot.add_row(SOURCES[source], *cells, f"{corr:.3f}")
        summary[source] = {"median_error": float(np.median([r["error"] for r in picked])), "corr": corr}
    console.print(rot)
    att = Table(title="3. attention mass on the true correspondence, as a multiple of uniform attention")
    for layer in range(len(mass)):
        att.add_column(f"global {layer}")
    att.add_row(*(f"{m:.2f}" for m in mass))
    console.print(att)
    solve = Table(title="4. pose AUC@30 of cameras solved from the network's depth and intrinsics, by correspondences")
    solve.add_column("correspondences")
    solve.add_column("AUC@30 (mean over scenes)")
    for name, values in solved_auc.items():
        solve.add_row(name, f"{np.mean(values):.3f}")
    console.print(solve)
    summary["solved_auc30"] = {name: float(np.mean(values)) for name, values in solved_auc.items()}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
