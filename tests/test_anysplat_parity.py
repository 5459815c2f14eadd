"""The AnySplat network against golden vectors from the official implementation.

Both tiny configurations load the reference's random weights strictly and run on the saved
inputs; outputs and intermediates (in the parity README's bisection order) must satisfy
|ours - ref| <= 1e-4 + 1e-4 |ref|, with scales, covariances and harmonics rescaled first.
The discontinuous voxel fusion is checked in isolation on the golden points and head
outputs (partition exact), then end to end by voxel key.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from recon3d.networks.anysplat import AnySplat, AnySplatConfig
from recon3d.networks.anysplat.adapter import adapt_gaussians, sh_mask
from recon3d.networks.anysplat.fusion import fuse_batch, voxel_keys

CONFIGS = ["tiny_dino", "tiny_conv"]
INPUTS = ["s3", "b2"]
GAUSSIAN_FIELDS = ("means", "scales", "rotations", "harmonics", "opacities", "covariances")


@pytest.fixture(scope="session")
def anysplat_parity(shared_dir: Path) -> Path:
    return shared_dir / "parity" / "anysplat"


def assert_close(ours: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    """The README's rule, elementwise: |ours - ref| <= 1e-4 + 1e-4 |ref|."""
    ours = torch.as_tensor(ours).float()
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    excess = ((ours - ref).abs() - 1e-4 - 1e-4 * ref.abs()).max().item()
    assert excess <= 0, f"{name}: outside tolerance by {excess:.3g}"


def assert_gaussians_close(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], sh_degree: int) -> None:
    """``gaussians.*`` with the README's rescaling of the three tiny-valued fields."""
    mask = sh_mask(sh_degree)
    cov_scale = ref["gaussians.covariances"].abs().max()
    rescale = {
        "scales": lambda t: t / 1e-3,
        "covariances": lambda t: t / cov_scale,
        "harmonics": lambda t: t / mask,
    }
    for field in GAUSSIAN_FIELDS:
        scale = rescale.get(field, lambda t: t)
        assert_close(scale(ours[field]), scale(ref[f"gaussians.{field}"]), f"gaussians.{field}")


def ref_metadata(path: Path) -> dict[str, str]:
    with safe_open(path, "pt") as fh:
        return fh.metadata()


@pytest.fixture(scope="module", params=CONFIGS)
def tiny(request, anysplat_parity):
    name = request.param
    model = AnySplat(AnySplatConfig.from_json(anysplat_parity / name / "model_config.json")).eval()
    path = anysplat_parity / name / "weights.safetensors"
    assert model.load_checkpoint(load_file(path)) == []
    with safe_open(path, "pt") as fh:
        key_order = json.loads(fh.metadata()["key_order"])
    assert list(model.state_dict()) == key_order, "state-dict key order differs from the reference"
    return name, model


