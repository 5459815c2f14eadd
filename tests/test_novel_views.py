"""Novel views: Gaussians built from ground-truth geometry re-render the views (against the
synthetic scenes' exact images), and `recon3d render` writes videos from them."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from helpers.cameras import intrinsics, ring

from recon3d.cli import main as cli_main
from recon3d.eval.image_metrics import psnr
from recon3d.gaussians import gaussians_from_prediction
from recon3d.io.ply import write_gaussians_ply
from recon3d.masks import best_view
from recon3d.render import render
from recon3d.synth import build_world, make_scene
from recon3d.synth.render import render_views
from recon3d.synth.truth import scene_prediction as gt_prediction
from recon3d.synth.world import SceneObject
from recon3d.types import SH_C0, Gaussians

# ---------------------------------------------------------------- helpers


def _read_mp4(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ---------------------------------------------------------------- camera paths


# ---------------------------------------------------------------- image metrics


# ---------------------------------------------------------------- video


# ---------------------------------------------------------------- acceptance: ground-truth Gaussians


# 8 views at 128x96; views 2 and 5 are held out (between input views on the object ring).
HELD_OUT = [2, 5]


@pytest.fixture(scope="module", params=["object", "room"])
def gt_renders(request):
    scene = make_scene(request.param, 0, 8, (128, 96))
    inputs = [v for v in range(8) if v not in HELD_OUT]
    pred = gt_prediction(scene, inputs)
    gaussians = gaussians_from_prediction(pred, keep=scene.masks[inputs], opacity=1.0)
    out = render(gaussians, torch.as_tensor(scene.extrinsics_w2c, dtype=torch.float32),
                 torch.as_tensor(scene.intrinsics, dtype=torch.float32), 128, 96, backend="cpu")
    colors, alphas = out.colors.numpy(), out.alphas[..., 0].numpy()
    reference = scene.images / 255.0
    input_psnr = [psnr(colors[v], reference[v], scene.masks[v]) for v in inputs]
    covered = [scene.masks[v] & (alphas[v] > 0.5) for v in HELD_OUT]
    held_psnr = [psnr(colors[v], reference[v], c) for v, c in zip(HELD_OUT, covered)]
    coverage = [float(c.sum() / scene.masks[v].sum()) for v, c in zip(HELD_OUT, covered)]
    print(f"\n{request.param}: input-view PSNR (dB) {np.round(input_psnr, 2).tolist()}; held-out PSNR over "
          f"covered pixels {np.round(held_psnr, 2).tolist()}, coverage {np.round(coverage, 3).tolist()}")
    return {"scene": scene, "inputs": inputs, "pred": pred, "alphas": alphas,
            "input_psnr": input_psnr, "held_psnr": held_psnr}


def test_gt_gaussians_cover_and_resemble_the_views(gt_renders):
    scene, inputs = gt_renders["scene"], gt_renders["inputs"]
    # Each kept pixel holds its own Gaussian (opacity 1, clamped to 0.99) centred on the
    # pixel centre, so at least 0.99 of every surface pixel of an input view is covered.
    for v in inputs:
        assert gt_renders["alphas"][v][scene.masks[v]].min() >= 0.99 - 1e-5
    # Loose sanity bounds (measured 21.0-21.1 dB on inputs, 21.0-24.2 dB held out): these
    # point-sampled textures carry hard edges and detail finer than a pixel, which no set
    # of pixel-sized Gaussians reproduces; see the band-limited scenes below for 30 dB.
    assert min(gt_renders["input_psnr"]) >= 19.0
    assert min(gt_renders["held_psnr"]) >= 18.0


class _SmoothAlbedo:
    """A band-limited analytic albedo (duck-typing `recon3d.synth.textures.Texture`): per
    channel, a base colour plus 0.2 sin(3 x·d + φ) of the surface coordinate x (metres),
    a 2.1 m wavelength along a random direction d."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.base = rng.uniform(0.25, 0.75, 3)
        directions = rng.normal(size=(3, 3))
        self.directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        self.phase = rng.uniform(0.0, 2 * np.pi, 3)

    def albedo(self, noise, coords: np.ndarray) -> np.ndarray:
        wave = np.sin(3.0 * coords @ self.directions.T + self.phase)
        return np.clip(self.base + 0.2 * wave, 0.0, 1.0).astype(np.float32)


BAND_LIMITED_WH = (192, 144)


