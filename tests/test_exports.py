"""Every export re-loads in an independent library and agrees with the prediction."""
from __future__ import annotations

import logging

import numpy as np
import open3d as o3d
import pycolmap
import pytest
import trimesh
from plyfile import PlyData

from recon3d.exports import EXPORT_FORMATS, ExportOptions, export_scene, keep_mask
from recon3d.io.colmap import write_colmap
from recon3d.io.glb import GL_FROM_CV, write_glb
from recon3d.io.obj import write_obj
from recon3d.io.ply import write_mesh_ply, write_points_ply
from recon3d.mesh import MeshOptions, extract_mesh
from recon3d.synth import make_scene
from recon3d.synth.truth import scene_prediction as gt_prediction


@pytest.fixture(scope="module")
def scene():
    return make_scene("object", 5, 6, (96, 72))


@pytest.fixture(scope="module")
def mesh(scene):
    return extract_mesh(gt_prediction(scene), MeshOptions(method="grid"), keep=scene.masks)


def test_glb_reloads_in_trimesh_with_one_node_per_camera(scene, tmp_path):
    pred = gt_prediction(scene)
    view, rows, cols = 2, np.array([10, 30, 50, 60]), np.array([5, 40, 70, 90])
    points = scene.world_points()[view, rows, cols]
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    write_glb(tmp_path / "s.glb", pred.extrinsics_w2c, points=points, point_colors=colors,
              intrinsics=pred.intrinsics, image_size_wh=(96, 72), camera_names=pred.names)
    loaded = trimesh.load(tmp_path / "s.glb")
    camera_nodes = sorted(n for n in loaded.graph.nodes_geometry if n.startswith("camera_"))
    assert len(camera_nodes) == pred.num_views
    first, _ = loaded.graph[camera_nodes[0]]
    np.testing.assert_allclose(first, np.eye(4), atol=1e-6)
    cloud_transform, cloud_name = loaded.graph["points"]
    cloud = loaded.geometry[cloud_name]
    glb_points = trimesh.transform_points(cloud.vertices, cloud_transform)
    np.testing.assert_array_equal(cloud.colors[:, :3], colors)
    # Seen from the camera node of `view` (OpenGL axes), flipped back to OpenCV and
    # projected with K, each point lands on the centre of the pixel it came from.
    node, _ = loaded.graph[camera_nodes[view]]
    local_gl = trimesh.transform_points(glb_points, np.linalg.inv(node))
    local_cv = local_gl @ GL_FROM_CV[:3, :3].T
    pixels = local_cv @ pred.intrinsics[view].T.astype(np.float64)
    np.testing.assert_allclose(pixels[:, :2] / pixels[:, 2:], np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-3)
    # glTF convention: the camera looks down its local -z.
    assert (local_gl[:, 2] < 0).all()


def test_glb_with_a_mesh(scene, mesh, tmp_path):
    pred = gt_prediction(scene)
    write_glb(tmp_path / "m.glb", pred.extrinsics_w2c, mesh=mesh)
    loaded = trimesh.load(tmp_path / "m.glb")
    transform, name = loaded.graph["mesh"]
    geometry = loaded.geometry[name]
    assert len(geometry.faces) == mesh.num_faces
    expected = trimesh.transform_points(mesh.vertices, GL_FROM_CV @ pred.extrinsics_w2c[0].astype(np.float64))
    np.testing.assert_allclose(trimesh.transform_points(geometry.vertices, transform), expected, atol=1e-4)


def test_point_ply_reloads_in_plyfile_and_open3d(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (500, 3), dtype=np.uint8)
    normals = rng.normal(size=(500, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    write_points_ply(tmp_path / "p.ply", points, colors, normals)
    vertex = PlyData.read(tmp_path / "p.ply")["vertex"]
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), points)
    np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1), colors)
    cloud = o3d.io.read_point_cloud(str(tmp_path / "p.ply"))
    np.testing.assert_allclose(np.asarray(cloud.points), points, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.normals), normals, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, colors, atol=1e-3)


