"""VGGT camera head: iterative refinement of a 9-number pose encoding per frame.

It reads the camera token of every frame from the last aggregator layer and refines
the encoding ``[t(3), quaternion xyzw(4), fov_h, fov_w]`` over a few iterations with
an adaptive-LayerNorm-modulated transformer trunk that attends across frames.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from recon3d.networks.layers.block import Block, Mlp
from recon3d.networks.vggt.config import CameraHeadConfig

POSE_ENCODING_DIM = 9


def activate_pose_encoding(raw: torch.Tensor) -> torch.Tensor:
    """Output activations of ``raw [..., 9]``: translation and quaternion linear, FoV ReLU."""
    return torch.cat([raw[..., :7], torch.relu(raw[..., 7:])], dim=-1)


class CameraHead(nn.Module):
    def __init__(self, dim_in: int, config: CameraHeadConfig):
        super().__init__()
        if config.pose_encoding_type != "absT_quaR_FoV":
            raise ValueError(f"unsupported pose encoding {config.pose_encoding_type!r}")
        self.num_iterations = config.num_iterations
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.trunk = nn.Sequential(
            *(Block(dim_in, config.num_heads, config.mlp_ratio, init_values=config.init_values)
              for _ in range(config.trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def forward(self, layers: Mapping[int, torch.Tensor], last_layer: int) -> list[torch.Tensor]:
        """Pose encodings ``[B, S, 9]`` after each iteration (activated), last one final.

        ``layers[last_layer]`` is ``[B, S, P, dim_in]``; token 0 of each frame is its
        camera token.
        """
        pose_tokens = self.token_norm(layers[last_layer][:, :, 0].float())
        b, s, _ = pose_tokens.shape
        normed = self.adaln_norm(pose_tokens)
        raw: torch.Tensor | None = None
        encodings = []
        for _ in range(self.num_iterations):
            # Condition on the previous estimate without back-propagating through it.
            previous = self.empty_pose_tokens.expand(b, s, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(previous)).chunk(3, dim=-1)
            x = pose_tokens + gate * (normed * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw + delta
            encodings.append(activate_pose_encoding(raw))
        return encodings
