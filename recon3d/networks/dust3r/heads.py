"""DUSt3R's output heads (linear or DPT) and the activations of their four channels.

Both heads map decoder tokens of one view to ``[B, 4, H, W]``: x, y, z of the point
map and a confidence logit; `postprocess` turns that into points and confidence.
Heads run in fp32 whatever the decoder's precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon3d.networks.dust3r.config import DPTConfig, DUSt3RConfig, OutputMode
from recon3d.networks.layers.dpt import FeatureFusionBlock


def activate_points(xyz: torch.Tensor, mode: OutputMode) -> torch.Tensor:
    """``[..., 3]`` raw → points: the direction kept, the length ``r`` mapped to ``expm1(r)``."""
    norm = xyz.norm(dim=-1, keepdim=True)
    length = torch.expm1(norm)
    if mode.vmin is not None or mode.vmax is not None:
        length = length.clip(mode.vmin, mode.vmax)
    return xyz / norm.clip(min=1e-8) * length


def activate_confidence(logit: torch.Tensor, mode: OutputMode) -> torch.Tensor:
    """``vmin + exp(logit)``, clipped at ``vmax`` when it is set."""
    conf = (mode.vmin or 0.0) + logit.exp()
    return conf if mode.vmax is None else conf.clip(max=mode.vmax)


def postprocess(raw: torch.Tensor, config: DUSt3RConfig) -> dict[str, torch.Tensor]:
    """``raw [B, 4, H, W]`` → ``{"pts3d": [B, H, W, 3], "conf": [B, H, W]}``."""
    channels_last = raw.permute(0, 2, 3, 1)
    return {
        "pts3d": activate_points(channels_last[..., :3], config.depth_mode),
        "conf": activate_confidence(channels_last[..., 3], config.conf_mode),
    }


class LinearHead(nn.Module):
    """One linear map per token to a ``patch x patch`` block of the 4 output channels."""

    def __init__(self, config: DUSt3RConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.proj = nn.Linear(config.dec_embed_dim, 4 * config.patch_size**2)

    def forward(self, tokens: list[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
        """Last entry of ``tokens`` (``[B, h*w, D]``) → ``[B, 4, h*p, w*p]``."""
        features = self.proj(tokens[-1]).transpose(1, 2).unflatten(-1, grid_hw)
        return F.pixel_shuffle(features, self.patch_size)


def _reassemble_layers(in_dims: list[int], out_dims: tuple[int, ...]) -> nn.ModuleList:
    """Project each hooked layer to its width, then bring it to strides 4, 8, 16, 32 of
    the 16-pixel token grid (x4 and x2 transposed convolutions, none, stride-2 conv)."""
    resamplers: list[list[nn.Module]] = [
        [nn.ConvTranspose2d(out_dims[0], out_dims[0], kernel_size=4, stride=4)],
        [nn.ConvTranspose2d(out_dims[1], out_dims[1], kernel_size=2, stride=2)],
        [],
        [nn.Conv2d(out_dims[3], out_dims[3], kernel_size=3, stride=2, padding=1)],
    ]
    return nn.ModuleList(
        nn.Sequential(nn.Conv2d(in_dim, out_dim, kernel_size=1), *resample)
        for in_dim, out_dim, resample in zip(in_dims, out_dims, resamplers)
    )


class DPTAdapter(nn.Module):
    """The DPT decoder: four hooked token layers fused coarse to fine into ``[B, 4, H, W]``."""

    def __init__(self, dpt: DPTConfig, token_dims: list[int]):
        super().__init__()
        width = dpt.feature_dim
        self.hooks = list(dpt.hooks_idx)
        # Registration order follows the checkpoints' key order: scratch, head, act_postprocess.
        self.scratch = nn.Module()
        for k, dim in enumerate(dpt.layer_dims, start=1):
            setattr(self.scratch, f"layer{k}_rn", nn.Conv2d(dim, width, kernel_size=3, padding=1, bias=False))
        # The released checkpoints hold each of these convolutions under two names.
        self.scratch.layer_rn = nn.ModuleList(getattr(self.scratch, f"layer{k}_rn") for k in range(1, 5))
        for k in range(1, 5):
            setattr(self.scratch, f"refinenet{k}", FeatureFusionBlock(width))
        self.head = nn.Sequential(
            nn.Conv2d(width, width // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(width // 2, dpt.last_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(dpt.last_dim, 4, kernel_size=1),
        )
        self.act_postprocess = _reassemble_layers(token_dims, dpt.layer_dims)

    def forward(self, tokens: list[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
        """``tokens``: ``[encoder, decoder 1..depth]``, each ``[B, h*w, C]`` → ``[B, 4, 16h, 16w]``."""
        maps = [tokens[i].transpose(1, 2).unflatten(-1, grid_hw) for i in self.hooks]
        rn1, rn2, rn3, rn4 = (conv(act(m)) for conv, act, m in zip(self.scratch.layer_rn, self.act_postprocess, maps))
        # rn4 comes from a stride-2 convolution, so on an odd grid it upsamples one row
        # or column past rn3: crop it.
        path = self.scratch.refinenet4(rn4)[..., : rn3.shape[-2], : rn3.shape[-1]]
        path = self.scratch.refinenet3(path, rn3)
        path = self.scratch.refinenet2(path, rn2)
        path = self.scratch.refinenet1(path, rn1)
        return self.head(path)


class DPTHead(nn.Module):
    """``dpt``: a `DPTAdapter` over the encoder output and decoder layers."""

    def __init__(self, config: DUSt3RConfig):
        super().__init__()
        token_dims = [config.enc_embed_dim if i == 0 else config.dec_embed_dim for i in config.dpt.hooks_idx]
        self.dpt = DPTAdapter(config.dpt, token_dims)

    def forward(self, tokens: list[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
        return self.dpt(tokens, grid_hw)


def build_head(config: DUSt3RConfig) -> nn.Module:
    return DPTHead(config) if config.head_type == "dpt" else LinearHead(config)


__all__ = ["LinearHead", "DPTHead", "build_head", "postprocess", "activate_points", "activate_confidence"]
