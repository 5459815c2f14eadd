"""Loading DUSt3R weights the ways users have them: training .pth, Hugging Face folder, bare file."""
from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from recon3d.errors import WeightsError
from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
from recon3d.zoo import REGISTRY, count_parameters, load_model


@pytest.fixture(scope="module")
def smallhead(dust3r_parity):
    """The tiny DPT model's shipped weights (Hugging Face layout: aliases dropped) and config."""
    weights = load_file(str(dust3r_parity / "tiny_dpt_smallhead_weights.safetensors"))
    config = json.loads((dust3r_parity / "tiny_dpt_smallhead_model_config.json").read_text())
    return weights, config


def _with_aliases(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What ``torch.save(model.state_dict())`` writes: both names of each aliased tensor."""
    full = dict(weights)
    for head in (1, 2):
        for k in range(4):
            full[f"downstream_head{head}.dpt.scratch.layer_rn.{k}.weight"] = weights[
                f"downstream_head{head}.dpt.scratch.layer{k + 1}_rn.weight"]
    return full


def _same_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return all(torch.equal(state[k], v) for k, v in weights.items())


def test_training_checkpoint_with_pickled_arguments_loads_with_weights_only(tmp_path, smallhead):
    weights, config = smallhead
    # The released .pth files hold {'model': state_dict, 'args': argparse.Namespace(...)};
    # the args' model string is never evaluated.
    args = argparse.Namespace(model="__import__('os').system('echo pwned')", lr=1e-4)
    torch.save({"model": _with_aliases(weights), "args": args, "epoch": 3}, tmp_path / "checkpoint-best.pth")
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_model(tmp_path / "checkpoint-best.pth", precision="fp32")
    assert isinstance(model, DUSt3R) and _same_weights(model, weights)
    assert model.config == DUSt3RConfig.from_dict(config)


def test_hugging_face_folder_without_alias_keys_loads(tmp_path, smallhead):
    weights, config = smallhead
    assert "downstream_head1.dpt.scratch.layer_rn.0.weight" not in weights
    save_file(weights, str(tmp_path / "model.safetensors"))
    # The released repos' config.json: the constructor's arguments, tuples with infinities.
    hf_config = {k: v for k, v in config.items() if k not in ("depth_mode", "conf_mode", "dpt", "patch_embed")}
    hf_config.update(depth_mode=["exp", float("-inf"), float("inf")], conf_mode=["exp", 1, float("inf")],
                     patch_embed_cls="PatchEmbedDust3R", dpt=config["dpt"])
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    model = load_model(tmp_path, precision="fp32")
    assert _same_weights(model, weights)
    state = model.state_dict()
    assert torch.equal(state["downstream_head2.dpt.scratch.layer_rn.3.weight"],
                       weights["downstream_head2.dpt.scratch.layer4_rn.weight"])


def test_bare_checkpoint_sizes_are_read_off_the_tensors(tmp_path):
    config = DUSt3RConfig(img_size=(224, 224), enc_embed_dim=128, enc_depth=2, enc_num_heads=2, dec_embed_dim=64,
                          dec_depth=4, dec_num_heads=1, head_type="dpt",
                          dpt={"feature_dim": 16, "last_dim": 8, "layer_dims": (8, 8, 16, 16), "hooks_idx": (0, 2, 3, 4)})
    model = DUSt3R(config).init_weights(seed=2).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "my_224_run.pth")
    loaded = load_model(tmp_path / "my_224_run.pth", precision="fp32")
    assert loaded.config == config
    images = {"img": torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1}
    with torch.no_grad():
        assert torch.equal(model(images, images)[0]["pts3d"], loaded(images, images)[0]["pts3d"])


def test_bare_checkpoint_of_unknown_head_count_asks_for_its_config(tmp_path, smallhead):
    weights, _ = smallhead
    torch.save({"model": _with_aliases(weights)}, tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match="config.json beside it"):
        load_model(tmp_path / "tiny.pth")


def test_aliases_that_disagree_are_refused(tmp_path, smallhead):
    weights, config = smallhead
    bad = _with_aliases(weights)
    bad["downstream_head1.dpt.scratch.layer_rn.2.weight"] = bad["downstream_head1.dpt.scratch.layer_rn.2.weight"] + 1
    torch.save({"model": bad}, tmp_path / "bad.pth")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="layer_rn.2"):
        load_model(tmp_path / "bad.pth")


def test_wrong_weights_name_the_missing_keys(tmp_path, smallhead):
    weights, config = smallhead
    partial = {k: v for k, v in weights.items() if not k.startswith("dec_blocks2.3.")}
    save_file(partial, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"DUSt3R configuration: \d+ missing \(e\.g\. \['dec_blocks2\.3\."):
        load_model(tmp_path)


def test_a_checkpoint_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": {}, "args": Payload()}, f)
    with pytest.raises(WeightsError, match="never unpickles"):
        load_model(tmp_path / "evil.pth")


def test_zoo_entries_have_the_released_sizes_and_licence(dust3r_parity):
    for name, released in (("dust3r-512-dpt", "DUSt3R_ViTLarge_BaseDecoder_512_dpt"),
                           ("dust3r-224-linear", "DUSt3R_ViTLarge_BaseDecoder_224_linear")):
        manifest = json.loads((dust3r_parity / f"manifest_{released}.json").read_text())
        entry = REGISTRY[name]
        assert count_parameters(entry.config) == manifest["total_parameters"]
        assert entry.licence == "CC BY-NC-SA 4.0" and entry.hf_repo == f"naver/{released}"
