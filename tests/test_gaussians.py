"""Gaussians from predictions, voxel fusion and pruning against analytic cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.gaussians import random_gaussians
from helpers.predictions import camera, make_prediction, pixel_rays
from scipy.spatial.transform import Rotation

from recon3d.gaussians import fuse_voxels, gaussians_from_prediction, prune_to_count
from recon3d.masks import (
    depth_edges,
)
from recon3d.render import render
from recon3d.synth import make_scene
from recon3d.types import SH_C0, Prediction


def local_axes(quats: torch.Tensor) -> np.ndarray:
    """``[N,3,3]`` rotation matrices of w,x,y,z quaternions, by scipy."""
    return Rotation.from_quat(quats.double().numpy(), scalar_first=True).as_matrix()


K_TEST = np.array([[20.0, 0.0, 3.7], [0.0, 25.0, 2.9], [0.0, 0.0, 1.0]])
W2C_TEST = camera([0.3, -0.2, 0.5], [0.4, -1.0, 2.0])


def to_camera(world: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    return world @ w2c[:3, :3].T + w2c[:3, 3]


def test_fronto_parallel_plane() -> None:
    height, width, d = 6, 8, 3.0
    pred = make_prediction(np.full((1, height, width), d), W2C_TEST[None], K_TEST[None])
    g = gaussians_from_prediction(pred, scale_factor=1.5, flatten=0.2, sh_degree=2)
    assert len(g) == height * width and g.sh.shape == (height * width, 9, 3)

    cam = to_camera(g.means.double().numpy(), W2C_TEST)
    np.testing.assert_allclose(cam, (d * pixel_rays(K_TEST, height, width)).reshape(-1, 3), atol=1e-5)

    axes = local_axes(g.quats)
    rot = W2C_TEST[:3, :3]
    # Local z is the normal facing the camera (-z in camera axes), local x the image's u axis.
    np.testing.assert_allclose(axes[:, :, 2] @ rot.T, np.tile([0.0, 0.0, -1.0], (len(g), 1)), atol=1e-6)
    np.testing.assert_allclose(axes[:, :, 0] @ rot.T, np.tile([1.0, 0.0, 0.0], (len(g), 1)), atol=1e-6)
    torch.testing.assert_close(g.quats.norm(dim=-1), torch.ones(len(g)))

    in_plane = [d / 20.0 * 1.5, d / 25.0 * 1.5]
    expected_scales = np.tile(in_plane + [0.2 * min(in_plane)], (len(g), 1))
    np.testing.assert_allclose(g.scales.numpy(), expected_scales, rtol=1e-6)

    rgb = pred.images[0].transpose(1, 2, 0).reshape(-1, 3)
    np.testing.assert_allclose(g.sh[:, 0].numpy(), (rgb - 0.5) / SH_C0, atol=1e-6)
    assert not g.sh[:, 1:].any()
    np.testing.assert_allclose(g.opacities.numpy(), 1 - 1 / pred.depth_conf.ravel(), atol=1e-6)

    constant = gaussians_from_prediction(pred, opacity=0.7)
    torch.testing.assert_close(constant.opacities, torch.full((len(g),), 0.7))


def _gap_coverage(s: float) -> float:
    """Alpha of opaque Gaussians (variance s² + 0.3 px² after dilation, alpha clamped to
    0.99) on a unit pixel lattice at a point between four lattice points."""
    offsets = np.arange(-5, 6) + 0.5
    d2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    alpha = np.minimum(0.99, np.exp(-0.5 * d2 / (s * s + 0.3)))
    return float(1 - np.prod(1 - alpha[alpha >= 1 / 255]))


@pytest.mark.parametrize("scale_factor, covered", [(None, True), (0.4, False)])
def test_default_footprint_closes_the_gaps_between_pixels(scale_factor, covered) -> None:
    # Opaque Gaussians of a fronto-parallel plane seen by its own camera, rendered with
    # every ray moved half a pixel right and down: each sample then lies between four
    # pixel centres, the point they cover least. The default footprint (0.6 px plus the
    # rasterizer's 0.3 px² dilation) covers it to 99.8 %; 0.4 px would leave 1.7 % open.
    height, width = 12, 16
    K = np.array([[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]])
    pred = make_prediction(np.full((1, height, width), 2.0), np.eye(4)[None], K[None])
    options = {} if scale_factor is None else {"scale_factor": scale_factor}
    g = gaussians_from_prediction(pred, opacity=1.0, **options)
    shifted = K.copy()
    shifted[:2, 2] -= 0.5
    alphas = render(g, torch.eye(4)[None], torch.tensor(shifted, dtype=torch.float32)[None], width, height,
                    backend="cpu").alphas[0, 4:-4, 4:-4, 0]  # away from the borders
    expected = _gap_coverage(0.6 if scale_factor is None else scale_factor)
    assert alphas.min().item() == pytest.approx(expected, abs=1e-4)
    assert (expected >= 0.99) == covered


def tilted_plane() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth ``[1,H,W]``, camera-frame points ``[H,W,3]`` and the camera-facing normal of
    the plane n·X = n·(0,0,3) with n = normalise(0.3, -0.4, -1)."""
    height, width = 12, 16
    K = np.array([[14.0, 0.0, 8.0], [0.0, 14.0, 6.0], [0.0, 0.0, 1.0]])
    normal = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
    rays = pixel_rays(K, height, width)
    depth = 3.0 * normal[2] / (rays @ normal)
    return depth[None], depth[..., None] * rays, normal


