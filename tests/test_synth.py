"""recon3d.synth: exact ground truth against analytic geometry, multi-view consistency,
determinism and the on-disk round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon3d.geometry.cameras import look_at
from recon3d.synth import KINDS, build_world, make_scene, read_scene, write_scene
from recon3d.synth.camera import camera_rays, intrinsics_from_fov
from recon3d.synth.primitives import Box, Cylinder, Quad, Sphere, rotation_zyx
from recon3d.synth.render import render_view
from recon3d.synth.scene_io import SAMPLE_ASSETS
from recon3d.synth.textures import NoiseField, random_texture
from recon3d.synth.world import SceneObject, World, trace

REPO = Path(__file__).resolve().parents[1]
W, H = 65, 49  # odd, so that the centre pixel's ray is the optical axis
CENTRE = (H // 2, W // 2)


def _world(*shapes) -> World:
    rng = np.random.default_rng(0)
    objects = tuple(SceneObject(s, random_texture(rng)) for s in shapes)
    return World(objects, NoiseField(rng), np.array([0.0, 0.0, 1.0]), 0.4, np.zeros(3), 1.0, None)


def _axis_camera(fov_deg: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Camera at the world origin with camera axes equal to world axes (looks along +z)."""
    return np.eye(4), intrinsics_from_fov(np.radians(fov_deg), W, H)


