"""Backbone precision: the CPU choice with the probe mocked both ways, and bf16 held weights.

Accuracy bounds are the CPU-speed issue's: depth and points within 1 % of the fp32 range,
pose encoding within 0.05, on the parity networks' goldens inputs (random weights).
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from recon3d.networks import precision
from recon3d.networks.precision import PrecisionChoice, apply_precision, choose_precision, cpu_flags
from recon3d.zoo import load_model


@pytest.fixture
def cpu_probe(monkeypatch: pytest.MonkeyPatch):
    """Set what the CPU probe reports: ``cpu_probe(flag or None, bf16 speedup)``."""
    def set_probe(flag: str | None, speedup: float) -> None:
        monkeypatch.setattr(precision, "cpu_native_bf16", lambda: flag)
        monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
    return set_probe


def test_auto_is_fp32_on_a_cpu_without_native_bf16(cpu_probe) -> None:
    cpu_probe(None, 9.0)  # even a (wrongly) fast measurement does not count without the flag
    choice = choose_precision("auto", "cpu")
    assert choice.name == "fp32" and "no native bf16" in choice.reason


def test_auto_is_bf16_on_a_cpu_with_amx_that_measures_faster(cpu_probe) -> None:
    cpu_probe("amx_bf16", 9.8)
    choice = choose_precision("auto", "cpu")
    assert choice.autocast is torch.bfloat16
    assert "amx_bf16" in choice.reason and "9.8x" in choice.reason


def test_the_measurement_breaks_the_tie_when_bf16_is_not_faster(cpu_probe) -> None:
    cpu_probe("avx512_bf16", 1.1)
    choice = choose_precision("auto", "cpu")
    assert choice.name == "fp32" and "only 1.1x" in choice.reason


def test_asked_for_precisions_and_refusals(cpu_probe) -> None:
    cpu_probe(None, 1.0)
    assert choose_precision("bf16", "cpu").autocast is torch.bfloat16
    assert choose_precision("fp32", "cpu").autocast is None
    for unknown in ("fp64", "int8"):  # int8 was measured and is not offered
        with pytest.raises(ValueError, match="precision must be one of"):
            choose_precision(unknown, "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert {"avx512_bf16", "amx_tile", "fpu"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()


def test_the_speed_measurement_is_cached_per_machine(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setenv("RECON3D_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "_measure_bf16_speedup", lambda: calls.append(1) or 2.5)
    precision.bf16_speedup.cache_clear()
    try:
        assert precision.bf16_speedup() == 2.5
        precision.bf16_speedup.cache_clear()  # a new process: only the file remains
        assert precision.bf16_speedup() == 2.5 and len(calls) == 1
        (tmp_path / "cpu_bf16.json").write_text("not json")
        precision.bf16_speedup.cache_clear()
        assert precision.bf16_speedup() == 2.5 and len(calls) == 2
        assert list(json.loads((tmp_path / "cpu_bf16.json").read_text()).values()) == [2.5]
    finally:
        precision.bf16_speedup.cache_clear()


def _outputs(model, images):
    with torch.inference_mode():
        out = model(images)
    return {k: out[k].float() for k in ("pose_enc", "depth", "world_points")}


def _within_bounds(reference, other) -> None:
    for key in ("depth", "world_points"):
        span = reference[key].max() - reference[key].min()
        assert float((other[key] - reference[key]).abs().max() / span) < 0.01, key
    assert float((other["pose_enc"] - reference["pose_enc"]).abs().max()) < 0.05


@pytest.mark.parametrize("config", ["tiny_conv", "tiny_dino"])
def test_bf16_holds_matrix_weights_in_bf16_and_stays_within_bounds(vggt_parity, config) -> None:
    inputs = load_file(vggt_parity / "inputs.safetensors")
    images = inputs["images_s3"]
    reference = load_model(vggt_parity / config, precision="fp32", device="cpu")
    held = apply_precision(load_model(vggt_parity / config, precision="fp32", device="cpu"),
                           PrecisionChoice(torch.bfloat16, "test"), "cpu")
    linears = [m for m in held.aggregator.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in held.aggregator.modules() if isinstance(m, nn.LayerNorm)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert all(m.weight.dtype == torch.float32 for m in norms)
    # Heads hold their matrix weights in bf16 and compute in fp32: same layer types'
    # interface, biases and norms fp32.
    head_layers = [m for m in held.depth_head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert head_layers and all(m.weight.dtype == torch.bfloat16 for m in head_layers)
    assert all(m.bias.dtype == torch.float32 for m in head_layers if m.bias is not None)
    held_bytes = sum(p.numel() * p.element_size() for p in held.parameters())
    assert held_bytes < 0.55 * sum(p.numel() * 4 for p in held.parameters())
    _within_bounds(_outputs(reference, images), _outputs(held, images))


def test_a_head_layer_held_in_bf16_computes_in_fp32() -> None:
    """The held layers give exactly the fp32 layer with bf16-rounded weights (the input is
    not rounded), for a linear, a convolution and a transposed convolution."""
    generator = torch.Generator().manual_seed(0)
    layers = [nn.Linear(16, 8), nn.Conv2d(4, 6, 3, padding=1), nn.ConvTranspose2d(4, 6, 4, stride=4)]
    inputs = [torch.randn(5, 16, generator=generator), torch.randn(2, 4, 9, 9, generator=generator),
              torch.randn(2, 4, 5, 5, generator=generator)]

    class Holder(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def backbone_modules(self):
            return []

    for layer, x in zip(layers, inputs):
        rounded = copy.deepcopy(layer)
        with torch.no_grad():
            rounded.weight.copy_(rounded.weight.to(torch.bfloat16).float())
        held = apply_precision(Holder(layer), PrecisionChoice(torch.bfloat16, "test"), "cpu").layer
        assert held.weight.dtype == torch.bfloat16 and held.bias.dtype == torch.float32
        out = held(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, rounded(x), rtol=0, atol=0)


def test_dust3r_in_bf16_holds_its_backbone_in_bf16_and_stays_within_bounds(dust3r_parity) -> None:
    from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig

    config = DUSt3RConfig.from_json(dust3r_parity / "tiny_linear_model_config.json")
    weights = load_file(str(dust3r_parity / "tiny_linear_weights.safetensors"))
    inputs = load_file(str(dust3r_parity / "inputs.safetensors"))
    call = "land"
    views = [{"img": inputs[f"{call}.{v}.img"], "true_shape": inputs[f"{call}.{v}.true_shape"]}
             for v in ("view1", "view2")]

    def run(model):
        with torch.inference_mode():
            res1, res2 = model(*views)
        return res1["pts3d"], res2["pts3d_in_other_view"]

    reference = DUSt3R(config)
    reference.load_checkpoint(weights)
    reduced = DUSt3R(config)
    reduced.load_checkpoint(weights)
    apply_precision(reduced.eval(), PrecisionChoice(torch.bfloat16, "test"), "cpu")
    assert reduced.dec_blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    head_weights = [m.weight for m in reduced.downstream_head1.modules()
                    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    assert head_weights and all(w.dtype == torch.bfloat16 for w in head_weights)
    for ref, out in zip(run(reference.eval()), run(reduced)):
        assert float((out - ref).abs().max() / (ref.max() - ref.min())) < 0.01
