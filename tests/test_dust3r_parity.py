"""DUSt3R network against the reference's golden vectors (../shared/parity/dust3r)."""
from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
from recon3d.networks.dust3r.heads import activate_confidence, activate_points, postprocess

CALLS = ["land", "port"]
RELEASED = {
    "DUSt3R_ViTLarge_BaseDecoder_512_dpt": "dust3r_512_dpt",
    "DUSt3R_ViTLarge_BaseDecoder_512_linear": "dust3r_512_linear",
    "DUSt3R_ViTLarge_BaseDecoder_224_linear": "dust3r_224_linear",
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    """The parity README's rule: |a - b| <= 1e-4 + 1e-4 |b| elementwise."""
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    diff = (actual.double() - expected.double()).abs()
    bound = 1e-4 + 1e-4 * expected.double().abs()
    assert bool((diff <= bound).all()), f"{name}: max |a-b| = {diff.max().item():.3g}"


def rule_weights(manifest: dict) -> dict[str, torch.Tensor]:
    """The README's seeded weight rule (float64 normal per key name, scaled, to float32)."""
    gain = {"downstream_head1.proj.weight": 0.5, "downstream_head2.proj.weight": 0.5,
            "downstream_head1.dpt.head.4.weight": 0.15, "downstream_head2.dpt.head.4.weight": 0.15}
    weights = {}
    for entry in manifest["keys"]:
        key, shape = entry["key"], tuple(entry["shape"])
        if "alias_of" in entry:
            continue
        n = np.random.RandomState(zlib.crc32(key.encode("utf-8")) & 0xFFFFFFFF).standard_normal(size=shape)
        if len(shape) >= 2:
            w = n * (gain.get(key, 1.0) / math.sqrt(int(np.prod(shape[1:]))))
        elif key.endswith(".weight"):
            w = 1.0 + 0.02 * n
        else:
            w = 0.02 * n
        weights[key] = torch.from_numpy(w.astype(np.float32))
    return weights


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().astype("<f4").tobytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(dust3r_parity: Path) -> dict[str, torch.Tensor]:
    return load_file(str(dust3r_parity / "inputs.safetensors"))


@pytest.fixture(scope="module", params=["tiny_linear", "tiny_dpt_smallhead", "tiny_dpt"])
def tiny(request, dust3r_parity: Path):
    name = request.param
    manifest = json.loads((dust3r_parity / f"manifest_{name}.json").read_text())
    if name == "tiny_dpt":
        weights = rule_weights(manifest)
    else:
        weights = load_file(str(dust3r_parity / f"{name}_weights.safetensors"))
    model = DUSt3R(DUSt3RConfig.from_json(dust3r_parity / f"{name}_model_config.json"))
    model.load_checkpoint(weights)
    return name, manifest, model.eval(), load_file(str(dust3r_parity / f"{name}_io.safetensors"))


def test_state_dict_equals_the_manifest_keys_shapes_and_order(tiny):
    _, manifest, model, _ = tiny
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(e["key"], e["shape"]) for e in manifest["keys"]]


def test_loaded_tensors_hash_as_in_the_manifest(tiny):
    _, manifest, model, _ = tiny
    state = model.state_dict()
    for entry in manifest["keys"]:
        assert sha256(state[entry["key"]]) == entry["sha256_f32le"], entry["key"]


def _view(inputs: dict[str, torch.Tensor], call: str, which: str) -> dict:
    return {"img": inputs[f"{call}.{which}.img"], "true_shape": inputs[f"{call}.{which}.true_shape"]}


@pytest.mark.parametrize("call", CALLS)
def test_outputs_match_the_reference(tiny, inputs, call):
    name, _, model, io = tiny
    with torch.no_grad():
        res1, res2 = model(_view(inputs, call, "view1"), _view(inputs, call, "view2"))
    assert_close(res1["pts3d"], io[f"{call}.pred1.pts3d"], "pred1.pts3d")
    assert_close(res1["conf"], io[f"{call}.pred1.conf"], "pred1.conf")
    assert_close(res2["pts3d_in_other_view"], io[f"{call}.pred2.pts3d_in_other_view"], "pred2.pts3d_in_other_view")
    assert_close(res2["conf"], io[f"{call}.pred2.conf"], "pred2.conf")


