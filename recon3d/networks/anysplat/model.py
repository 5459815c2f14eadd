"""The AnySplat network: VGGT's aggregator, camera and depth heads, a DPT Gaussian head and voxel fusion.

Parameter names equal the released ``lhjiang/anysplat`` checkpoint's (``encoder.*``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from recon3d.geometry.cameras import pose_encoding_to_cameras, unproject_depth
from recon3d.networks.anysplat.adapter import adapt_gaussians
from recon3d.networks.anysplat.config import AnySplatConfig
from recon3d.networks.anysplat.fusion import fuse_batch
from recon3d.networks.anysplat.gs_head import GSHead
from recon3d.networks.precision import full_fp32
from recon3d.networks.vggt.aggregator import Aggregator
from recon3d.networks.vggt.camera_head import CameraHead
from recon3d.networks.vggt.dpt_head import DPTHead

# Frozen teacher copies (distill=true training layout): never used at inference, skipped when loading.
SKIPPED_CHECKPOINT_PREFIXES = ("encoder.distill_aggregator.", "encoder.distill_camera_head.",
                               "encoder.distill_depth_head.")
# The reference casts its aggregator to bf16, which rounds its ImageNet buffers too.
BF16_IMAGENET_MEAN = (0.484375, 0.455078125, 0.40625)
BF16_IMAGENET_STD = (0.228515625, 0.2236328125, 0.224609375)


class AnySplatAggregator(Aggregator):
    """VGGT's aggregator normalising with the bf16-rounded ImageNet constants AnySplat uses."""

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """``[B,S,3,H,W]`` in [0,1] → normalised ``[B*S,3,H,W]`` (bf16-rounded mean and std)."""
        mean = torch.tensor(BF16_IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(BF16_IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        return ((images - mean) / std).flatten(0, 1)


def camera_to_world(extrinsics: torch.Tensor) -> torch.Tensor:
    """w2c ``[..., 3, 4]`` → c2w ``[..., 4, 4]`` (a general inverse, as the reference takes it)."""
    bottom = extrinsics.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(extrinsics.shape[:-2] + (1, 4))
    return torch.linalg.inv(torch.cat((extrinsics, bottom), dim=-2))


class _Encoder(nn.Module):
    """Container matching the checkpoint's ``encoder.*`` names."""

    def __init__(self, config: AnySplatConfig):
        super().__init__()
        vggt, gs = config.vggt, config.gs_head
        dim = 2 * vggt.embed_dim
        self.aggregator = AnySplatAggregator(vggt)
        self.camera_head = CameraHead(dim, vggt.camera_head)
        self.depth_head = DPTHead(dim, vggt.patch_size, output_dim=2, activation="exp", conf_activation="expp1",
                                  features=vggt.dpt.features, out_channels=vggt.dpt.out_channels,
                                  intermediate_layer_idx=vggt.dpt.intermediate_layer_idx)
        self.gaussian_param_head = GSHead(dim, vggt.patch_size, config.gs_channels, gs.features, gs.out_channels,
                                          gs.intermediate_layer_idx, gs.head_features_2)


class AnySplat(nn.Module):
    """Feed-forward 3D Gaussian splatting from unposed images (``AnySplat()`` is the released network)."""

    def __init__(self, config: AnySplatConfig | None = None):
        super().__init__()
        self.config = config or AnySplatConfig()
        self.encoder = _Encoder(self.config)
        # Frames per DPT chunk: bounds the heads' activation memory on long sequences.
        self.frames_chunk_size: int | None = 8
        # Autocast dtype of the aggregator (None: fp32), set by `recon3d.zoo.load_model` from
        # the precision; the heads, the fusion and the adapter always run in full fp32.
        self.backbone_dtype: torch.dtype | None = None

    def backbone_modules(self) -> list[nn.Module]:
        """What runs in the backbone precision (`recon3d.networks.precision.apply_precision`)."""
        return [self.encoder.aggregator]

    def load_checkpoint(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load released or parity weights strictly, in fp32; return the skipped (distill teacher) keys.

        The released aggregator is stored in bf16; it is widened here, so every parameter stays
        fp32 (the reference's bf16 autocast is a runtime choice, not a property of the weights).
        """
        skipped = [k for k in state_dict if k.startswith(SKIPPED_CHECKPOINT_PREFIXES)]
        kept = {k: (v.float() if v.is_floating_point() else v) for k, v in state_dict.items()
                if not k.startswith(SKIPPED_CHECKPOINT_PREFIXES)}
        self.load_state_dict(kept, strict=True, assign=any(p.is_meta for p in self.parameters()))
        return skipped

    def forward(self, images: torch.Tensor) -> dict[str, object]:
        """Predict from ``images [B,S,3,H,W]`` (or ``[S,3,H,W]``) in [0,1], H and W multiples of 14.

        Returns (fp32):
            pose_enc ``[B,S,9]``, pose_enc_list (per iteration), extrinsics ``[B,S,3,4]`` (w2c),
            intrinsics ``[B,S,3,3]`` (pixels), extrinsics_c2w ``[B,S,4,4]``, depth ``[B,S,H,W,1]``,
            depth_conf ``[B,S,H,W]``, world_points ``[B,S,H,W,3]``, gaussian_params ``[B,S,C,H,W]`` (raw),
            voxels (one `VoxelFusion` per batch element) and gaussians: means, scales, rotations (x,y,z,w),
            harmonics ``[B,n,3,K]``, opacities, covariances, padded to n = max voxel count, in voxel order.
        """
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [S,3,H,W] or [B,S,3,H,W], got {tuple(images.shape)}")
        config, enc = self.config, self.encoder
        images = images.float()
        height, width = images.shape[-2:]
        # The reference feeds its bf16 aggregator a bf16 copy of the image; the rounding shows at 1e-3.
        backbone = (torch.autocast(device_type=images.device.type, dtype=self.backbone_dtype)
                    if self.backbone_dtype is not None else contextlib.nullcontext())
        with backbone:
            layers = enc.aggregator(images.to(torch.bfloat16).float(), keep_layers=config.layers_read_by_heads)
        start = enc.aggregator.patch_start_idx
        with full_fp32(images.device):
            pose_list = enc.camera_head(layers, config.vggt.depth - 1)
            depth, depth_conf = enc.depth_head(layers, images, start, self.frames_chunk_size)
            extrinsics, intrinsics = pose_encoding_to_cameras(pose_list[-1], (height, width),
                                                              focal_eps=config.intrinsics_eps)
            # AnySplat unprojects at integer pixel indices, not pixel centres.
            points = unproject_depth(depth.flatten(0, 1), extrinsics.flatten(0, 1), intrinsics.flatten(0, 1),
                                     pixel_centre=0.0).unflatten(0, depth.shape[:2])
            params = enc.gaussian_param_head(layers, images, start, self.frames_chunk_size)
            voxels, fused_points, fused_features = fuse_batch(points, params, config.voxel_size)
            gaussians = adapt_gaussians(fused_points, fused_features, config.sh_degree, config.opacity_mapping,
                                        config.global_step)
        return {
            "pose_enc": pose_list[-1],
            "pose_enc_list": pose_list,
            "extrinsics": extrinsics,
            "intrinsics": intrinsics,
            "extrinsics_c2w": camera_to_world(extrinsics),
            "depth": depth,
            "depth_conf": depth_conf,
            "world_points": points,
            "gaussian_params": params,
            "voxels": voxels,
            "gaussians": gaussians,
        }