def test_mesh_ply_and_obj_reload(mesh, tmp_path):
    write_mesh_ply(tmp_path / "m.ply", mesh)
    write_obj(tmp_path / "m.obj", mesh)
    ply = PlyData.read(tmp_path / "m.ply")
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), mesh.faces)
    np.testing.assert_array_equal(np.stack([ply["vertex"][c] for c in ("red", "green", "blue")], 1), mesh.vertex_colors)
    o3d_mesh = o3d.io.read_triangle_mesh(str(tmp_path / "m.ply"))
    np.testing.assert_array_equal(np.asarray(o3d_mesh.triangles), mesh.faces)
    np.testing.assert_allclose(np.asarray(o3d_mesh.vertices), mesh.vertices, atol=1e-6)
    obj = trimesh.load(tmp_path / "m.obj", process=False)
    np.testing.assert_array_equal(obj.faces, mesh.faces)
    np.testing.assert_allclose(obj.vertices, mesh.vertices, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(obj.visual.vertex_colors[:, :3], mesh.vertex_colors, atol=1)


def crop_affine(scale: float, offset_x: float, offset_y: float) -> np.ndarray:
    """Model pixel → original pixel for an image downscaled by ``scale`` then cropped."""
    return np.array([[scale, 0, offset_x], [0, scale, offset_y], [0, 0, 1.0]])


@pytest.mark.parametrize("layout", ["0", "0_text"])
def test_colmap_reloads_in_pycolmap_with_our_cameras(scene, tmp_path, layout):
    affine = crop_affine(2.0, 0.0, 0.0)
    pred = gt_prediction(scene, to_original=affine)
    write_colmap(tmp_path / "colmap", pred, scene.masks, max_points=5000)
    rec = pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / layout))
    assert rec.num_cameras() == rec.num_images() == pred.num_views
    by_name = {image.name: image for image in rec.images.values()}
    assert sorted(by_name) == sorted(f"{n}.png" for n in pred.names)
    for view, name in enumerate(pred.names):
        image = by_name[f"{name}.png"]
        np.testing.assert_allclose(image.cam_from_world().matrix(), pred.extrinsics_w2c[view, :3].astype(np.float64),
                                   atol=1e-6)
        camera = rec.cameras[image.camera_id]
        assert (camera.width, camera.height) == (2 * 96, 2 * 72)
        K = affine @ pred.intrinsics[view].astype(np.float64)
        np.testing.assert_allclose(camera.calibration_matrix(), K, rtol=1e-6)
    assert rec.num_points3D() == 5000


def test_colmap_ground_truth_reprojection_error_is_subpixel(scene, tmp_path):
    write_colmap(tmp_path / "colmap", gt_prediction(scene), scene.masks, max_points=20000)
    rec = pycolmap.Reconstruction(str(tmp_path / "colmap" / "sparse" / "0"))
    # Observations sit at pixel centres; exact cameras and depth put every point within
    # half a pixel diagonal of them, and most tracks span several views.
    assert rec.compute_mean_reprojection_error() <= 0.5
    assert rec.compute_mean_track_length() >= 2.0


def test_colmap_tracks_shrink_when_cameras_disagree(scene, tmp_path):
    from scipy.spatial.transform import Rotation

    lengths = []
    for degrees in (0.0, 2.0):
        pred = gt_prediction(scene)
        turn = Rotation.from_rotvec([0.0, np.deg2rad(degrees), 0.0]).as_matrix().astype(np.float32)
        pred.extrinsics_w2c[1:, :3] = turn @ pred.extrinsics_w2c[1:, :3]
        write_colmap(tmp_path / f"c{degrees}", pred, scene.masks, max_points=20000)
        lengths.append(pycolmap.Reconstruction(str(tmp_path / f"c{degrees}" / "sparse" / "0")).compute_mean_track_length())
    # A 2 degree error moves far points by several pixels: their depth no longer agrees
    # with the other views', so they are observed in fewer views.
    assert lengths[1] < 0.7 * lengths[0], lengths


