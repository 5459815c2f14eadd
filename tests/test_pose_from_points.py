"""Cameras solved from depth and point maps, against exact synthetic cameras and SciPy."""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from recon3d.geometry.pose_from_points import cameras_from_points, weighted_rigid_fit
from recon3d.synth import make_scene
from recon3d.train.data import normalise_views


def test_rigid_fit_recovers_a_known_motion_and_ignores_zero_weight_outliers():
    rng = np.random.default_rng(0)
    rot = Rotation.random(4, random_state=1).as_matrix()
    trans = rng.normal(size=(4, 3))
    source = rng.normal(size=(4, 200, 3))
    target = np.einsum("bij,bnj->bni", rot, source) + trans[:, None]
    weights = np.ones((4, 200))
    target[:, :20] += 50.0  # gross outliers, switched off by their weights
    weights[:, :20] = 0.0
    fitted_rot, fitted_trans = weighted_rigid_fit(torch.from_numpy(source), torch.from_numpy(target),
                                                  torch.from_numpy(weights))
    assert np.allclose(fitted_rot.numpy(), rot, atol=1e-10)
    assert np.allclose(fitted_trans.numpy(), trans, atol=1e-10)


def test_rigid_fit_never_returns_a_reflection():
    # Target = mirrored source: the best orthogonal fit is a reflection; a rotation must come out.
    source = torch.randn(1, 100, 3, dtype=torch.float64)
    target = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    rot, _ = weighted_rigid_fit(source, target, torch.ones(1, 100, dtype=torch.float64))
    assert torch.isclose(torch.det(rot[0]), torch.tensor(1.0, dtype=torch.float64))


def test_rigid_fit_without_weight_gives_the_identity():
    rot, trans = weighted_rigid_fit(torch.randn(1, 5, 3), torch.randn(1, 5, 3), torch.zeros(1, 5))
    assert torch.equal(rot[0], torch.eye(3, dtype=torch.float64)) and torch.equal(trans[0], torch.zeros(3, dtype=torch.float64))


def test_exact_depth_and_points_give_the_exact_cameras():
    scene = make_scene("object", seed=2, num_views=4, size_wh=(64, 48))
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    solved = cameras_from_points(torch.from_numpy(depth), torch.from_numpy(points),
                                 torch.from_numpy(scene.masks.astype(np.float64)), torch.from_numpy(scene.intrinsics))
    assert np.allclose(solved.numpy(), ext[:, :3], atol=1e-9)


def test_noisy_points_give_cameras_within_a_fraction_of_a_degree():
    scene = make_scene("room", seed=1, num_views=3, size_wh=(64, 48))
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    noisy = points + np.random.default_rng(0).normal(scale=0.01, size=points.shape) * scene.masks[..., None]
    solved = cameras_from_points(torch.from_numpy(depth), torch.from_numpy(noisy),
                                 torch.from_numpy(scene.masks.astype(np.float64)), torch.from_numpy(scene.intrinsics))
    for i in range(3):
        angle = Rotation.from_matrix(solved[i, :3, :3].numpy() @ ext[i, :3, :3].T).magnitude()
        assert np.degrees(angle) < 0.5


def test_a_model_that_reads_cameras_from_points_returns_the_solved_cameras():
    # A stub network whose point and depth maps are exact but whose camera head says every
    # view is the reference: with cameras_from="points" inference must give the true poses.
    from recon3d.geometry.cameras import cameras_to_pose_encoding
    from recon3d.networks.vggt import VGGT, VGGTConfig
    from recon3d.networks.vggt.family import predict_tensors

    scene = make_scene("object", seed=4, num_views=3, size_wh=(56, 42))
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    identity = torch.eye(4)[:3].expand(3, 3, 4)
    head_pose = cameras_to_pose_encoding(identity, torch.from_numpy(scene.intrinsics).float(), (42, 56))
    masks = torch.from_numpy(scene.masks).float()

    class Exact(VGGT):
        def forward(self, images):
            return {"pose_enc": head_pose[None], "depth": torch.from_numpy(depth).float()[None, ..., None],
                    "depth_conf": masks[None] + 1e-9, "world_points": torch.from_numpy(points).float()[None],
                    "world_points_conf": masks[None] + 1e-9}

    config = VGGTConfig(img_size=56, embed_dim=32, depth=2, num_heads=2, patch_embed={"type": "conv"},
                        camera_head={"trunk_depth": 1, "num_heads": 2},
                        dpt={"features": 8, "out_channels": [8, 8, 16, 16], "intermediate_layer_idx": [0, 1, 0, 1]},
                        enable_track=False, cameras_from="points")
    images = torch.zeros(3, 3, 42, 56)
    arrays = predict_tensors(Exact(config), images)
    assert np.allclose(arrays["extrinsics_w2c"][:, :3], ext[:, :3], atol=1e-4)
    # Points are re-made from depth and the solved cameras: the true points where depth is valid.
    assert np.allclose(arrays["points"][scene.masks], points[scene.masks], atol=1e-4)
    config.cameras_from = "head"
    from_head = predict_tensors(Exact(config), images)["extrinsics_w2c"]
    assert np.allclose(from_head[:, :3], identity.numpy(), atol=1e-5)
