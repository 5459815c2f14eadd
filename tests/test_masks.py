"""Pixel masks (recon3d.masks): confidence, backgrounds, depth edges, sky, frame selection, best view."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.predictions import make_prediction, pixel_rays

from recon3d.gaussians import gaussians_from_prediction
from recon3d.masks import (
    best_view,
    black_background,
    confidence_percentile,
    depth_edges,
    frame_selection,
    sky_mask,
    white_background,
)
from recon3d.render import render
from recon3d.synth import make_scene

K_VIEW = np.array([[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]])


def plane_views(centres: list[list[float]], depth_scale: list[float] | None = None):
    """Cameras looking along world +z from ``centres`` at the plane z = 5: points
    ``[S,12,16,3]``, depth ``[S,12,16]``, w2c ``[S,4,4]`` and K ``[S,3,3]``. A depth
    scale other than 1 moves a view's points off the plane (an inconsistent prediction)."""
    scales = depth_scale or [1.0] * len(centres)
    w2c, depth, points = [], [], []
    rays = pixel_rays(K_VIEW, 12, 16)
    for centre, scale in zip(centres, scales):
        transform = np.eye(4)
        transform[:3, 3] = -np.asarray(centre)
        d = np.full((12, 16), (5.0 - centre[2]) * scale)
        w2c.append(transform)
        depth.append(d)
        points.append(d[..., None] * rays + np.asarray(centre))
    return np.stack(points), np.stack(depth), np.stack(w2c), np.repeat(K_VIEW[None], len(centres), 0)


def pixels_seen_by(points: np.ndarray, centre: list[float], keep: np.ndarray | None = None) -> np.ndarray:
    """``[H,W]`` bool: points that fall on a (kept) pixel of the camera at ``centre``."""
    cam = points - np.asarray(centre)
    u = K_VIEW[0, 0] * cam[..., 0] / cam[..., 2] + K_VIEW[0, 2]
    v = K_VIEW[1, 1] * cam[..., 1] / cam[..., 2] + K_VIEW[1, 2]
    inside = (u >= 0) & (u < 16) & (v >= 0) & (v < 12)
    if keep is not None:
        inside &= keep[np.clip(np.floor(v), 0, 11).astype(int), np.clip(np.floor(u), 0, 15).astype(int)]
    return inside


def test_depth_edges_removes_both_sides_of_a_step() -> None:
    depth = np.ones((1, 5, 8))
    depth[:, :, 4:] = 2.0
    depth[:, 0, 0] = 1.04  # within 5 % of its neighbours: not an edge
    keep = depth_edges(depth, rel_threshold=0.05)
    expected = np.ones_like(keep)
    expected[:, :, 3:5] = False
    np.testing.assert_array_equal(keep, expected)

    ramp = np.broadcast_to(np.linspace(1.0, 1.3, 10), (1, 4, 10))  # 3.3 % steps
    assert depth_edges(ramp).all()


def test_confidence_percentile_drops_the_expected_count() -> None:
    conf = 1 + np.random.default_rng(0).permutation(200).reshape(2, 10, 10).astype(np.float64)
    keep = confidence_percentile(conf, 30)
    assert (~keep).sum() == 60
    assert conf[~keep].max() < conf[keep].min()
    conf[0, 0, :3] = 0.0
    assert (~confidence_percentile(conf, 0)).sum() == 3
    assert confidence_percentile(conf, 100).sum() == 1


def test_black_and_white_background_thresholds() -> None:
    pixels = np.array(
        [[5, 5, 5], [5, 5, 6], [0, 0, 16], [241, 241, 241], [241, 241, 240], [240, 240, 240], [255, 255, 255]]
    )
    images = (pixels.T[None, :, None, :] / 255.0).astype(np.float32)  # [1,3,1,7]
    np.testing.assert_array_equal(black_background(images)[0, 0], [False, True, True, True, True, True, True])
    np.testing.assert_array_equal(white_background(images)[0, 0], [True, True, True, False, True, True, False])


