"""Pairwise point maps: what a two-view network (DUSt3R) predicts for each image pair."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PairwisePointmaps:
    """Predictions for ``P`` ordered image pairs ``(i, j)`` of ``S`` views of size ``H x W``.

    Both point maps of a pair are in the camera frame of the pair's first view ``i``
    (OpenCV axes), at an unknown scale of their own.

    Attributes:
        pairs: ``[P, 2]`` int64 view indices ``(i, j)``.
        pts_i: ``[P, H, W, 3]`` points of view ``i``'s pixels, in ``i``'s frame.
        conf_i: ``[P, H, W]`` their confidence (``1 + exp(x) >= 1``).
        pts_j: ``[P, H, W, 3]`` points of view ``j``'s pixels, also in ``i``'s frame.
        conf_j: ``[P, H, W]`` their confidence.
        num_views: ``S``.
    """

    pairs: torch.Tensor
    pts_i: torch.Tensor
    conf_i: torch.Tensor
    pts_j: torch.Tensor
    conf_j: torch.Tensor
    num_views: int

    @property
    def image_size_hw(self) -> tuple[int, int]:
        return int(self.pts_i.shape[1]), int(self.pts_i.shape[2])
