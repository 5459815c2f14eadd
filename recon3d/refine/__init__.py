"""Geometric refinement on top of any network: feature tracks and bundle adjustment."""
__all__ = ["REFINE_METHODS", "RefineOptions", "refine_prediction", "refinement_summary"]


def __getattr__(name: str):
    # Lazy, so that SIFT worker processes (recon3d.refine.sift) start without torch.
    if name in __all__:
        from recon3d.refine import refine

        return getattr(refine, name)
    raise AttributeError(name)
