"""AnySplat as a recon3d model family: prediction arrays, learned Gaussians, PLY and rendering."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recon3d.io.ply import read_gaussians_ply, write_gaussians_ply
from recon3d.networks.anysplat import AnySplat, AnySplatConfig
from recon3d.networks.anysplat.adapter import to_gaussians
from recon3d.networks.families import families, family_for_json, family_for_weights, family_of
from recon3d.render import render
from recon3d.settings import ReconstructionSettings
from recon3d.zoo import REGISTRY

FAMILY = next(f for f in families() if f.name == "anysplat")


@pytest.fixture(scope="module")
def parity(shared_dir: Path) -> Path:
    return shared_dir / "parity" / "anysplat"


@pytest.fixture(scope="module")
def tiny(parity: Path) -> AnySplat:
    model = AnySplat(AnySplatConfig.from_json(parity / "tiny_dino" / "model_config.json")).eval()
    model.load_checkpoint(load_file(parity / "tiny_dino" / "weights.safetensors"))
    return model


@pytest.fixture(scope="module")
def images(parity: Path) -> torch.Tensor:
    """``[3,3,42,56]`` in [0,1]: the parity input's three views."""
    return load_file(parity / "inputs.safetensors")["images_s3"][0]


def test_family_is_registered_and_recognised(tiny):
    assert family_of(tiny) is FAMILY and family_of(tiny.config) is FAMILY
    assert family_for_json({"encoder_cfg": {"voxel_size": 0.002}, "decoder_cfg": {}}) is FAMILY
    assert family_for_weights({"encoder.gaussian_param_head.norm.weight": torch.ones(1)}) is FAMILY
    entry = REGISTRY["anysplat"]
    assert entry.hf_repo == "lhjiang/anysplat" and entry.licence == "MIT"
    assert FAMILY.config_from_json({"encoder_cfg": {"voxel_size": 0.001}}).voxel_size == 0.001


def test_predict_arrays_and_learned_gaussians(tiny, images):
    stages: list[str] = []
    arrays = FAMILY.predict(tiny, images, ReconstructionSettings(), stages.append, None)
    assert stages == ["network"]
    s, _, h, w = images.shape
    shapes = {"extrinsics_w2c": (s, 4, 4), "intrinsics": (s, 3, 3), "depth": (s, h, w), "depth_conf": (s, h, w),
              "points": (s, h, w, 3), "points_conf": (s, h, w)}
    gaussians = arrays.pop("gaussians")
    assert {k: v.shape for k, v in arrays.items()} == shapes
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in arrays.values())
    np.testing.assert_array_equal(arrays["extrinsics_w2c"][:, 3], np.tile([0, 0, 0, 1], (s, 1)))
    # The points are the depth's, seen through the predicted cameras (integer pixel indices).
    cam = np.einsum("sij,shwj->shwi", arrays["extrinsics_w2c"][:, :3, :3], arrays["points"])
    cam += arrays["extrinsics_w2c"][:, None, None, :3, 3]
    np.testing.assert_allclose(cam[..., 2], arrays["depth"], rtol=1e-4, atol=1e-5)

    with torch.no_grad():
        fused = tiny(images)["gaussians"]
    n = len(gaussians)
    assert n == fused["means"].shape[1] and gaussians.sh.shape == (n, 16, 3)  # degree 4 dropped: PLY stops at 3
    torch.testing.assert_close(gaussians.quats[:, 1:], fused["rotations"][0, :, :3], rtol=0, atol=0)
    torch.testing.assert_close(gaussians.quats[:, 0], fused["rotations"][0, :, 3], rtol=0, atol=0)
    torch.testing.assert_close(gaussians.sh[:, 3], fused["harmonics"][0, :, :, 3], rtol=0, atol=0)


def test_padding_is_dropped_per_batch_element(tiny, parity):
    images = load_file(parity / "inputs.safetensors")["images_b2"]
    with torch.no_grad():
        out = tiny(images)
    counts = [v.coords.shape[0] for v in out["voxels"]]
    short = int(np.argmin(counts))
    gaussians = to_gaussians(out["gaussians"], counts[short], batch=short)
    assert len(gaussians) == counts[short] < out["gaussians"]["means"].shape[1]
    assert (gaussians.opacities > 0).all() and (gaussians.means > -1e3).all()


