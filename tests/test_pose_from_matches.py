"""Cameras from descriptor matches and depth, against exact synthetic cameras."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon3d.eval.metrics import camera_metrics
from recon3d.geometry.pose_from_matches import cameras_from_descriptors, candidate_pairs, cell_points, mutual_nearest
from recon3d.synth import make_scene
from recon3d.train.data import normalise_views
from recon3d.train.matching import descriptor_loss

STRIDE = 4


def _scene(kind: str, seed: int, views: int, size_wh: tuple[int, int] = (96, 72)):
    scene = make_scene(kind, seed=seed, num_views=views, size_wh=size_wh)
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    return scene, ext, depth, points


def _position_descriptors(points: np.ndarray, masks: np.ndarray, wavelength: float, seed: int = 0) -> torch.Tensor:
    """``[S,h,w,64]`` descriptors that are a smooth random function of each cell's world point
    (random Fourier features), so cells of different views that see the same point get the
    same descriptor: an ideal matcher. Cells without a surface get unrelated random codes."""
    rng = np.random.default_rng(seed)
    centre = points[:, STRIDE // 2::STRIDE, STRIDE // 2::STRIDE]
    frequencies = rng.normal(scale=2 * np.pi / wavelength, size=(3, 32))
    phase = centre @ frequencies
    codes = np.concatenate([np.cos(phase), np.sin(phase)], axis=-1)
    background = ~masks[:, STRIDE // 2::STRIDE, STRIDE // 2::STRIDE]
    codes[background] = rng.normal(size=(int(background.sum()), 64))
    return F.normalize(torch.from_numpy(codes).float(), dim=-1)


@pytest.mark.parametrize("block", [7, 256])  # several row blocks, and one
def test_mutual_nearest_equals_brute_force(block):
    generator = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(50, 8, generator=generator), dim=1)
    b = F.normalize(torch.randn(40, 8, generator=generator), dim=1)
    got = set(zip(*mutual_nearest(a, b, block=block)))
    expected = set()
    for i in range(50):
        j = max(range(40), key=lambda j: float(a[i] @ b[j]))
        if max(range(50), key=lambda k: float(a[k] @ b[j])) == i:
            expected.add((i, j))
    assert got == expected and len(got) > 5


def test_cell_points_lift_the_exact_surface_points():
    scene, ext, depth, points = _scene("object", 3, 2)
    lifted = cell_points(depth, scene.intrinsics, STRIDE)  # camera frame
    centre = points[:, STRIDE // 2::STRIDE, STRIDE // 2::STRIDE].reshape(2, -1, 3)
    camera = np.einsum("sij,snj->sni", ext[:, :3, :3], centre) + ext[:, None, :3, 3]
    valid = scene.masks[:, STRIDE // 2::STRIDE, STRIDE // 2::STRIDE].reshape(2, -1)
    assert np.allclose(lifted[valid], camera[valid], atol=1e-9)
    assert np.isnan(lifted[~valid & (depth[:, STRIDE // 2::STRIDE, STRIDE // 2::STRIDE].reshape(2, -1) <= 0)]).all()


def test_ideal_matches_with_exact_depth_in_unknown_per_view_scales_recover_the_cameras():
    # Objects: every pair of views overlaps (in rooms some views share almost no surface,
    # and no matcher can place them).
    for kind, seed in (("object", 1), ("object", 6)):
        scene, ext, depth, points = _scene(kind, seed, 6, (192, 144))
        # Each view's depth in its own unknown scale, as a network predicts it.
        depth_scale = np.array([1.0, 0.6, 1.7, 1.2, 0.8, 2.5])
        descriptors = _position_descriptors(points, scene.masks, wavelength=0.5)
        solved = cameras_from_descriptors(depth * depth_scale[:, None, None], scene.intrinsics, descriptors,
                                          np.repeat(np.eye(4)[None], 6, 0), STRIDE)
        assert solved.reached.all(), kind
        metrics = camera_metrics(solved.extrinsics_w2c, ext)
        # The motions come from 4-pixel cell centres through the essential matrix, so a
        # match is off by up to half a cell: about 0.6° at this size, compounded along the
        # spanning tree.
        assert metrics["auc@30"] > 0.95 and metrics["rot_err_median_deg"] < 2.0, (kind, metrics)
        # Rescaled depth agrees with view 0's units, and so do the translations.
        assert np.allclose(solved.depth_scale * depth_scale, 1.0, rtol=0.03), (kind, solved.depth_scale)
        baseline = np.linalg.norm(solved.extrinsics_w2c[1:, :3, 3], axis=1)
        assert np.allclose(baseline, np.linalg.norm(ext[1:, :3, 3], axis=1), rtol=0.05, atol=0.01), kind


def test_textureless_views_keep_the_fallback_cameras():
    scene, ext, depth, _ = _scene("object", 4, 4)
    fallback = np.repeat(np.eye(4)[None], 4, 0)
    fallback = ext @ np.linalg.inv(ext[2])  # view 2 as the world frame
    flat = F.normalize(torch.ones(4, 72 // STRIDE, 96 // STRIDE, 16), dim=-1)
    solved = cameras_from_descriptors(depth, scene.intrinsics, flat, fallback, STRIDE)
    assert not solved.reached.any() and solved.pair_inliers == {}
    assert np.allclose(solved.extrinsics_w2c, ext, atol=1e-9)  # re-expressed in view 0's frame
    assert np.array_equal(solved.depth_scale, np.ones(4))


def test_descriptor_loss_equals_a_hand_computed_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    descriptors = F.normalize(torch.randn(1, 2, 3, 4, 8, generator=generator), dim=-1)  # 12 cells per view
    matches = torch.full((1, 2, 2, 12), -1, dtype=torch.int64)
    matches[0, 0, 1, :5] = torch.tensor([3, 0, 7, 7, 11])
    matches[0, 1, 0, 2] = 4
    loss, hits = descriptor_loss(descriptors, matches, torch.Generator().manual_seed(1), temperature=0.1)
    flat = descriptors[0].reshape(2, 12, 8).double().numpy()
    terms, correct = [], 0
    for i, j in ((0, 1), (1, 0)):
        per_pair = []
        for query in np.flatnonzero(matches[0, i, j].numpy() >= 0):
            logits = flat[j] @ flat[i, query] / 0.1
            target = int(matches[0, i, j, query])
            per_pair.append(np.log(np.exp(logits).sum()) - logits[target])
            correct += int(np.argmax(logits) == target)
        terms.append(np.mean(per_pair))
    assert np.isclose(float(loss), np.mean(terms), rtol=1e-5)
    assert np.isclose(hits, correct / 6)


def test_descriptor_loss_is_small_for_matching_descriptors_and_large_for_random_ones():
    codes = torch.eye(12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(2))
    descriptors = torch.stack([codes, codes[perm]]).reshape(1, 2, 3, 4, 12)
    matches = torch.full((1, 2, 2, 12), -1, dtype=torch.int64)
    matches[0, 0, 1] = torch.argsort(perm)  # view 1's cell argsort(perm)[c] holds code c
    matches[0, 1, 0] = perm
    good, good_hits = descriptor_loss(descriptors, matches, torch.Generator().manual_seed(0), temperature=0.05)
    shuffled = descriptors.clone()
    shuffled[0, 1] = descriptors[0, 1].reshape(12, 12)[torch.roll(torch.arange(12), 1)].reshape(3, 4, 12)
    bad, bad_hits = descriptor_loss(shuffled, matches, torch.Generator().manual_seed(0), temperature=0.05)
    assert good_hits == 1.0 and bad_hits == 0.0
    assert float(good) < 1e-6 < 10.0 < float(bad)


def test_candidate_pairs_are_all_pairs_for_few_views_and_linear_beyond():
    generator = torch.Generator().manual_seed(0)
    few = F.normalize(torch.randn(12, 3, 4, 8, generator=generator), dim=-1)
    assert candidate_pairs(few) == [(i, j) for i in range(12) for j in range(i + 1, 12)]
    # Two groups of views with distinct descriptors, interleaved in the input order: each
    # view's most similar partners must come from its own group.
    base = F.normalize(torch.randn(2, 8, generator=generator), dim=-1)
    group = torch.arange(40) % 2
    many = F.normalize(base[group][:, None, None, :] + 0.05 * torch.randn(40, 3, 4, 8, generator=generator), dim=-1)
    pairs = candidate_pairs(many)
    assert len(pairs) <= 40 * 8 and all(i < j for i, j in pairs)
    assert {(i, i + 1) for i in range(39)} <= set(pairs)  # the sequence stays linked
    retrieved = [(i, j) for i, j in pairs if j - i > 2]
    assert retrieved and all(group[i] == group[j] for i, j in retrieved)
