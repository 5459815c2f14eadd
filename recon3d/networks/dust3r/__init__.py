"""DUSt3R two-view network (weight-compatible with the released checkpoints)."""
from recon3d.networks.dust3r.config import DPTConfig, DUSt3RConfig, OutputMode
from recon3d.networks.dust3r.model import DUSt3R

__all__ = ["DPTConfig", "DUSt3R", "DUSt3RConfig", "OutputMode"]
