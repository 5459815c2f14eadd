"""Rendering of 3D Gaussians: ``render(gaussians, viewmats, Ks, width, height, ...)``.

Backends: gsplat (CUDA), a differentiable PyTorch rasterizer (any device) and a fast
C++ rasterizer for CPU inference; see :mod:`recon3d.render.api`.
"""
from recon3d.render.api import BACKENDS, MODES, RenderOutput, render, select_backend

__all__ = ["BACKENDS", "MODES", "RenderOutput", "render", "select_backend"]