def test_ply_round_trip_and_cpu_render(tiny, images, tmp_path):
    """recon3d's PLY files and renderers stop at SH degree 3: the damped degree-4 band is dropped."""
    with torch.no_grad():
        out = tiny(images[None])
    gaussians = to_gaussians(out["gaussians"], out["voxels"][0].coords.shape[0], max_sh_degree=3)
    assert gaussians.sh.shape[1:] == (16, 3)
    path = tmp_path / "anysplat.ply"
    write_gaussians_ply(path, gaussians)
    back = read_gaussians_ply(path)
    for field in ("means", "quats", "scales", "opacities", "sh"):
        torch.testing.assert_close(getattr(back, field), getattr(gaussians, field), rtol=0, atol=1e-6)

    h, w = images.shape[-2:]
    viewmat = torch.eye(4)
    viewmat[:3] = out["extrinsics"][0, 0]
    # Our renderer samples pixel centres at +0.5; AnySplat's intrinsics put them at integers.
    ks = out["intrinsics"][0, :1].clone()
    ks[:, :2, 2] += 0.5
    rendered = render(gaussians, viewmat[None], ks, w, h, backend="cpu")
    assert rendered.colors.shape[-3:-1] == (h, w) and torch.isfinite(rendered.colors).all()
    assert rendered.alphas.max() > 0.5, "the Gaussians from view 0's depth should cover view 0"



def test_a_parity_folder_reconstructs_end_to_end_with_its_learned_gaussians(parity, tmp_path):
    from plyfile import PlyData

    from recon3d.errors import InputError
    from recon3d.exports import ExportOptions
    from recon3d.jobs import reconstruct_scene

    photos = Path(__file__).resolve().parents[1] / "assets" / "scenes" / "object_8" / "images"
    views = sorted(photos.glob("*.png"))[:3]
    settings = ReconstructionSettings(model=str(parity / "tiny_dino"), formats=["gaussians", "npz"])
    result = reconstruct_scene(views, tmp_path / "learned", settings)
    learned = result.prediction.gaussians
    assert result.prediction.model_name == "tiny_dino" and learned is not None and learned.sh_degree == 3
    assert len(PlyData.read(tmp_path / "learned" / "gaussians.ply")["vertex"]) == len(learned)
    assert result.report.counts["gaussians"] == len(learned)
    # Geometric Gaussians from the same prediction: one per kept pixel, not one per voxel.
    geometric = reconstruct_scene(views, tmp_path / "geometric", ReconstructionSettings(
        model=str(parity / "tiny_dino"), formats=["gaussians"], export=ExportOptions(gaussians="geometric")))
    assert geometric.report.counts["gaussians"] != len(learned)
    with pytest.raises(InputError, match="no Gaussian head"):
        reconstruct_scene(views, tmp_path / "vggt", ReconstructionSettings(
            model="vggt-untrained-small", formats=["gaussians"], export=ExportOptions(gaussians="learned")))


def test_a_distillation_checkpoint_loads_and_says_what_it_skipped(parity, caplog):
    import logging

    from recon3d.zoo import build_model

    weights = load_file(parity / "tiny_dino" / "weights.safetensors")
    # The training layout: frozen teacher copies of the aggregator and heads beside the network.
    with_copies = {**weights, **{k.replace("encoder.aggregator.", "encoder.distill_aggregator.", 1): v
                                 for k, v in weights.items() if k.startswith("encoder.aggregator.")}}
    config = AnySplatConfig.from_json(parity / "tiny_dino" / "model_config.json")
    with caplog.at_level(logging.INFO, logger="recon3d.zoo"):
        model = build_model(config, with_copies, "teacher.safetensors")
    copies = len(with_copies) - len(weights)
    assert len(model.skipped_keys) == copies
    assert any(f"{copies} checkpoint tensors not used at inference" in r.getMessage()
               and "encoder.distill_aggregator" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(model.state_dict()["encoder.aggregator.camera_token"],
                               weights["encoder.aggregator.camera_token"])