def test_export_scene_writes_every_format_atomically(scene, tmp_path):
    pred = gt_prediction(scene)
    options = ExportOptions(conf_percentile=0.0, mesh=MeshOptions(method="grid"))
    written = export_scene(pred, tmp_path / "out", list(EXPORT_FORMATS), options)
    assert sorted(written.files) == sorted(EXPORT_FORMATS)
    for paths in written.files.values():
        assert all(p.exists() for p in paths)
    assert not list((tmp_path / "out").glob(".*"))
    assert len(PlyData.read(tmp_path / "out" / "points.ply")["vertex"]) > 0
    assert pycolmap.Reconstruction(str(tmp_path / "out" / "colmap" / "sparse" / "0")).num_images() == pred.num_views
    compressed = PlyData.read(tmp_path / "out" / "gaussians.compressed.ply")
    count = written.counts["gaussians"]
    assert compressed["vertex"].count == count == PlyData.read(tmp_path / "out" / "gaussians.ply")["vertex"].count
    assert compressed["chunk"].count == -(-count // 256)


def test_all_pixels_masked_gives_valid_empty_outputs(scene, tmp_path, caplog):
    pred = gt_prediction(scene, [0, 1])
    pred.depth = np.full_like(pred.depth, np.nan)
    with caplog.at_level(logging.WARNING):
        export_scene(pred, tmp_path / "out", ["glb", "ply", "mesh", "colmap"], ExportOptions())
    assert "empty" in caplog.text
    assert len(PlyData.read(tmp_path / "out" / "points.ply")["vertex"]) == 0
    assert len(PlyData.read(tmp_path / "out" / "mesh.ply")["face"]) == 0
    loaded = trimesh.load(tmp_path / "out" / "scene.glb")
    assert len([n for n in loaded.graph.nodes_geometry if n.startswith("camera_")]) == 2
    rec = pycolmap.Reconstruction(str(tmp_path / "out" / "colmap" / "sparse" / "0"))
    assert rec.num_images() == 2 and rec.num_points3D() == 0


def test_a_failing_colmap_write_leaves_nothing_behind(scene, tmp_path, monkeypatch):
    def broken(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(pycolmap.Reconstruction, "write_text", broken)
    (tmp_path / "colmap").mkdir()
    (tmp_path / "colmap" / "previous.txt").write_text("kept")
    with pytest.raises(OSError):
        write_colmap(tmp_path / "colmap", gt_prediction(scene, [0, 1]), max_points=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colmap"]
    assert (tmp_path / "colmap" / "previous.txt").read_text() == "kept"


def test_overlap_filter_drops_duplicate_views_but_keeps_the_surface_covered(scene):
    import torch

    from recon3d.gaussians import gaussians_from_prediction
    from recon3d.render import render

    pred = gt_prediction(scene)
    base = ExportOptions(conf_percentile=0.0, filters=frozenset())
    every = keep_mask(pred, base) & scene.masks
    fewer = keep_mask(pred, ExportOptions(conf_percentile=0.0, filters=frozenset({"overlap"}))) & scene.masks
    assert not (fewer & ~every).any()
    assert 0.2 < fewer.sum() / every.sum() < 0.9
    # The surface is still there in every view: the remaining Gaussians cover its pixels.
    gaussians = gaussians_from_prediction(pred, keep=fewer, opacity=1.0)
    alphas = render(gaussians, torch.as_tensor(pred.extrinsics_w2c), torch.as_tensor(pred.intrinsics),
                    96, 72, backend="cpu").alphas[..., 0].numpy()
    for v in range(scene.num_views):
        assert (alphas[v][scene.masks[v]] > 0.5).mean() > 0.97


def test_filters_are_a_set_of_known_names(scene):
    pred = gt_prediction(scene)
    plain = keep_mask(pred, ExportOptions(conf_percentile=0.0, filters=frozenset()))
    edges = keep_mask(pred, ExportOptions(conf_percentile=0.0, filters=frozenset({"edges"})))
    assert edges.sum() < plain.sum() and not (edges & ~plain).any()  # a filter only removes pixels
    with pytest.raises(ValueError, match="unknown filter.*fog"):
        keep_mask(pred, ExportOptions(filters=frozenset({"edges", "fog"})))


def test_learned_gaussians_are_chosen_when_the_model_has_them(scene, tmp_path):
    from helpers.gaussians import random_gaussians
    from plyfile import PlyData
    from recon3d_ui.session import Session, viewer_export

    from recon3d.errors import InputError
    from recon3d.exports import chosen_gaussians

    pred = gt_prediction(scene)
    geometric = chosen_gaussians(pred, ExportOptions())
    with pytest.raises(InputError, match="no Gaussian head"):
        chosen_gaussians(pred, ExportOptions(gaussians="learned"))
    pred.gaussians = random_gaussians(57)
    assert chosen_gaussians(pred, ExportOptions()) is pred.gaussians
    assert len(chosen_gaussians(pred, ExportOptions(gaussians="geometric"))) == len(geometric) != 57
    # The web app's viewer shows what the downloads hold.
    session = Session()
    try:
        session.prediction = pred
        shown, _ = viewer_export(session, ExportOptions(), "gaussians", max_gaussians=1000)
        assert len(PlyData.read(shown)["vertex"]) == 57
    finally:
        session.close()
