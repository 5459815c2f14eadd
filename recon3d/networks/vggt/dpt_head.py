"""VGGT's dense prediction head (depth or point map, plus confidence).

A DPT decoder over four aggregator layers: per level a shared LayerNorm, a
1x1 projection, a sin-cos UV position embedding and a resize of the patch
grid by x4, x2, x1 and x1/2; then RefineNet fusion from coarse to fine, an
upsample to the input resolution, the embedding once more, and a small conv
head. Parameter names equal the official checkpoint's
(``depth_head.*`` / ``point_head.*`` without the prefix).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from recon3d.networks.layers.dpt import FeatureFusionBlock, resize_bilinear

__all__ = ["DPTHead", "uv_sincos_embedding"]

_ACTIVATIONS = ("exp", "inv_log", "linear")
_CONF_ACTIVATIONS = ("expp1",)
# Fixed in the reference regardless of `features`.
_HEAD_HIDDEN = 32
_POS_EMBED_SCALE = 0.1
_POS_EMBED_OMEGA0 = 100.0

TokenLayers = Sequence[torch.Tensor] | Mapping[int, torch.Tensor]


def uv_sincos_embedding(
    height: int,
    width: int,
    channels: int,
    aspect: float,
    device: torch.device | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Sin-cos embedding of a normalised UV grid (MoGe style), as VGGT's DPT uses it.

    The grid spans ``+-aspect/sqrt(aspect^2+1)`` horizontally and
    ``+-1/sqrt(aspect^2+1)`` vertically at pixel centres (endpoints
    ``+-span*(n-1)/n``), so its diagonal is resolution independent. The first
    half of the channels encodes u and the second v; each half is
    ``[sin(p*w_k), cos(p*w_k)]`` with ``w_k = 100^(-k/(channels/4))``.
    Coordinates are float32 (as the reference builds them) while the sines are
    taken in float64, which the reference does by promotion; the result is
    rounded to float32.

    Args:
        height, width: grid size h, w.
        channels: C, a multiple of 4.
        aspect: W/H of the image (equal to w/h for the grids used here).
        device: where to build it.
        scale: factor applied to the float32 values (before they are broadcast
            over the grid, so it costs nothing at high resolution).

    Returns:
        ``[C, h, w]`` float32, channels-last in memory (a permuted ``[h, w, C]``)
        to match the DPT head's feature maps.
    """
    if channels % 4:
        raise ValueError(f"UV embedding needs channels divisible by 4, got {channels}")
    diag = math.sqrt(aspect * aspect + 1.0)
    span_u, span_v = aspect / diag, 1.0 / diag
    u_end = span_u * (width - 1) / width
    v_end = span_v * (height - 1) / height
    u = torch.linspace(-u_end, u_end, width, dtype=torch.float32, device=device)
    v = torch.linspace(-v_end, v_end, height, dtype=torch.float32, device=device)

    quarter = channels // 4
    exponent = torch.arange(quarter, dtype=torch.float64, device=device) / quarter
    omega = 1.0 / _POS_EMBED_OMEGA0**exponent

    def encode(coord: torch.Tensor) -> torch.Tensor:
        angle = coord.double()[:, None] * omega[None, :]
        return torch.cat((angle.sin(), angle.cos()), dim=-1).float()

    u_emb = (encode(u) * scale)[None, :, :].expand(height, width, 2 * quarter)
    v_emb = (encode(v) * scale)[:, None, :].expand(height, width, 2 * quarter)
    return torch.cat((u_emb, v_emb), dim=-1).permute(2, 0, 1)


