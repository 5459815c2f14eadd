"""Ray-cast rendering of a World: colour, z-depth, normals, validity mask and object ids."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recon3d.synth.camera import camera_rays, pixel_centres
from recon3d.synth.world import World, shade, sky, trace


class Renders(NamedTuple):
    """Per-view renders of ``S`` views of ``H x W`` pixels.

    Attributes:
        images: ``[S,H,W,3]`` uint8 sRGB-like colours.
        depths: ``[S,H,W]`` float32 z-depth along the optical axis (metres), 0 where
            ``masks`` is False.
        normals: ``[S,H,W,3]`` float32 unit world-frame normals, 0 where ``masks`` is False.
        masks: ``[S,H,W]`` bool, True where the pixel's ray hits a surface.
        object_ids: ``[S,H,W]`` int16 index into ``World.objects``, -1 on a miss.
    """

    images: np.ndarray
    depths: np.ndarray
    normals: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray


def render_view(world: World, w2c: np.ndarray, K: np.ndarray, width: int, height: int) -> Renders:
    """Render one view: ``w2c`` ``[4,4]`` world-to-camera, ``K`` ``[3,3]`` in pixels.

    One ray per pixel centre, no anti-aliasing, so every pixel's depth, normal and colour
    belong to exactly the surface point its centre ray hits.
    Returns ``Renders`` whose arrays lack the leading view axis.
    """
    origin, dirs, z_per_length = camera_rays(w2c, K, pixel_centres(width, height))
    t, ids = trace(world, origin, dirs)
    hit = ids >= 0
    rgb = np.empty((len(dirs), 3), dtype=np.float32)
    normals = np.zeros((len(dirs), 3), dtype=np.float32)
    rgb[hit], normals[hit] = shade(world, ids[hit], origin + t[hit, None] * dirs[hit])
    rgb[~hit] = sky(dirs[~hit])
    depth = np.where(hit, t * z_per_length, 0.0).astype(np.float32)
    image = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Renders(
        image.reshape(height, width, 3),
        depth.reshape(height, width),
        normals.reshape(height, width, 3),
        hit.reshape(height, width),
        ids.reshape(height, width),
    )


def render_views(world: World, w2c: np.ndarray, K: np.ndarray, width: int, height: int) -> Renders:
    """Render ``S`` views: ``w2c`` ``[S,4,4]``, ``K`` ``[S,3,3]``; arrays stacked on axis 0."""
    views = [render_view(world, w2c[i], K[i], width, height) for i in range(len(w2c))]
    return Renders(*(np.stack(arrays) for arrays in zip(*views)))
