"""Training loop: AdamW, warm-up + cosine schedule, checkpoints, resume, logged curves.

A run directory holds ``checkpoint.pt`` (tensors and plain numbers only, so it loads
with ``torch.load(weights_only=True)``), ``log.jsonl`` (one line per logged step),
``train_config.json`` and ``model/`` (``config.json`` + ``model.safetensors``, loadable
with ``recon3d.load_model``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon3d.io.atomic import atomic_path
from recon3d.networks.precision import training_autocast_dtype
from recon3d.networks.vggt import VGGT, VGGTConfig
from recon3d.train.data import Sample, ScenePool, sample_from_scene, stack_samples
from recon3d.train.losses import camera_loss, dense_loss
from recon3d.train.matching import capture_queries_keys, correspondence_loss, descriptor_loss

log = logging.getLogger(__name__)

# Validation scenes: seeds below the training offset and away from the 0..99 range
# that the held-out evaluation uses.
VALIDATION_SEEDS = (500, 501)


@dataclass
class TrainConfig:
    model: VGGTConfig
    steps: int = 20000
    lr: float = 5e-4
    min_lr_ratio: float = 0.05
    warmup: int = 300
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    # Samples per forward pass (one image size and view count per pass) and passes per
    # optimiser step: the step sees batch * accumulate scenes.
    batch: int = 1
    accumulate: int = 1
    min_views: int = 2
    max_views: int = 8
    # Curriculum over the first ``curriculum`` fraction of the steps: view subsets start
    # within ``start_angle_deg`` of the reference's optical axis and at most
    # ``start_max_views`` views, widening linearly to any angle and ``max_views``.
    curriculum: float = 0.0
    start_angle_deg: float = 90.0
    start_max_views: int = 4
    kinds: dict[str, float] = field(default_factory=lambda: {"object": 0.5, "room": 0.25, "trajectory": 0.25})
    # Texture families (recon3d.synth.textures.TEXTURE_FAMILIES) of the training scenes.
    textures: dict[str, float] = field(default_factory=lambda: {"classic": 1.0})
    sizes_wh: list[tuple[int, int]] = field(default_factory=lambda: [(252, 196), (224, 224), (196, 252)])
    views_per_scene: int = 12
    pool_size: int = 48
    render_workers: int = 1
    # Take a newly rendered scene into the pool only every this many steps, so the
    # renderer idles part of the time instead of competing with training for the CPU.
    new_scene_every: int = 1
    camera_weight: float = 1.0
    depth_weight: float = 1.0
    points_weight: float = 1.0
    # Correspondence supervision of global-attention layer ``matching_layer`` (its first
    # ``matching_heads`` heads; None: all); weight 0 turns it off. See recon3d.train.matching.
    matching_weight: float = 0.0
    matching_layer: int = 2
    matching_heads: int | None = None
    # InfoNCE of the descriptor head's matches (recon3d.train.matching.descriptor_loss);
    # weight 0 turns it off.
    descriptor_weight: float = 0.0
    # Names (prefixes) of the parameters that train; the others stay frozen. None: all.
    trainable: list[str] | None = None
    # Folder of rendered scenes reused across runs (None: render every scene afresh).
    scene_cache: str | None = None
    # Autocast dtype of the aggregator while training: "auto" is bf16 on CUDA and on CPUs
    # with native bf16 matrix instructions (recon3d.networks.precision), fp32 elsewhere.
    precision: str = "auto"
    threads: int = 2
    # "auto" (CUDA when there is one), "cpu" or a CUDA device; on CUDA the aggregator runs
    # under bf16 autocast (the heads and losses stay fp32), as at inference.
    device: str = "cpu"
    seed: int = 0
    # Stop (with a checkpoint) after this many minutes of this invocation, e.g. to fit a
    # lent GPU's time; None: run to ``steps``. The schedule still follows ``steps``.
    max_minutes: float | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    validate_every: int = 500

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["model"] = VGGTConfig.from_dict(data["model"])
        data["sizes_wh"] = [tuple(s) for s in data.get("sizes_wh", [])] or cls.__dataclass_fields__["sizes_wh"].default_factory()
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def curriculum(cfg: TrainConfig, step: int) -> tuple[float, int]:
    """(largest angle in degrees from the reference's axis, largest view count) at ``step``."""
    if cfg.curriculum <= 0:
        return 180.0, cfg.max_views
    t = min(1.0, step / (cfg.curriculum * cfg.steps))
    angle = cfg.start_angle_deg + t * (180.0 - cfg.start_angle_deg)
    views = round(cfg.start_max_views + t * (cfg.max_views - cfg.start_max_views))
    return angle, max(cfg.min_views, views)


def sample_losses(model: VGGT, sample: Sample, cfg: TrainConfig,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Weighted losses of one batch ``[B,S,...]``; ``total`` is what gets back-propagated.

    A loss whose weight is 0 is not computed. ``generator`` draws the descriptor loss's
    queries (a fixed seed when None).
    """
    sample = sample.to(next(model.parameters()).device)
    capture = (capture_queries_keys(model.aggregator.global_blocks[cfg.matching_layer].attn)
               if cfg.matching_weight > 0 else contextlib.nullcontext({}))
    with capture as captured:
        out = model(sample.images)
    valid = sample.valid
    losses: dict[str, torch.Tensor] = {}
    total = sample.images.new_zeros(())
    if "pose_enc_list" in out and cfg.camera_weight > 0:
        losses["camera"] = camera_loss(out["pose_enc_list"], sample.pose_enc)
        total = total + cfg.camera_weight * losses["camera"]
    if "depth" in out and cfg.depth_weight > 0:
        losses["depth"] = dense_loss(out["depth"], out["depth_conf"], sample.depth[..., None], valid)
        total = total + cfg.depth_weight * losses["depth"]
    if "world_points" in out and cfg.points_weight > 0:
        losses["points"] = dense_loss(out["world_points"], out["world_points_conf"], sample.points, valid)
        total = total + cfg.points_weight * losses["points"]
    if captured:
        losses["matching"] = correspondence_loss(captured["q"], captured["k"], sample.matches,
                                                 model.aggregator.patch_start_idx, cfg.matching_heads)
        total = total + cfg.matching_weight * losses["matching"]
    if "descriptors" in out and cfg.descriptor_weight > 0:
        generator = generator or torch.Generator().manual_seed(0)
        losses["descriptor"], hit_rate = descriptor_loss(out["descriptors"], sample.cell_matches, generator)
        losses["descriptor_hits"] = torch.tensor(hit_rate)
        total = total + cfg.descriptor_weight * losses["descriptor"]
    losses["total"] = total
    return losses


def _validation_samples(cfg: TrainConfig) -> list[Sample]:
    from recon3d.synth import make_scene

    samples = []
    generator = torch.Generator().manual_seed(0)
    size = cfg.sizes_wh[0]
    for kind in cfg.kinds:
        for seed in VALIDATION_SEEDS:
            scene = make_scene(kind, seed, cfg.max_views, size)
            samples.append(stack_samples([sample_from_scene(scene, np.arange(cfg.max_views), generator,
                                                            augment=False, patch=cfg.model.patch_size)]))
    return samples


@torch.no_grad()
def validate(model: VGGT, samples: list[Sample], cfg: TrainConfig) -> dict[str, float]:
    """Mean losses over the validation samples, and the rotation error of the cameras.

    ``rot_err_head`` is the mean angle (degrees) between predicted and true relative
    rotations from the camera head; ``rot_err_points`` the same for cameras solved from
    depth and point maps (when the network has a point head), ``rot_err_matches`` for
    cameras solved from descriptor matches (when it has a descriptor head).
    """
    model.eval()
    sums: dict[str, float] = {}
    for sample in samples:
        values = {k: float(v) for k, v in sample_losses(model, sample, cfg).items()}
        values.update(rotation_errors(model, sample))
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value / len(samples)
    model.train()
    return sums


def rotation_errors(model: VGGT, sample: Sample) -> dict[str, float]:
    """Mean rotation error in degrees (views 1..S-1 against view 0) of the head's and the solved cameras."""
    from recon3d.geometry.cameras import pose_encoding_to_cameras
    from recon3d.networks.vggt.family import matched_cameras, solved_cameras

    out = model(sample.images)
    h, w = sample.images.shape[-2:]
    truth = sample.extrinsics[0, 1:, :3, :3].double()
    extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"][0].float(), (h, w))
    errors = {"rot_err_head": _mean_angle(extrinsics[1:, :3, :3].double(), truth)}
    if "world_points" in out:
        solved = solved_cameras(out, intrinsics)
        errors["rot_err_points"] = _mean_angle(solved[1:, :3, :3].double(), truth)
    if "descriptors" in out:
        matched, _ = matched_cameras(out, extrinsics, intrinsics)
        errors["rot_err_matches"] = _mean_angle(matched[1:, :3, :3].double(), truth)
    return errors


def _mean_angle(rot_a: torch.Tensor, rot_b: torch.Tensor) -> float:
    cos = ((rot_a.transpose(-1, -2) @ rot_b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return float(torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0))).mean())


def _save_checkpoint(run_dir: Path, model: VGGT, optimizer: torch.optim.Optimizer, step: int, pool_counter: int) -> None:
    from recon3d.zoo import save_model

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "step": step, "pool_counter": pool_counter}
    with atomic_path(run_dir / "checkpoint.pt") as tmp:
        torch.save(state, tmp)
    save_model(model, run_dir / "model")


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Fused AdamW; no weight decay on biases, norms, tokens and position embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.dim() < 2 or "token" in name or "pos_embed" in name else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), fused=True,  # one kernel for all tensors: several times faster on a CPU
    )


