"""One settings object, options declared once, model families as data, one model cache."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recon3d.exports import ExportOptions
from recon3d.io.inputs import InputOptions
from recon3d.mesh import MeshOptions
from recon3d.networks.families import families, family_for_json, family_for_weights, family_of
from recon3d.networks.token_merging import MergeConfig
from recon3d.pairwise.reconstruct import PairwiseOptions
from recon3d.refine import RefineOptions
from recon3d.settings import OPTIONS, ReconstructionSettings, apply_option, check_consistency

REPO = Path(__file__).resolve().parents[1]


def _command_params(name: str) -> set[str]:
    from recon3d.cli import app

    return {p.name for p in typer.main.get_command(app).commands[name].params}


def test_each_command_takes_exactly_its_groups_of_shared_options() -> None:
    run = {o.name for o in OPTIONS if o.group == "run"}
    export = {o.name for o in OPTIONS if o.group == "export"}
    assert run <= _command_params("predict") and not export & _command_params("predict")
    for command in ("reconstruct", "batch"):
        assert run | export <= _command_params(command)


def test_command_line_values_become_the_settings_a_user_would_write_by_hand() -> None:
    from recon3d.cli import _with_settings

    seen = []
    app = typer.Typer()

    @app.command()
    @_with_settings("run", "export")
    def probe(name: str = typer.Argument(...), *, settings: ReconstructionSettings) -> None:
        seen.append((name, settings))

    args = ["scene", "--model", "vggt-untrained-small", "--device", "cpu", "--precision", "bf16", "--mode", "fit",
            "--fps", "2", "--max-frames", "40", "--select-frames", "sharp", "--strict", "--merge", "0.5",
            "--scene-graph", "swin-3", "--align-iters", "50", "--refine", "none", "--refine-features", "5000",
            "--max-views", "30", "--export", "glb,mesh",
            "--conf-percentile", "20", "--filter", "sky,overlap", "--points-from", "points", "--mesh", "poisson",
            "--mesh-depth", "gaussians", "--mesh-faces", "5000", "--glb-mesh", "--no-frustums", "--max-points", "900",
            "--colmap-camera", "SIMPLE_PINHOLE", "--colmap-points", "77"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = ReconstructionSettings(
        model="vggt-untrained-small", device="cpu", precision="bf16", preprocess_mode="fit",
        inputs=InputOptions(video_fps=2.0, video_max_frames=40, select_frames="sharp", strict=True, max_views=30),
        token_merging=MergeConfig(ratio=0.5), pairwise=PairwiseOptions(scene_graph="swin-3", align_iters=50),
        refine=RefineOptions(method="none", max_features=5000), formats=["glb", "mesh"],
        export=ExportOptions(conf_percentile=20.0, filters=frozenset({"sky", "overlap"}),
                             point_source="points", mesh=MeshOptions(method="poisson", point_source="points",
                                                                     target_faces=5000),
                             mesh_from_gaussians=True, glb_geometry="mesh", frustums=False, max_points=900,
                             colmap_camera="SIMPLE_PINHOLE", colmap_points=77),
    )
    assert seen == [("scene", expected)]


def test_defaults_of_the_command_line_are_the_settings_defaults() -> None:
    from recon3d.cli import _with_settings

    seen = []
    app = typer.Typer()

    @app.command()
    @_with_settings("run", "export")
    def probe(*, settings: ReconstructionSettings) -> None:
        seen.append(settings)

    assert CliRunner().invoke(app, []).exit_code == 0
    assert seen == [ReconstructionSettings()]


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("device", "gpu", "use auto, cpu, cuda"), ("precision", "fp64", "choose from"), ("mode", "stretch", "choose from"),
    ("merge", "2", "merge ratio"), ("scene_graph", "ring-4", "unknown scene graph"), ("refine", "sfm", "refinement"),
    ("export", "glb,fbx", "unknown value(s) fbx"), ("filters", "sky,fog", "unknown value(s) fog"),
    ("select_frames", "best", "choose from all, sharp"), ("colmap_camera", "OPENCV", "choose from"),
])
def test_bad_values_are_refused_the_same_way_everywhere(name, value, problem) -> None:
    settings = ReconstructionSettings()
    with pytest.raises(ValueError, match=re.escape(problem)):
        apply_option(settings, name, value)
    assert settings == ReconstructionSettings()  # nothing half-applied


def test_fps_and_every_n_conflict() -> None:
    settings = ReconstructionSettings()
    apply_option(settings, "fps", 2.0)
    apply_option(settings, "every_n", 3)
    with pytest.raises(ValueError, match="either --fps or --every-n"):
        check_consistency(settings)


# --- families ------------------------------------------------------------------------------------

def test_every_zoo_model_has_a_family_that_builds_it() -> None:
    import torch

    from recon3d.zoo import REGISTRY

    for entry in REGISTRY.values():
        family = family_of(entry.config)
        with torch.device("meta"):
            network = family.network_type(entry.config)
        assert family_of(network) is family and family.describe(entry.config)
        assert family.default_preprocess(entry.config) in ("crop", "long-crop", "square-crop")


def test_configs_and_checkpoints_are_recognised_by_their_family() -> None:
    by_name = {f.name: f for f in families()}
    assert family_for_json({"architecture": "dust3r"}) is by_name["dust3r"]
    assert family_for_json({"enc_embed_dim": 1024}) is by_name["dust3r"]
    assert family_for_json({"img_size": 518, "patch_size": 14}) is by_name["vggt"]  # the official VGGT config
    assert family_for_weights({"dec_blocks2.0.norm1.weight": None}) is by_name["dust3r"]
    assert family_for_weights({"aggregator.camera_token": None}) is by_name["vggt"]


def test_no_module_outside_the_families_branches_on_network_classes() -> None:
    pattern = re.compile(r"isinstance\([^)]*\b(VGGT|DUSt3R|VGGTConfig|DUSt3RConfig)\b")
    offenders = []
    for path in [*(REPO / "recon3d").rglob("*.py"), *(REPO / "ui").rglob("*.py")]:
        if path.parent.name in ("vggt", "dust3r") and path.parent.parent.name == "networks":
            continue  # the family modules themselves
        offenders += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if pattern.search(line)]
    assert offenders == []


# --- the zoo's configs and its one model cache -----------------------------------------------------

def test_shipped_models_match_their_zoo_entries() -> None:
    from recon3d.zoo import REGISTRY, _config_from_json, config_differences

    for entry in REGISTRY.values():
        if entry.local_dir is not None and (entry.local_dir / "config.json").is_file():
            assert config_differences(_config_from_json(entry.local_dir / "config.json"), entry.config) == []


def test_a_differing_shipped_config_wins_and_is_named(tmp_path, monkeypatch, caplog) -> None:
    import dataclasses

    from recon3d import zoo

    shipped = zoo.REGISTRY["recon3d-tiny"]
    if not (shipped.local_dir / "model.safetensors").is_file():
        pytest.skip("the embedded model's weights are not here")
    other = dataclasses.replace(shipped, name="tiny-expecting-more", config=dataclasses.replace(shipped.config, depth=9))
    monkeypatch.setitem(zoo.REGISTRY, other.name, other)
    with caplog.at_level(logging.WARNING, logger="recon3d.zoo"):
        model = zoo.load_model(other.name, device="cpu")
    assert model.config.depth == shipped.config.depth  # the file describing the weights wins
    assert any("tiny-expecting-more" in r.getMessage() and "depth" in r.getMessage() and "wins" in r.getMessage()
               for r in caplog.records)


def test_the_model_cache_loads_once_and_keeps_the_last_two(monkeypatch) -> None:
    from recon3d import zoo

    loads = []
    monkeypatch.setattr(zoo, "_CACHE", type(zoo._CACHE)())
    monkeypatch.setattr(zoo, "load_model", lambda source, device, precision: loads.append(source) or object())
    first = zoo.cached_model("a", device="cpu")
    assert zoo.cached_model("a", device="cpu") is first and loads == ["a"]
    zoo.cached_model("b", device="cpu")
    zoo.cached_model("c", device="cpu")  # evicts "a", the least recently used
    assert zoo.cached_model("a", device="cpu") is not first and loads == ["a", "b", "c", "a"]
    zoo.cached_model("a", device="cpu", precision="bf16")  # another precision is another network
    assert loads[-1] == "a" and len(loads) == 5
