"""AnySplat's DPT Gaussian head: VGGT's DPT body, an image branch, raw per-pixel parameters.

Same levels and RefineNet fusion as VGGT's depth head (its own weights); after
``output_conv1`` the ``features//2`` map is upsampled to the image, a ReLU(7x7 conv) of
the fp32 [0,1] image (``input_merger``) and the 0.1-scaled UV embedding are added, and
``output_conv2`` (3x3 conv, ReLU, 1x1 conv) emits the channels. No activation: fusion
averages the raw values and the adapter activates them afterwards.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recon3d.networks.layers.dpt import resize_bilinear
from recon3d.networks.vggt.dpt_head import DPTHead, TokenLayers


class GSHead(DPTHead):
    """Args: as `DPTHead`, plus ``head_features_2`` (hidden width of output_conv2); the
    ``output_dim`` channels are raw (see the channel layout in `recon3d.networks.anysplat.adapter`)."""

    def __init__(
        self,
        dim_in: int,
        patch_size: int,
        output_dim: int,
        features: int,
        out_channels: Sequence[int],
        intermediate_layer_idx: Sequence[int],
        head_features_2: int,
    ) -> None:
        super().__init__(dim_in, patch_size, output_dim, activation="linear", features=features,
                         out_channels=out_channels, intermediate_layer_idx=intermediate_layer_idx)
        merged = features // 2
        # Replacing the module keeps its place in the state-dict order (before input_merger).
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(merged, head_features_2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(head_features_2, output_dim, kernel_size=1),
        )
        self.input_merger = nn.Sequential(nn.Conv2d(3, merged, kernel_size=7, padding=3), nn.ReLU())

    def forward(  # type: ignore[override]
        self,
        aggregated_tokens: TokenLayers,
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> torch.Tensor:
        """Raw parameters ``[B, S, output_dim, H, W]`` from the token layers and ``images [B,S,3,H,W]`` in [0,1]."""
        frames, height, width = images.shape[1], images.shape[-2], images.shape[-1]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of {self.patch_size}")
        layers = [aggregated_tokens[i] for i in self.intermediate_layer_idx]
        chunk = frames_chunk_size or frames
        outs = []
        for start in range(0, frames, chunk):
            tokens = [t[:, start : start + chunk, patch_start_idx:].float() for t in layers]
            outs.append(self._decode_raw(tokens, images[:, start : start + chunk].float()))
        return torch.cat(outs, dim=1)

    def merged_features(self, tokens: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """Input of output_conv2 ``[N, features//2, H, W]`` (N = B*s) for one chunk.

        ``tokens``: 4 x ``[B, s, Np, dim_in]``; ``images``: ``[B, s, 3, H, W]`` fp32 in [0,1].
        """
        image_hw = (images.shape[-2], images.shape[-1])
        fused = self._fuse(self._levels(tokens, image_hw))
        out = resize_bilinear(fused, image_hw)
        out = out + self.input_merger(images.flatten(0, 1))
        return self._add_pos_embed(out, image_hw)

    def _decode_raw(self, tokens: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """One chunk → ``[B, s, output_dim, H, W]``."""
        batch, frames = images.shape[:2]
        out = self.scratch.output_conv2(self.merged_features(tokens, images))
        return out.contiguous().unflatten(0, (batch, frames))
