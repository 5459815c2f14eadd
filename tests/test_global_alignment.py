"""Global alignment of pairwise point maps, checked against synthetic scenes' exact cameras.

The pairwise "predictions" are ground truth: for each pair (i, j) the world points of
views i and j moved into camera i's frame, with Gaussian noise (a fraction of the
scene's median depth, per coordinate) and a random scale per pair. Sky pixels get a far
point at depth 2x the scene's farthest surface and confidence 1 (weight log 1 = 0).
Errors and timings are printed (``pytest -s``).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from helpers.pairwise import pairwise_from_scene

from recon3d.errors import InputError
from recon3d.eval.metrics import rotation_angle_deg
from recon3d.geometry.align import umeyama
from recon3d.pairwise.align import GlobalAlignment, global_align
from recon3d.pairwise.graph import make_pairs
from recon3d.synth import make_scene

SIZE_WH = (64, 48)
NOISE = 0.02  # per-coordinate sigma, as a fraction of the median depth
MAX_MEDIAN_ROTATION_DEG = 0.5
MAX_FOCAL_ERROR = 0.01


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pose_focal_errors(result: GlobalAlignment, scene) -> tuple[np.ndarray, np.ndarray]:
    """Rotation errors (deg) of views 1.. relative to view 0, and relative focal errors of all views."""
    gt = scene.extrinsics_w2c[:, :3, :3]
    rotation_err = rotation_angle_deg(result.extrinsics_w2c[1:, :3, :3], gt[1:] @ gt[0].T)
    focal_err = np.abs(result.intrinsics[:, 0, 0] / scene.intrinsics[:, 0, 0] - 1.0)
    return rotation_err, focal_err


def point_error(result: GlobalAlignment, scene) -> float:
    """RMS distance of the surface points to ground truth after a Sim(3) fit, in median depths."""
    gt = scene.world_points()[scene.masks]
    pred = result.points[scene.masks].astype(np.float64)
    moved = umeyama(pred, gt).apply(pred)
    return float(np.sqrt(((moved - gt) ** 2).sum(-1).mean()) / np.median(scene.depths[scene.masks]))


def report(name: str, result: GlobalAlignment, scene, seconds: float) -> tuple[float, float]:
    rotation_err, focal_err = pose_focal_errors(result, scene)
    med_rot, med_focal = float(np.median(rotation_err)), float(np.median(focal_err))
    print(
        f"\n[{name}] views={scene.num_views} median rot err {med_rot:.4f} deg (max {rotation_err.max():.4f}), "
        f"focal err median {100 * med_focal:.3f}% max {100 * focal_err.max():.3f}%, "
        f"point RMS {100 * point_error(result, scene):.2f}% of median depth, {seconds:.2f} s"
    )
    return med_rot, float(focal_err.max())


def check_frame(result: GlobalAlignment, num_views: int) -> None:
    """World = view 0, float32 shapes, points = unprojected depth."""
    height, width = SIZE_WH[1], SIZE_WH[0]
    assert result.extrinsics_w2c.shape == (num_views, 4, 4) and result.extrinsics_w2c.dtype == np.float32
    assert result.intrinsics.shape == (num_views, 3, 3)
    assert result.depth.shape == result.depth_conf.shape == (num_views, height, width)
    assert result.points.shape == (num_views, height, width, 3) and result.points.dtype == np.float32
    np.testing.assert_allclose(result.extrinsics_w2c[0], np.eye(4), atol=1e-5)
    assert (result.depth > 0).all() and (result.depth_conf >= 1).all()
    np.testing.assert_allclose(result.intrinsics[:, :2, 2], np.tile([width / 2, height / 2], (num_views, 1)))
    # Points of view 1 seen from camera 1 project back onto their pixel centres at their depth.
    w2c, K = result.extrinsics_w2c[1].astype(np.float64), result.intrinsics[1].astype(np.float64)
    cam = result.points[1].astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    np.testing.assert_allclose(cam[..., 2], result.depth[1], rtol=1e-4)
    pix = cam[..., :2] / cam[..., 2:] * K[0, 0] + K[:2, 2]
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    np.testing.assert_allclose(pix, np.stack([u, v], -1), atol=1e-2)


@pytest.mark.parametrize(
    "kind, seed, num_views, graph",
    [
        ("object", 0, 6, "complete"),
        ("room", 2, 10, "swin-2"),
        ("trajectory", 3, 8, "swin-3-noncyclic"),
    ],
)
def test_global_alignment_recovers_cameras(kind, seed, num_views, graph):
    scene = make_scene(kind, seed, num_views, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, make_pairs(num_views, graph), NOISE, seed)
    calls = []
    start = time.perf_counter()
    result = global_align(pointmaps, on_progress=lambda step, total, loss: calls.append((step, total, loss)))
    seconds = time.perf_counter() - start
    med_rot, max_focal = report(f"{kind} {graph} noise {NOISE:.0%}", result, scene, seconds)

    assert med_rot <= MAX_MEDIAN_ROTATION_DEG
    assert max_focal <= MAX_FOCAL_ERROR
    check_frame(result, num_views)
    assert [c[:2] for c in calls] == [(k, 300) for k in range(1, 301)]
    assert len(result.loss_history) == 300 and result.loss_history[-1] < result.loss_history[0]
    assert np.isfinite(result.loss_history).all()


@pytest.mark.parametrize("kind, seed", [("object", 4), ("room", 5), ("trajectory", 6)])
def test_two_views_closed_form(kind, seed):
    scene = make_scene(kind, seed, 2, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, [(0, 1), (1, 0)], NOISE, seed)
    start = time.perf_counter()
    result = global_align(pointmaps, on_progress=lambda *_: pytest.fail("the closed form must not iterate"))
    med_rot, max_focal = report(f"two views {kind} noise {NOISE:.0%}", result, scene, time.perf_counter() - start)
    assert med_rot <= MAX_MEDIAN_ROTATION_DEG
    assert max_focal <= MAX_FOCAL_ERROR
    assert result.loss_history == []
    check_frame(result, 2)


def test_two_views_one_direction_uses_pnp_with_unknown_focal():
    # Only (0, 1): view 1 has no point map in its own frame, so its focal and pose come
    # from its points in view 0's frame (DLT + reprojection refinement). Less accurate
    # than the symmetric case (focal and distance trade off), hence the lower noise.
    scene = make_scene("object", 4, 2, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, [(0, 1)], 0.005, 4)
    start = time.perf_counter()
    result = global_align(pointmaps)
    med_rot, max_focal = report("two views, one direction, noise 0.5%", result, scene, time.perf_counter() - start)
    assert med_rot <= MAX_MEDIAN_ROTATION_DEG
    assert max_focal <= MAX_FOCAL_ERROR
    check_frame(result, 2)


def test_more_noise_gives_larger_errors():
    scene = make_scene("object", 0, 6, SIZE_WH)
    pairs = make_pairs(6, "complete")
    rotation, focal = [], []
    for noise in (0.0, 0.01, 0.04, 0.16):
        result = global_align(pairwise_from_scene(scene, pairs, noise, 0), niter=0)  # the initialisation
        rotation_err, focal_err = pose_focal_errors(result, scene)
        rotation.append(float(np.median(rotation_err)))
        focal.append(float(np.median(focal_err)))
    print(f"\n[noise 0/1/4/16%] init median rot err {np.round(rotation, 4)} deg, median focal err {np.round(focal, 5)}")
    assert rotation[0] < 1e-3 and focal[0] < 1e-5
    assert rotation == sorted(rotation) and focal == sorted(focal)
    assert rotation[-1] > 4 * rotation[1]


def test_options_schedule_principal_point_and_niter_zero():
    scene = make_scene("object", 1, 4, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, make_pairs(4, "swin-1"), 0.005, 1)
    start = global_align(pointmaps, niter=0)
    assert start.loss_history == []
    linear = global_align(pointmaps, niter=30, schedule="linear", optimize_pp=True)
    assert len(linear.loss_history) == 30 and linear.loss_history[-1] < linear.loss_history[0]
    centre = np.array([SIZE_WH[0] / 2, SIZE_WH[1] / 2])
    assert np.abs(linear.intrinsics[:, :2, 2] - centre).max() < 2.0  # moved a little, not away
    assert np.abs(linear.intrinsics[:, :2, 2] - centre).max() > 0
    with pytest.raises(ValueError, match="schedule"):
        global_align(pointmaps, schedule="step")
    with pytest.raises(ValueError, match="init"):
        global_align(pointmaps, init="random")


def test_depth_conf_is_the_best_confidence_of_each_view():
    scene = make_scene("object", 1, 3, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, make_pairs(3, "complete"), 0.005, 1)
    result = global_align(pointmaps, niter=0)
    expected = np.ones((3, SIZE_WH[1], SIZE_WH[0]), dtype=np.float32)
    for p, (i, j) in enumerate(pointmaps.pairs.tolist()):
        expected[i] = np.maximum(expected[i], pointmaps.conf_i[p].numpy())
        expected[j] = np.maximum(expected[j], pointmaps.conf_j[p].numpy())
    np.testing.assert_array_equal(result.depth_conf, expected)


def test_bad_pair_sets():
    scene = make_scene("object", 1, 3, SIZE_WH)
    unconnected = pairwise_from_scene(scene, [(0, 1), (1, 0)], 0.0, 1)  # view 2 in no pair
    with pytest.raises(InputError, match=r"\[2\] unconnected"):
        global_align(unconnected)
    single = pairwise_from_scene(scene, [(0, 1)], 0.0, 1)
    single.num_views = 1
    with pytest.raises(InputError, match="at least 2 views"):
        global_align(single)
    out_of_range = pairwise_from_scene(scene, [(0, 1), (1, 2)], 0.0, 1)
    out_of_range.pairs = torch.tensor([[0, 1], [1, 5]])
    with pytest.raises(InputError, match="view indices"):
        global_align(out_of_range)


@pytest.mark.gpu
def test_global_alignment_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    scene = make_scene("object", 0, 6, SIZE_WH)
    pointmaps = pairwise_from_scene(scene, make_pairs(6, "complete"), NOISE, 0)
    start = time.perf_counter()
    result = global_align(pointmaps, device="cuda")  # the point maps stay on the CPU, as the pipeline keeps them
    med_rot, max_focal = report("cuda object complete", result, scene, time.perf_counter() - start)
    assert med_rot <= MAX_MEDIAN_ROTATION_DEG and max_focal <= MAX_FOCAL_ERROR


def test_alignment_on_a_pixel_grid_keeps_the_accuracy_at_full_resolution():
    from recon3d.pairwise.align import resolve_stride

    assert [resolve_stride("auto", h, w) for h, w in ((384, 512), (224, 224), (96, 128), (48, 64))] == [6, 3, 1, 1]
    scene = make_scene("object", 0, 8, (128, 96))
    pointmaps = pairwise_from_scene(scene, make_pairs(8, "complete"), NOISE, 0)
    start = time.perf_counter()
    result = global_align(pointmaps, stride=4)  # 32x24 optimised pixels per view
    med_rot, max_focal = report("object stride 4", result, scene, time.perf_counter() - start)
    assert med_rot <= MAX_MEDIAN_ROTATION_DEG and max_focal <= MAX_FOCAL_ERROR
    assert result.depth.shape == (8, 96, 128) and np.all(result.depth > 0)
    # Every pixel's depth is solved, not copied from its grid cell: the dense points stay within
    # the noise of the pairwise maps (2 % of the median depth per coordinate).
    assert point_error(result, scene) < 0.01
