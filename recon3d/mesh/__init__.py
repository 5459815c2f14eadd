"""Meshes from predictions: TSDF fusion, screened Poisson, per-view grid triangulation."""
from recon3d.mesh.cleanup import decimate, mesh_stats, remove_small_components
from recon3d.mesh.extract import MESH_METHODS, MeshOptions, extract_mesh
from recon3d.mesh.grid import grid_triangulation
from recon3d.mesh.poisson import poisson_surface
from recon3d.mesh.tsdf import rendered_depth, tsdf_fusion

__all__ = [
    "MESH_METHODS", "MeshOptions", "extract_mesh", "tsdf_fusion", "rendered_depth", "poisson_surface",
    "grid_triangulation", "remove_small_components", "decimate", "mesh_stats",
]
