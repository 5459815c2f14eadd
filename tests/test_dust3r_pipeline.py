"""DUSt3R models through recon3d's pipeline and CLI: scene graph → pairs → alignment → Prediction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import run_cli
from helpers.pairwise import pairwise_from_scene
from PIL import Image

from recon3d.eval.metrics import rotation_angle_deg
from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
from recon3d.pairwise.reconstruct import PairwiseOptions
from recon3d.pipeline import reconstruct
from recon3d.settings import ReconstructionSettings
from recon3d.synth import make_scene
from recon3d.types import Prediction

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "scenes" / "object_8" / "images"


def test_pipeline_turns_pairwise_point_maps_into_the_scene_cameras(monkeypatch):
    """The network is replaced by noisy ground-truth pairwise point maps; everything else
    (preprocessing, scene graph, alignment, Prediction) is the product's code."""
    scene = make_scene("object", 3, 5, (64, 64))
    model = DUSt3R(DUSt3RConfig(img_size=(64, 64), enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32,
                                dec_depth=1, dec_num_heads=2, head_type="linear")).init_weights(seed=0).eval()
    seen: dict[str, object] = {}

    def ground_truth_pairs(net, images, pairs, *, batch_size, on_progress):
        seen["images"], seen["pairs"] = images, list(pairs)
        on_progress(len(pairs), len(pairs))
        return pairwise_from_scene(scene, list(pairs), noise=0.01, seed=0)

    monkeypatch.setattr("recon3d.pairwise.inference.predict_pairs", ground_truth_pairs)
    stages, progress = [], []
    pred = reconstruct([Image.fromarray(im) for im in scene.images], model,
                       ReconstructionSettings(pairwise=PairwiseOptions(scene_graph="swin-2", align_iters=200)),
                       on_stage=stages.append, on_progress=lambda done, total: progress.append((done, total)))

    # square-crop at the model's 64 px leaves 64x64 images untouched.
    assert torch.equal(seen["images"], torch.from_numpy(scene.images).permute(0, 3, 1, 2).float() / 255)
    assert len(seen["pairs"]) == 5 * 2 * 2  # swin-2, cyclic, symmetrised
    assert stages[-2:] == ["network", "global alignment"] and progress[-1] == (200, 200)
    assert isinstance(pred, Prediction) and pred.num_views == 5
    np.testing.assert_allclose(pred.extrinsics_w2c[0], np.eye(4), atol=1e-5)
    gt = scene.extrinsics_w2c[:, :3, :3]
    assert np.median(rotation_angle_deg(pred.extrinsics_w2c[1:, :3, :3], gt[1:] @ gt[0].T)) <= 0.5
    assert np.abs(pred.intrinsics[:, 0, 0] / scene.intrinsics[:, 0, 0] - 1).max() <= 0.01
    # Depth is the scene's up to one global scale.
    ratio = pred.depth[scene.masks] / scene.depths[scene.masks]
    assert np.percentile(np.abs(ratio / np.median(ratio) - 1), 90) < 0.05
    np.testing.assert_allclose(pred.points, pred.points_from_depth(), rtol=1e-3, atol=1e-3 * np.median(pred.depth))
    assert np.all(pred.depth_conf >= 1) and np.array_equal(pred.to_original, np.tile(np.eye(3), (5, 1, 1)))


@pytest.mark.slow
def test_cli_reconstructs_with_an_untrained_dust3r(tmp_path):
    images = [str(p) for p in sorted(SAMPLES.glob("*.png"))[:3]]
    out = tmp_path / "out"
    result = run_cli("reconstruct", *images, "-o", str(out), "--model", "dust3r-untrained-tiny",
                     "--scene-graph", "swin-1", "--align-iters", "10", "--export", "npz,glb")
    assert result.returncode == 0, result.stderr
    assert "global alignment" in result.stderr
    pred = Prediction.load_npz(out / "prediction.npz")
    # square-crop 224: 320x240 → 299x224 → centre 224x224; model x 0 is resized x 37, original x 37 * 320/299.
    assert pred.image_size_hw == (224, 224) and pred.num_views == 3
    np.testing.assert_allclose(pred.to_original[0] @ [0, 0, 1], [37 * 320 / 299, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(pred.extrinsics_w2c[0], np.eye(4), atol=1e-5)
    assert pred.valid_cameras().all() and (out / "scene.glb").is_file()


@pytest.mark.slow
def test_cli_single_image_and_bad_scene_graph(tmp_path):
    image = str(sorted(SAMPLES.glob("*.png"))[0])
    result = run_cli("predict", image, "-o", str(tmp_path / "one.npz"), "--model", "dust3r-untrained-tiny")
    assert result.returncode == 0, result.stderr
    pred = Prediction.load_npz(tmp_path / "one.npz")
    assert pred.num_views == 1 and pred.depth.shape == (1, 224, 224)
    result = run_cli("predict", image, image, "-o", str(tmp_path / "two.npz"), "--model", "dust3r-untrained-tiny",
                     "--scene-graph", "ring-4")
    assert result.returncode == 2 and "Usage: recon3d predict" in result.stderr, result.stderr
    assert "Invalid value for '--scene-graph': unknown scene graph 'ring-4'" in result.stderr
    assert not (tmp_path / "two.npz").exists()


@pytest.mark.parametrize("graph", ["complete", "swin-2-noncyclic", "logwin-2", "oneref-1"])
def test_every_view_gets_a_camera_on_every_graph(graph):
    model = DUSt3R(DUSt3RConfig(img_size=(64, 64), enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32,
                                dec_depth=1, dec_num_heads=2, head_type="linear")).init_weights(seed=0).eval()
    images = [Image.fromarray(im) for im in make_scene("room", 1, 4, (64, 48)).images]
    pred = reconstruct(images, model, ReconstructionSettings(pairwise=PairwiseOptions(scene_graph=graph, align_iters=5)))
    assert pred.num_views == 4 and pred.valid_cameras().all() and np.isfinite(pred.depth).all()
