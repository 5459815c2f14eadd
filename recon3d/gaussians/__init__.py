"""3D Gaussians from predictions: pixel-aligned construction, pixel filters, fusion, pruning."""
from recon3d.gaussians.filters import (
    best_view,
    black_background,
    confidence_percentile,
    depth_edges,
    frame_selection,
    sky_mask,
    white_background,
)
from recon3d.gaussians.from_prediction import gaussians_from_prediction
from recon3d.gaussians.fusion import fuse_voxels, prune_to_count, select_gaussians

__all__ = [
    "best_view",
    "black_background",
    "confidence_percentile",
    "depth_edges",
    "frame_selection",
    "fuse_voxels",
    "gaussians_from_prediction",
    "prune_to_count",
    "select_gaussians",
    "sky_mask",
    "white_background",
]
