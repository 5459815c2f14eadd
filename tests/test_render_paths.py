"""Camera paths for rendering videos: focus, orbit, interpolation, keyframes, camera files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.cameras import intrinsics, ring
from scipy.spatial.transform import Rotation

from recon3d.geometry.cameras import camera_centres, look_at
from recon3d.render.paths import (
    focus_point,
    interpolate_path,
    keyframe_indices,
    load_cameras,
    orbit_path,
)
from recon3d.synth import make_scene, write_scene
from recon3d.synth.truth import scene_prediction as gt_prediction

# ---------------------------------------------------------------- helpers


def _assert_rotations(w2c: np.ndarray) -> None:
    rot = w2c[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_array_equal(w2c[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(w2c), 4)))


def test_focus_of_a_ring_is_its_target():
    target = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(focus_point(ring(target, 4.0, 1.5, 5)), target, atol=1e-9)


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
    w2c_in = ring(target, 4.0, 1.5, 5)
    K_in = np.repeat(intrinsics(80.0, 64, 48)[None], 5, axis=0)
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
    w2c, _ = orbit_path(ring(target, 3.0, 0.5, 4), np.repeat(intrinsics(50.0, 32, 32)[None], 4, 0), 6, elevation_deg=30.0)
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
    K_in = np.stack([intrinsics(40.0 + 5 * i, 32, 24) for i in range(4)])
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
    K_in = np.stack([intrinsics(40.0, 32, 24), intrinsics(60.0, 32, 24)])
    w2c, K = interpolate_path(np.stack([w2c0, w2c1]), K_in, 5)

    np.testing.assert_allclose(camera_centres(w2c), np.linspace(eye0, eye1, 5), atol=1e-12)
    relative = w2c[2, :3, :3] @ w2c0[:3, :3].T
    np.testing.assert_allclose(relative, Rotation.from_euler("y", 30, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(K[:, 0, 0], [40.0, 45.0, 50.0, 55.0, 60.0])


def test_interpolate_needs_a_frame_per_camera():
    with pytest.raises(ValueError, match="at least the number of cameras"):
        interpolate_path(ring(np.zeros(3), 2.0, 1.0, 5), np.repeat(intrinsics(30.0, 16, 16)[None], 5, 0), 4)


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
