"""Novel views: camera paths, image metrics, mp4 writing, `recon3d render`, and the
acceptance check that Gaussians built from ground-truth geometry re-render the views.

References are independent of the code under test: cameras built with the synthetic
scenes' own look-at, analytic PSNR/SSIM values and a brute-force SSIM, OpenCV's PSNR,
matplotlib's published viridis end colours, and the synthetic scenes' exact images.
"""
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
from scipy.spatial.transform import Rotation

from recon3d.cli import main as cli_main
from recon3d.eval.image_metrics import psnr, ssim
from recon3d.gaussians import gaussians_from_prediction
from recon3d.geometry.cameras import camera_centres, look_at
from recon3d.io.ply import write_gaussians_ply
from recon3d.io.video_writer import colorize_depth, write_mp4
from recon3d.masks import best_view
from recon3d.render import render
from recon3d.render.paths import (
    focus_point,
    interpolate_path,
    keyframe_indices,
    load_cameras,
    orbit_path,
)
from recon3d.synth import build_world, make_scene, write_scene
from recon3d.synth.render import render_views
from recon3d.synth.truth import scene_prediction as gt_prediction
from recon3d.synth.world import SceneObject
from recon3d.types import SH_C0, Gaussians

# ---------------------------------------------------------------- helpers


def _K(f: float, width: int, height: int) -> np.ndarray:
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def _ring(target: np.ndarray, radius: float, height: float, count: int, phase: float = 0.3) -> np.ndarray:
    """``[count,4,4]`` level cameras on a horizontal circle (world z up) looking at ``target``."""
    angles = phase + 2 * np.pi * np.arange(count) / count
    eyes = target + np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(count, height)], axis=1)
    return np.stack([look_at(eye, target) for eye in eyes])


