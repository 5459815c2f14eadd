"""The VGGT network: aggregator plus camera, depth and point-map heads."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from recon3d.networks.precision import full_fp32
from recon3d.networks.token_merging import MergeConfig
from recon3d.networks.vggt.aggregator import Aggregator
from recon3d.networks.vggt.camera_head import CameraHead
from recon3d.networks.vggt.config import VGGTConfig
from recon3d.networks.vggt.descriptor_head import DescriptorHead
from recon3d.networks.vggt.dpt_head import DPTHead

# The official checkpoint holds a point-tracking head that recon3d does not run;
# its weights are skipped by this prefix when loading, and nothing else is.
SKIPPED_CHECKPOINT_PREFIXES = ("track_head.",)


class VGGT(nn.Module):
    """Pose-free multi-view network: images → cameras, depth and point maps.

    ``VGGT()`` has the VGGT-1B architecture; parameter names and shapes equal the
    official checkpoint's, so ``load_checkpoint`` loads it strictly.
    """

    def __init__(self, config: VGGTConfig | None = None, token_merging: MergeConfig | None = None):
        super().__init__()
        self.config = config = config or VGGTConfig()
        dim = 2 * config.embed_dim
        dpt = config.dpt
        self.aggregator = Aggregator(config)
        self.aggregator.token_merging = token_merging
        self.camera_head = CameraHead(dim, config.camera_head) if config.enable_camera else None
        self.point_head = (
            DPTHead(dim, config.patch_size, output_dim=4, activation="inv_log",
                    conf_activation="expp1", features=dpt.features,
                    out_channels=dpt.out_channels, intermediate_layer_idx=dpt.intermediate_layer_idx)
            if config.enable_point else None
        )
        self.depth_head = (
            DPTHead(dim, config.patch_size, output_dim=2, activation="exp",
                    conf_activation="expp1", features=dpt.features,
                    out_channels=dpt.out_channels, intermediate_layer_idx=dpt.intermediate_layer_idx)
            if config.enable_depth else None
        )
        self.descriptor_head = (DescriptorHead(dim, config.patch_size, config.descriptor_dim)
                                if config.enable_descriptor else None)
        # Frames per DPT chunk: bounds the heads' activation memory. At full resolution a
        # chunk holds several fp32 maps of 128 channels per frame; 2 frames instead of
        # VGGT's 8 took 1.5 GB off VGGT-1B's peak at 8 frames on the CPU, in the same
        # time (benchmarks/RESULTS.md), and the outputs do not depend on it.
        self.frames_chunk_size: int | None = 2
        # Autocast dtype of the aggregator (None = fp32); see recon3d.networks.precision.
        self.backbone_dtype: torch.dtype | None = None

    def set_token_merging(self, config: MergeConfig | None) -> VGGT:
        """Merge tokens in global attention with ``config`` (None: dense attention)."""
        self.aggregator.token_merging = config
        return self

    def init_weights(self, seed: int | None = None) -> VGGT:
        """Fresh random weights for training from scratch (ViT-style truncated normal)."""
        generator_ctx = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
        with generator_ctx:
            if seed is not None:
                torch.manual_seed(seed)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            for name, param in self.named_parameters():
                if name.endswith(("camera_token", "register_token", "register_tokens", "cls_token")):
                    nn.init.normal_(param, std=1e-6 if "aggregator." in name and "patch_embed" not in name else 0.02)
                elif name.endswith("pos_embed"):
                    nn.init.trunc_normal_(param, std=0.02)
        return self

    def load_checkpoint(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load official or recon3d weights strictly; return the skipped keys.

        Only keys under ``SKIPPED_CHECKPOINT_PREFIXES`` are skipped; every other key
        must exist with the right shape and every parameter must be present.
        """
        skipped = [k for k in state_dict if k.startswith(SKIPPED_CHECKPOINT_PREFIXES)]
        kept = {k: v for k, v in state_dict.items() if not k.startswith(SKIPPED_CHECKPOINT_PREFIXES)}
        self.load_state_dict(kept, strict=True, assign=any(p.is_meta for p in self.parameters()))
        return skipped

    def backbone_modules(self) -> list[nn.Module]:
        """What runs in the backbone precision (`recon3d.networks.precision.apply_precision`)."""
        return [self.aggregator]

    def _backbone_context(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.backbone_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.backbone_dtype)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Predict from ``images [S,3,H,W]`` or ``[B,S,3,H,W]`` in [0,1] (H, W multiples of 14).

        Returns (all fp32):
            pose_enc ``[B,S,9]`` and pose_enc_list (one per camera-head iteration),
            depth ``[B,S,H,W,1]``, depth_conf ``[B,S,H,W]``,
            world_points ``[B,S,H,W,3]``, world_points_conf ``[B,S,H,W]``,
            descriptors ``[B,S,H/4,W/4,D]`` (unit length), images.
        Keys of disabled heads are absent.
        """
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [S,3,H,W] or [B,S,3,H,W], got {tuple(images.shape)}")
        config = self.config
        with self._backbone_context(images.device):
            layers = self.aggregator(images, keep_layers=config.layers_read_by_heads)
        # The kept layers stay in the backbone's dtype: each head casts what it reads, chunk
        # by chunk (casting them all at once costs ~17 GB at 500 frames).
        images = images.float()
        predictions: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        # The heads are small next to the backbone and sensitive to precision: fp32 always.
        with full_fp32(images.device):
            start = self.aggregator.patch_start_idx
            if self.camera_head is not None:
                encodings = self.camera_head(layers, config.depth - 1)
                predictions["pose_enc"] = encodings[-1]
                predictions["pose_enc_list"] = encodings
            if self.depth_head is not None:
                depth, conf = self.depth_head(layers, images, start, self.frames_chunk_size)
                predictions["depth"], predictions["depth_conf"] = depth, conf
            if self.point_head is not None:
                points, conf = self.point_head(layers, images, start, self.frames_chunk_size)
                predictions["world_points"], predictions["world_points_conf"] = points, conf
            if self.descriptor_head is not None:
                predictions["descriptors"] = self.descriptor_head(images, layers[config.depth - 1], start)
        predictions["images"] = images
        return predictions
