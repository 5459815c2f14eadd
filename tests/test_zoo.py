"""Loading weights: round trips, official layouts, and refusal of unsafe or wrong files."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from recon3d.errors import WeightsError
from recon3d.networks.vggt import VGGT, VGGTConfig
from recon3d.zoo import REGISTRY, count_parameters, load_model, save_model


@pytest.fixture(scope="module")
def tiny_conv(vggt_parity):
    return vggt_parity / "tiny_conv"


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(0))


def test_safetensors_directory_round_trip(tmp_path):
    config = REGISTRY["vggt-untrained-small"].config
    model = VGGT(config).init_weights(seed=3).eval()
    save_model(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architecture"] == "vggt"
    loaded = load_model(tmp_path / "m", precision="fp32")
    assert loaded.config == config
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    with torch.no_grad():
        a, b = model(_images()), loaded(_images())
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["pose_enc"], b["pose_enc"])
    assert not any(p.is_meta for p in loaded.parameters())


def test_reference_layout_directory_loads(tmp_path, tiny_conv):
    """A folder laid out like the Hugging Face repo: model.safetensors + config.json."""
    (tmp_path / "model.safetensors").write_bytes((tiny_conv / "weights.safetensors").read_bytes())
    (tmp_path / "config.json").write_text((tiny_conv / "model_config.json").read_text())
    model = load_model(tmp_path, precision="fp32")
    ref = load_file(tiny_conv / "weights.safetensors")
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_pt_file_of_tensors_loads(tmp_path, tiny_conv):
    weights = load_file(tiny_conv / "weights.safetensors")
    torch.save({"model": weights}, tmp_path / "model.pt")
    (tmp_path / "config.json").write_text((tiny_conv / "model_config.json").read_text())
    model = load_model(tmp_path / "model.pt", precision="fp32")
    assert torch.equal(model.state_dict()["camera_head.empty_pose_tokens"], weights["camera_head.empty_pose_tokens"])


class Payload:
    """A non-tensor object: unpickling it could run arbitrary code."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pt_file_with_pickled_object_is_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weight": Payload()}, fh)
    with pytest.raises(WeightsError) as err:
        load_model(path)
    assert "refusing to load" in str(err.value) and "\n" not in str(err.value)
    assert "unpickled!" not in capsys.readouterr().out


def test_wrong_weights_give_one_line_error(tmp_path, tiny_conv):
    (tmp_path / "model.safetensors").write_bytes((tiny_conv / "weights.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vggt", **REGISTRY["vggt-untrained-small"].config.to_dict()}))
    with pytest.raises(WeightsError, match="do not fit") as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model(tmp_path)


def test_missing_official_weights_offline_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="huggingface.co/facebook/VGGT-1B") as err:
        load_model("vggt-1b")
    assert "\n" not in str(err.value)


def test_unknown_source_is_a_clear_error():
    with pytest.raises(WeightsError, match="unknown model"):
        load_model("no-such-model")


def test_parameter_count_of_vggt1b_matches_manifest(vggt_parity):
    manifest = json.loads((vggt_parity / "manifest_vggt1b.json").read_text())
    assert count_parameters(VGGTConfig()) == manifest["total_parameters_enable_track_false"]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_bf16_load_converts_each_tensor_as_fp32_then_bf16_would(tmp_path, tiny_conv, suffix):
    """Loading in bf16 (weights converted as they are read) gives exactly the fp32 load
    converted afterwards: backbone matrices and head matrix weights in bf16, everything
    else (norms, biases, tokens) bit for bit fp32."""
    from recon3d.networks.precision import PrecisionChoice, apply_precision

    weights = load_file(tiny_conv / "weights.safetensors")
    if suffix == ".pt":
        torch.save(weights, tmp_path / "model.pt")
    else:
        (tmp_path / "model.safetensors").write_bytes((tiny_conv / "weights.safetensors").read_bytes())
    (tmp_path / "config.json").write_text((tiny_conv / "model_config.json").read_text())
    reference = apply_precision(load_model(tmp_path / f"model{suffix}", precision="fp32"),
                                PrecisionChoice(torch.bfloat16, "test"), "cpu")
    loaded = load_model(tmp_path / f"model{suffix}", precision="bf16")
    expected = reference.state_dict()
    dtypes = set()
    for key, value in loaded.state_dict().items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
        dtypes.add((key.startswith("aggregator."), value.dtype))
    assert (True, torch.bfloat16) in dtypes and (False, torch.bfloat16) in dtypes and (False, torch.float32) in dtypes


def test_truncated_safetensors_tensor_is_one_clear_error(tmp_path, tiny_conv):
    """A file cut short inside its data: a WeightsError naming the file, in bf16 and fp32."""
    data = (tiny_conv / "weights.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 1000])
    (tmp_path / "config.json").write_text((tiny_conv / "model_config.json").read_text())
    for precision in ("bf16", "fp32"):
        with pytest.raises(WeightsError, match="model.safetensors"):
            load_model(tmp_path, precision=precision)
