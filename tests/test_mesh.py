"""Meshers against exact synthetic geometry, analytic planes and hand-built meshes."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from recon3d.eval.metrics import point_cloud_metrics
from recon3d.mesh import MeshOptions, decimate, extract_mesh, grid_triangulation, mesh_stats, remove_small_components
from recon3d.mesh.open3d_bridge import to_open3d
from recon3d.synth import make_scene
from recon3d.synth.truth import scene_prediction as gt_prediction
from recon3d.types import Mesh


@pytest.fixture(scope="module")
def object_scene():
    return make_scene("object", 3, 8, (128, 96))


def surface_chamfer(mesh: Mesh, scene) -> dict:
    """Chamfer (normalised by the scene diagonal) between points sampled uniformly on
    the mesh and the exact surface points seen by the scene's pixels."""
    import open3d as o3d

    o3d.utility.random.seed(0)
    samples = np.asarray(to_open3d(mesh).sample_points_uniformly(60_000).points)
    return point_cloud_metrics(samples, scene.world_points()[scene.masks])


@pytest.mark.parametrize("method, limit", [("tsdf", 0.01), ("poisson", 0.02), ("grid", 0.01)])
def test_mesh_of_ground_truth_depth_lies_on_the_surface(object_scene, method, limit):
    options = MeshOptions(method=method, poisson_depth=8)
    mesh = extract_mesh(gt_prediction(object_scene), options, keep=object_scene.masks)
    stats = mesh_stats(mesh)
    assert stats["faces"] > 1000
    metrics = surface_chamfer(mesh, object_scene)
    assert metrics["chamfer"] <= limit, metrics
    # Both directions are small: the mesh is on the surface and covers what was seen.
    assert metrics["accuracy"] <= limit and metrics["completeness"] <= 2 * limit, metrics


def test_tsdf_from_rendered_gaussian_depth(object_scene):
    from recon3d.gaussians import gaussians_from_prediction

    pred = gt_prediction(object_scene)
    gaussians = gaussians_from_prediction(pred, keep=object_scene.masks, opacity=0.99, scale_factor=0.7)
    mesh = extract_mesh(pred, MeshOptions(method="tsdf"), keep=object_scene.masks, gaussians=gaussians)
    assert surface_chamfer(mesh, object_scene)["chamfer"] <= 0.01


def two_planes(width=40, height=30, focal=40.0):
    """One camera at the origin looking at a back plane z=4 half hidden by a plane z=2."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    depth = np.where(u < width / 2, 2.0, 4.0)[None]
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    points = np.stack([(u - K[0, 2]) / focal * depth[0], (v - K[1, 2]) / focal * depth[0], depth[0]], -1)[None]
    colors = np.full((1, height, width, 3), 200, np.uint8)
    return points, depth, colors


def test_grid_triangulation_never_bridges_a_depth_step():
    points, depth, colors = two_planes()
    mesh = grid_triangulation(points, depth, colors)
    z = mesh.vertices[mesh.faces][..., 2]
    assert np.all(z.max(1) == z.min(1)), "a face joins the two planes"
    height, width = depth.shape[1:]
    # Every 2x2 block not straddling the step (column 19|20) gives two faces.
    assert mesh.num_faces == 2 * (height - 1) * (width - 2)
    # Faces wind towards the camera at the origin: normal · (camera - centroid) > 0.
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all((normals * -tri.mean(1)).sum(-1) > 0)


def test_grid_triangulation_skips_masked_and_nonfinite_pixels():
    points, depth, colors = two_planes()
    depth = depth.copy()
    depth[0, 5, 5] = np.nan
    depth[0, 10, 30] = np.inf
    keep = np.ones_like(depth, dtype=bool)
    keep[0, 20, 8] = False
    mesh = grid_triangulation(points, depth, colors, keep)
    used = {tuple(np.round(p, 5)) for p in mesh.vertices}
    for row, col in [(5, 5), (10, 30), (20, 8)]:
        assert tuple(np.round(points[0, row, col].astype(np.float32), 5)) not in used
    assert np.isfinite(mesh.vertices).all()


def test_small_components_are_removed_and_decimation_hits_the_target():
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=40)
    island = o3d.geometry.TriangleMesh.create_sphere(radius=0.01, resolution=4).translate((5, 0, 0))
    combined = sphere + island
    mesh = Mesh(np.asarray(combined.vertices, np.float32), np.asarray(combined.triangles, np.int64),
                np.full((len(combined.vertices), 3), 100, np.uint8))
    assert mesh_stats(mesh)["components"] == 2
    cleaned = remove_small_components(mesh, 0.01)
    assert mesh_stats(cleaned)["components"] == 1
    assert cleaned.num_faces == len(sphere.triangles)
    assert np.linalg.norm(cleaned.vertices, axis=1).max() < 1.01
    stats = mesh_stats(cleaned)
    assert stats["watertight"] and stats["edge_manifold"] and stats["vertex_manifold"]
    small = decimate(cleaned, 500)
    assert 450 <= small.num_faces <= 500
    assert np.abs(np.linalg.norm(small.vertices, axis=1) - 1.0).max() < 0.05
    assert (small.vertex_colors == 100).all()


@pytest.mark.parametrize("method", ["tsdf", "poisson", "grid"])
def test_all_masked_gives_an_empty_mesh_with_a_warning(object_scene, method, caplog):
    pred = gt_prediction(object_scene, [0, 1])
    with caplog.at_level(logging.WARNING):
        mesh = extract_mesh(pred, MeshOptions(method=method), keep=np.zeros(pred.depth.shape, bool))
    assert mesh.num_faces == 0 and mesh.num_vertices == 0
    assert "empty" in caplog.text


@pytest.mark.parametrize("method", ["tsdf", "poisson", "grid"])
def test_single_view_with_nan_and_inf_depth(object_scene, method):
    pred = gt_prediction(object_scene, [0])
    pred.depth = pred.depth.copy()
    pred.depth[0, :10] = np.nan
    pred.depth[0, 10:20] = np.inf
    pred.depth[0, 20:25] = -1.0
    mesh = extract_mesh(pred, MeshOptions(method=method, poisson_depth=7), keep=object_scene.masks[:1])
    assert mesh.num_faces > 0
    assert np.isfinite(mesh.vertices).all()
    assert mesh.faces.max() < mesh.num_vertices
