"""Parts of the refinement checked against brute-force or analytic references."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from recon3d.eval.metrics import rotation_angle_deg
from recon3d.geometry.align import Sim3
from recon3d.refine.bundle import mean_track_error, reprojection_errors, subset_tracks
from recon3d.refine.features import match_descriptors
from recon3d.refine.initial import (
    PairMotion,
    chain_poses,
    consistent_motions,
    essential_motion,
    lift_keypoints,
    ransac_similarity,
)
from recon3d.refine.refine import _Failure, _search_focal
from recon3d.refine.tracks import build_tracks
from recon3d.types import FeatureTracks


def test_match_descriptors_equals_brute_force():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 16))
    b = np.concatenate([a[:40] + 0.05 * rng.normal(size=(40, 16)), rng.normal(size=(30, 16))])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    got = match_descriptors(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), ratio=0.8)
    in_blocks = match_descriptors(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32),
                                  ratio=0.8, block=16)  # several blocks each way, the last one short
    assert np.array_equal(in_blocks, got)
    dist = np.linalg.norm(a[:, None] - b[None], axis=2)
    expected = []
    for i in range(len(a)):
        j = int(np.argmin(dist[i]))
        first, second = np.sort(dist[i])[:2]
        col_first, col_second = np.sort(dist[:, j])[:2]
        if np.argmin(dist[:, j]) == i and first < 0.8 * second and col_first < 0.8 * col_second:
            expected.append((i, j))
    assert sorted(map(tuple, got.tolist())) == expected
    assert len(expected) >= 35  # the perturbed copies are found


def test_tracks_are_the_connected_components_without_conflicts():
    rng = np.random.default_rng(1)
    counts = [30, 30, 30, 30]
    matches = {}
    for i in range(4):
        for j in range(i + 1, 4):
            pairs = np.unique(rng.integers(0, 30, size=(25, 2)), axis=0)
            matches[(i, j)] = pairs
    tracks = build_tracks(counts, matches)
    # Brute force: flood fill over the same graph.
    edges = {}
    for (i, j), pairs in matches.items():
        for a, b in pairs:
            edges.setdefault((i, int(a)), set()).add((j, int(b)))
            edges.setdefault((j, int(b)), set()).add((i, int(a)))
    seen, components = set(), []
    for node in edges:
        if node in seen:
            continue
        stack, comp = [node], []
        seen.add(node)
        while stack:
            current = stack.pop()
            comp.append(current)
            for nxt in edges[current] - seen:
                seen.add(nxt)
                stack.append(nxt)
        views = [v for v, _ in comp]
        if len(comp) >= 2 and len(set(views)) == len(views):
            components.append(sorted(comp))
    assert sorted(sorted(map(tuple, t.tolist())) for t in tracks) == sorted(components)


def _random_pose(rng, angle_deg):
    rot = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) * np.radians(angle_deg)).as_matrix()
    return rot, rng.normal(size=3)


def test_ransac_similarity_recovers_motion_with_outliers():
    rng = np.random.default_rng(2)
    src = rng.uniform(-1, 1, (200, 3)) + [0, 0, 4]
    rot, trans = _random_pose(rng, 30)
    dst = 1.7 * src @ rot.T + trans
    dst[:60] = rng.uniform(-3, 3, (60, 3)) + [0, 0, 5]  # 30 % outliers
    motion, inliers = ransac_similarity(src, dst)
    assert motion is not None
    assert rotation_angle_deg(motion.sim.rotation, rot) < 1e-6
    assert motion.sim.scale == pytest.approx(1.7, rel=1e-9)
    assert np.allclose(motion.sim.translation, trans, atol=1e-8)
    assert not inliers[:60].any() and inliers[60:].all()


def test_essential_motion_gets_rotation_from_pixels_and_scale_from_depth():
    rng = np.random.default_rng(3)
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    world = rng.uniform(-1, 1, (150, 3)) + [0, 0, 5]
    rot, _ = _random_pose(rng, 15)
    trans = np.array([0.8, 0.1, 0.05])
    cam_j = world @ rot.T + trans

    def pixels(points):
        p = points @ k.T
        return p[:, :2] / p[:, 2:]

    # View j's depth is known only up to a factor 2.5 (its own units).
    motion = essential_motion(pixels(world), pixels(cam_j), k, k, world, 2.5 * cam_j)
    assert motion is not None
    assert rotation_angle_deg(motion.sim.rotation, rot) < 1e-4
    assert motion.sim.scale == pytest.approx(2.5, rel=1e-4)
    assert np.allclose(motion.sim.translation, 2.5 * trans, atol=1e-4)


def test_chain_poses_is_exact_on_exact_motions_and_replaces_wrong_network_poses():
    rng = np.random.default_rng(4)
    num = 5
    w2c = np.tile(np.eye(4), (num, 1, 1))
    for v in range(1, num):
        w2c[v, :3, :3], w2c[v, :3, 3] = _random_pose(rng, 25)
    depth_units = np.exp(rng.uniform(-0.3, 0.3, num))  # each view's depth scale
    motions = {}
    for i in range(num):
        for j in range(i + 1, num):
            rel = w2c[j] @ np.linalg.inv(w2c[i])
            scale = depth_units[j] / depth_units[i]
            # X_j (j's units) = du_j / du_i R X_i (i's units) + du_j t
            motions[(i, j)] = [PairMotion(Sim3(scale, rel[:3, :3], depth_units[j] * rel[:3, 3]), 50 + i + j)]
    network = np.repeat(w2c[:1], num, axis=0)  # collapsed prediction
    start = chain_poses(num, consistent_motions(motions), network)
    assert start.reached.all()
    assert start.start.count("root") == 1 and start.start.count("matches") == num - 1
    root = start.start.index("root")
    for v in range(num):
        rel_true = w2c[v] @ np.linalg.inv(w2c[root])
        rel_got = np.eye(4)
        rel_got[:3, :3] = start.rotations[v] @ start.rotations[root].T
        rel_got[:3, 3] = start.translations[v] - rel_got[:3, :3] @ start.translations[root]
        assert np.allclose(rel_got[:3, :3], rel_true[:3, :3], atol=1e-9)
        assert np.allclose(rel_got[:3, 3], depth_units[root] * rel_true[:3, 3], atol=1e-9)  # root's units
        assert start.scales[v] == pytest.approx(depth_units[v] / depth_units[root], rel=1e-9)


def test_consistent_motions_drops_a_pair_that_its_triangles_contradict():
    rng = np.random.default_rng(5)
    rotations = [_random_pose(rng, 20)[0] for _ in range(5)]
    motions = {}
    for i in range(5):
        for j in range(i + 1, 5):
            motions[(i, j)] = [PairMotion(Sim3(1.0, rotations[j] @ rotations[i].T, np.zeros(3)), 100)]
    wrong = Rotation.from_rotvec([0, np.pi / 2, 0]).as_matrix()
    motions[(0, 3)] = [PairMotion(Sim3(1.0, wrong, np.zeros(3)), 500)]
    kept = consistent_motions(motions)
    assert (0, 3) not in kept and len(kept) == len(motions) - 1
    # A second candidate that the triangles confirm is chosen over a wrong first one.
    motions[(0, 3)] = [motions[(0, 3)][0], PairMotion(Sim3(1.0, rotations[3] @ rotations[0].T, np.zeros(3)), 80)]
    assert rotation_angle_deg(consistent_motions(motions)[(0, 3)].sim.rotation, rotations[3] @ rotations[0].T) < 1e-9


def test_lift_keypoints_through_to_original_inverts_projection():
    k = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    depth = np.full((48, 64), 3.0)
    to_original = np.diag([2.0, 2.0, 1.0])  # originals twice the model size
    model_xy = np.array([[10.5, 7.5], [40.5, 30.5]])
    lifted = lift_keypoints(model_xy * 2.0, to_original, k, depth)
    assert np.allclose(lifted[:, 2], 3.0)
    assert np.allclose(lifted[:, :2] / 3.0 * 100.0 + [32, 24], model_xy)
    assert np.isnan(lift_keypoints(np.array([[500.0, 5.0]]), to_original, k, depth)).all()  # outside


def test_reprojection_errors_and_mean_match_pycolmap():
    pycolmap = pytest.importorskip("pycolmap")
    from recon3d.io.colmap import reconstruction_from_tracks

    rng = np.random.default_rng(6)
    num_views, num_tracks = 3, 40
    w2c = np.tile(np.eye(4), (num_views, 1, 1))
    for v in range(1, num_views):
        w2c[v, :3, :3], w2c[v, :3, 3] = _random_pose(rng, 10)
        w2c[v, :3, 3] *= 0.2
    k = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    xyz = rng.uniform(-1, 1, (num_tracks, 3)) + [0, 0, 6]
    track, view, xy = [], [], []
    for t in range(num_tracks):
        for v in range(num_views):
            cam = w2c[v, :3, :3] @ xyz[t] + w2c[v, :3, 3]
            p = k @ cam
            track.append(t), view.append(v), xy.append(p[:2] / p[2] + rng.normal(0, 0.7, 2))
    tracks = FeatureTracks(xyz, np.zeros((num_tracks, 3), np.uint8), np.array(track), np.array(view), np.array(xy))
    errors = reprojection_errors(xyz, tracks, w2c, np.repeat(k[None], num_views, 0))
    cameras = [(320, 240, [300.0, 300.0, 160.0, 120.0])] * num_views
    reconstruction, _ = reconstruction_from_tracks(["a", "b", "c"], cameras, "PINHOLE", w2c, tracks)
    assert isinstance(reconstruction, pycolmap.Reconstruction)
    assert mean_track_error(errors, tracks) == pytest.approx(reconstruction.compute_mean_reprojection_error(), abs=1e-9)
    # Dropping one view's observations keeps every track (each still has two).
    kept = subset_tracks(tracks, tracks.view != 2)
    assert kept.num_tracks == num_tracks and kept.num_observations == 2 * num_tracks


def test_sift_in_worker_processes_equals_in_process():
    """Worker processes give the same keypoints and descriptors, in the input order, as the
    calling process; also checks the keypoints are scaled back from the detection size."""
    import PIL.Image

    from recon3d.refine.features import extract_features
    from recon3d.synth import make_scene

    scene = make_scene("object", 3, 4, (160, 120))
    # Different sizes per image, one shrunk for detection, so an order mix-up or a wrong
    # scale would show.
    images = [PIL.Image.fromarray(im).resize((160 + 40 * i, 120 + 30 * i)) for i, im in enumerate(scene.images)]
    here = extract_features(images, 300, max_image_size=220, workers=1)
    spread = extract_features(images, 300, max_image_size=220, workers=2)
    assert [len(f) for f in here] == [len(f) for f in spread] and min(len(f) for f in here) > 20
    for a, b in zip(here, spread):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        torch.testing.assert_close(a.descriptors, b.descriptors, rtol=0, atol=0)
    # The last image (280x210) was detected at 220 px wide: keypoints span its full width.
    assert here[-1].keypoints[:, 0].max() > 220


def test_sift_workers_that_fail_leave_the_work_to_this_process(monkeypatch):
    """A worker that cannot start or dies costs time, not features: the same result comes
    back, and progress still counts every image once."""
    import subprocess

    from recon3d.refine import sift

    rng = np.random.default_rng(0)
    greys = [(rng.random((90, 120)) * 255).astype(np.uint8) for _ in range(4)]
    expected = sift.detect_all(greys, [-1] * 4, 200, 0.002, workers=1)
    real_popen = subprocess.Popen

    def popen(args, **kwargs):  # the first worker cannot start, the second dies
        if popen.calls == 0:
            popen.calls += 1
            raise OSError("no process for you")
        return real_popen([args[0], "-c", "import sys; sys.exit(3)"], **kwargs)

    popen.calls = 0
    monkeypatch.setattr(subprocess, "Popen", popen)
    done = []
    got = sift.detect_all(greys, [-1] * 4, 200, 0.002, workers=2, on_image=done.append)
    assert done == [1, 2, 3, 4]
    for (xy_a, desc_a), (xy_b, desc_b) in zip(expected, got):
        np.testing.assert_array_equal(xy_a, xy_b)
        np.testing.assert_array_equal(desc_a, desc_b)


def _solve_result(error: float, reached: int, observations: int = 1000):
    """What ``_solve`` returns, reduced to what the focal search compares."""
    adjusted = SimpleNamespace(mean_error=error, tracks=SimpleNamespace(num_observations=observations))
    return adjusted, None, np.arange(6) < reached


def test_focal_search_finds_the_minimum_of_a_smooth_error_curve():
    # Final error of whole solves against the focal factor: a parabola in log focal
    # with its minimum at 1.17x the start (a start 15 % short, as the perturbed scenes).
    truth = np.log2(1.17)
    calls = []

    def solve_with(factor):
        calls.append(factor)
        return _solve_result(0.15 + (np.log2(factor) - truth) ** 2, 6)

    best = _search_focal(solve_with, _solve_result(0.15 + truth**2, 6))
    chosen = [f for f in calls if best[0].mean_error == 0.15 + (np.log2(f) - truth) ** 2]
    assert chosen and abs(np.log2(chosen[0]) - truth) < 0.02  # within 1.4 % of the true focal
    assert len(calls) <= 4  # both neighbours, one step out, at most one parabola vertex
    # The start is best: no step goes beyond its two neighbours.
    calls.clear()
    assert _search_focal(solve_with, _solve_result(0.1, 6))[0].mean_error == 0.1
    assert 2 <= len(calls) <= 3 and all(2**-0.25 - 1e-9 <= f <= 2**0.25 + 1e-9 for f in calls)


def test_focal_search_prefers_solves_that_reach_more_views_and_survives_failures():
    def solve_with(factor):
        if factor < 1:
            raise _Failure("no tracks")
        return _solve_result(0.5, 6)  # worse error, but every view reached

    best = _search_focal(solve_with, _solve_result(0.2, 4))
    assert best[0].mean_error == 0.5 and best[2].all()


def test_focal_search_does_not_prefer_a_solve_that_dropped_many_observations():
    def solve_with(factor):
        # Lower error only because a third of the observations were dropped as outliers.
        return _solve_result(0.1, 6, observations=600) if factor > 1 else _solve_result(0.4, 6)

    best = _search_focal(solve_with, _solve_result(0.3, 6))
    assert best[0].mean_error == 0.3
