"""VGGT (Visual Geometry Grounded Transformer), re-implemented to load official weights."""
from recon3d.networks.vggt.config import VGGTConfig
from recon3d.networks.vggt.model import VGGT

__all__ = ["VGGT", "VGGTConfig"]
