"""Training plumbing: ground-truth normalisation, losses, a few steps, checkpoint and resume."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recon3d.geometry.cameras import pose_encoding_to_cameras
from recon3d.networks.vggt import VGGTConfig
from recon3d.synth import make_scene
from recon3d.train.data import ScenePool, normalise_views, sample_from_scene
from recon3d.train.loop import TrainConfig, learning_rate, train
from recon3d.train.losses import camera_loss, dense_loss
from recon3d.zoo import load_model

MICRO = VGGTConfig(
    img_size=56, embed_dim=32, depth=2, num_heads=2, patch_embed={"type": "conv"},
    camera_head={"trunk_depth": 1, "num_heads": 2},
    dpt={"features": 8, "out_channels": [8, 8, 16, 16], "intermediate_layer_idx": [0, 1, 0, 1]},
    enable_point=False, enable_track=False,
)


def test_normalised_ground_truth_is_a_consistent_pinhole_scene():
    scene = make_scene("object", seed=3, num_views=3, size_wh=(64, 48))
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    assert np.allclose(ext[0], np.eye(4), atol=1e-12)
    assert math.isclose(np.linalg.norm(points[scene.masks], axis=-1).mean(), 1.0, rel_tol=1e-9)
    # Project each view's world points through its own normalised camera: they must land
    # on the centres of the pixels they came from, at the normalised depth.
    for i in range(3):
        cam = points[i] @ ext[i, :3, :3].T + ext[i, :3, 3]
        v, u = np.nonzero(scene.masks[i])
        pix = cam[v, u] @ scene.intrinsics[i].T
        assert np.allclose(pix[:, :2] / pix[:, 2:], np.stack([u + 0.5, v + 0.5], -1), atol=1e-6)
        assert np.allclose(cam[v, u, 2], depth[i, v, u], atol=1e-9)
    # The scale is the same for depths and translations: view 1 seen from view 0 agrees.
    original = np.linalg.inv(scene.extrinsics_w2c[1])[:3, 3] - np.linalg.inv(scene.extrinsics_w2c[0])[:3, 3]
    scale = np.linalg.norm(original) / np.linalg.norm(np.linalg.inv(ext[1])[:3, 3])
    assert np.allclose(scene.depths[1][scene.masks[1]] / scale, depth[1][scene.masks[1]])


def test_sample_pose_encoding_decodes_to_the_normalised_cameras():
    scene = make_scene("room", seed=4, num_views=4, size_wh=(56, 42))
    sample = sample_from_scene(scene, np.array([2, 0, 3]), torch.Generator().manual_seed(0))
    ext, _, _ = normalise_views(scene.extrinsics_w2c[[2, 0, 3]], scene.depths[[2, 0, 3]].astype(np.float64),
                                scene.intrinsics[[2, 0, 3]], scene.masks[[2, 0, 3]])
    decoded, intrinsics = pose_encoding_to_cameras(sample.pose_enc, (42, 56))
    assert torch.allclose(decoded, torch.from_numpy(ext[:, :3]).float(), atol=1e-5)
    assert torch.allclose(intrinsics, torch.from_numpy(scene.intrinsics[[2, 0, 3]]).float(), rtol=1e-5)
    assert sample.images.shape == (3, 3, 42, 56) and 0 <= sample.images.min() and sample.images.max() <= 1


def test_scene_pool_renders_only_when_asked():
    # Rendering competes with training for the CPU: drawing samples must reuse pooled
    # scenes, and only refill() (called every new_scene_every steps) renders new ones.
    pool = ScenePool({"object": 1.0}, [(56, 42)], views_per_scene=4, pool_size=2, seed=0, workers=0)
    generator = torch.Generator().manual_seed(0)
    pool.draw(2, generator)  # an empty pool renders its first scene
    assert pool.counter == 1
    for _ in range(5):
        pool.draw(3, generator)
    assert pool.counter == 1 and len(pool.pool) == 1
    for _ in range(3):
        pool.refill(block=False, max_new=1)
    assert pool.counter == 4 and len(pool.pool) == 2  # oldest scenes dropped beyond pool_size


def test_dense_loss_hand_computed():
    pred = torch.zeros(1, 1, 2, 2, 1)
    gt = torch.tensor([0.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2, 1)
    conf = torch.full((1, 1, 2, 2), 2.0)
    valid = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    # regression: mean(2*|err|) - 0.2*log 2 = 2*0.25 - 0.2*log2;
    # x-gradients of the error: row 0 has |0-(-1)|=1, row 1 has 0 → mean(2*[1, 0]) = 1;
    # y-gradients: column 1 has 1, column 0 has 0 → 1.
    expected = 0.5 - 0.2 * math.log(2.0) + 1.0 + 1.0
    assert math.isclose(float(dense_loss(pred, conf, gt, valid)), expected, rel_tol=1e-6)
    assert float(dense_loss(pred, conf, gt, torch.zeros_like(valid))) == 0.0


def test_camera_loss_weights_later_iterations_more():
    gt = torch.zeros(1, 2, 9)
    wrong = torch.ones(1, 2, 9)
    assert math.isclose(float(camera_loss([wrong, gt], gt)), 0.8 * 3.0, rel_tol=1e-6)
    assert math.isclose(float(camera_loss([gt, wrong], gt)), 3.0, rel_tol=1e-6)


def test_learning_rate_schedule():
    cfg = TrainConfig(model=MICRO, steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert math.isclose(learning_rate(cfg, 0), 1e-4)
    assert math.isclose(learning_rate(cfg, 10), 1e-3)
    assert math.isclose(learning_rate(cfg, 100), 1e-4)


def test_training_runs_checkpoints_and_resumes(tmp_path):
    cfg = TrainConfig(model=MICRO, steps=3, warmup=1, max_views=3, sizes_wh=[(56, 42)], views_per_scene=4,
                      pool_size=2, render_workers=0, log_every=1, checkpoint_every=2, validate_every=2,
                      kinds={"object": 1.0})
    train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["total"]) for r in records) and "val_total" in records[1]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    cfg.steps = 4
    train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    model = load_model(tmp_path / "model")
    assert torch.equal(model.state_dict()["aggregator.camera_token"],
                       torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]["aggregator.camera_token"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_training_without_cuda_is_refused(tmp_path):
    cfg = TrainConfig(model=MICRO, steps=1, device="cuda")
    from recon3d.errors import Recon3DError

    with pytest.raises(Recon3DError, match="CUDA is not available"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
