"""DUSt3R (Wang et al., CVPR 2024): a two-view network predicting both views' point maps
in the first view's camera frame.

A shared ViT encoder with 2D RoPE embeds each image once; two decoders (one per view)
alternate self-attention and cross-attention to the other view's previous layer; a
head per view turns tokens into points and confidences. Parameter names and shapes
are those of the released checkpoints, so they load with ``strict=True``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from recon3d.networks.dust3r.blocks import DecoderBlock
from recon3d.networks.dust3r.config import DUSt3RConfig
from recon3d.networks.dust3r.heads import build_head, postprocess
from recon3d.networks.layers.block import Block
from recon3d.networks.layers.rope2d import RopeTables, RotaryEmbedding2D
from recon3d.networks.precision import full_fp32


class PatchEmbed(nn.Module):
    """``[B, 3, H, W]`` → ``[B, (H/p)*(W/p), dim]`` tokens, row-major."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return self.proj(images).flatten(2).transpose(1, 2)


def grid_positions(batch: int, grid_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``[batch, h*w, 2]`` int64 (row, col) of each token, from 0, row-major."""
    rows, cols = torch.meshgrid(torch.arange(grid_hw[0], device=device), torch.arange(grid_hw[1], device=device),
                                indexing="ij")
    return torch.stack([rows, cols], dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


class DUSt3R(nn.Module):
    """Asymmetric two-view network; ``model(view1, view2) -> (res1, res2)``.

    A view is a dict with ``"img"``: ``[B, 3, H, W]`` in [-1, 1] (H, W multiples of the
    patch size; every image of a batch the same size, portrait or landscape as is).
    ``res1 = {"pts3d": [B,H,W,3], "conf": [B,H,W]}`` holds view 1's points in its own
    camera frame; ``res2 = {"pts3d_in_other_view": [B,H,W,3], "conf": [B,H,W]}`` holds
    view 2's points in view 1's frame. Confidences are ``1 + exp(x)``.
    """

    def __init__(self, config: DUSt3RConfig | None = None):
        super().__init__()
        self.config = config = config or DUSt3RConfig()
        # Registration order follows the checkpoints' key order. mask_token belongs to
        # CroCo's pretraining and is never used here, but the checkpoints hold it.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.dec_embed_dim))
        self.patch_embed = PatchEmbed(config.patch_size, config.enc_embed_dim)
        self.enc_blocks = nn.ModuleList(
            Block(config.enc_embed_dim, config.enc_num_heads, config.mlp_ratio, norm_eps=config.norm_eps)
            for _ in range(config.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(config.enc_embed_dim, eps=config.norm_eps)
        self.decoder_embed = nn.Linear(config.enc_embed_dim, config.dec_embed_dim)

        def decoder() -> nn.ModuleList:
            return nn.ModuleList(
                DecoderBlock(config.dec_embed_dim, config.dec_num_heads, config.mlp_ratio, config.norm_eps)
                for _ in range(config.dec_depth)
            )

        self.dec_blocks = decoder()
        self.dec_norm = nn.LayerNorm(config.dec_embed_dim, eps=config.norm_eps)
        self.dec_blocks2 = decoder()
        self.downstream_head1 = build_head(config)
        self.downstream_head2 = build_head(config)
        self.rope = RotaryEmbedding2D(config.rope_freq)
        # Autocast dtype of the encoder and decoders (None = fp32); see recon3d.networks.precision.
        self.backbone_dtype: torch.dtype | None = None

    def backbone_modules(self) -> list[nn.Module]:
        """What runs in the backbone precision (`recon3d.networks.precision.apply_precision`)."""
        return [self.patch_embed, self.enc_blocks, self.enc_norm, self.decoder_embed, self.dec_blocks,
                self.dec_blocks2, self.dec_norm]

    def _backbone_context(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.backbone_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.backbone_dtype)

    # ------------------------------------------------------------ parts

    def grid_size(self, images: torch.Tensor) -> tuple[int, int]:
        return images.shape[-2] // self.config.patch_size, images.shape[-1] // self.config.patch_size

    def rope_tables(self, batch: int, grid_hw: tuple[int, int], head_dim: int, device: torch.device) -> RopeTables:
        return self.rope.tables(grid_positions(batch, grid_hw, device), head_dim)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` in [-1, 1] → encoder tokens ``[B, h*w, enc_dim]`` (normed)."""
        grid = self.grid_size(images)
        rope = self.rope_tables(1, grid, self.config.enc_embed_dim // self.config.enc_num_heads, images.device)
        with self._backbone_context(images.device):
            tokens = self.patch_embed(images)
            for block in self.enc_blocks:
                tokens = block(tokens, rope)
            return self.enc_norm(tokens)

    def decode(
        self, enc1: torch.Tensor, enc2: torch.Tensor, grid_hw: tuple[int, int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Two decoder streams over encoder tokens ``[B, h*w, enc_dim]`` of views 1 and 2.

        Returns, per view, ``[encoder output, decoder layer 1, ..., layer depth]`` with
        ``dec_norm`` applied to the last layer only (what the DPT head hooks into).
        """
        rope = self.rope_tables(1, grid_hw, self.config.dec_embed_dim // self.config.dec_num_heads, enc1.device)
        with self._backbone_context(enc1.device):
            x1, x2 = self.decoder_embed(enc1), self.decoder_embed(enc2)
            layers1, layers2 = [enc1], [enc2]
            for block1, block2 in zip(self.dec_blocks, self.dec_blocks2):
                x1, x2 = block1(x1, x2, rope, rope), block2(x2, x1, rope, rope)
                layers1.append(x1)
                layers2.append(x2)
            layers1[-1], layers2[-1] = self.dec_norm(x1), self.dec_norm(x2)
        return layers1, layers2

    def heads(
        self, layers1: list[torch.Tensor], layers2: list[torch.Tensor], grid_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs ``[B, 4, H, W]`` for both views, computed in fp32."""
        with full_fp32(layers1[0].device):
            raw1 = self.downstream_head1([t.float() for t in layers1], grid_hw)
            raw2 = self.downstream_head2([t.float() for t in layers2], grid_hw)
        return raw1, raw2

    def pair_outputs(self, raw1: torch.Tensor, raw2: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Post-processed ``(res1, res2)`` from raw head outputs."""
        res1 = postprocess(raw1, self.config)
        out2 = postprocess(raw2, self.config)
        return res1, {"pts3d_in_other_view": out2["pts3d"], "conf": out2["conf"]}

    # ------------------------------------------------------------ forward

    def forward(self, view1: dict[str, Any], view2: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        img1, img2 = view1["img"], view2["img"]
        if img1.shape != img2.shape:
            raise ValueError(f"both views of a batch must have the same shape, got {tuple(img1.shape)} and {tuple(img2.shape)}")
        grid = self.grid_size(img1)
        # One encoder pass over both views (the encoder is shared).
        enc1, enc2 = self.encode(torch.cat([img1, img2])).chunk(2)
        layers1, layers2 = self.decode(enc1, enc2, grid)
        return self.pair_outputs(*self.heads(layers1, layers2, grid))

    # ------------------------------------------------------------ weights

    def alias_keys(self) -> dict[str, str]:
        """State-dict names that repeat another name's tensor (DPT heads): alias → target."""
        aliases = {}
        for head in ("downstream_head1", "downstream_head2"):
            if self.config.head_type == "dpt":
                for k in range(4):
                    aliases[f"{head}.dpt.scratch.layer_rn.{k}.weight"] = f"{head}.dpt.scratch.layer{k + 1}_rn.weight"
        return aliases

    def load_checkpoint(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load a released state dict strictly (``.pth`` with both alias names, or the
        Hugging Face safetensors without them); aliases must agree with their targets.
        Returns the skipped keys (none: every key of a DUSt3R checkpoint is used)."""
        state_dict = dict(state_dict)
        for alias, target in self.alias_keys().items():
            # A loader may already hold the target in the network's precision (bf16 on the
            # CPU); the alias, not a network name, arrives as stored: compare them alike.
            if alias in state_dict and target in state_dict and not torch.equal(
                    state_dict[alias].to(state_dict[target].dtype), state_dict[target]):
                raise RuntimeError(f"'{alias}' differs from '{target}', which it should repeat")
            if target in state_dict:
                state_dict[alias] = state_dict[target]
        self.load_state_dict(state_dict, strict=True, assign=any(p.is_meta for p in self.parameters()))
        return []

    def init_weights(self, seed: int = 0) -> DUSt3R:
        """Deterministic random weights (truncated-normal linears, as in ViT training code)."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if param.dim() >= 2:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
                elif name.endswith(".weight") and "norm" in name:
                    param.fill_(1.0)
                else:
                    param.zero_()
        return self
