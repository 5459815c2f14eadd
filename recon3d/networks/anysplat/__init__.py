"""AnySplat (feed-forward Gaussian splatting on a VGGT backbone), re-implemented to load official weights."""
from recon3d.networks.anysplat.config import AnySplatConfig
from recon3d.networks.anysplat.model import AnySplat

__all__ = ["AnySplat", "AnySplatConfig"]