def test_frame_selection_broadcasts() -> None:
    keep = frame_selection(4, [0, -1])
    assert keep.shape == (4, 1, 1)
    combined = keep & np.ones((4, 3, 5), dtype=bool)
    np.testing.assert_array_equal(combined.sum(axis=(1, 2)), [15, 0, 0, 15])
    with pytest.raises(ValueError):
        frame_selection(4, [4])


def test_sky_mask_removes_smooth_sky_connected_to_the_top() -> None:
    rng = np.random.default_rng(0)
    height, width = 40, 50
    rows = np.linspace(0, 1, 20)[:, None]
    image = np.empty((3, height, width))
    # Top half: a blue sky brightening towards the horizon.
    image[0, :20] = 0.35 + 0.3 * rows
    image[1, :20] = 0.55 + 0.25 * rows
    image[2, :20] = 0.9
    # Bottom half: textured ground, with a smooth blue box that does not touch the top.
    image[:, 20:] = rng.uniform(0.1, 0.6, (3, 20, width))
    image[:, 28:36, 10:20] = np.array([0.4, 0.6, 0.9])[:, None, None]
    overcast = np.full((3, height, width), 0.85)
    overcast[:, 20:] = rng.uniform(0.0, 0.5, (3, 20, width))
    keep = sky_mask(np.stack((image, overcast)))

    for view in range(2):
        assert not keep[view, :20].any()
        assert keep[view, 20:].all()
    assert keep[0, 28:36, 10:20].all()


def test_best_view_keeps_the_finer_view() -> None:
    # View 0 at distance 10 samples the plane half as finely as view 1 at distance 5.
    far, near = [0.3, 0.1, -5.0], [0.0, 0.0, 0.0]
    points, depth, w2c, K = plane_views([far, near])
    keep = best_view(points, depth, w2c, K)
    assert keep[1].all()
    covered = pixels_seen_by(points[0], near)
    assert 0 < covered.sum() < covered.size
    np.testing.assert_array_equal(keep[0], ~covered)

    # Pixels that other filters removed from the near view stay with the far view.
    near_keep = np.ones((12, 16), dtype=bool)
    near_keep[:, :8] = False
    keep = best_view(points, depth, w2c, K, np.stack([np.ones_like(near_keep), near_keep]))
    np.testing.assert_array_equal(keep[1], near_keep)
    np.testing.assert_array_equal(keep[0], ~pixels_seen_by(points[0], near, near_keep))


def test_best_view_ties_go_to_the_lower_index_and_disagreements_stay() -> None:
    left, right = [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]
    points, depth, w2c, K = plane_views([left, right])
    keep = best_view(points, depth, w2c, K)
    assert keep[0].all()
    np.testing.assert_array_equal(keep[1], ~pixels_seen_by(points[1], left))
    assert (~keep[1]).sum() > 100  # most of the image overlaps

    # A view whose depth disagrees by 5 % (beyond the 1 % tolerance) is not a duplicate.
    points, depth, w2c, K = plane_views([left, right], depth_scale=[1.0, 1.05])
    assert best_view(points, depth, w2c, K).all()
    assert not best_view(points, depth, w2c, K, rel_depth_tol=0.06)[1].all()


def test_best_view_on_a_synthetic_scene_keeps_coverage() -> None:
    scene = make_scene("object", 1, 4, (64, 48))
    points = scene.world_points()
    keep = best_view(points, scene.depths, scene.extrinsics_w2c, scene.intrinsics, scene.masks)
    assert (keep <= scene.masks).all()
    assert 0.3 < keep.sum() / scene.masks.sum() < 0.8
    # Every input pixel stays covered by the Gaussians that remain.
    pred = make_prediction(scene.depths, scene.extrinsics_w2c, scene.intrinsics,
                           images=scene.images.transpose(0, 3, 1, 2) / 255.0, points=points)
    g = gaussians_from_prediction(pred, keep=keep, opacity=1.0)
    alphas = render(g, torch.as_tensor(scene.extrinsics_w2c, dtype=torch.float32),
                    torch.as_tensor(scene.intrinsics, dtype=torch.float32), 64, 48, backend="cpu").alphas[..., 0]
    assert (alphas.numpy()[scene.masks] > 0.9).mean() > 0.99
