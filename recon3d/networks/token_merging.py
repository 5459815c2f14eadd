"""Training-free token merging inside VGGT's global attention (after FastVGGT).

Global attention over S frames of P tokens costs O((S·P)²). In a merged block the
tokens are split into *destinations*, which are always kept, and *sources*, which
are folded into their most similar destination before attention and receive that
destination's output afterwards:

1. q, k, v are computed (and RoPE-rotated) for all N tokens, so positions stay exact;
2. a `MergePlan` maps every token to a slot of a shorter sequence: a destination or
   kept source owns a slot, a merged source shares its destination's slot;
3. q, k and v are averaged per slot, attention runs on the slots;
4. every token takes its slot's output (unmerge), then the output projection runs on
   all N tokens, so the residual stream and the heads keep full resolution.

Destinations: every token of frame 0 (the reference frame), the camera and register
tokens of every frame, and one patch per ``stride`` cell of every other frame, drawn
with a seeded generator. A ``protect_fraction`` of the remaining tokens, at a fixed
stride over the sequence, is never merged (FastVGGT's positional protection; it keeps
some fine detail in every frame at a small cost in length; a saliency-ranked choice was
not measured here). Each source is matched to the destination of highest cosine
similarity of the block's normalised input, across all frames; the ``ratio`` of the
sources with the highest similarity are merged (1.0 merges them all, as FastVGGT does).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["MergeConfig", "MergePlan", "plan_merge", "parse_merge_option", "AUTO_MIN_FRAMES"]

# Below this many frames the FFNs, not global attention, dominate the aggregator's time
# and merging buys little (benchmarks/token_merging.py).
AUTO_MIN_FRAMES = 32


@dataclass(frozen=True)
class MergeConfig:
    """Token-merging settings.

    Attributes:
        ratio: fraction of the source tokens merged, most similar first (0 = dense).
        start_block: first global block that merges (earlier ones stay dense).
        stride: ``(sy, sx)`` destination cell in patches; one destination per cell.
        protect_fraction: fraction of the sequence kept unmerged at a fixed stride.
        seed: seed of the destination draw (same seed → same outputs).
        chunk_size: source rows per similarity matmul (bounds memory).
        reuse_blocks: a plan serves this many consecutive merged blocks (1 = a new plan
            per block, as FastVGGT; more reuses it, as LiteVGGT).
        min_frames: merge only when a scene has at least this many frames.
    """

    ratio: float = 1.0
    start_block: int = 0
    stride: tuple[int, int] = (2, 2)
    protect_fraction: float = 0.1
    seed: int = 33
    chunk_size: int = 4096
    reuse_blocks: int = 1
    min_frames: int = 0

    def __post_init__(self):
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"merge ratio must be in [0, 1], got {self.ratio}")
        if not 0.0 <= self.protect_fraction < 1.0:
            raise ValueError(f"protect_fraction must be in [0, 1), got {self.protect_fraction}")
        if min(self.stride) < 1 or self.reuse_blocks < 1 or self.chunk_size < 1:
            raise ValueError("stride, reuse_blocks and chunk_size must be positive")


def parse_merge_option(value: str) -> MergeConfig | None:
    """``"off"`` → None, ``"auto"`` → merge everything from `AUTO_MIN_FRAMES` frames,
    a number in [0, 1] → that ratio at any frame count."""
    value = value.strip().lower()
    if value == "off":
        return None
    if value == "auto":
        return MergeConfig(min_frames=AUTO_MIN_FRAMES)
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"--merge must be auto, off or a ratio in [0, 1], not '{value}'") from None
    return MergeConfig(ratio=ratio)


@dataclass
class MergePlan:
    """Where each of N tokens goes in the reduced sequence of M slots.

    Attributes:
        slot: ``[B, N]`` slot index of every token.
        counts: ``[B, M, 1]`` how many tokens share each slot (>= 1).
        kept: ``[B, N]`` True for the tokens that own a slot (destinations, protected
            and unmerged sources); the others are merged into a destination's slot.
    """

    slot: torch.Tensor
    counts: torch.Tensor
    kept: torch.Tensor

    @property
    def reduced_length(self) -> int:
        return int(self.counts.shape[1])

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, F]`` → ``[B, M, F]``: the mean of the tokens of each slot.

        Sums run in fp32 whatever ``x``'s dtype (bf16 sums of many tokens lose digits) and
        in a fixed order on CUDA too (see ``_slot_sums``).
        """
        b, n, f = x.shape
        sums = _slot_sums(self.slot, x.reshape(b * n, f).float(), self.reduced_length)
        return (sums / self.counts).to(x.dtype)

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, M, F]`` → ``[B, N, F]``: every token gets its slot's row."""
        return torch.gather(x, 1, self.slot[..., None].expand(-1, -1, x.shape[-1]))


