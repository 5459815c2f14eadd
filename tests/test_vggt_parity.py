"""The VGGT network against golden vectors from the official implementation.

Both tiny configurations load the reference's own random weights strictly, run on the
saved inputs, and every output and saved intermediate must agree within the parity
README's tolerance: |ours - ref| <= 1e-4 * max(1, |ref|).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from recon3d.geometry.cameras import pose_encoding_to_cameras, unproject_depth
from recon3d.networks.vggt import VGGT, VGGTConfig

CONFIGS = ["tiny_conv", "tiny_dino"]
INPUTS = ["s3", "s1"]


def assert_close(ours: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    ours = torch.as_tensor(ours).float()
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    excess = ((ours - ref).abs() - 1e-4 * ref.abs().clamp(min=1)).max().item()
    assert excess <= 0, f"{name}: outside tolerance by {excess:.3g}"


@pytest.fixture(scope="module", params=CONFIGS)
def tiny(request, vggt_parity):
    name = request.param
    config = VGGTConfig.from_json(vggt_parity / name / "model_config.json")
    model = VGGT(config).eval()
    path = vggt_parity / name / "weights.safetensors"
    weights = load_file(path)
    assert model.load_checkpoint(weights) == []
    with safe_open(path, "pt") as fh:
        key_order = fh.metadata()["key_order"].split(",")
    assert list(model.state_dict()) == key_order, "state-dict key order differs from the reference"
    return name, model


@pytest.mark.parametrize("which", INPUTS)
def test_outputs_and_intermediates(tiny, which, vggt_parity):
    name, model = tiny
    images = load_file(vggt_parity / "inputs.safetensors")[f"images_{which}"]
    ref = load_file(vggt_parity / name / f"outputs_{which}.safetensors")
    captured: dict[str, torch.Tensor] = {}

    def keep(key):
        return lambda module, args, out: captured.__setitem__(key, out)

    agg = model.aggregator
    hooks = [agg.patch_embed.register_forward_hook(keep("aggregator.patch_tokens"))]
    if name == "tiny_dino":
        for i, block in enumerate(agg.patch_embed.blocks):
            hooks.append(block.register_forward_hook(keep(f"dino.block{i}")))
    with torch.no_grad():
        out = model(images)
        captured["aggregator.tokens_in"] = agg.embed_frames(images)
        layers = agg(images)
        if name == "tiny_dino":
            captured["dino.tokens_in"] = agg.patch_embed.tokens_in(agg.normalize(images))
            h, w = images.shape[-2:]
            captured["dino.pos_embed_interp"] = agg.patch_embed.interpolated_pos_embed(h // 14, w // 14)
        captured["camera_head.pose_tokens_normed"] = model.camera_head.token_norm(layers[3][:, :, 0])
    for hook in hooks:
        hook.remove()
    for i in range(4):
        captured[f"aggregator.layer{i}"] = layers[i]

    for key, value in captured.items():
        assert_close(value, ref[key], key)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert_close(out[key], ref[key], key)
    assert_close(torch.stack(out["pose_enc_list"]), ref["pose_enc_list"], "pose_enc_list")

    extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"], tuple(images.shape[-2:]))
    assert_close(extrinsics, ref["extrinsic"], "extrinsic")
    assert_close(intrinsics, ref["intrinsic"], "intrinsic")
    points = unproject_depth(out["depth"][0].numpy(), extrinsics[0].numpy(), intrinsics[0].numpy(), pixel_centre=0.0)
    assert_close(torch.from_numpy(points), ref["world_points_from_depth"], "world_points_from_depth")


def test_unbatched_input_equals_batched(tiny, vggt_parity):
    _, model = tiny
    images = load_file(vggt_parity / "inputs.safetensors")["images_s3"]
    with torch.no_grad():
        a, b = model(images), model(images[0])
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["pose_enc"], b["pose_enc"])


def test_full_size_state_dict_equals_manifest(vggt_parity):
    manifest = json.loads((vggt_parity / "manifest_vggt1b.json").read_text())
    expected = [(k["key"], tuple(k["shape"]), k["dtype"]) for k in manifest["keys"] if not k["track_head"]]
    assert len(expected) == manifest["num_state_dict_entries_enable_track_false"]
    config = VGGTConfig()
    assert config == VGGTConfig.from_json(vggt_parity / "vggt1b_model_config.json")
    with torch.device("meta"):
        model = VGGT(config)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters_enable_track_false"]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == manifest["parameters_with_requires_grad_false"]


def test_checkpoint_with_track_head_loads_and_skips_only_it(vggt_parity):
    """An official-layout checkpoint (with track_head.*) loads strictly minus that prefix."""
    config = VGGTConfig.from_json(vggt_parity / "tiny_conv" / "model_config.json")
    weights = load_file(vggt_parity / "tiny_conv" / "weights.safetensors")
    weights["track_head.fnet.norm.weight"] = torch.ones(3)
    model = VGGT(config)
    assert model.load_checkpoint(weights) == ["track_head.fnet.norm.weight"]
    weights["camera_head.bogus"] = torch.ones(1)
    with pytest.raises(RuntimeError):
        model.load_checkpoint(weights)
