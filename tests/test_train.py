"""Training plumbing: ground-truth normalisation, losses, a few steps, checkpoint and resume."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from recon3d.errors import Recon3DError
from recon3d.geometry.cameras import pose_encoding_to_cameras
from recon3d.networks.vggt import VGGT, VGGTConfig
from recon3d.synth import make_scene
from recon3d.train.data import (
    TRAIN_SEED_OFFSET,
    ScenePool,
    SceneRequest,
    choose_views,
    normalise_views,
    patch_matches,
    render_scene,
    sample_from_scene,
)
from recon3d.train.loop import TrainConfig, _load_initial_weights, curriculum, learning_rate, train
from recon3d.train.losses import camera_loss, dense_loss
from recon3d.train.matching import attention_on_matches, correspondence_loss
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
    # translation 1 + quaternion 1 + field of view 0.5 * 1, per iteration
    assert math.isclose(float(camera_loss([wrong, gt], gt)), 0.8 * 2.5, rel_tol=1e-6)
    assert math.isclose(float(camera_loss([gt, wrong], gt)), 2.5, rel_tol=1e-6)


def test_camera_loss_treats_q_and_minus_q_as_one_rotation():
    # Two targets on either side of the w >= 0 flip (rotations of 179° and 181° about z):
    # the same prediction must be scored by its distance to the rotation, not the sign.
    half = math.radians(179.0) / 2
    q179 = torch.tensor([0.0, 0.0, math.sin(half), math.cos(half)])
    q181 = torch.tensor([0.0, 0.0, math.sin(-half), math.cos(-half)])  # 181° = -179°, in its w >= 0 form
    gt_a = torch.zeros(1, 1, 9)
    gt_b = torch.zeros(1, 1, 9)
    gt_a[..., 3:7], gt_b[..., 3:7] = q179, q181
    pred = torch.zeros(1, 1, 9)
    pred[..., 3:7] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # exactly 180°
    loss_a, loss_b = float(camera_loss([pred], gt_a)), float(camera_loss([pred], gt_b))
    assert math.isclose(loss_a, loss_b, rel_tol=1e-6)
    # Both targets are 1° from the prediction (|Δq|₁/4 ≈ 0.002); a sign-blind L1 would
    # score the 181° target near 0.5.
    assert loss_a < 0.01


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
    model = load_model(tmp_path / "model", precision="fp32")
    assert torch.equal(model.state_dict()["aggregator.camera_token"],
                       torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]["aggregator.camera_token"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_training_without_cuda_is_refused(tmp_path):
    cfg = TrainConfig(model=MICRO, steps=1, device="cuda")
    from recon3d.errors import Recon3DError

    with pytest.raises(Recon3DError, match="CUDA is not available"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_patch_matches_agree_with_nearest_surface_points():
    # Independent check: the match of a patch centre is where view j sees the nearest
    # surface point to it (brute force over all of view j's pixels), when that point is
    # the same point (within a few millimetres of the normalised scene).
    scene = make_scene("object", seed=5, num_views=3, size_wh=(112, 84))
    ext, depth, points = normalise_views(scene.extrinsics_w2c, scene.depths.astype(np.float64),
                                         scene.intrinsics, scene.masks)
    matches = patch_matches(points, ext, scene.intrinsics, depth, scene.masks, patch=14)
    assert matches.shape == (3, 3, 6 * 8) and (np.diagonal(matches, axis1=0, axis2=1) == -1).all()
    agree = checked = 0
    for i in range(3):
        centres = points[i, 7::14, 7::14].reshape(-1, 3)
        for j in range(3):
            if i == j:
                continue
            pool = points[j][scene.masks[j]]
            v, u = np.nonzero(scene.masks[j])
            for p, target in enumerate(matches[i, j]):
                if target < 0:
                    continue
                nearest = np.argmin(np.linalg.norm(pool - centres[p], axis=1))
                checked += 1
                agree += (v[nearest] // 14) * 8 + u[nearest] // 14 == target
    assert checked > 20 and agree / checked > 0.95


def test_correspondence_loss_hand_computed():
    # One head, two views of two patches, head_dim 1 (scale 1): view 0's patch 0 has
    # logits [2, 0] over view 1's patches and its match is patch 0: loss log(1 + e^-2).
    q = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 4, 1)
    k = torch.tensor([0.0, 0.0, 2.0, 0.0]).view(1, 1, 4, 1)
    matches = torch.full((1, 2, 2, 2), -1)
    matches[0, 0, 1, 0] = 0
    loss = correspondence_loss(q, k, matches, patch_start=0)
    assert math.isclose(float(loss), math.log(1 + math.exp(-2.0)), rel_tol=1e-6)
    assert float(correspondence_loss(q, k, torch.full((1, 2, 2, 2), -1), patch_start=0)) == 0.0


def test_attention_on_matches_is_one_for_perfect_matching_and_uniform_for_none():
    # 2 views x (1 camera token + 3 patches); each key has its own one-hot code, each
    # query the code of its match, scaled so the softmax is all but one-hot.
    frames, per_frame, n = 2, 4, 8
    keys = 40.0 * torch.eye(n).view(1, 1, n, n)
    matches = torch.tensor([[[-1, -1, -1], [2, 0, 1]], [[1, 2, 0], [-1, -1, -1]]]).view(1, 2, 2, 3)
    queries = torch.zeros(1, 1, n, n)
    for i in range(frames):
        for p in range(3):
            target = int(matches[0, i, 1 - i, p])
            queries[0, 0, i * per_frame + 1 + p, (1 - i) * per_frame + 1 + target] = 40.0
    assert attention_on_matches(queries, keys, matches, patch_start=1) > 0.99
    uniform = attention_on_matches(torch.zeros_like(queries), keys, matches, patch_start=1)
    assert math.isclose(uniform, 1 / n, rel_tol=1e-6)


def test_views_are_chosen_within_the_curriculum_angle():
    scene = make_scene("object", seed=7, num_views=12, size_wh=(28, 28))
    axes = scene.extrinsics_w2c[:, 2, :3]
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = choose_views(scene, 3, 90.0, generator)
        angles = np.degrees(np.arccos(np.clip(axes[ids[1:]] @ axes[ids[0]], -1, 1)))
        within = (np.degrees(np.arccos(np.clip(axes @ axes[ids[0]], -1, 1))) <= 90).sum() - 1
        assert len(set(ids)) == 3 and (angles <= 90).sum() == min(2, within)
    cfg = TrainConfig(model=MICRO, steps=300, curriculum=1 / 3, start_angle_deg=90, start_max_views=4, max_views=8)
    assert curriculum(cfg, 0) == (90.0, 4) and curriculum(cfg, 50) == (135.0, 6) and curriculum(cfg, 200) == (180.0, 8)


def test_batches_hold_one_size_and_cached_scenes_read_back_equal(tmp_path):
    request = SceneRequest("room", TRAIN_SEED_OFFSET + 3, 4, (56, 42), "training")
    rendered = render_scene(request, tmp_path)
    cached = render_scene(request, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    for key in ("images", "depths", "masks", "extrinsics_w2c", "intrinsics"):
        assert np.array_equal(getattr(rendered, key), getattr(cached, key))
    pool = ScenePool({"object": 1.0, "room": 1.0}, [(56, 42), (42, 56)], views_per_scene=4, pool_size=4, seed=0,
                     workers=0, textures={"classic": 1.0, "training": 1.0})
    for _ in range(4):
        pool.refill(block=False, max_new=1)
    batch = pool.draw_batch(3, 3, torch.Generator().manual_seed(1), patch=14)
    assert batch.images.shape[:3] == (3, 3, 3) and batch.matches.shape[:3] == (3, 3, 3)
    assert batch.extrinsics.shape == (3, 3, 3, 4) and batch.depth.shape[2:] == batch.images.shape[3:]


def test_a_time_budget_stops_training_with_a_checkpoint(tmp_path):
    cfg = TrainConfig(model=MICRO, steps=1000, warmup=1, max_views=2, sizes_wh=[(56, 42)], views_per_scene=3,
                      pool_size=1, render_workers=0, log_every=1, checkpoint_every=1000, validate_every=1000,
                      kinds={"object": 1.0}, max_minutes=0.002)  # 0.12 s: a step or two
    train(cfg, tmp_path)
    step = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"]
    assert 1 <= step < 1000


def test_a_descriptor_head_trains_on_a_frozen_network(tmp_path):
    common = dict(steps=2, warmup=1, max_views=3, min_views=3, sizes_wh=[(56, 56)], views_per_scene=4, pool_size=2,
                  render_workers=0, log_every=1, checkpoint_every=2, validate_every=2, kinds={"object": 1.0})
    network = dataclasses.replace(MICRO, patch_size=28)  # descriptor cells of 4 pixels tile the patches
    train(TrainConfig(model=network, **common), tmp_path / "stage1")
    stage1 = load_model(tmp_path / "stage1" / "model", precision="fp32").state_dict()
    with_head = dataclasses.replace(network, enable_descriptor=True, descriptor_dim=8, cameras_from="matches")
    stage2 = TrainConfig(model=with_head, trainable=["descriptor_head."], descriptor_weight=1.0, camera_weight=0.0,
                         depth_weight=0.0, points_weight=0.0, **common)
    train(stage2, tmp_path / "stage2", init_from=tmp_path / "stage1" / "model")
    records = [json.loads(line) for line in (tmp_path / "stage2" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["descriptor"]) and "camera" not in r for r in records)
    assert "val_rot_err_matches" in records[1]
    trained = load_model(tmp_path / "stage2" / "model", precision="fp32")
    weights = trained.state_dict()
    changed = [k for k, v in stage1.items() if not torch.equal(weights[k], v)]
    assert not changed, changed[:5]  # the network stayed frozen
    assert any(k.startswith("descriptor_head.") for k in weights)
    out = trained(torch.rand(3, 3, 56, 56))
    assert out["descriptors"].shape == (1, 3, 14, 14, 8)
    assert torch.allclose(out["descriptors"].norm(dim=-1), torch.ones(1, 3, 14, 14), atol=1e-5)
    # Weights that lack parameters outside the trainable ones are refused.
    with pytest.raises(Recon3DError, match="do not fit"):
        train(dataclasses.replace(stage2, trainable=None), tmp_path / "stage3", init_from=tmp_path / "stage1" / "model")
    # Stage one may continue a two-stage model: the head it lacks is dropped, the rest loads.
    continued = VGGT(network)
    _load_initial_weights(continued, tmp_path / "stage2" / "model", trainable=None)
    assert not any(k.startswith("descriptor_head.") for k in continued.state_dict())
    assert all(torch.equal(v, stage1[k]) for k, v in continued.state_dict().items())


def test_the_train_command_passes_its_overrides_into_the_recipe(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import recon3d.train.loop
    from recon3d.cli import app
    from recon3d.train.recipes import RECIPES

    seen = []
    monkeypatch.setattr(recon3d.train.loop, "train", lambda cfg, out, **kw: seen.append((cfg, out, kw)))
    args = ["train", "recon3d-tiny-matching", "-o", str(tmp_path / "run"), "--lr", "5e-4", "--steps", "40",
            "--init-from", str(tmp_path / "model")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = dataclasses.replace(RECIPES["recon3d-tiny-matching"], lr=5e-4, steps=40, device="auto", precision="auto")
    assert seen == [(expected, tmp_path / "run", {"init_from": tmp_path / "model", "start_step": 0})]
    assert CliRunner().invoke(app, ["train", "--lr", "0"]).exit_code != 0  # a learning rate must be positive