def _intermediates(model: AnySplat, name: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The README's bisection tensors up to ``gs_head.pre_output_conv2``, keyed by its names."""
    enc, config = model.encoder, model.config
    agg = enc.aggregator
    rounded = images.to(torch.bfloat16).float()
    captured: dict[str, torch.Tensor] = {"aggregator.images_in": rounded}

    def keep(key):
        return lambda module, args, out: captured.__setitem__(key, out)

    hooks = [agg.patch_embed.register_forward_hook(keep("aggregator.patch_tokens"))]
    if name == "tiny_dino":
        hooks += [block.register_forward_hook(keep(f"dino.block{i}")) for i, block in enumerate(agg.patch_embed.blocks)]
        h, w = images.shape[-2:]
        captured["dino.tokens_in"] = agg.patch_embed.tokens_in(agg.normalize(rounded))
        captured["dino.pos_embed_interp"] = agg.patch_embed.interpolated_pos_embed(h // 14, w // 14)
    layers = agg(rounded, keep_layers=config.layers_read_by_heads)
    for hook in hooks:
        hook.remove()
    captured["aggregator.tokens_in"] = agg.embed_frames(rounded)
    output_layers = sorted(set(config.gs_head.intermediate_layer_idx) | {config.vggt.depth - 1})
    for i, layer in enumerate(output_layers):
        captured[f"aggregator.out{i}"] = layers[layer]
    captured["camera_head.pose_tokens_normed"] = enc.camera_head.token_norm(layers[config.vggt.depth - 1][:, :, 0])
    start, image_hw = agg.patch_start_idx, tuple(images.shape[-2:])
    for prefix, head in (("depth_head", enc.depth_head), ("gs_head", enc.gaussian_param_head)):
        tokens = [layers[i][:, :, start:] for i in head.intermediate_layer_idx]
        levels = head._levels(tokens, image_hw)
        for i, level in enumerate(levels):
            captured[f"{prefix}.level{i}"] = level
        captured[f"{prefix}.fused"] = head._fuse(levels)
    gs_tokens = [layers[i][:, :, start:] for i in enc.gaussian_param_head.intermediate_layer_idx]
    captured["gs_head.pre_output_conv2"] = enc.gaussian_param_head.merged_features(gs_tokens, images)
    return captured


@pytest.mark.parametrize("which", INPUTS)
def test_outputs_and_intermediates(tiny, which, anysplat_parity):
    name, model = tiny
    images = load_file(anysplat_parity / "inputs.safetensors")[f"images_{which}"]
    ref = load_file(anysplat_parity / name / f"outputs_{which}.safetensors")
    with torch.no_grad():
        captured = _intermediates(model, name, images)
        out = model(images)
    for key, value in captured.items():
        if key in ref:  # pre_output_conv2 is stored for b2 only
            assert_close(value, ref[key], key)
    assert_close(torch.stack(out["pose_enc_list"]), ref["pose_enc_list"], "pose_enc_list")
    ours = {
        "pose_enc": out["pose_enc"], "extrinsic": out["extrinsics"], "intrinsic": out["intrinsics"],
        "depth": out["depth"], "depth_conf": out["depth_conf"], "pts_all": out["world_points"],
        "gs_head.out": out["gaussian_params"], "pred_context_pose.extrinsic": out["extrinsics_c2w"],
    }
    for key, value in ours.items():
        assert_close(value, ref[key], key)
    h, w = images.shape[-2:]
    normalised = out["intrinsics"] / torch.tensor([w, h, 1.0])[:, None]
    assert_close(normalised, ref["pred_context_pose.intrinsic"], "pred_context_pose.intrinsic")

    # End to end: per-pixel voxel keys first (the partition is discontinuous), then the Gaussians.
    n_voxels = json.loads(ref_metadata(anysplat_parity / name / f"outputs_{which}.safetensors")["n_voxels"])
    for b, fusion in enumerate(out["voxels"]):
        keys = voxel_keys(out["world_points"][b].reshape(-1, 3), model.config.voxel_size)
        ref_keys = ref[f"voxel.b{b}.coords"][ref[f"voxel.b{b}.inverse"].long()]
        assert torch.equal(keys, ref_keys), "voxel keys differ from the reference"
        assert fusion.coords.shape[0] == n_voxels[b]
    assert_close(out["gaussians"]["opacities"], ref["adapter.in.opacities"], "adapter.in.opacities")
    assert_gaussians_close(out["gaussians"], ref, model.config.sh_degree)


@pytest.mark.parametrize("which", INPUTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_fusion_and_adapter_in_isolation(name, which, anysplat_parity):
    """Golden ``pts_all`` and ``gs_head.out`` in: the partition must be exact, the rest to tolerance."""
    path = anysplat_parity / name / f"outputs_{which}.safetensors"
    ref = load_file(path)
    config = AnySplatConfig.from_json(anysplat_parity / name / "model_config.json")
    assert config.voxel_size == float(ref_metadata(path)["voxel_size"])
    fusions, points, features = fuse_batch(ref["pts_all"], ref["gs_head.out"], config.voxel_size)
    for b, fusion in enumerate(fusions):
        key = f"voxel.b{b}"
        assert torch.equal(fusion.coords, ref[f"{key}.coords"])
        assert torch.equal(fusion.inverse, ref[f"{key}.inverse"].long())
        assert torch.equal(fusion.counts, ref[f"{key}.counts"].long())
        for field, value in (("conf_max", fusion.conf_max), ("weight_sum", fusion.weight_sum),
                             ("weights", fusion.weights), ("pts", fusion.points), ("feats8", fusion.features[:, :8])):
            assert_close(value, ref[f"{key}.{field}"], f"{key}.{field}")
    gaussians = adapt_gaussians(points, features, config.sh_degree, config.opacity_mapping, config.global_step)
    assert_close(gaussians["opacities"], ref["adapter.in.opacities"], "adapter.in.opacities")
    assert_gaussians_close(gaussians, ref, config.sh_degree)


@pytest.mark.parametrize("name", CONFIGS)
def test_padded_rows(name, anysplat_parity):
    """The shorter b2 element is padded with the reference's values (and so are ours)."""
    ref = load_file(anysplat_parity / name / "outputs_b2.safetensors")
    config = AnySplatConfig.from_json(anysplat_parity / name / "model_config.json")
    fusions, points, features = fuse_batch(ref["pts_all"], ref["gs_head.out"], config.voxel_size)
    gaussians = adapt_gaussians(points, features, config.sh_degree, config.opacity_mapping)
    b = min(range(len(fusions)), key=lambda i: fusions[i].coords.shape[0])
    n = fusions[b].coords.shape[0]
    assert n < points.shape[1], "the b2 input should exercise padding"
    pad = {name: value[b, n:] for name, value in gaussians.items()}
    ref_pad = {name: ref[f"gaussians.{name}"][b, n:] for name in GAUSSIAN_FIELDS}
    assert torch.all(pad["means"] == -1e4) and torch.all(pad["opacities"] == 0) and torch.all(pad["scales"] == 0)
    assert torch.all(pad["rotations"] == -0.5) and torch.all(pad["covariances"] == 0)
    assert torch.equal(pad["harmonics"], (-1e10 * sh_mask(config.sh_degree)).expand_as(pad["harmonics"]))
    for field in GAUSSIAN_FIELDS:
        assert torch.equal(pad[field], ref_pad[field]), f"padded {field} differs from the reference"


def test_full_size_state_dict_equals_manifest(anysplat_parity):
    """The released network's keys, shapes and order; a distill=true checkpoint loads minus its teacher copies."""
    manifest = json.loads((anysplat_parity / "manifest_anysplat.json").read_text())
    config = AnySplatConfig.from_json(anysplat_parity / "anysplat_released_model_config.json")
    assert config.gs_channels == 84 and config.voxel_size == 0.002
    with torch.device("meta"):
        model = AnySplat(config)
    expected = [(k["key"], tuple(k["shape"])) for k in manifest["keys"]]
    assert len(expected) == manifest["num_state_dict_entries"]
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]

    # distill=true: teacher copies of aggregator, camera and depth head right after the last depth_head key.
    teacher_prefixes = ("encoder.aggregator.", "encoder.camera_head.", "encoder.depth_head.")
    teachers = [(k.replace("encoder.", "encoder.distill_", 1), shape)
                for k, shape in expected if k.startswith(teacher_prefixes)]
    split = max(i for i, (k, _) in enumerate(expected) if k.startswith("encoder.depth_head.")) + 1
    layout = expected[:split] + teachers + expected[split:]
    assert len(layout) == manifest["distill_true_variant"]["num_state_dict_entries"]
    checkpoint = {k: torch.empty(s, device="meta", dtype=torch.bfloat16) for k, s in layout}
    assert model.load_checkpoint(checkpoint) == [k for k, _ in teachers]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(RuntimeError):
        model.load_checkpoint({k: v for k, v in checkpoint.items() if k != expected[0][0]})