@pytest.fixture(scope="module")
def band_limited(request):
    """Ground-truth Gaussians of a band-limited scene, re-rendered into all 8 views.

    The scene is the synthetic scene's geometry and cameras with `_SmoothAlbedo`
    textures, rendered with 2x2 rays per pixel (``supersample=2``): images as smooth at
    the pixel scale as a camera's. The Gaussians come from the product path: ground-truth
    depth and cameras of the 6 input views, `best_view` (one layer of Gaussians per
    surface) and `gaussians_from_prediction` with its default footprint, opacity 1.
    """
    kind = request.param
    width, height = BAND_LIMITED_WH
    geometry = make_scene(kind, 0, 8, BAND_LIMITED_WH)
    rng = np.random.default_rng(1)
    world = build_world(kind, 0)
    world = dataclasses.replace(world, objects=tuple(SceneObject(o.shape, _SmoothAlbedo(rng)) for o in world.objects))
    renders = render_views(world, geometry.extrinsics_w2c, geometry.intrinsics, width, height, supersample=2)
    assert np.array_equal(renders.depths, geometry.depths)
    scene = dataclasses.replace(geometry, images=renders.images, supersample=2)

    inputs = [v for v in range(8) if v not in HELD_OUT]
    pred = gt_prediction(scene, inputs)
    keep = best_view(pred.points_from_depth(), pred.depth, pred.extrinsics_w2c, pred.intrinsics, scene.masks[inputs])
    gaussians = gaussians_from_prediction(pred, keep=keep, opacity=1.0)
    out = render(gaussians, torch.as_tensor(scene.extrinsics_w2c, dtype=torch.float32),
                 torch.as_tensor(scene.intrinsics, dtype=torch.float32), width, height, backend="cpu")
    colors, alphas = out.colors.numpy(), out.alphas[..., 0].numpy()
    reference = scene.images / 255.0
    # Silhouettes: pixels within one pixel of a depth step of more than 10 %.
    depth = np.where(scene.masks, scene.depths, 1e6).astype(np.float32)  # sky: far away
    window = np.ones((3, 3), np.uint8)
    silhouettes = np.stack([cv2.dilate(d, window) > 1.1 * cv2.erode(d, window) for d in depth]) & scene.masks
    input_psnr = [psnr(colors[v], reference[v], scene.masks[v]) for v in inputs]
    interior_psnr = [psnr(colors[v], reference[v], scene.masks[v] & ~silhouettes[v]) for v in inputs]
    covered = [scene.masks[v] & (alphas[v] > 0.5) for v in HELD_OUT]
    held_psnr = [psnr(colors[v], reference[v], c) for v, c in zip(HELD_OUT, covered)]
    coverage = [float(c.sum() / scene.masks[v].sum()) for v, c in zip(HELD_OUT, covered)]
    print(f"\nband-limited {kind} {width}x{height}, {len(gaussians)} Gaussians ({keep.mean():.2f} of the pixels): "
          f"input-view PSNR (dB) {np.round(input_psnr, 2).tolist()}, off silhouettes "
          f"{np.round(interior_psnr, 2).tolist()} ({silhouettes[inputs].sum() / scene.masks[inputs].sum():.3f} "
          f"of the pixels are silhouettes); held-out PSNR over covered pixels {np.round(held_psnr, 2).tolist()}, "
          f"coverage {np.round(coverage, 3).tolist()}")
    return {"input_psnr": input_psnr, "interior_psnr": interior_psnr, "held_psnr": held_psnr, "coverage": coverage}


@pytest.mark.parametrize("band_limited", ["room"], indirect=True)
def test_gt_gaussians_reproduce_input_views_at_30db(band_limited):
    # The acceptance check, over every surface pixel of every input view (measured
    # 32.4-36.9 dB; held out 30.7-30.8 dB over the 89-97 % of their surface that the
    # input views see).
    assert min(band_limited["input_psnr"]) >= 30.0
    assert min(band_limited["held_psnr"]) >= 27.0 and min(band_limited["coverage"]) >= 0.8


@pytest.mark.parametrize("band_limited", ["object"], indirect=True)
def test_gt_gaussians_reproduce_object_views_at_30db_off_silhouettes(band_limited):
    # Objects seen from around, against the ground behind them: 30 dB holds off the
    # silhouettes (measured 33.3-35.3 dB), not on whole images (27.3-29.2 dB). Along a
    # silhouette, the views that see the object's flank head-on stack their Gaussians
    # within a pixel of the outline, edge-on; the rasterizer widens each to at least
    # 0.3 px² (EPS2D), so together they cover the background pixel next to the outline
    # (alpha ~0.9 where the image has none of the object). That is the classic (INRIA,
    # gsplat) rasterizer's rule, not the Gaussians', so it is bounded and reported here.
    assert min(band_limited["interior_psnr"]) >= 30.0
    assert min(band_limited["input_psnr"]) >= 26.0
    assert min(band_limited["held_psnr"]) >= 24.0