def _tangents(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[H,W]`` x/z and y/z of each pixel centre's ray, from the pinhole model directly."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    return (u - W / 2) / K[0, 0], (v - H / 2) / K[1, 1]


def test_look_at_gives_opencv_axes():
    w2c = look_at(np.array([0.0, -5.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    # Looking north (+y) with z up: right is east (+x), down is -z, forward is +y.
    np.testing.assert_allclose(w2c[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(w2c[:3, :3] @ [0.0, -5.0, 1.0] + w2c[:3, 3], 0.0, atol=1e-12)


def test_depth_is_z_depth_on_a_facing_plane():
    rng = np.random.default_rng(3)
    eye, target = rng.normal(size=3), rng.normal(size=3) * 4
    w2c = look_at(eye, target, roll=0.3)
    right, down, forward = w2c[:3, :3]
    distance = 2.75
    plane = Quad(eye + distance * forward, right, -down, 100.0, 100.0)  # normal right x -down = -forward
    K = intrinsics_from_fov(np.radians(70), W, H)
    r = render_view(_world(plane), w2c, K, W, H)
    assert r.masks.all()
    # z-depth of a fronto-parallel plane is its distance at every pixel (ray length is not).
    np.testing.assert_allclose(r.depths, distance, rtol=1e-6)
    np.testing.assert_allclose(r.normals, np.broadcast_to(-forward, (H, W, 3)), atol=1e-6)


def test_pixel_centre_convention_and_principal_point():
    w2c, K = _axis_camera()
    width = 64  # even: the principal point W/2 lies on the border between two columns
    K = intrinsics_from_fov(np.radians(60), width, H)
    half_plane = Quad(np.array([50.0, 0.0, 3.0]), np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), 50.0, 50.0)
    r = render_view(_world(half_plane), w2c, K, width, H)
    # The plane covers camera x >= 0: exactly the columns whose centre u + 0.5 exceeds W/2.
    assert r.masks[:, width // 2 :].all() and not r.masks[:, : width // 2].any()


def test_sphere_silhouette_depth_and_normal():
    w2c, K = _axis_camera()
    dist, radius = 5.0, 1.2
    r = render_view(_world(Sphere(np.array([0, 0, dist]), radius, np.eye(3))), w2c, K, W, H)
    tx, ty = _tangents(K)
    sin2 = (tx**2 + ty**2) / (1 + tx**2 + ty**2)  # squared sine of the ray's angle to the axis
    inside = sin2 * dist**2 < radius**2
    clear = np.abs(sin2 * dist**2 - radius**2) > 1e-6
    assert np.array_equal(r.masks[clear], inside[clear])
    cos = 1 / np.sqrt(1 + tx**2 + ty**2)
    length = dist * cos - np.sqrt(np.clip(radius**2 - dist**2 * sin2, 0, None))
    np.testing.assert_allclose(r.depths[inside & clear], (length * cos)[inside & clear], rtol=1e-6)
    assert r.depths[CENTRE] == pytest.approx(dist - radius, rel=1e-7)
    np.testing.assert_allclose(r.normals[CENTRE], [0, 0, -1], atol=1e-7)


def test_rotated_box_edge_on():
    w2c, K = _axis_camera()
    dist, half = 6.0, 1.0
    box = Box(np.array([0, 0, dist]), np.full(3, half), rotation_zyx(0.0, np.pi / 4))
    r = render_view(_world(box), w2c, K, W, H)
    tx, _ = _tangents(K)
    row = H // 2
    # The front edge is at z0 = dist - half*sqrt(2); the faces are z = z0 + |x|.
    z0 = dist - half * np.sqrt(2)
    expected = z0 / (1 - np.abs(tx[row]))
    on_front = r.masks[row] & (np.abs(tx[row]) * expected < half / np.sqrt(2) - 1e-6)
    assert on_front.sum() > 5
    np.testing.assert_allclose(r.depths[row, on_front], expected[on_front], rtol=1e-6)
    right = on_front & (tx[row] > 1e-9)
    expected_normal = np.broadcast_to([0.5**0.5, 0, -(0.5**0.5)], (right.sum(), 3))
    np.testing.assert_allclose(r.normals[row, right], expected_normal, atol=1e-6)


def test_cylinder_cap_and_side():
    w2c, K = _axis_camera()
    dist, radius, half_h = 6.0, 0.8, 1.0
    tx, ty = _tangents(K)
    # Axis along the optical axis: the near cap is a disc at z = dist - half_h.
    r = render_view(_world(Cylinder(np.array([0, 0, dist]), radius, half_h, np.eye(3))), w2c, K, W, H)
    near = dist - half_h
    on_cap = (tx**2 + ty**2) * near**2 < radius**2 - 1e-6
    assert on_cap.sum() > 20 and r.masks[on_cap].all()
    np.testing.assert_allclose(r.depths[on_cap], near, rtol=1e-6)
    np.testing.assert_allclose(r.normals[on_cap], np.broadcast_to([0, 0, -1.0], (on_cap.sum(), 3)), atol=1e-7)
    # Axis along camera y: the centre ray meets the side head-on.
    side = Cylinder(np.array([0, 0, dist]), radius, half_h, rotation_zyx(0.0, 0.0, np.pi / 2))
    r = render_view(_world(side), w2c, K, W, H)
    assert r.depths[CENTRE] == pytest.approx(dist - radius, rel=1e-7)
    np.testing.assert_allclose(r.normals[CENTRE], [0, 0, -1], atol=1e-7)


def _project(X: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates ``[N,2]`` and z-depths ``[N]`` of world points ``X``."""
    cam = X @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    return cam[:, :2] / np.where(z > 0, z, 1.0)[:, None] * K[[0, 1], [0, 1]] + K[:2, 2], z


def _clearly_visible(
    scene, j: int, xy: np.ndarray, z: np.ndarray, ids: np.ndarray, normals: np.ndarray
) -> np.ndarray:
    """Points ``[N]`` that view ``j``'s ground truth says it sees, away from any edge.

    The four pixel centres around ``xy`` must see the same shape with about the same normal,
    and their bilinearly interpolated inverse depth must match ``1/z`` (exact on planes,
    where 1/z is affine in the image). Points near occlusion edges or shape edges fail.
    """
    corner = np.floor(xy - 0.5).astype(int)
    frac = xy - 0.5 - corner
    width, height = scene.size_wh
    ok = (z > 0) & (corner >= 0).all(axis=1) & (corner[:, 0] < width - 1) & (corner[:, 1] < height - 1)
    corner = np.where(ok[:, None], corner, 0)
    inverse_depth = np.zeros(len(xy))
    for du in (0, 1):
        for dv in (0, 1):
            u, v = corner[:, 0] + du, corner[:, 1] + dv
            weight = np.where(du, frac[:, 0], 1 - frac[:, 0]) * np.where(dv, frac[:, 1], 1 - frac[:, 1])
            ok &= (scene.object_ids[j][v, u] == ids) & ((scene.normals[j][v, u] * normals).sum(axis=1) > 0.9)
            inverse_depth += weight / np.where(scene.masks[j][v, u], scene.depths[j][v, u], np.inf)
    return ok & (np.abs(inverse_depth * z - 1) < 1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_views_agree_on_the_exact_surface(kind):
    scene = make_scene(kind, seed=5, num_views=4, size_wh=(96, 72))
    world = scene.world()
    size = 2 * world.radius
    points = scene.world_points()
    in_view = seen = 0
    for i, j in [(0, 1), (1, 0), (1, 2), (2, 3)]:
        mask = scene.masks[i]
        X = points[i][mask]
        xy, z = _project(X, scene.extrinsics_w2c[j], scene.intrinsics[j])
        visible = _clearly_visible(scene, j, xy, z, scene.object_ids[i][mask], scene.normals[i][mask])
        # The ray of camera j through the exact projection hits the scene at the same point.
        origin, dirs, _ = camera_rays(scene.extrinsics_w2c[j], scene.intrinsics[j], xy[visible])
        t, _ = trace(world, origin, dirs)
        error = np.linalg.norm(origin + t[:, None] * dirs - X[visible], axis=1)
        assert (error < 1e-4 * size).all(), f"views {i},{j}: max error {error.max():.2e}"
        in_view += int(((z > 0) & (xy >= 0).all(axis=1) & (xy < scene.size_wh).all(axis=1)).sum())
        seen += int(visible.sum())
    # Wrong cameras or depths would leave almost no point that view j's depth confirms.
    assert seen > 0.3 * in_view


def test_same_seed_is_bitwise_identical_and_seeds_differ():
    a, b = (make_scene("trajectory", seed=11, num_views=2, size_wh=(48, 32)) for _ in range(2))
    for name in ("images", "depths", "normals", "masks", "object_ids", "extrinsics_w2c", "intrinsics"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = make_scene("trajectory", seed=12, num_views=2, size_wh=(48, 32))
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.extrinsics_w2c, c.extrinsics_w2c)


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="object, room, trajectory"):
        make_scene("forest", seed=0, num_views=1)


def test_seeded_image_size_and_field_of_view_vary():
    sizes = {make_scene("object", seed=s, num_views=1, size_wh=None).size_wh for s in range(6)}
    focals = {float(make_scene("room", seed=s, num_views=1, size_wh=(16, 16)).intrinsics[0, 0, 0]) for s in range(3)}
    assert len(sizes) > 1 and len(focals) == 3


def test_room_is_closed_and_cameras_stay_inside():
    scene = make_scene("room", seed=2, num_views=4, size_wh=(32, 24))
    assert scene.masks.all()
    half = build_world("room", 2).room_half
    centres = -np.einsum("sji,sj->si", scene.extrinsics_w2c[:, :3, :3], scene.extrinsics_w2c[:, :3, 3])
    assert (np.abs(centres[:, :2]) < half[:2]).all()
    assert (centres[:, 2] > 0).all() and (centres[:, 2] < 2 * half[2]).all()


def _assert_same(a, b) -> None:
    for name in ("images", "depths", "normals", "masks", "object_ids", "extrinsics_w2c", "intrinsics"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.kind, a.seed, a.names, a.supersample) == (b.kind, b.seed, b.names, b.supersample)


def test_supersampling_averages_shifted_point_sampled_renders():
    world = build_world("object", 3)
    w2c = look_at(world.centre + np.array([3.0, -4.0, 2.0]), world.centre)
    K = intrinsics_from_fov(np.radians(60), W, H)
    single = render_view(world, w2c, K, W, H)
    assert render_view(world, w2c, K, W, H, supersample=1).images.tobytes() == single.images.tobytes()
    fine = render_view(world, w2c, K, W, H, supersample=3)
    # Geometry stays that of the pixel centres' rays.
    for name in ("depths", "normals", "masks", "object_ids"):
        assert np.array_equal(getattr(fine, name), getattr(single, name)), name
    # Colour: the mean of 3x3 one-ray renders whose rays pass at offsets (-1/3, 0, 1/3) px
    # from the centres (moving the principal point by -d moves every ray by +d). Each of
    # those is rounded to 8 bits, so their mean is within 1/2 + 1/2 grey level.
    shifted = []
    for dy in (-1 / 3, 0.0, 1 / 3):
        for dx in (-1 / 3, 0.0, 1 / 3):
            moved = K.copy()
            moved[0, 2] -= dx
            moved[1, 2] -= dy
            shifted.append(render_view(world, w2c, moved, W, H).images.astype(np.float64))
    difference = np.abs(fine.images - np.mean(shifted, axis=0))
    assert difference.max() <= 1.0
    # Anti-aliasing changes the colours of edge pixels, not the average picture.
    assert np.abs(fine.images.astype(float) - single.images).max() > 40
    assert abs(fine.images.mean() - single.images.mean()) < 1.0


def test_supersampled_scene_keeps_geometry_and_round_trips(tmp_path):
    plain = make_scene("room", seed=1, num_views=2, size_wh=(24, 18))
    fine = make_scene("room", seed=1, num_views=2, size_wh=(24, 18), supersample=2)
    assert fine.supersample == 2 and plain.supersample == 1
    for name in ("depths", "normals", "masks", "object_ids", "extrinsics_w2c", "intrinsics"):
        assert np.array_equal(getattr(fine, name), getattr(plain, name)), name
    assert not np.array_equal(fine.images, plain.images)
    _assert_same(read_scene(write_scene(fine, tmp_path / "fine")), fine)
    # The default leaves the file as before: no supersample key.
    assert "supersample" not in (write_scene(plain, tmp_path / "plain") / "cameras.json").read_text()
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match="supersample"):
            make_scene("room", seed=1, num_views=1, size_wh=(8, 8), supersample=bad)


def test_write_read_round_trip(tmp_path):
    scene = make_scene("object", seed=4, num_views=2, size_wh=(40, 30))
    _assert_same(read_scene(write_scene(scene, tmp_path / "full")), scene)
    compact = read_scene(write_scene(scene, tmp_path / "compact", compact=True))
    assert np.array_equal(compact.images, scene.images) and np.array_equal(compact.masks, scene.masks)
    np.testing.assert_allclose(compact.depths, scene.depths, rtol=5e-4)
    np.testing.assert_allclose(compact.normals, scene.normals, atol=1e-2)
    np.testing.assert_array_equal(compact.extrinsics_w2c, scene.extrinsics_w2c)


@pytest.mark.parametrize("name, kind, views, size", SAMPLE_ASSETS)
def test_sample_assets_read_back(name, kind, views, size):
    folder = REPO / "assets" / "scenes" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not generated (recon3d.synth.make_sample_assets)")
    scene = read_scene(folder)
    assert scene.kind == kind and scene.num_views == views and scene.size_wh == size
    assert scene.depths.shape == (views, size[1], size[0]) and scene.depths[scene.masks].min() > 0
