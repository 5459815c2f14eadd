"""Umeyama Sim(3)/rigid alignment: exact recovery, noise, degenerate inputs."""
from __future__ import annotations

import numpy as np
import pytest

from recon3d.geometry.align import Sim3, align_camera_centres, umeyama
from recon3d.geometry.cameras import camera_centres


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random proper rotation from a normalised Gaussian quaternion (w, x, y, z)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def angle_between_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    cos = (np.trace(rot_a.T @ rot_b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_known_sim3_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rotation, scale, translation = random_rotation(rng), rng.uniform(0.2, 5.0), rng.normal(size=3) * 10
    source = rng.normal(size=(50, 3))
    target = scale * source @ rotation.T + translation

    sim = umeyama(source, target)

    assert sim.scale == pytest.approx(scale, rel=1e-10)
    np.testing.assert_allclose(sim.rotation, rotation, atol=1e-10)
    np.testing.assert_allclose(sim.translation, translation, atol=1e-9)
    np.testing.assert_allclose(sim.apply(source), target, atol=1e-9)
    assert np.linalg.det(sim.rotation) == pytest.approx(1.0)


def test_recovers_sim3_under_noise() -> None:
    rng = np.random.default_rng(7)
    rotation, scale, translation = random_rotation(rng), 2.5, np.array([1.0, -2.0, 3.0])
    source = rng.uniform(-1, 1, size=(2000, 3))
    target = scale * source @ rotation.T + translation + rng.normal(scale=0.01, size=(2000, 3))

    sim = umeyama(source, target)

    assert sim.scale == pytest.approx(scale, rel=5e-3)
    assert angle_between_deg(sim.rotation, rotation) < 0.1
    np.testing.assert_allclose(sim.translation, translation, atol=5e-3)


def test_rigid_keeps_unit_scale() -> None:
    rng = np.random.default_rng(3)
    rotation = random_rotation(rng)
    source = rng.normal(size=(20, 3))
    target = 3.0 * source @ rotation.T

    sim = umeyama(source, target, with_scale=False)

    assert sim.scale == 1.0
    np.testing.assert_allclose(sim.rotation, rotation, atol=1e-10)


def test_reflection_is_never_returned() -> None:
    # The target is a mirror image: the best proper rotation is not the reflection.
    source = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    target = source * np.array([1.0, 1.0, -1.0])
    sim = umeyama(source, target)
    assert np.linalg.det(sim.rotation) == pytest.approx(1.0)
    assert np.isfinite(sim.matrix).all()


def test_all_points_equal_gives_translation_only() -> None:
    source = np.tile([[1.0, 2.0, 3.0]], (5, 1))
    target = np.tile([[4.0, 4.0, 4.0]], (5, 1))
    sim = umeyama(source, target)
    assert sim.scale == 1.0
    np.testing.assert_array_equal(sim.rotation, np.eye(3))
    np.testing.assert_allclose(sim.translation, [3.0, 2.0, 1.0])


def test_target_collapsed_to_a_point_gives_zero_scale() -> None:
    source = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    target = np.zeros((3, 3)) + 5.0
    sim = umeyama(source, target)
    assert np.isfinite(sim.matrix).all()
    assert sim.scale == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sim.apply(source), target, atol=1e-12)


def test_two_points_map_exactly_without_nan() -> None:
    source = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    target = np.array([[1.0, 1.0, 1.0], [1.0, 3.0, 1.0]])  # length 2, along +y
    sim = umeyama(source, target)
    assert np.isfinite(sim.matrix).all()
    assert sim.scale == pytest.approx(2.0)
    assert np.linalg.det(sim.rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(sim.apply(source), target, atol=1e-12)


def test_single_point_and_non_finite_rows() -> None:
    sim = umeyama(np.array([[1.0, 1.0, 1.0]]), np.array([[2.0, 2.0, 2.0]]))
    np.testing.assert_allclose(sim.apply([1.0, 1.0, 1.0]), [2.0, 2.0, 2.0])

    source = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 0]])
    target = np.array([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [7.0, 7, 7]])
    assert umeyama(source, target).scale == pytest.approx(2.0)

    with pytest.raises(ValueError):
        umeyama(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        umeyama(np.zeros((2, 3)), np.zeros((3, 3)))


def test_apply_to_w2c_moves_cameras_with_the_world() -> None:
    # A camera that sees point X at X_cam sees the transformed point at scale * X_cam.
    rng = np.random.default_rng(11)
    sim = Sim3(1.7, random_rotation(rng), np.array([0.5, -1.0, 2.0]))
    w2c = np.eye(4)[None].repeat(2, axis=0)
    w2c[:, :3, :3] = [random_rotation(rng), random_rotation(rng)]
    w2c[:, :3, 3] = rng.normal(size=(2, 3))
    point = np.array([0.3, 0.2, 4.0])

    moved = sim.apply_to_w2c(w2c)

    for before, after in zip(w2c, moved):
        x_cam = before[:3, :3] @ point + before[:3, 3]
        y_cam = after[:3, :3] @ sim.apply(point) + after[:3, 3]
        np.testing.assert_allclose(y_cam, sim.scale * x_cam, atol=1e-12)
    np.testing.assert_allclose(camera_centres(moved), sim.apply(camera_centres(w2c)), atol=1e-12)


def test_align_camera_centres_recovers_similarity() -> None:
    centres = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]])
    gt = np.tile(np.eye(4), (4, 1, 1))
    gt[:, :3, :3] = rot_z(30.0)
    gt[:, :3, 3] = -centres @ rot_z(30.0).T
    sim = Sim3(0.5, rot_z(-70.0), np.array([1.0, 2.0, 3.0]))
    pred = sim.apply_to_w2c(gt)

    found = align_camera_centres(pred, gt)

    assert found.scale == pytest.approx(1 / 0.5)
    np.testing.assert_allclose(found.rotation, rot_z(70.0), atol=1e-12)
    np.testing.assert_allclose(found.apply(camera_centres(pred)), centres, atol=1e-12)