def _read_mp4(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _assert_rotations(w2c: np.ndarray) -> None:
    rot = w2c[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_array_equal(w2c[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(w2c), 4)))


# ---------------------------------------------------------------- camera paths


def test_focus_of_a_ring_is_its_target():
    target = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(focus_point(_ring(target, 4.0, 1.5, 5)), target, atol=1e-9)


def test_focus_of_parallel_cameras_is_the_median_look_point():
    # Three cameras side by side along y, all looking along +x: the axes never meet.
    eyes = np.array([[0.0, -1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    w2c = np.stack([look_at(eye, eye + [1.0, 0.0, 0.0]) for eye in eyes])
    # Mean distance of the centres from their centroid (y = 1/3): (4/3 + 1/3 + 5/3) / 3.
    reach = 10.0 / 9.0
    np.testing.assert_allclose(focus_point(w2c), [reach, 0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("radius_scale", [1.0, 1.3])
def test_orbit_circles_the_focus_and_looks_at_it(radius_scale):
    target = np.array([1.0, 2.0, 0.5])
    w2c_in = _ring(target, 4.0, 1.5, 5)
    K_in = np.repeat(_K(80.0, 64, 48)[None], 5, axis=0)
    w2c, K = orbit_path(w2c_in, K_in, 12, radius_scale=radius_scale)

    assert w2c.shape == (12, 4, 4) and K.shape == (12, 3, 3)
    np.testing.assert_array_equal(K, np.repeat(K_in[:1], 12, axis=0))
    _assert_rotations(w2c)
    centres = camera_centres(w2c)
    distance = np.hypot(4.0, 1.5) * radius_scale
    np.testing.assert_allclose(np.linalg.norm(centres - target, axis=1), distance, rtol=1e-12)
    # The input ring is level, so the orbit is a horizontal circle about the vertical
    # through the target, at the inputs' elevation (height scaled with the distance).
    np.testing.assert_allclose(centres[:, 2], target[2] + 1.5 * radius_scale, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(centres[:, :2] - target[:2], axis=1), 4.0 * radius_scale, rtol=1e-12)
    # Evenly spaced: consecutive centres are one 30-degree chord apart.
    chords = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    np.testing.assert_allclose(chords, 2 * 4.0 * radius_scale * np.sin(np.pi / 12), rtol=1e-9)
    # The focus projects to the principal point of every frame.
    cam = np.einsum("nij,j->ni", w2c[:, :3, :3], target) + w2c[:, :3, 3]
    assert (cam[:, 2] > 0).all()
    pixels = np.einsum("nij,nj->ni", K, cam)
    np.testing.assert_allclose(pixels[:, :2] / pixels[:, 2:], np.tile([32.0, 24.0], (12, 1)), atol=1e-9)
    # Up is kept: image x stays horizontal and image up (-y) points to +z.
    np.testing.assert_allclose(w2c[:, 0, 2], 0.0, atol=1e-12)
    assert (-w2c[:, 1, 2] > 0).all()
    # Frame 0 starts at the first input camera's azimuth.
    first = camera_centres(w2c_in)[0] - target
    start = centres[0] - target
    np.testing.assert_allclose(start[:2] / np.linalg.norm(start[:2]), first[:2] / np.linalg.norm(first[:2]), atol=1e-9)


def test_orbit_elevation_override():
    target = np.zeros(3)
    w2c, _ = orbit_path(_ring(target, 3.0, 0.5, 4), np.repeat(_K(50.0, 32, 32)[None], 4, 0), 6, elevation_deg=30.0)
    centres = camera_centres(w2c)
    distance = np.hypot(3.0, 0.5)
    np.testing.assert_allclose(centres[:, 2], distance * 0.5, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), distance, rtol=1e-12)


def test_keyframe_indices():
    np.testing.assert_array_equal(keyframe_indices(4, 10), [0, 3, 6, 9])
    # 7/3 = 2.33 and 14/3 = 4.67 round to the nearest frame.
    np.testing.assert_array_equal(keyframe_indices(4, 8), [0, 2, 5, 7])
    np.testing.assert_array_equal(keyframe_indices(1, 5), [0])


@pytest.mark.parametrize("num_frames", [10, 8, 23])
def test_interpolate_passes_through_the_inputs(num_frames):
    scene_w2c = make_scene("trajectory", 3, 4, (32, 24)).extrinsics_w2c
    K_in = np.stack([_K(40.0 + 5 * i, 32, 24) for i in range(4)])
    w2c, K = interpolate_path(scene_w2c, K_in, num_frames)
    keys = {10: [0, 3, 6, 9], 8: [0, 2, 5, 7], 23: [0, 7, 15, 22]}[num_frames]
    np.testing.assert_array_equal(w2c[keys], scene_w2c)
    np.testing.assert_array_equal(K[keys], K_in)
    _assert_rotations(w2c)
    # Between keyframes every intrinsic moves linearly, so focal lengths are monotone.
    assert (np.diff(K[:, 0, 0]) > 0).all()


def test_interpolate_two_cameras_is_linear_and_halfway_rotated():
    eye0, eye1 = np.array([0.0, 0.0, 1.0]), np.array([2.0, 0.0, 1.0])
    w2c0 = look_at(eye0, [0.0, 5.0, 1.0])
    # The second camera turned by 60 degrees about its own y axis (a pan).
    turn = Rotation.from_euler("y", 60, degrees=True).as_matrix()
    w2c1 = np.eye(4)
    w2c1[:3, :3] = turn @ w2c0[:3, :3]
    w2c1[:3, 3] = -w2c1[:3, :3] @ eye1
    K_in = np.stack([_K(40.0, 32, 24), _K(60.0, 32, 24)])
    w2c, K = interpolate_path(np.stack([w2c0, w2c1]), K_in, 5)

    np.testing.assert_allclose(camera_centres(w2c), np.linspace(eye0, eye1, 5), atol=1e-12)
    relative = w2c[2, :3, :3] @ w2c0[:3, :3].T
    np.testing.assert_allclose(relative, Rotation.from_euler("y", 30, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(K[:, 0, 0], [40.0, 45.0, 50.0, 55.0, 60.0])


def test_interpolate_needs_a_frame_per_camera():
    with pytest.raises(ValueError, match="at least the number of cameras"):
        interpolate_path(_ring(np.zeros(3), 2.0, 1.0, 5), np.repeat(_K(30.0, 16, 16)[None], 5, 0), 4)


def test_load_cameras_from_scene_folder_json_and_npz(tmp_path):
    scene = make_scene("object", 2, 3, (40, 30))
    write_scene(scene, tmp_path / "scene")
    from_scene = load_cameras(tmp_path / "scene" / "cameras.json")
    np.testing.assert_array_equal(from_scene.extrinsics_w2c, scene.extrinsics_w2c)
    np.testing.assert_array_equal(from_scene.intrinsics, scene.intrinsics)
    np.testing.assert_array_equal(from_scene.sizes_wh, [[40, 30]] * 3)

    records = [{"extrinsics_w2c": w.tolist(), "K": k.tolist(), "width": 40, "height": 30}
               for w, k in zip(scene.extrinsics_w2c, scene.intrinsics)]
    (tmp_path / "list.json").write_text(json.dumps(records))
    np.testing.assert_array_equal(load_cameras(tmp_path / "list.json").extrinsics_w2c, scene.extrinsics_w2c)

    pred = gt_prediction(scene, [0, 1, 2])
    pred.save_npz(tmp_path / "pred.npz")
    from_npz = load_cameras(tmp_path / "pred.npz")
    np.testing.assert_allclose(from_npz.extrinsics_w2c, scene.extrinsics_w2c, atol=1e-6)
    np.testing.assert_array_equal(from_npz.sizes_wh, [[40, 30]] * 3)


# ---------------------------------------------------------------- image metrics


def test_psnr_of_a_known_error():
    ref = np.random.default_rng(0).uniform(0.0, 0.9, (20, 30, 3))
    # MSE 0.01 gives 10 log10(1 / 0.01) = 20 dB.
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)
    assert psnr(ref, ref) == float("inf")
    # Error 0.1 on the left half only: 20 dB on that half, none on the right half.
    wrong = ref.copy()
    wrong[:, :15] += 0.1
    left = np.zeros((20, 30), dtype=bool)
    left[:, :15] = True
    assert psnr(wrong, ref, mask=left) == pytest.approx(20.0, abs=1e-9)
    assert psnr(wrong, ref, mask=~left) == float("inf")
    assert psnr(wrong, ref) == pytest.approx(10 * np.log10(1 / 0.005), abs=1e-9)


def test_psnr_matches_opencv_on_8_bits():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b, max_val=255.0) == pytest.approx(cv2.PSNR(a, b, 255.0), abs=1e-9)


def _ssim_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one channel by explicit weighted sums over every full 11x11 window."""
    k = np.arange(11) - 5
    w = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_against_brute_force_and_closed_forms():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (16, 19, 3))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    expected = np.mean([_ssim_brute_force(x[..., c], y[..., c]) for c in range(3)])
    assert ssim(x, y) == pytest.approx(expected, abs=1e-10)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    # Constant images have no variance: SSIM = (2ab + C1) / (a² + b² + C1).
    a, b, c1 = 0.3, 0.6, 0.01**2
    assert ssim(np.full((12, 12, 3), a), np.full((12, 12, 3), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(3)
    u, v = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 32))
    x = np.stack([u, v, 0.5 + 0.4 * np.sin(8 * u)], axis=-1)
    scores = [ssim(np.clip(x + rng.normal(0, s, x.shape), 0, 1), x) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


# ---------------------------------------------------------------- video


def test_write_mp4_pads_odd_sizes_and_round_trips(tmp_path):
    u, v = np.meshgrid(np.linspace(0, 1, 45), np.linspace(0, 1, 31))
    base = np.stack([u, v, 1 - u], axis=-1)
    frames = np.stack([np.round(255 * np.clip(base * (0.5 + 0.1 * i), 0, 1)).astype(np.uint8) for i in range(5)])
    assert write_mp4(tmp_path / "clip.mp4", frames, fps=12) == 5
    decoded = _read_mp4(tmp_path / "clip.mp4")
    assert len(decoded) == 5 and decoded[0].shape == (32, 46, 3)
    for got, want in zip(decoded, frames):
        # Lossy (4:2:0 chroma) but close on a smooth image, far from a flipped or
        # channel-swapped one; the padding repeats the last row/column.
        assert np.abs(got[:31, :45].astype(int) - want).mean() < 5
        assert np.abs(got[31, :45].astype(int) - want[30]).mean() < 6
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_write_mp4_refuses_bad_input_without_leaving_files(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "empty.mp4", [])
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "float.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_colorize_depth_uses_viridis_ends():
    depth = np.array([[1.0, 2.0, 5.0, 9.0]])
    valid = np.array([[True, True, True, False]])
    rgb = colorize_depth(depth, valid, near=2.0, far=5.0)
    # matplotlib's viridis runs from #440154 to #fde725.
    np.testing.assert_array_equal(rgb[0], [[68, 1, 84], [68, 1, 84], [253, 231, 37], [0, 0, 0]])


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
    cameras = [{"extrinsics_w2c": w.tolist(), "K": _K(40.0, 64, 48).tolist(), "width": 64, "height": 48}
               for w in _ring(np.zeros(3), 4.0, 1.0, 3)]
    (tmp_path / "cameras.json").write_text(json.dumps(cameras))
    return tmp_path / "tiny.ply", tmp_path / "cameras.json"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True, timeout=300)


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


def test_cli_render_without_cameras_is_a_usage_error(tmp_path):
    ply, _ = _tiny_scene(tmp_path)
    result = _run("render", str(ply), "--path", "orbit", "--frames", "4", "-o", str(tmp_path / "v.mp4"))
    assert result.returncode == 2, result.stderr  # a missing option: a usage error
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines[0].startswith("Usage: recon3d render") and "Invalid value for '--cameras'" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "v.mp4").exists()
