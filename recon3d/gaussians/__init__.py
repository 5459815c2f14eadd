"""3D Gaussians from predictions: pixel-aligned construction, fusion, pruning.

The pixel masks that choose which pixels become Gaussians are in `recon3d.masks`.
"""
from recon3d.gaussians.from_prediction import gaussians_from_prediction
from recon3d.gaussians.fusion import fuse_voxels, prune_to_count, select_gaussians

__all__ = [
    "fuse_voxels",
    "gaussians_from_prediction",
    "prune_to_count",
    "select_gaussians",
]
