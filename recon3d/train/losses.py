"""VGGT's training losses: pose-encoding regression and confidence-weighted dense losses.

The dense loss is the aleatoric form ``c·|pred − gt| + c·|∇pred − ∇gt| − α·log c`` over
valid pixels, where ``c ≥ 1`` is the predicted confidence: the network may lower its
confidence where it cannot be accurate, at a logarithmic price.
"""
from __future__ import annotations

import torch


def camera_loss(pose_enc_list: list[torch.Tensor], gt: torch.Tensor, decay: float = 0.8,
                fov_weight: float = 0.5) -> torch.Tensor:
    """L1 loss on every refinement iteration, later iterations weighted more.

    ``q`` and ``-q`` are the same rotation, and the encoding's ``w ≥ 0`` rule flips the
    sign of the target at 180°: the rotation term is the L1 distance to the nearer of
    ``±q``, so targets on either side of the flip agree instead of pulling an uncertain
    prediction towards their mean. The field of view is weighted as VGGT weights it.

    Args:
        pose_enc_list: per-iteration predictions, each ``[B,S,9]``.
        gt: ``[B,S,9]`` ground-truth encoding (translation, quaternion xyzw, fov_h, fov_w).
    """
    n = len(pose_enc_list)
    total = gt.new_zeros(())
    for i, pred in enumerate(pose_enc_list):
        quat_err = torch.minimum((pred[..., 3:7] - gt[..., 3:7]).abs().sum(-1),
                                 (pred[..., 3:7] + gt[..., 3:7]).abs().sum(-1)) / 4
        term = ((pred[..., :3] - gt[..., :3]).abs().mean() + quat_err.mean()
                + fov_weight * (pred[..., 7:] - gt[..., 7:]).abs().mean())
        total = total + decay ** (n - 1 - i) * term
    return total


def dense_loss(pred: torch.Tensor, conf: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
               alpha: float = 0.2) -> torch.Tensor:
    """Confidence-weighted regression with a gradient-matching term.

    Args:
        pred: ``[B,S,H,W,C]`` prediction (depth: C=1; points: C=3).
        conf: ``[B,S,H,W]`` confidence (≥ 1).
        gt: ``[B,S,H,W,C]`` ground truth.
        valid: ``[B,S,H,W]`` bool mask of pixels with ground truth.
    """
    if not valid.any():
        return pred.sum() * 0.0
    diff = pred - gt
    loss = (conf * diff.norm(dim=-1) - alpha * conf.log())[valid].mean()
    # Gradient matching along width, then height: both pixels of a pair must be valid.
    dx = (diff[..., :, 1:, :] - diff[..., :, :-1, :]).norm(dim=-1)
    dy = (diff[..., 1:, :, :] - diff[..., :-1, :, :]).norm(dim=-1)
    pair_x = valid[..., :, 1:] & valid[..., :, :-1]
    pair_y = valid[..., 1:, :] & valid[..., :-1, :]
    if pair_x.any():
        loss = loss + (conf[..., :, 1:] * dx)[pair_x].mean()
    if pair_y.any():
        loss = loss + (conf[..., 1:, :] * dy)[pair_y].mean()
    return loss