def test_own_view_gaussians_with_small_footprint_reproduce_the_view(gt_renders):
    # Isolates the footprint: a view's own Gaussians, a tenth of a pixel wide (so the
    # rasterizer's 0.3 px² dilation dominates), must return its pixels; a half-pixel
    # error in the pixel-centre conventions would cost several dB here.
    scene, pred = gt_renders["scene"], gt_renders["pred"]
    scores = []
    for i, v in enumerate(gt_renders["inputs"]):
        one_view = dataclasses.replace(pred, **{
            f.name: getattr(pred, f.name)[i:i + 1] for f in dataclasses.fields(pred)
            if isinstance(getattr(pred, f.name), np.ndarray)
        })
        gaussians = gaussians_from_prediction(one_view, keep=scene.masks[v][None], opacity=1.0, scale_factor=0.1)
        colors = render(gaussians, torch.as_tensor(one_view.extrinsics_w2c), torch.as_tensor(one_view.intrinsics),
                        128, 96, backend="cpu").colors[0].numpy()
        scores.append(psnr(colors, scene.images[v] / 255.0, scene.masks[v]))
    print(f"\n{scene.kind}: own-view PSNR at scale_factor 0.1 (dB) {np.round(scores, 2).tolist()}")
    assert min(scores) >= 28.0


# ---------------------------------------------------------------- CLI


def _tiny_scene(tmp_path: Path) -> tuple[Path, Path]:
    """A PLY of 400 Gaussians on a unit sphere at the origin and 3 cameras looking at it."""
    n = 400
    k = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / n), np.pi * (1 + 5**0.5) * k
    means = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], axis=1)
    rgb = 0.5 + 0.4 * means
    gaussians = Gaussians(
        means=torch.as_tensor(means, dtype=torch.float32),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        scales=torch.full((n, 3), 0.12),
        opacities=torch.full((n,), 0.9),
        sh=torch.as_tensor((rgb - 0.5) / SH_C0, dtype=torch.float32)[:, None, :],
    )
    write_gaussians_ply(tmp_path / "tiny.ply", gaussians)
    cameras = [{"extrinsics_w2c": w.tolist(), "K": intrinsics(40.0, 64, 48).tolist(), "width": 64, "height": 48}
               for w in ring(np.zeros(3), 4.0, 1.0, 3)]
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    return tmp_path / "tiny.ply", tmp_path / "cameras.json"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_render_orbit(tmp_path):
    ply, cameras = _tiny_scene(tmp_path)
    out = tmp_path / "orbit.mp4"
    result = _run("render", str(ply), "--cameras", str(cameras), "--path", "orbit", "--frames", "4",
                  "--backend", "cpu", "-o", str(out))
    assert result.returncode == 0, result.stderr
    frames = _read_mp4(out)
    assert len(frames) == 4 and all(f.shape == (48, 64, 3) for f in frames)
    for frame in frames:
        # The sphere sits on the focus, which every orbit camera sees at the image centre.
        assert frame[20:28, 28:36].mean() > 60 and frame[:6, :6].mean() < 10


@pytest.mark.slow
def test_cli_render_depth_video(tmp_path, capsys):
    ply, cameras = _tiny_scene(tmp_path)
    out = tmp_path / "depth.mp4"
    code = cli_main(["render", str(ply), "--cameras", str(cameras), "--path", "interpolate", "--frames", "5",
                     "--mode", "D", "--backend", "cpu", "--width", "33", "--height", "25", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    frames = _read_mp4(out)
    # 33x25 is padded to even sides for H.264.
    assert len(frames) == 5 and frames[0].shape == (26, 34, 3)
    centre = frames[0][10:15, 14:19].reshape(-1, 3).mean(0)
    # The sphere's near side is in the lower part of the depth range: viridis there is
    # blue-purple (blue above red), never the yellow of the far end.
    assert centre[2] > centre[0] and frames[0][:3, :3].mean() < 10


@pytest.mark.slow
def test_cli_render_without_cameras_is_a_usage_error(tmp_path):
    ply, _ = _tiny_scene(tmp_path)
    result = _run("render", str(ply), "--path", "orbit", "--frames", "4", "-o", str(tmp_path / "v.mp4"))
    assert result.returncode == 2, result.stderr  # a missing option: a usage error
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines[0].startswith("Usage: recon3d render") and "Invalid value for '--cameras'" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "v.mp4").exists()