@contextlib.contextmanager
def _deterministic_on_cuda(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the block on CUDA (where sums are otherwise atomic, so
    their order, and the last bits of the result, change from run to run)."""
    if device.type != "cuda" or torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False, warn_only=warn_only)


def _slot_sums(slot: torch.Tensor, values: torch.Tensor, slots: int) -> torch.Tensor:
    """Per batch row, the sum of the values in each slot: ``slot [B, N]``, ``values [B*N, F]``
    → ``[B, slots, F]``. ``index_add_`` has a deterministic CUDA kernel (a 2-D
    ``scatter_add_`` has none and would fail under deterministic algorithms)."""
    b, n = slot.shape
    flat_slot = (slot + torch.arange(b, device=slot.device)[:, None] * slots).reshape(b * n)
    sums = torch.zeros(b * slots, values.shape[-1], dtype=values.dtype, device=values.device)
    with _deterministic_on_cuda(values.device):
        sums.index_add_(0, flat_slot, values)
    return sums.view(b, slots, -1)


def _destination_mask(frames: int, special: int, grid_hw: tuple[int, int], stride: tuple[int, int],
                      generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``[S*P]`` bool: frame 0, special tokens, one random patch per stride cell."""
    gh, gw = grid_hw
    sy, sx = stride
    cell_rows, cell_cols = (gh + sy - 1) // sy, (gw + sx - 1) // sx
    # Cells on the lower and right border may be smaller than the stride.
    cell_h = torch.clamp(gh - torch.arange(cell_rows) * sy, max=sy)
    cell_w = torch.clamp(gw - torch.arange(cell_cols) * sx, max=sx)
    draw = torch.rand(frames - 1, cell_rows, cell_cols, 2, generator=generator)
    pick_r = (draw[..., 0] * cell_h[:, None]).long() + torch.arange(cell_rows)[:, None] * sy
    pick_c = (draw[..., 1] * cell_w[None, :]).long() + torch.arange(cell_cols)[None, :] * sx
    patches = torch.zeros(frames - 1, gh, gw, dtype=torch.bool)
    frame_index = torch.arange(frames - 1)[:, None, None].expand_as(pick_r)
    patches[frame_index, pick_r, pick_c] = True
    per_frame = torch.cat([torch.ones(frames - 1, special, dtype=torch.bool), patches.flatten(1)], dim=1)
    mask = torch.cat([torch.ones(special + gh * gw, dtype=torch.bool), per_frame.flatten()])
    return mask.to(device)


def plan_merge(x: torch.Tensor, frames: int, special: int, grid_hw: tuple[int, int], config: MergeConfig) -> MergePlan:
    """A merge plan for global-attention tokens ``x [B, S*P, C]`` (the block's normalised input).

    Args:
        x: features compared by cosine similarity.
        frames: S; ``special``: camera + register tokens at the start of each frame;
        grid_hw: patch grid (P = special + gh·gw).
        config: the settings.
    """
    b, n, _ = x.shape
    gh, gw = grid_hw
    if n != frames * (special + gh * gw):
        raise ValueError(f"{n} tokens do not make {frames} frames of {special}+{gh}x{gw}")
    # Plans are made in fp32 even inside the backbone's autocast: bf16 similarities near
    # 1.0 are 0.004 apart, so best matches and the merge order would fall on ties.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _plan_fp32(x, frames, special, grid_hw, config)


def _plan_fp32(x: torch.Tensor, frames: int, special: int, grid_hw: tuple[int, int], config: MergeConfig) -> MergePlan:
    b, n, _ = x.shape
    device = x.device
    generator = torch.Generator().manual_seed(config.seed)
    is_dst = _destination_mask(frames, special, grid_hw, config.stride, generator, device)
    if config.protect_fraction > 0:
        step = max(1, round(1 / config.protect_fraction))
        is_dst = is_dst.clone()
        is_dst[::step] = True
    dst_index = torch.nonzero(is_dst).squeeze(1)
    src_index = torch.nonzero(~is_dst).squeeze(1)
    merged_count = int(round(config.ratio * len(src_index)))

    features = F.normalize(x.float(), dim=-1)
    dst_features = features[:, dst_index]
    best_sim = torch.empty(b, len(src_index), device=device)
    best_dst = torch.empty(b, len(src_index), dtype=torch.long, device=device)
    for start in range(0, len(src_index), config.chunk_size):
        chunk = features[:, src_index[start:start + config.chunk_size]]
        sim = torch.bmm(chunk, dst_features.transpose(1, 2))
        best_sim[:, start:start + chunk.shape[1]], best_dst[:, start:start + chunk.shape[1]] = sim.max(dim=-1)

    # The most similar sources are merged; the rest keep a slot of their own.
    order = torch.argsort(best_sim, dim=1, descending=True, stable=True)
    merged = torch.zeros(b, len(src_index), dtype=torch.bool, device=device)
    merged.scatter_(1, order[:, :merged_count], True)
    kept = is_dst.expand(b, n).clone()
    kept[:, src_index] = ~merged
    slot_of_kept = torch.cumsum(kept.long(), dim=1) - 1  # slots follow the original order
    slot = slot_of_kept.clone()
    dst_slot = slot_of_kept[:, dst_index]
    target = torch.gather(dst_slot, 1, best_dst)
    slot[:, src_index] = torch.where(merged, target, slot_of_kept[:, src_index])
    reduced = int(kept[0].sum())
    counts = _slot_sums(slot, torch.ones(b * n, 1, device=device), reduced)
    return MergePlan(slot=slot, counts=counts, kept=kept)
