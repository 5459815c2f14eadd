"""Procedural multi-view scenes with exact ground truth (cameras, depth, normals, masks).

``make_scene(kind, seed, num_views)`` renders a seeded scene (``textures=`` picks a family
of ``TEXTURE_FAMILIES``); ``write_scene`` and ``read_scene`` store it on disk;
``make_sample_assets`` writes the small demo scenes.
"""
from recon3d.synth.scene_io import make_sample_assets, read_scene, write_scene
from recon3d.synth.scenes import KINDS, SynthScene, build_world, make_scene
from recon3d.synth.textures import TEXTURE_FAMILIES

__all__ = [
    "KINDS",
    "TEXTURE_FAMILIES",
    "SynthScene",
    "build_world",
    "make_sample_assets",
    "make_scene",
    "read_scene",
    "write_scene",
]