@pytest.mark.parametrize("call", CALLS)
def test_intermediates_match_the_reference(tiny, inputs, call):
    name, _, model, io = tiny
    img1, img2 = inputs[f"{call}.view1.img"], inputs[f"{call}.view2.img"]
    grid = model.grid_size(img1)
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    if model.config.head_type == "dpt":
        for n, head in ((1, model.downstream_head1), (2, model.downstream_head2)):
            dpt = head.dpt

            def keep(key):
                return lambda module, args, out: captured.__setitem__(key, out)

            for k in range(4):
                hooks.append(dpt.act_postprocess[k].register_forward_hook(keep(f"head{n}_dpt.act{k + 1}")))
                hooks.append(dpt.scratch.layer_rn[k].register_forward_hook(keep(f"head{n}_dpt.rn{k + 1}")))
                # refinenet4's output is stored before its crop.
                path = f"head{n}_dpt.path{k + 1}" + ("_uncropped" if k == 3 else "")
                hooks.append(getattr(dpt.scratch, f"refinenet{k + 1}").register_forward_hook(keep(path)))
            hooks.append(dpt.head[0].register_forward_hook(keep(f"head{n}_dpt.head_conv1")))
            hooks.append(dpt.head[1].register_forward_hook(keep(f"head{n}_dpt.head_upsample")))
            hooks.append(dpt.head[3].register_forward_hook(keep(f"head{n}_dpt.head_conv2_relu")))
    blocks: list[torch.Tensor] = []
    hooks += [b.register_forward_hook(lambda m, a, out: blocks.append(out)) for b in model.enc_blocks]
    with torch.no_grad():
        enc1, enc2 = model.encode(torch.cat([img1, img2])).chunk(2)
        layers1, layers2 = model.decode(enc1, enc2, grid)
        raw1, raw2 = model.heads(layers1, layers2, grid)
    for h in hooks:
        h.remove()
    assert_close(enc1, io[f"{call}.enc_out1"], "enc_out1")
    assert_close(enc2, io[f"{call}.enc_out2"], "enc_out2")
    # The reference encodes [view1[0], view2[0]] once in its symmetrised shortcut.
    rows = [0, enc1.shape[0]]
    assert_close(torch.stack(blocks)[:, rows], io[f"{call}.encoder_batch.blocks"], "encoder blocks")
    assert_close(model.decoder_embed(enc1), io[f"{call}.dec_embed1"], "dec_embed1")
    assert_close(torch.stack(layers1[1:]), io[f"{call}.dec1"], "dec1")
    assert_close(torch.stack(layers2[1:]), io[f"{call}.dec2"], "dec2")
    assert_close(raw1, io[f"{call}.head1_raw"], "head1_raw")
    assert_close(raw2, io[f"{call}.head2_raw"], "head2_raw")
    stored = [k[len(call) + 1:] for k in io if k.startswith(f"{call}.head") and "_dpt." in k]
    for key in stored:
        assert_close(captured[key], io[f"{call}.{key}"], key)
    if name == "tiny_dpt_smallhead":
        assert len(stored) == 2 * 15


def test_encoder_positions_are_row_major_rows_then_columns(inputs, dust3r_parity):
    from recon3d.networks.dust3r.model import grid_positions

    io = load_file(str(dust3r_parity / "tiny_linear_io.safetensors"))
    for call in CALLS:
        grid = (inputs[f"{call}.view1.img"].shape[-2] // 16, inputs[f"{call}.view1.img"].shape[-1] // 16)
        expected = io[f"{call}.enc_pos1"]
        assert torch.equal(grid_positions(expected.shape[0], grid, torch.device("cpu")), expected)


def test_postprocess_matches_the_reference(dust3r_parity):
    data = load_file(str(dust3r_parity / "postprocess.safetensors"))
    config = DUSt3RConfig()
    points = activate_points(data["depth_in"], config.depth_mode)
    # Outputs reach 1e17: compare relatively, with a tiny floor for values at 0.
    assert bool(((points - data["depth_exp_out"]).abs() <= 1e-4 * data["depth_exp_out"].abs() + 1e-30).all())
    conf = activate_confidence(data["conf_in"], config.conf_mode)
    assert bool(((conf - data["conf_exp_vmin1_out"]).abs() <= 1e-4 * data["conf_exp_vmin1_out"].abs()).all())
    out = postprocess(data["pp_in"], config)
    assert_close(out["pts3d"], data["pp_pts3d"], "pp_pts3d")
    assert_close(out["conf"], data["pp_conf"], "pp_conf")


@pytest.mark.parametrize("released", sorted(RELEASED))
def test_released_configurations_equal_their_manifests(dust3r_parity, released):
    manifest = json.loads((dust3r_parity / f"manifest_{released}.json").read_text())
    config = DUSt3RConfig.from_json(dust3r_parity / f"{RELEASED[released]}_model_config.json")
    with torch.device("meta"):
        model = DUSt3R(config)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(e["key"], e["shape"]) for e in manifest["keys"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    hf_layout = [e["key"] for e in manifest["keys"] if not e.get("absent_from_hf_safetensors")]
    assert sorted(set(model.state_dict()) - set(model.alias_keys())) == sorted(hf_layout)
