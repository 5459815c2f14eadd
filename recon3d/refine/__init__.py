"""Geometric refinement on top of any network: feature tracks and bundle adjustment."""
from recon3d.refine.refine import (
    REFINE_METHODS,
    RefineOptions,
    refine_prediction,
    refinement_summary,
)

__all__ = ["REFINE_METHODS", "RefineOptions", "refine_prediction", "refinement_summary"]