def test_tilted_plane_normals() -> None:
    depth, cam_points, normal = tilted_plane()
    K = np.array([[[14.0, 0.0, 8.0], [0.0, 14.0, 6.0], [0.0, 0.0, 1.0]]])
    pred = make_prediction(depth, W2C_TEST[None], K)
    g = gaussians_from_prediction(pred)
    cam = to_camera(g.means.double().numpy(), W2C_TEST)
    np.testing.assert_allclose(cam, cam_points.reshape(-1, 3), atol=1e-5)
    normals_cam = local_axes(g.quats)[:, :, 2] @ W2C_TEST[:3, :3].T
    np.testing.assert_allclose(normals_cam, np.tile(normal, (len(g), 1)), atol=1e-3)


def test_points_source_uses_the_point_map() -> None:
    depth, cam_points, normal = tilted_plane()
    K = np.array([[[14.0, 0.0, 8.0], [0.0, 14.0, 6.0], [0.0, 0.0, 1.0]]])
    rot, trans = W2C_TEST[:3, :3], W2C_TEST[:3, 3]
    world = (cam_points - trans) @ rot  # R^T (X - t) row-wise
    # A depth map that disagrees with the point map: only the points must be used.
    pred = make_prediction(np.full_like(depth, 7.0), W2C_TEST[None], K, points=world[None])
    keep = np.random.default_rng(1).random(depth.shape) < 0.6
    g = gaussians_from_prediction(pred, source="points", keep=keep)

    assert len(g) == keep.sum()
    np.testing.assert_allclose(g.means.numpy(), pred.points[keep], atol=0)
    np.testing.assert_allclose(g.opacities.numpy(), 1 - 1 / pred.points_conf[keep], atol=1e-6)
    z = cam_points[..., 2][keep[0]]
    # The default footprint is 0.6 of the pixel's footprint z/f.
    np.testing.assert_allclose(g.scales[:, 0].numpy(), 0.6 * z / 14.0, rtol=1e-5)
    normals_cam = local_axes(g.quats)[:, :, 2] @ rot.T
    np.testing.assert_allclose(normals_cam, np.tile(normal, (len(g), 1)), atol=1e-3)


def test_invalid_pixels_are_dropped() -> None:
    depth = np.full((1, 4, 5), 2.0)
    depth[0, 1, 1] = 0.0
    depth[0, 2, 3] = np.nan
    pred = make_prediction(depth, np.eye(4)[None], K_TEST[None])
    assert len(gaussians_from_prediction(pred)) == 18
    with pytest.raises(ValueError):
        gaussians_from_prediction(pred, source="mesh")


