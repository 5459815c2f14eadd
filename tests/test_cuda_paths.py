"""CUDA code paths checked on a CPU: device choice, gsplat's kernels, Ray GPUs, precision.

No test here needs a GPU: CUDA probes are mocked, and where a CUDA-only setting matters
(TF32 flags, autocast) its effect is checked on the flags or through the CPU autocast.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from recon3d.batch import ray_actor_resources
from recon3d.devices import resolve_device
from recon3d.errors import InputError
from recon3d.networks.precision import full_fp32
from recon3d.networks.token_merging import MergeConfig, plan_merge
from recon3d.networks.vggt import VGGT, VGGTConfig
from recon3d.settings import ReconstructionSettings

TINY_VGGT = VGGTConfig(
    img_size=56, embed_dim=32, depth=2, num_heads=2, patch_embed={"type": "conv"},
    camera_head={"trunk_depth": 1, "num_heads": 2},
    dpt={"features": 8, "out_channels": [8, 8, 16, 16], "intermediate_layer_idx": [0, 1, 0, 1]},
    enable_point=True, enable_track=False,
)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend one CUDA device is present (only the probes, no kernels)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_and_named_devices(fake_cuda) -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)  # indexed, so it equals a tensor's device
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_load_model_defaults_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from recon3d.zoo import load_model

    seen = []
    monkeypatch.setattr("recon3d.devices.resolve_device", lambda device: seen.append(device) or torch.device("cpu"))
    load_model("vggt-untrained-small")
    assert seen == ["auto"]


# --- gsplat -----------------------------------------------------------------------------

def _fake_gsplat(monkeypatch: pytest.MonkeyPatch, backend: types.ModuleType | Exception) -> None:
    """Install a fake ``gsplat`` whose ``gsplat.cuda._backend`` is ``backend``, or raises it."""
    from recon3d.render import gsplat_backend

    gsplat = types.ModuleType("gsplat")
    cuda = types.ModuleType("gsplat.cuda")
    if isinstance(backend, Exception):
        def missing(name: str):
            if name == "_backend":
                raise backend
            raise AttributeError(name)
        cuda.__getattr__ = missing
    else:
        cuda._backend = backend
        monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", backend)
    gsplat.cuda = cuda
    monkeypatch.setitem(sys.modules, "gsplat", gsplat)
    monkeypatch.setitem(sys.modules, "gsplat.cuda", cuda)
    gsplat_backend.gsplat_unavailable_reason.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture(autouse=True)
def _fresh_gsplat_probe():
    from recon3d.render import gsplat_backend

    gsplat_backend.gsplat_unavailable_reason.cache_clear()
    yield
    gsplat_backend.gsplat_unavailable_reason.cache_clear()


def _cuda_gaussians() -> types.SimpleNamespace:
    # select_backend only asks where the means live.
    return types.SimpleNamespace(means=types.SimpleNamespace(is_cuda=True))


@pytest.mark.parametrize(("backend", "needle"), [
    (types.SimpleNamespace(_C=None), "no compiled CUDA kernels"),
    (RuntimeError("Error building extension 'gsplat_cuda'"), "failed to build"),
])
def test_gsplat_without_kernels_falls_back_to_torch(monkeypatch, backend, needle) -> None:
    from recon3d.render.api import select_backend
    from recon3d.render.gsplat_backend import GsplatUnavailable, gsplat_unavailable_reason, rasterize_gsplat

    module = types.ModuleType("gsplat.cuda._backend")
    if not isinstance(backend, Exception):
        module._C = backend._C
    _fake_gsplat(monkeypatch, backend if isinstance(backend, Exception) else module)
    assert needle in gsplat_unavailable_reason()
    with pytest.warns(RuntimeWarning, match=needle):
        assert select_backend("auto", _cuda_gaussians()) == "torch"
    with pytest.raises(GsplatUnavailable, match=needle):
        rasterize_gsplat(*[torch.zeros(1)] * 7, 4, 4, sh_degree=0, with_rgb=True, with_depth=False,
                         background=None, near_plane=0.01, far_plane=100.0)


def test_gsplat_with_kernels_is_chosen(monkeypatch) -> None:
    from recon3d.render.api import select_backend

    module = types.ModuleType("gsplat.cuda._backend")
    module._C = object()
    _fake_gsplat(monkeypatch, module)
    assert select_backend("auto", _cuda_gaussians()) == "gsplat"


# --- Ray ----------------------------------------------------------------------------------

def test_ray_workers_ask_for_a_share_of_the_gpus() -> None:
    assert ray_actor_resources("cpu", 2, cluster_gpus=4) == {"num_cpus": 1, "num_gpus": 0}
    assert ray_actor_resources("auto", 4, cluster_gpus=2) == {"num_cpus": 1, "num_gpus": 0.5}
    assert ray_actor_resources("cuda", 2, cluster_gpus=8) == {"num_cpus": 1, "num_gpus": 1.0}
    assert ray_actor_resources("auto", 2, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}
    with pytest.raises(InputError, match="Ray cluster has no GPUs"):
        ray_actor_resources("cuda:0", 2, cluster_gpus=0)


# --- DUSt3R alignment ----------------------------------------------------------------------

def test_dust3r_alignment_runs_on_the_networks_device(monkeypatch) -> None:
    import recon3d.pairwise.align as align
    from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
    from recon3d.pairwise.reconstruct import PairwiseOptions, predict_scene

    model = DUSt3R(DUSt3RConfig(img_size=(64, 64), enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32,
                                dec_depth=1, dec_num_heads=2, head_type="linear")).init_weights(seed=0).eval()
    seen = []
    real = align.global_align

    def spy(pointmaps, **kwargs):
        seen.append((pointmaps.pts_i.device, kwargs.get("device")))
        return real(pointmaps, **kwargs)

    monkeypatch.setattr(align, "global_align", spy)
    predict_scene(model, torch.rand(3, 3, 64, 64), PairwiseOptions(align_iters=2))
    assert seen == [(torch.device("cpu"), next(model.parameters()).device)]


# --- precision -----------------------------------------------------------------------------

def test_merge_plans_ignore_the_backbones_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    frames, special, grid = 6, 5, (10, 12)
    n = frames * (special + grid[0] * grid[1])
    prototypes = torch.randn(1, 40, 64, generator=g)
    # Noisy copies of a few prototypes: many similarities within bf16's resolution of each other.
    x = prototypes[:, torch.randint(0, 40, (n,), generator=g)] + 0.05 * torch.randn(1, n, 64, generator=g)
    config = MergeConfig(ratio=0.9)
    reference = plan_merge(x, frames, special, grid, config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        planned = plan_merge(x, frames, special, grid, config)
    assert torch.equal(reference.slot, planned.slot) and torch.equal(reference.counts, planned.counts)


def test_merge_sums_in_fp32_and_runs_under_deterministic_algorithms() -> None:
    g = torch.Generator().manual_seed(1)
    frames, special, grid = 3, 5, (4, 6)
    n = frames * (special + grid[0] * grid[1])
    x = torch.randn(2, n, 16, generator=g)
    plan = plan_merge(x, frames, special, grid, MergeConfig(ratio=1.0))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        merged = plan.merge(x.bfloat16())
    finally:
        torch.use_deterministic_algorithms(previous)
    assert merged.dtype == torch.bfloat16
    for b in range(2):  # brute force: the mean of each slot's tokens, summed in float64
        for slot in range(plan.reduced_length):
            members = x[b, plan.slot[b] == slot].bfloat16().double()
            assert torch.allclose(merged[b, slot].double(), members.mean(0), atol=1e-2, rtol=1e-2)


def test_merge_sums_switch_deterministic_kernels_on_for_cuda_only() -> None:
    from recon3d.networks.token_merging import _deterministic_on_cuda

    assert not torch.are_deterministic_algorithms_enabled()
    with _deterministic_on_cuda(torch.device("cuda", 0)):
        assert torch.are_deterministic_algorithms_enabled()
    with _deterministic_on_cuda(torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()


def test_full_fp32_turns_tf32_off_on_cuda_and_restores_it() -> None:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    matmul.allow_tf32 = True  # as a user asking for fast matmuls would have it
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with full_fp32(torch.device("cuda")):
                assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
                assert not torch.is_autocast_enabled("cuda")
            with full_fp32(torch.device("cpu")):
                assert not torch.is_autocast_enabled("cpu")
        assert cudnn.allow_tf32 == before[0] and matmul.allow_tf32 is True
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_bf16_layers_reach_the_heads_uncast_and_outputs_stay_fp32(monkeypatch) -> None:
    model = VGGT(TINY_VGGT).init_weights(seed=0).eval()
    images = torch.rand(3, 3, 56, 56)
    with torch.no_grad():
        reference = model(images)
        # A backbone whose kept layers come out in bf16 (as a low-precision backbone may):
        # the heads get those very tensors and cast what they read, chunk by chunk.
        aggregate = model.aggregator.forward
        produced, received = {}, {}

        def bf16_layers(*args, **kwargs):
            produced.update({i: t.bfloat16() for i, t in aggregate(*args, **kwargs).items()})
            return dict(produced)

        depth_forward = model.depth_head.forward

        def spy(layers, *args, **kwargs):
            received.update(layers)
            return depth_forward(layers, *args, **kwargs)

        monkeypatch.setattr(model.aggregator, "forward", bf16_layers)
        monkeypatch.setattr(model.depth_head, "forward", spy)
        low = model(images)
    assert received and all(received[i] is produced[i] for i in received)
    for key in ("pose_enc", "depth", "depth_conf", "world_points"):
        assert low[key].dtype == torch.float32
        assert torch.allclose(low[key], reference[key], rtol=0.05, atol=0.05), key


# --- training -------------------------------------------------------------------------------

def test_the_optimiser_is_built_after_the_model_moves(monkeypatch, tmp_path) -> None:
    from recon3d.train import loop

    events = []
    module_to = torch.nn.Module.to
    build = loop._optimizer

    def to(self, *args, **kwargs):
        if isinstance(self, VGGT):
            events.append("model.to")
        return module_to(self, *args, **kwargs)

    def optimizer(model, cfg):
        events.append("optimizer")
        return build(model, cfg)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(loop, "_optimizer", optimizer)
    cfg = loop.TrainConfig(model=TINY_VGGT, steps=1, warmup=1, max_views=2, sizes_wh=[(56, 42)], views_per_scene=2,
                           pool_size=1, render_workers=0, log_every=1, checkpoint_every=1, validate_every=100,
                           kinds={"object": 1.0}, device="auto")
    loop.train(cfg, tmp_path)
    assert "model.to" in events and events.index("model.to") < events.index("optimizer")


def test_a_loaded_model_is_moved_to_an_explicit_device(monkeypatch) -> None:
    from recon3d.pipeline import reconstruct

    model = VGGT(TINY_VGGT).init_weights(seed=0).eval()
    moves = []
    model.to = lambda *args, **kwargs: (moves.append(args), model)[1]  # record, stay on the CPU
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr("recon3d.pipeline.resolve_device", lambda d: cuda if d == "cuda" else torch.device("cpu"))
    images = [Image.new("RGB", (64, 48), (i * 40, 90, 160)) for i in range(2)]
    reconstruct(images, model, ReconstructionSettings(device="auto"))
    assert moves == []  # "auto" runs a loaded network where it is
    reconstruct(images, model, ReconstructionSettings(device="cuda"))
    assert moves == [(cuda,)]


def test_the_web_app_loads_models_on_the_gpu_and_says_so(fake_cuda, monkeypatch) -> None:
    pytest.importorskip("gradio")
    from recon3d_ui.app import UIConfig, zoo_loader

    from recon3d import zoo

    loaded = []
    monkeypatch.setattr(zoo, "_CACHE", type(zoo._CACHE)())  # loads, not earlier tests' cached models
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake GPU 80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    monkeypatch.setattr("recon3d.zoo.load_model", lambda name, device, precision: loaded.append((name, device)) or object())
    model, line = UIConfig().load_model("vggt-untrained-small")
    assert loaded == [("vggt-untrained-small", torch.device("cuda", 0))]
    assert line == ("model vggt-untrained-small on cuda:0 (Fake GPU 80GB), backbone in bf16 "
                    "(GPU of compute capability 9.0)")
    monkeypatch.setattr("recon3d.networks.precision.cpu_native_bf16", lambda: None)
    _, line = zoo_loader("cpu")("vggt-untrained-small")
    assert loaded[-1] == ("vggt-untrained-small", torch.device("cpu"))
    assert line.endswith("backbone in fp32 (this CPU has no native bf16 matrix instructions)")


# --- the prepared GPU check -------------------------------------------------------------------

GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _gpu_check_module():
    if str(GPU_CHECK.parent) not in sys.path:
        sys.path.insert(0, str(GPU_CHECK.parent))  # as for a script: its folder's common.py is importable
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["gpu_check"]
    return module


@pytest.mark.slow
def test_gpu_check_dry_run_prints_the_plan_within_eight_minutes() -> None:
    done = subprocess.run([sys.executable, str(GPU_CHECK), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    module = _gpu_check_module()
    for part in module.PARTS:
        assert part.name in done.stdout
    assert sum(p.budget_s for p in module.PARTS) < 8 * 60
    assert "imports: ok" in done.stdout


@pytest.mark.slow
def test_gpu_check_parts_report_even_on_a_cpu(tmp_path) -> None:
    module = _gpu_check_module()
    result = tmp_path / "env.json"
    done = subprocess.run([sys.executable, str(GPU_CHECK), "--part", "env", "--result", str(result)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    env = json.loads(result.read_text())
    assert env["torch"] == torch.__version__ and env["cuda_available"] == torch.cuda.is_available()
    # The seeded random init works on any device (the real run makes it on the GPU).
    model = module.random_network(lambda: VGGT(TINY_VGGT), torch.device("cpu"))
    weights = [p for n, p in model.named_parameters() if p.dim() > 1]
    assert all(torch.isfinite(p).all() and 0.01 < p.std() < 0.03 for p in weights)
    report = {"date": "2026-12-06 12:00", "parts": {
        "env": {"status": "ok", "seconds": 1.0, "results": {**env, "gpu": "Fake GPU"}},
        "vggt": {"status": "timed out after 110 s", "seconds": 110.0, "results": {"build_s": 3.0, "runs": [
            {"frames": 10, "merged": False, "seconds": 0.5, "peak_gib": 6.1},
            {"frames": 1000, "merged": True, "error": "out of memory"}]}},
    }}
    text = module.markdown(report)
    assert "Fake GPU" in text and "| vggt | timed out after 110 s |" in text
    assert "| 10 | off | 0.5 | 6.1 |" in text and "| 1000 | on | out of memory | - |" in text