def _load_initial_weights(model: VGGT, init_from: str | Path, trainable: list[str] | None) -> None:
    """Fill ``model`` from the model directory ``init_from``. Parameters it lacks are allowed
    only under the ``trainable`` prefixes (a head added to a trained network, which keeps its
    fresh initialisation); weights of a whole part this network does not have (the
    descriptor head, when stage one continues the shipped two-stage model) are dropped;
    anything else missing or unexpected is an error."""
    from recon3d.errors import Recon3DError
    from recon3d.zoo import load_model

    # fp32: "auto" would hold the backbone in bf16 on some CPUs and round the weights.
    weights = load_model(init_from, precision="fp32").state_dict()
    parts = dict(model.named_children())
    dropped = sorted({key.split(".")[0] for key in weights if key.split(".")[0] not in parts})
    result = model.load_state_dict({k: v for k, v in weights.items() if k.split(".")[0] in parts}, strict=False)
    new = tuple(trainable or ())
    missing = [k for k in result.missing_keys if not (new and k.startswith(new))]
    if missing or result.unexpected_keys:
        raise Recon3DError(f"the weights in {init_from} do not fit this network: missing {missing[:5]}, "
                           f"unexpected {result.unexpected_keys[:5]}")
    if dropped:
        log.info("this network has no %s: those weights in %s are not used", ", ".join(dropped), init_from)
    if result.missing_keys:
        log.info("%d new parameter tensors start from their initialisation", len(result.missing_keys))


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = True, init_from: str | Path | None = None,
          start_step: int = 0) -> Path:
    """Train (or continue training) a VGGT on procedural scenes; return the run directory.

    A run folder's ``checkpoint.pt`` (model, optimiser, step) is resumed when present.
    Otherwise ``init_from`` (a model directory, e.g. the shipped ``models/recon3d-tiny``)
    gives the starting weights and ``start_step`` the schedule position, with a fresh
    optimiser state: this continues a model whose optimiser state was not kept.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from recon3d.errors import Recon3DError

        raise Recon3DError(f"training device {cfg.device} asked for, but CUDA is not available; use --device cpu")
    model = VGGT(cfg.model).init_weights(seed=cfg.seed)
    step, pool_counter = start_step, start_step
    checkpoint = run_dir / "checkpoint.pt"
    if init_from is not None and not (resume and checkpoint.is_file()):
        _load_initial_weights(model, init_from, cfg.trainable)
        log.info("starting from the weights in %s at step %d", init_from, step)
    if cfg.trainable is not None:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(tuple(cfg.trainable)))
    model.to(device)
    model.backbone_dtype = training_autocast_dtype(cfg.precision, device)
    log.info("training on %s, aggregator in %s", device,
             "fp32" if model.backbone_dtype is None else str(model.backbone_dtype).removeprefix("torch."))
    # Built after the move: a fused optimiser checks its parameters' device when built
    # (before torch 2.4 it refuses CPU parameters outright).
    optimizer = _optimizer(model, cfg)
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
        step, pool_counter = int(state["step"]), int(state["pool_counter"])
        log.info("resumed from step %d", step)
    with atomic_path(run_dir / "train_config.json") as tmp:
        tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
    pool = ScenePool(cfg.kinds, cfg.sizes_wh, cfg.views_per_scene, cfg.pool_size, cfg.seed,
                     cfg.render_workers, start_counter=pool_counter, cache_dir=cfg.scene_cache,
                     textures=cfg.textures)
    validation = _validation_samples(cfg)
    model.train()
    log_file = open(run_dir / "log.jsonl", "a", encoding="utf-8")
    deadline = None if cfg.max_minutes is None else time.monotonic() + 60 * cfg.max_minutes
    try:
        while step < cfg.steps:
            if deadline is not None and time.monotonic() > deadline:
                log.info("stopping at step %d: the %.1f-minute budget is spent", step, cfg.max_minutes)
                _save_checkpoint(run_dir, model, optimizer, step, pool.counter)
                break
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            generator = torch.Generator().manual_seed(cfg.seed * 10**7 + step)
            optimizer.zero_grad(set_to_none=True)
            logged: dict[str, float] = {}
            max_angle, max_views = curriculum(cfg, step)
            for _ in range(cfg.accumulate):
                views = int(torch.randint(cfg.min_views, max_views + 1, (1,), generator=generator))
                if step % cfg.new_scene_every == 0:
                    pool.refill(block=False, max_new=1)
                batch = pool.draw_batch(cfg.batch, views, generator, max_angle_deg=max_angle,
                                        patch=cfg.model.patch_size)
                losses = sample_losses(model, batch, cfg, generator)
                (losses["total"] / cfg.accumulate).backward()
                for key, value in losses.items():
                    logged[key] = logged.get(key, 0.0) + float(value.detach()) / cfg.accumulate
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            if math.isfinite(grad_norm):
                optimizer.step()
            step += 1
            if step % cfg.log_every == 0 or step == 1:
                record = {"step": step, "lr": learning_rate(cfg, step - 1), "grad_norm": grad_norm,
                          "seconds": time.perf_counter() - started, **logged}
                if step % cfg.validate_every == 0:
                    record.update({f"val_{k}": v for k, v in validate(model, validation, cfg).items()})
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_checkpoint(run_dir, model, optimizer, step, pool.counter)
    finally:
        log_file.close()
        pool.close()
    return run_dir