def scene_prediction(kind: str, seed: int) -> tuple[Prediction, np.ndarray, object]:
    scene = make_scene(kind, seed, 2, (64, 48))
    pred = make_prediction(
        scene.depths,
        scene.extrinsics_w2c,
        scene.intrinsics,
        images=scene.images.transpose(0, 3, 1, 2) / 255.0,
        points=scene.world_points(),
    )
    return pred, scene.masks, scene


@pytest.mark.parametrize("source", ["depth", "points"])
def test_synthetic_scene_means(source: str) -> None:
    pred, masks, scene = scene_prediction("object", 3)
    g = gaussians_from_prediction(pred, source=source, keep=masks)
    assert len(g) == masks.sum()
    expected = scene.world_points()[masks]
    error = np.abs(g.means.double().numpy() - expected).max(-1)
    assert (error <= 1e-4 * np.maximum(1.0, np.abs(expected).max(-1))).all()
    colours = scene.images[masks] / 255.0
    np.testing.assert_allclose(0.5 + SH_C0 * g.sh[:, 0].numpy(), colours, atol=1e-6)


def test_synthetic_scene_normals_match_ground_truth() -> None:
    pred, masks, scene = scene_prediction("room", 2)
    keep = masks & depth_edges(pred.depth, 0.02)
    g = gaussians_from_prediction(pred, keep=keep)
    cosine = (local_axes(g.quats)[:, :, 2] * scene.normals[keep]).sum(-1)
    assert np.median(cosine) > 0.999
    assert (cosine > 0.9).mean() > 0.9


def test_fusion_weighted_mean_of_one_voxel() -> None:
    g = random_gaussians(3)
    g.means = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [5.5, 5.5, 5.5]])
    g.quats[0] = torch.tensor(Rotation.from_rotvec([0.0, 0.2, 0.1]).as_quat(scalar_first=True))
    # A nearby rotation stored with the opposite sign: it must not cancel the first.
    g.quats[1] = -torch.tensor(Rotation.from_rotvec([0.1, 0.2, 0.0]).as_quat(scalar_first=True))
    fused = fuse_voxels(g, torch.tensor([1.0, 3.0, 2.0]), voxel_size=1.0)

    assert len(fused) == 2
    for name in ("means", "scales", "opacities", "sh"):
        value = getattr(g, name)
        torch.testing.assert_close(getattr(fused, name)[0], (value[0] + 3 * value[1]) / 4)
        torch.testing.assert_close(getattr(fused, name)[1], value[2])
    expected = g.quats[0] - 3 * g.quats[1]
    expected = expected / expected.norm()
    # q and -q are the same rotation: compare up to sign.
    sign = torch.sign((fused.quats[0] * expected).sum())
    torch.testing.assert_close(sign * fused.quats[0], expected)
    torch.testing.assert_close(fused.quats[1], g.quats[2])


def test_fusion_count_equals_occupied_voxels() -> None:
    rng = np.random.default_rng(0)
    voxel = 0.25
    cells = rng.integers(-6, 6, size=(150, 3))
    # Points well inside their cells, so that the expected cells do not depend on rounding.
    points = (cells + rng.uniform(0.1, 0.9, size=cells.shape)) * voxel
    g = random_gaussians(len(points))
    g.means = torch.tensor(points, dtype=torch.float32)
    fused = fuse_voxels(g, torch.ones(len(points)), voxel_size=voxel)
    assert len(fused) == len(np.unique(np.floor(points / voxel), axis=0))

    diagonal = np.linalg.norm(points.max(0) - points.min(0))
    relative = fuse_voxels(g, torch.ones(len(points)), relative_voxel=1 / 8)
    assert len(relative) == len(np.unique(np.floor(points / (diagonal / 8)), axis=0))


def test_prune_to_count() -> None:
    g = random_gaussians(10)
    score = (g.opacities * g.scales.prod(-1)).numpy()
    kept = prune_to_count(g, 4)
    expected = np.sort(np.argsort(-score)[:4])
    torch.testing.assert_close(kept.means, g.means[expected])
    custom = torch.arange(10.0)
    torch.testing.assert_close(prune_to_count(g, 3, score=custom).means, g.means[7:])
    assert len(prune_to_count(g, 20)) == 10


