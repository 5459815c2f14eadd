"""Training loop: AdamW, warm-up + cosine schedule, checkpoints, resume, logged curves.

A run directory holds ``checkpoint.pt`` (tensors and plain numbers only, so it loads
with ``torch.load(weights_only=True)``), ``log.jsonl`` (one line per logged step),
``train_config.json`` and ``model/`` (``config.json`` + ``model.safetensors``, loadable
with ``recon3d.load_model``).
"""
from __future__ import annotations

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
from recon3d.networks.vggt import VGGT, VGGTConfig
from recon3d.train.data import Sample, ScenePool, sample_from_scene
from recon3d.train.losses import camera_loss, dense_loss

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
    accumulate: int = 1
    min_views: int = 2
    max_views: int = 8
    kinds: dict[str, float] = field(default_factory=lambda: {"object": 0.5, "room": 0.25, "trajectory": 0.25})
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
    threads: int = 2
    # "auto" (CUDA when there is one), "cpu" or a CUDA device; on CUDA the aggregator runs
    # under bf16 autocast (the heads and losses stay fp32), as at inference.
    device: str = "cpu"
    seed: int = 0
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


def sample_losses(model: VGGT, sample: Sample, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Weighted losses of one sample; ``total`` is what gets back-propagated."""
    sample = sample.to(next(model.parameters()).device)
    out = model(sample.images)
    valid = sample.valid[None]
    losses: dict[str, torch.Tensor] = {}
    total = sample.images.new_zeros(())
    if "pose_enc_list" in out:
        losses["camera"] = camera_loss(out["pose_enc_list"], sample.pose_enc[None])
        total = total + cfg.camera_weight * losses["camera"]
    if "depth" in out:
        losses["depth"] = dense_loss(out["depth"], out["depth_conf"], sample.depth[None, ..., None], valid)
        total = total + cfg.depth_weight * losses["depth"]
    if "world_points" in out:
        losses["points"] = dense_loss(out["world_points"], out["world_points_conf"], sample.points[None], valid)
        total = total + cfg.points_weight * losses["points"]
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
            samples.append(sample_from_scene(scene, np.arange(cfg.max_views), generator, augment=False))
    return samples


@torch.no_grad()
def validate(model: VGGT, samples: list[Sample], cfg: TrainConfig) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    for sample in samples:
        for key, value in sample_losses(model, sample, cfg).items():
            sums[key] = sums.get(key, 0.0) + float(value) / len(samples)
    model.train()
    return sums


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
        from recon3d.zoo import load_model

        model.load_state_dict(load_model(init_from).state_dict())
        log.info("starting from the weights in %s at step %d", init_from, step)
    model.to(device)
    if device.type == "cuda":
        model.backbone_dtype = torch.bfloat16
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
                     cfg.render_workers, start_counter=pool_counter)
    validation = _validation_samples(cfg)
    model.train()
    log_file = open(run_dir / "log.jsonl", "a", encoding="utf-8")
    try:
        while step < cfg.steps:
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            generator = torch.Generator().manual_seed(cfg.seed * 10**7 + step)
            optimizer.zero_grad(set_to_none=True)
            logged: dict[str, float] = {}
            for _ in range(cfg.accumulate):
                views = int(torch.randint(cfg.min_views, cfg.max_views + 1, (1,), generator=generator))
                if step % cfg.new_scene_every == 0:
                    pool.refill(block=False, max_new=1)
                losses = sample_losses(model, pool.draw(views, generator), cfg)
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
