"""Pose, depth and geometry metrics against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from recon3d.eval.metrics import (
    absolute_trajectory_error,
    camera_metrics,
    depth_metrics,
    point_cloud_metrics,
    pose_auc,
    relative_pose_errors,
    resample_to_model_grid,
    rotation_angle_deg,
)
from recon3d.geometry.align import Sim3


def rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def cameras(rotations: list[np.ndarray], centres: list[list[float]]) -> np.ndarray:
    """``[S,4,4]`` world-to-camera from rotations and camera centres (t = -R c)."""
    w2c = np.tile(np.eye(4), (len(rotations), 1, 1))
    for i, (rot, centre) in enumerate(zip(rotations, centres)):
        w2c[i, :3, :3] = rot
        w2c[i, :3, 3] = -rot @ np.asarray(centre, dtype=np.float64)
    return w2c


def random_cameras(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rotations = [rot_z(a) @ rot_x(b) for a, b in rng.uniform(-180, 180, size=(n, 2))]
    return cameras(rotations, rng.normal(size=(n, 3)).tolist())


def test_rotation_angle_of_known_rotations() -> None:
    assert rotation_angle_deg(np.eye(3), rot_z(10.0)) == pytest.approx(10.0)
    assert rotation_angle_deg(rot_x(30.0), rot_x(-45.0)) == pytest.approx(75.0)
    assert rotation_angle_deg(np.eye(3), rot_x(180.0)) == pytest.approx(180.0)
    assert rotation_angle_deg(rot_z(1e-6), np.eye(3)) == pytest.approx(1e-6, rel=1e-6)


def test_pair_errors_of_three_cameras_by_hand() -> None:
    # Reference: three cameras looking along +z from (0,0,0), (1,0,0), (0,1,0).
    gt = cameras([np.eye(3)] * 3, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    # Prediction: camera 1 turned 10 degrees about its optical axis; camera 2 moved to (0,1,1).
    pred = cameras([np.eye(3), rot_z(10.0), np.eye(3)], [[0, 0, 0], [1, 0, 0], [0, 1, 1]])

    rot_err, trans_err = relative_pose_errors(pred, gt)

    # Pairs (0,1), (0,2), (1,2). The relative translation i -> j is R_j (c_i - c_j).
    # (0,1): rotation 10; translation Rz(10)(-1,0,0) vs (-1,0,0): 10.
    # (0,2): rotation 0; translation (0,-1,-1) vs (0,-1,0): 45.
    # (1,2): rotation of Rz(-10) vs I: 10; translation (1,-1,-1) vs (1,-1,0): arccos(2/sqrt(6)).
    np.testing.assert_allclose(rot_err, [10.0, 0.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(trans_err, [10.0, 45.0, np.degrees(np.arccos(2 / np.sqrt(6)))], atol=1e-9)


def test_translation_direction_sign_is_not_penalised() -> None:
    # Mirroring every centre through the origin flips each relative translation: the
    # angle between the lines (PoseDiffusion's min(err, 180 - err)) is 0.
    centres = [[0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 1, 3]]
    gt = cameras([np.eye(3)] * 4, centres)
    pred = cameras([np.eye(3)] * 4, (-np.asarray(centres, dtype=float)).tolist())
    _, trans_err = relative_pose_errors(pred, gt)
    np.testing.assert_allclose(trans_err, 0.0, atol=1e-9)


def test_zero_baseline_counts_as_worst_translation_error() -> None:
    gt = cameras([np.eye(3)] * 3, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    pred = cameras([np.eye(3)] * 3, [[0, 0, 0], [0, 0, 0], [0, 1, 0]])  # cameras 0 and 1 coincide
    _, trans_err = relative_pose_errors(pred, gt)
    assert trans_err[0] == 90.0
    np.testing.assert_allclose(trans_err[1:], [0.0, 45.0], atol=1e-9)


def test_pose_auc_by_hand() -> None:
    rot = np.array([0.5, 3.2, 40.0])
    trans = np.array([0.1, 1.0, 2.0])
    # Thresholds 1..5: fractions below are 1/3, 1/3, 1/3, 2/3, 2/3.
    assert pose_auc(rot, trans, 5) == pytest.approx((3 * (1 / 3) + 2 * (2 / 3)) / 5)
    # One more (failed) pair: the denominators become 4.
    assert pose_auc(rot, trans, 5, num_failed=1) == pytest.approx((3 * 0.25 + 2 * 0.5) / 5)
    # The maximum of both errors decides: a large translation error fails the pair.
    assert pose_auc(np.array([0.0]), np.array([12.0]), 30) == pytest.approx(18 / 30)
    assert np.isnan(pose_auc(np.array([]), np.array([]), 5))


@pytest.mark.parametrize("seed", [0, 1])
def test_perfect_and_similarity_transformed_prediction(seed: int) -> None:
    gt = random_cameras(seed, 6)
    similarity = Sim3(3.7, rot_z(50.0) @ rot_x(-20.0), np.array([4.0, -2.0, 9.0]))
    for pred in (gt, similarity.apply_to_w2c(gt)):
        metrics = camera_metrics(pred, gt)
        assert metrics["auc@5"] == metrics["auc@15"] == metrics["auc@30"] == 1.0
        assert metrics["rot_err_median_deg"] < 1e-5
        assert metrics["trans_err_median_deg"] < 1e-5
        assert metrics["ate"] < 1e-9
        assert metrics["num_pairs"] == 15


def test_auc_of_one_camera_rotated_by_20_degrees() -> None:
    # Camera 2 at the origin; camera 0 at (1,0,0) and camera 1 at (1,0,1), all axis-aligned.
    gt = cameras([np.eye(3)] * 3, [[1, 0, 0], [1, 0, 1], [0, 0, 0]])
    pred = cameras([np.eye(3), np.eye(3), rot_z(20.0)], [[1, 0, 0], [1, 0, 1], [0, 0, 0]])

    rot_err, trans_err = relative_pose_errors(pred, gt)
    metrics = camera_metrics(pred, gt)

    # (0,1) untouched. (0,2) and (1,2): relative rotation off by 20. Translations seen
    # from camera 2: (1,0,0) turns by 20; (1,0,1) turns to (cos20, sin20, 1): angle arccos((1+cos20)/2).
    np.testing.assert_allclose(rot_err, [0.0, 20.0, 20.0], atol=1e-9)
    half_turn = np.degrees(np.arccos((1 + np.cos(np.radians(20))) / 2))
    np.testing.assert_allclose(trans_err, [0.0, 20.0, half_turn], atol=1e-9)
    # Max errors 0, 20, 20: below t for t = 1..20 only the first pair (1/3), all three for t > 20.
    assert metrics["auc@5"] == pytest.approx(1 / 3)
    assert metrics["auc@15"] == pytest.approx(1 / 3)
    assert metrics["auc@30"] == pytest.approx((20 * (1 / 3) + 10 * 1.0) / 30)


def test_ate_of_a_symmetric_distortion() -> None:
    # Reference centres (+-1,0,0), (0,+-1,0); prediction stretched to 1.1 along x, 0.9 along y.
    # By symmetry the best rotation is I and translation 0; the scale is
    # sum(x.y)/sum(|x|^2) = (2*1.1 + 2*0.9)/(2*1.21 + 2*0.81) = 1/1.01.
    gt = cameras([np.eye(3)] * 4, [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
    pred = cameras([np.eye(3)] * 4, [[1.1, 0, 0], [-1.1, 0, 0], [0, 0.9, 0], [0, -0.9, 0]])
    expected = np.sqrt(((1.1 / 1.01 - 1) ** 2 + (0.9 / 1.01 - 1) ** 2) / 2)

    # Any similarity of the predicted world leaves the ATE unchanged.
    moved = Sim3(0.2, rot_x(33.0), np.array([1.0, 1.0, -5.0])).apply_to_w2c(pred)
    ate, ate_normalised, sim3 = absolute_trajectory_error(moved, gt)

    assert ate == pytest.approx(expected, rel=1e-9)
    assert ate_normalised == pytest.approx(expected / 2.0, rel=1e-9)  # diameter 2
    assert sim3.scale == pytest.approx(5.0 / 1.01, rel=1e-9)


def test_resample_to_model_grid_nearest_and_padding() -> None:
    original = np.arange(24, dtype=np.float32).reshape(4, 6)
    # Model grid 2x3 at half resolution: model pixel (v,u) centre (u+.5, v+.5) lands on
    # original (2u+1, 2v+1), i.e. original pixel (row 2v+1, col 2u+1).
    halve = np.diag([2.0, 2.0, 1.0])
    np.testing.assert_array_equal(resample_to_model_grid(original, halve, (2, 3)), [[7, 9, 11], [19, 21, 23]])
    # Shifted left by 2 original pixels (as left padding would): column 0 falls outside.
    padded = np.array([[2.0, 0.0, -2.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(resample_to_model_grid(original, padded, (2, 3)), [[0, 7, 9], [0, 19, 21]])
    # Several channels are carried together.
    stacked = np.stack([original, -original], axis=-1)
    np.testing.assert_array_equal(resample_to_model_grid(stacked, halve, (2, 3))[1, 2], [23, -23])


def constant_depth(values: list[float], hw: tuple[int, int] = (4, 6)) -> np.ndarray:
    return np.stack([np.full(hw, v) for v in values])


def test_depth_perfect_and_globally_scaled() -> None:
    gt = np.random.default_rng(0).uniform(1.0, 10.0, size=(3, 5, 7))
    for scaling in ("view", "scene", "none"):
        m = depth_metrics(gt, gt, scaling)
        assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0 and m["num_pixels"] == 105
    for scaling in ("view", "scene"):
        m = depth_metrics(gt * 3.0, gt, scaling)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["delta1"] == 1.0
    unscaled = depth_metrics(gt * 3.0, gt, "none")
    assert unscaled["abs_rel"] == pytest.approx(2.0) and unscaled["delta1"] == 0.0


def test_depth_perturbed_on_half_the_pixels() -> None:
    gt = constant_depth([2.0, 2.0])
    pred = gt.copy()
    pred[:, :, :3] *= 1.1  # left half of every view

    # Unscaled: half the pixels off by 10 %.
    assert depth_metrics(pred, gt, "none")["abs_rel"] == pytest.approx(0.05)
    # Median scaling: each view's median is (2 + 2.2)/2 = 2.1 (even count), scale 2/2.1;
    # both halves end 0.1/2.1 = 1/21 away from the truth.
    m = depth_metrics(pred, gt, "view")
    assert m["abs_rel"] == pytest.approx(1 / 21)
    assert m["delta1"] == 1.0
    assert m["scales"] == pytest.approx([2 / 2.1, 2 / 2.1])


def test_per_view_and_per_scene_scaling_differ() -> None:
    # Views predicted at different scales (x3, x6): per-view scaling fixes both, one scene
    # scale cannot. Scene medians: gt 2, prediction (6 + 12)/2 = 9; scale 2/9 gives
    # 4/3 and 8/3 against 2: relative error 1/3 everywhere, ratio 1.5 > 1.25 everywhere.
    gt = constant_depth([2.0, 2.0])
    pred = constant_depth([6.0, 12.0])
    assert depth_metrics(pred, gt, "view")["abs_rel"] == pytest.approx(0.0)
    scene = depth_metrics(pred, gt, "scene")
    assert scene["abs_rel"] == pytest.approx(1 / 3)
    assert scene["delta1"] == 0.0


def test_depth_ignores_invalid_reference_pixels() -> None:
    gt = constant_depth([2.0])
    gt[0, 0, :] = 0.0
    gt[0, 1, 0] = np.nan
    pred = constant_depth([2.0])
    pred[0, 0, :] = 100.0  # wrong only where the reference is unknown
    pred[0, 1, 0] = 100.0
    m = depth_metrics(pred, gt, "none")
    assert m["abs_rel"] == 0.0 and m["num_pixels"] == 24 - 6 - 1
    with pytest.raises(ValueError):
        depth_metrics(pred, gt, "bogus")


def grid_cloud(n: int = 10) -> np.ndarray:
    """``[n*n,3]`` points of the unit grid 0..n-1 in the plane z = 0."""
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    return np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)


def test_chamfer_of_identical_clouds_is_zero() -> None:
    cloud = grid_cloud()
    m = point_cloud_metrics(cloud, cloud)
    assert m["accuracy"] == m["completeness"] == m["chamfer"] == 0.0


def test_chamfer_of_shifted_grid_by_hand() -> None:
    gt = grid_cloud()
    diagonal = 9 * np.sqrt(2)
    # Shift 0.3 along x: every point is 0.3 from its counterpart, both ways.
    m = point_cloud_metrics(gt + [0.3, 0, 0], gt)
    assert m["accuracy_abs"] == pytest.approx(0.3)
    assert m["completeness_abs"] == pytest.approx(0.3)
    assert m["chamfer"] == pytest.approx(0.3 / diagonal)
    assert m["scene_size"] == pytest.approx(diagonal)
    # Shift 0.7: predicted columns 0..8 sit 0.3 before the next reference column, the last
    # column (x = 9.7) is 0.7 from x = 9: accuracy (9 * 0.3 + 0.7)/10 = 0.34. Reference
    # column 0 is 0.7 from the nearest prediction, the others 0.3: completeness 0.34.
    m = point_cloud_metrics(gt + [0.7, 0, 0], gt)
    assert m["accuracy_abs"] == pytest.approx(0.34)
    assert m["completeness_abs"] == pytest.approx(0.34)
    assert m["chamfer_abs"] == pytest.approx(0.34)


def test_chamfer_applies_the_alignment_and_drops_non_finite_points() -> None:
    gt = grid_cloud()
    similarity = Sim3(2.0, rot_z(90.0), np.array([1.0, 2.0, 3.0]))
    # Predicted in a frame where gt = similarity(pred).
    pred = (gt - similarity.translation) @ similarity.rotation / similarity.scale
    pred = np.vstack([pred, [[np.nan, 0.0, 0.0]]])
    m = point_cloud_metrics(pred, gt, transform=similarity)
    assert m["chamfer_abs"] == pytest.approx(0.0, abs=1e-12)
    assert m["num_pred_points"] == 100


def test_chamfer_of_an_empty_cloud_is_nan() -> None:
    m = point_cloud_metrics(np.full((4, 3), np.inf), grid_cloud())
    assert np.isnan(m["chamfer"]) and m["num_pred_points"] == 0


def test_chamfer_subsampling_caps_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(5000, 3)), rng.normal(size=(4000, 3))
    a = point_cloud_metrics(pred, gt, max_points=1000, seed=3)
    b = point_cloud_metrics(pred, gt, max_points=1000, seed=3)
    assert a == b
    assert a["num_pred_points"] == a["num_gt_points"] == 1000
