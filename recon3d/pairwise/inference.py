"""Run a two-view network (DUSt3R) over the pairs of a scene graph."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from recon3d.networks.dust3r import DUSt3R
from recon3d.pairwise.pointmaps import PairwisePointmaps

ProgressFn = Callable[[int, int], None]


# no_grad, not inference_mode: the global alignment differentiates through these tensors.
@torch.no_grad()
def predict_pairs(
    model: DUSt3R,
    images: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    *,
    batch_size: int = 8,
    on_progress: ProgressFn | None = None,
) -> PairwisePointmaps:
    """Point maps of every ordered pair ``(i, j)`` of ``images``.

    Each image goes through the shared encoder once, however many pairs it is in;
    then the decoders and heads run on batches of ``batch_size`` pairs.

    Args:
        model: a DUSt3R network (its device and ``backbone_dtype`` are used).
        images: ``[S, 3, H, W]`` in [0, 1], one size for all views.
        pairs: ordered view-index pairs (from `recon3d.pairwise.graph.make_pairs`).
        batch_size: pairs (and images, for the encoder) per forward pass.
        on_progress: called with ``(pairs done, pairs total)`` after each batch.

    Returns:
        `PairwisePointmaps` on the CPU, float32.
    """
    if not pairs:
        raise ValueError("no pairs to predict")
    device = next(model.parameters()).device
    grid = model.grid_size(images)
    # DUSt3R's networks take images normalised to [-1, 1].
    encoded = torch.cat([
        model.encode(chunk.to(device) * 2 - 1) for chunk in images.split(batch_size)
    ])
    index = torch.as_tensor(pairs, dtype=torch.long)
    outputs: dict[str, list[torch.Tensor]] = {"pts_i": [], "conf_i": [], "pts_j": [], "conf_j": []}
    for start in range(0, len(index), batch_size):
        batch = index[start : start + batch_size].to(device)
        layers1, layers2 = model.decode(encoded[batch[:, 0]], encoded[batch[:, 1]], grid)
        res1, res2 = model.pair_outputs(*model.heads(layers1, layers2, grid))
        for key, value in (("pts_i", res1["pts3d"]), ("conf_i", res1["conf"]),
                           ("pts_j", res2["pts3d_in_other_view"]), ("conf_j", res2["conf"])):
            outputs[key].append(value.float().cpu())
        if on_progress is not None:
            on_progress(min(start + batch_size, len(index)), len(index))
    return PairwisePointmaps(pairs=index, num_views=int(images.shape[0]),
                             **{key: torch.cat(values) for key, values in outputs.items()})