class _Scratch(nn.Module):
    """Container matching the checkpoint's ``scratch.*`` names."""

    def __init__(self, in_channels: Sequence[int], features: int, output_dim: int) -> None:
        super().__init__()
        self.layer1_rn = nn.Conv2d(in_channels[0], features, kernel_size=3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(in_channels[1], features, kernel_size=3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(in_channels[2], features, kernel_size=3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(in_channels[3], features, kernel_size=3, padding=1, bias=False)
        self.refinenet1 = FeatureFusionBlock(features, relu_skip=True)
        self.refinenet2 = FeatureFusionBlock(features, relu_skip=True)
        self.refinenet3 = FeatureFusionBlock(features, relu_skip=True)
        self.refinenet4 = FeatureFusionBlock(features, has_residual=False, relu_skip=True)
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, _HEAD_HIDDEN, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(_HEAD_HIDDEN, output_dim, kernel_size=1),
        )


class DPTHead(nn.Module):
    """VGGT depth / point-map head.

    Args:
        dim_in: token width 2C of the aggregator layers (2048 for VGGT-1B).
        patch_size: pixels per patch side (14).
        output_dim: output channels including the confidence channel (2 for
            depth, 4 for points).
        activation: "exp" (depth), "inv_log" (points, ``sign(y)*expm1(|y|)``)
            or "linear", applied to all but the last channel.
        conf_activation: "expp1" (``1 + exp(y)``) for the last channel.
        features: fusion width F.
        out_channels: per-level widths after the 1x1 projections.
        intermediate_layer_idx: the four aggregator layers read, fine to coarse.
        pos_embed: add the UV embedding (x0.1) per level and after upsampling.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        if conf_activation not in _CONF_ACTIVATIONS:
            raise ValueError(f"conf_activation must be one of {_CONF_ACTIVATIONS}, got {conf_activation!r}")
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("DPTHead needs exactly four levels")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)
        self.pos_embed = pos_embed

        self.norm = nn.LayerNorm(dim_in)  # eps 1e-5, unlike the DINOv2 norms
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, kernel_size=1) for c in out_channels)
        c0, c1, _, c3 = out_channels
        # Patch grid -> strides of 1/4, 1/2, 1 and 2 patches.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = _Scratch(out_channels, features, output_dim)

    def forward(
        self,
        aggregated_tokens: TokenLayers,
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense predictions for every frame.

        Args:
            aggregated_tokens: indexable by layer index (list or dict); entry
                ``i`` for each ``i`` in ``intermediate_layer_idx`` is
                ``[B, S, P, dim_in]`` with patch tokens from ``patch_start_idx``
                on, row-major over the (H/p, W/p) grid.
            images: ``[B, S, 3, H, W]``; only its shape is used.
            patch_start_idx: number of special tokens before the patches.
            frames_chunk_size: frames decoded at once (bounds memory);
                None or 0 decodes all frames together.

        Returns:
            preds ``[B, S, H, W, output_dim-1]`` (depth in scene units, or
            world points) and conf ``[B, S, H, W]`` (>= 1), in the head's
            dtype.
        """
        frames, height, width = images.shape[1], images.shape[-2], images.shape[-1]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of {self.patch_size}")
        layers = [aggregated_tokens[i] for i in self.intermediate_layer_idx]
        chunk = frames_chunk_size or frames
        preds, confs = [], []
        for start in range(0, frames, chunk):
            tokens = [t[:, start : start + chunk, patch_start_idx:].float() for t in layers]
            pred, conf = self._decode(tokens, (height, width))
            preds.append(pred)
            confs.append(conf)
        return torch.cat(preds, dim=1), torch.cat(confs, dim=1)

    def _decode(
        self, tokens: list[torch.Tensor], image_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one chunk: tokens ``4 x [B, s, Np, dim_in]`` -> ``[B, s, H, W, D-1]``, ``[B, s, H, W]``."""
        batch, frames = tokens[0].shape[:2]
        levels = self._levels(tokens, image_hw)
        fused = self._fuse(levels)
        out = resize_bilinear(fused, image_hw)
        out = self._add_pos_embed(out, image_hw)
        out = self.scratch.output_conv2(out)
        pred, conf = self._activate(out)
        return pred.unflatten(0, (batch, frames)), conf.unflatten(0, (batch, frames))

    def _levels(self, tokens: list[torch.Tensor], image_hw: tuple[int, int]) -> list[torch.Tensor]:
        """Per-level feature maps ``[N, c_i, h_i, w_i]`` (N = B*s) after the resize layers."""
        grid_h, grid_w = image_hw[0] // self.patch_size, image_hw[1] // self.patch_size
        levels = []
        for x, project, resize in zip(tokens, self.projects, self.resize_layers):
            # The heads run in the head's precision even when the backbone did not.
            x = self.norm(x.flatten(0, 1).to(self.norm.weight.dtype))
            x = x.transpose(1, 2).unflatten(2, (grid_h, grid_w))
            # Channels-last from here to the output: oneDNN's convolutions, the
            # resizes and the additions all keep it, and the convolutions run
            # faster on it than on NCHW on the CPU.
            x = project(x).contiguous(memory_format=torch.channels_last)
            x = self._add_pos_embed(x, image_hw)
            levels.append(resize(x))
        return levels

    def _fuse(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """RefineNet fusion, coarse to fine: ``[N, F/2, 8h, 8w]`` (h, w: patch grid)."""
        s = self.scratch
        rn1 = s.layer1_rn(levels[0])
        rn2 = s.layer2_rn(levels[1])
        rn3 = s.layer3_rn(levels[2])
        rn4 = s.layer4_rn(levels[3])
        out = s.refinenet4(rn4, size=rn3.shape[-2:])
        out = s.refinenet3(out, rn3, size=rn2.shape[-2:])
        out = s.refinenet2(out, rn2, size=rn1.shape[-2:])
        out = s.refinenet1(out, rn1)
        return s.output_conv1(out)

    def _add_pos_embed(self, x: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """``x [N, C, h, w]`` + 0.1 * UV embedding (aspect of the image)."""
        if not self.pos_embed:
            return x
        emb = uv_sincos_embedding(
            x.shape[-2], x.shape[-1], x.shape[1], image_hw[1] / image_hw[0], x.device, _POS_EMBED_SCALE
        )
        return x + emb.to(x.dtype)

    def _activate(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, D, H, W]`` logits -> preds ``[N, H, W, D-1]``, conf ``[N, H, W]``."""
        out = out.permute(0, 2, 3, 1)
        raw, conf_raw = out[..., :-1], out[..., -1]
        if self.activation == "exp":
            pred = raw.exp()
        elif self.activation == "inv_log":
            pred = raw.sign() * raw.abs().expm1()
        else:
            pred = raw
        return pred, 1.0 + conf_raw.exp()
