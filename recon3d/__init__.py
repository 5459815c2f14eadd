"""recon3d: feed-forward 3D reconstruction from unposed photos."""
from recon3d.types import Gaussians, Prediction

__all__ = ["Gaussians", "Prediction", "load_model", "reconstruct"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Keep `import recon3d` light: torch and the networks load on first use.
    if name == "load_model":
        from recon3d.zoo import load_model

        return load_model
    if name == "reconstruct":
        from recon3d.pipeline import reconstruct

        return reconstruct
    raise AttributeError(name)
