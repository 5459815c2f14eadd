"""Supervision and measurement of matching inside global attention.

A network trained from scratch can estimate depth from each image alone and never look
at the other views (the "monocular shortcut"); its cameras then collapse to one mean
pose. Supervising one global-attention layer with the true patch correspondences of the
synthetic scenes (as CAMEO does) makes matching part of the task. The same capture
measures, for any layer, how much attention mass lands on the true correspondence.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from recon3d.networks.layers.attention import Attention
from recon3d.networks.layers.rope2d import rotate


@contextlib.contextmanager
def capture_queries_keys(attention: Attention) -> Iterator[dict[str, torch.Tensor]]:
    """While active, ``captured["q"]`` and ``["k"]`` hold ``attention``'s last q and k.

    Both are ``[B, heads, N, head_dim]`` exactly as the layer uses them (after the q/k
    norm and RoPE), recomputed from the layer's input so the network code stays as it is.
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(module: Attention, args: tuple, _output: torch.Tensor) -> None:
        x, rope = args[0], args[1] if len(args) > 1 else None
        b, n, _ = x.shape
        qkv = module.qkv(x).reshape(b, n, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4)
        q, k = module.q_norm(qkv[0]), module.k_norm(qkv[1])
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        captured["q"], captured["k"] = q, k

    handle = attention.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _patch_split(t: torch.Tensor, frames: int, patch_start: int) -> torch.Tensor:
    """``[B,h,S*P,D]`` → ``[B,h,S,Np,D]`` patch tokens only (camera and register tokens dropped)."""
    b, heads, n, d = t.shape
    return t.reshape(b, heads, frames, n // frames, d)[:, :, :, patch_start:]


def correspondence_loss(q: torch.Tensor, k: torch.Tensor, matches: torch.Tensor, patch_start: int,
                        heads: int | None = None) -> torch.Tensor:
    """Cross-entropy of each patch's attention over another view's patches against its true match.

    Args:
        q, k: ``[B,h,S*P,D]`` from `capture_queries_keys` on a global-attention layer.
        matches: ``[B,S,S,Np]`` from `recon3d.train.data.patch_matches` (-1: no target).
        patch_start: index of the first patch token in a frame's tokens.
        heads: supervise only the first ``heads`` heads (None: all), leaving the others free.

    Returns:
        Scalar mean over supervised (query patch, other view, head) triples; 0 without any.
    """
    frames = matches.shape[1]
    heads = heads or q.shape[1]
    qp = _patch_split(q[:, :heads], frames, patch_start).float()
    kp = _patch_split(k[:, :heads], frames, patch_start).float()
    logits = torch.einsum("bhind,bhjmd->bhijnm", qp, kp) * qp.shape[-1] ** -0.5
    target = matches[:, None].expand(-1, heads, -1, -1, -1)
    if not (target >= 0).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, -2), target.flatten(), ignore_index=-1)


@torch.no_grad()
def attention_on_matches(q: torch.Tensor, k: torch.Tensor, matches: torch.Tensor, patch_start: int) -> float:
    """Mean attention mass (full softmax over all tokens, mean over heads) on the true match.

    For every query patch of view ``i`` and view ``j ≠ i`` where its match is visible,
    the weight the layer gives to that one patch of view ``j``. Uniform attention would
    give ``1 / (S·P)``; compare against that.
    """
    frames = matches.shape[1]
    b, heads, n, d = q.shape
    weights = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * d**-0.5, dim=-1)  # [B,h,N,N]
    per_frame = n // frames
    weights = weights.mean(dim=1).reshape(b, frames, per_frame, frames, per_frame)[:, :, patch_start:, :, patch_start:]
    # [B, S_i, Np, S_j, Np] → [B, S_i, S_j, Np(query), Np(key)]
    weights = weights.permute(0, 1, 3, 2, 4)
    valid = matches >= 0
    if not valid.any():
        return float("nan")
    picked = torch.gather(weights, -1, matches.clamp_min(0)[..., None])[..., 0]
    return float(picked[valid].mean())


def descriptor_loss(descriptors: torch.Tensor, cell_matches: torch.Tensor, generator: torch.Generator,
                    queries_per_pair: int = 256, temperature: float = 0.05) -> tuple[torch.Tensor, float]:
    """InfoNCE of dense descriptors against true correspondences (MASt3R-style matching loss).

    For every ordered pair of views (i, j) of a sample, up to ``queries_per_pair`` cells of
    view i that see a surface point visible in view j are drawn; each must pick its true
    cell among all of view j's cells (cross-entropy over dot products / ``temperature``).

    Args:
        descriptors: ``[B,S,h,w,D]`` unit descriptors.
        cell_matches: ``[B,S,S,h*w]`` from `recon3d.train.data.patch_matches` with the
            descriptor stride as the patch (-1: no target).
        generator: draws the queries.

    Returns:
        The mean loss over the pairs that have queries (0 when none has), and the fraction
        of queries whose most similar cell is the true one.
    """
    flat = descriptors.flatten(2, 3)  # [B,S,N,D]
    losses, hits, total = [], 0, 0
    for b, i, j in torch.nonzero(cell_matches.amax(-1) >= 0).tolist():
        candidates = torch.nonzero(cell_matches[b, i, j] >= 0)[:, 0]
        order = torch.randperm(len(candidates), generator=generator)[:queries_per_pair].to(candidates.device)
        queries = candidates[order]
        logits = flat[b, i, queries] @ flat[b, j].T / temperature
        target = cell_matches[b, i, j, queries]
        losses.append(F.cross_entropy(logits, target))
        hits += int((logits.detach().argmax(1) == target).sum())
        total += len(queries)
    if not losses:
        return descriptors.sum() * 0.0, float("nan")
    return torch.stack(losses).mean(), hits / total
