"""Ray-cast rendering of a World: colour, z-depth, normals, validity mask and object ids."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recon3d.geometry.cameras import pixel_grid
from recon3d.synth.camera import camera_rays
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


def _subpixel_offsets(supersample: int) -> np.ndarray:
    """``[k*k,2]`` offsets from a pixel centre of a regular ``k x k`` grid of sub-pixel
    centres (row-major), e.g. ``±0.25`` px for ``k = 2``; ``[[0,0]]`` for ``k = 1``."""
    steps = (np.arange(supersample) + 0.5) / supersample - 0.5
    dx, dy = np.meshgrid(steps, steps)
    return np.stack([dx.ravel(), dy.ravel()], axis=1)


def _colours(world: World, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, ids: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Float colours ``[N,3]`` (surface or sky) and normals ``[N,3]`` of traced rays."""
    hit = ids >= 0
    rgb = np.empty((len(dirs), 3), dtype=np.float32)
    normals = np.zeros((len(dirs), 3), dtype=np.float32)
    rgb[hit], normals[hit] = shade(world, ids[hit], origin + t[hit, None] * dirs[hit])
    rgb[~hit] = sky(dirs[~hit])
    return rgb, normals


def render_view(
    world: World, w2c: np.ndarray, K: np.ndarray, width: int, height: int, *, supersample: int = 1
) -> Renders:
    """Render one view: ``w2c`` ``[4,4]`` world-to-camera, ``K`` ``[3,3]`` in pixels.

    Depth, normal, mask and object id of a pixel always belong to the surface point its
    centre ray hits. With ``supersample = 1`` (the default) the colour does too: one ray
    per pixel, no anti-aliasing. ``supersample = k > 1`` makes the colour the mean of
    ``k x k`` rays on a regular sub-pixel grid (a box filter over the pixel, as a camera
    sensor integrates light), which band-limits textures and silhouettes; the geometry
    stays point-sampled at the pixel centre, so it is identical for every ``k``.
    Returns ``Renders`` whose arrays lack the leading view axis.
    """
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample}")
    centres = pixel_grid(height, width).reshape(-1, 2)
    origin, dirs, z_per_length = camera_rays(w2c, K, centres)
    t, ids = trace(world, origin, dirs)
    hit = ids >= 0
    rgb, normals = _colours(world, origin, dirs, t, ids)
    if supersample > 1:
        rgb = np.zeros_like(rgb)
        for offset in _subpixel_offsets(int(supersample)):
            _, sub_dirs, _ = camera_rays(w2c, K, centres + offset)
            sub_t, sub_ids = trace(world, origin, sub_dirs)
            rgb += _colours(world, origin, sub_dirs, sub_t, sub_ids)[0]
        rgb /= supersample**2
    depth = np.where(hit, t * z_per_length, 0.0).astype(np.float32)
    image = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Renders(
        image.reshape(height, width, 3),
        depth.reshape(height, width),
        normals.reshape(height, width, 3),
        hit.reshape(height, width),
        ids.reshape(height, width),
    )


def render_views(
    world: World, w2c: np.ndarray, K: np.ndarray, width: int, height: int, *, supersample: int = 1
) -> Renders:
    """Render ``S`` views: ``w2c`` ``[S,4,4]``, ``K`` ``[S,3,3]``; arrays stacked on axis 0.
    ``supersample`` as in `render_view`."""
    views = [render_view(world, w2c[i], K[i], width, height, supersample=supersample) for i in range(len(w2c))]
    return Renders(*(np.stack(arrays) for arrays in zip(*views)))
