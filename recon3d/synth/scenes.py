"""Seeded multi-view scenes with exact ground truth: ``make_scene`` and ``SynthScene``."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recon3d.geometry.cameras import look_at, pixel_grid
from recon3d.synth import paths
from recon3d.synth.camera import camera_rays, intrinsics_from_fov
from recon3d.synth.layouts import objects_world, room_world
from recon3d.synth.render import render_views
from recon3d.synth.world import World

KINDS = ("object", "room", "trajectory")
# Image sizes drawn when the caller leaves the size to the seed: about 256^2 pixels each.
RANDOM_SIZES_WH = ((256, 256), (320, 240), (240, 320), (352, 192), (304, 224), (224, 288))


@dataclass(eq=False)
class SynthScene:
    """Rendered views of a synthetic scene with its exact cameras.

    Attributes:
        images: ``[S,H,W,3]`` uint8 colours.
        depths: ``[S,H,W]`` float32 z-depth along each camera's optical axis (metres),
            0 where ``masks`` is False.
        normals: ``[S,H,W,3]`` float32 unit world-frame normals, 0 where ``masks`` is False.
        masks: ``[S,H,W]`` bool, True where the pixel sees a surface (False: sky).
        object_ids: ``[S,H,W]`` int16 index of the object seen, -1 where nothing is.
        extrinsics_w2c: ``[S,4,4]`` float64 world-to-camera, OpenCV axes; world z is up.
        intrinsics: ``[S,3,3]`` float64 K in pixels, continuous pixel convention
            (pixel ``(v,u)`` centred at ``(u+0.5, v+0.5)``).
        kind: one of ``KINDS``.
        seed: the seed that fixes the geometry, textures and cameras.
        names: one name per view (``"000"``, ``"001"``, ...).
        supersample: rays per pixel side that were averaged into each colour (1: one
            ray through the pixel centre; see `recon3d.synth.render.render_view`).
        textures: the texture family of the surfaces, a key of
            ``recon3d.synth.textures.TEXTURE_FAMILIES``.
    """

    images: np.ndarray
    depths: np.ndarray
    normals: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    extrinsics_w2c: np.ndarray
    intrinsics: np.ndarray
    kind: str
    seed: int
    names: list[str] = field(default_factory=list)
    supersample: int = 1
    textures: str = "classic"

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])

    def world_points(self) -> np.ndarray:
        """``[S,H,W,3]`` float64 world points (metres) of every pixel centre, 0 where masked."""
        width, height = self.size_wh
        points = np.zeros((*self.depths.shape, 3))
        for i in range(self.num_views):
            rays = camera_rays(self.extrinsics_w2c[i], self.intrinsics[i], pixel_grid(height, width).reshape(-1, 2))
            origin, dirs, z_per_length = rays
            length = self.depths[i].ravel().astype(np.float64) / z_per_length
            points[i] = (origin + length[:, None] * dirs).reshape(height, width, 3)
        return np.where(self.masks[..., None], points, 0.0)

    def world(self) -> World:
        """The scene's world, rebuilt from ``kind``, ``seed`` and ``textures`` (for exact ray casting)."""
        return build_world(self.kind, self.seed, self.textures)


def _check_kind(kind: str) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS.index(kind)


def build_world(kind: str, seed: int, textures: str = "classic") -> World:
    """The world of scene ``kind`` for ``seed`` with textures of the family ``textures``
    (a key of ``TEXTURE_FAMILIES``); independent of the number of views. The family changes
    the textures only: geometry, light and noise lattice are the same for every family.
    Raises ValueError for an unknown kind or family."""
    rng = np.random.default_rng([seed, _check_kind(kind), 0])
    if kind == "room" or (kind == "trajectory" and rng.random() < 0.5):
        return room_world(rng, textures)
    return objects_world(rng, textures)


def _cameras(
    kind: str, world: World, rng: np.random.Generator, n: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """``extrinsics_w2c [S,4,4]`` and ``intrinsics [S,3,3]`` with a seeded field of view."""
    in_room = world.room_half is not None
    fov_x = np.radians(rng.uniform(55, 85) if in_room else rng.uniform(40, 70))
    K = intrinsics_from_fov(fov_x, width, height)
    half_fov = float(np.arctan(0.5 * min(width, height) / K[0, 0]))
    if kind == "object":
        eyes, targets, rolls = paths.around_objects(world, rng, n, half_fov)
    elif kind == "room":
        eyes, targets, rolls = paths.inside_room(world, rng, n)
    elif in_room:
        eyes, targets, rolls = paths.room_trajectory(world, rng, n)
    else:
        eyes, targets, rolls = paths.orbit_trajectory(world, rng, n, half_fov)
    w2c = np.stack([look_at(e, t, roll=r) for e, t, r in zip(eyes, targets, rolls)])
    return w2c, np.repeat(K[None], n, axis=0)


def make_scene(
    kind: str,
    seed: int,
    num_views: int,
    size_wh: tuple[int, int] | None = (256, 256),
    *,
    supersample: int = 1,
    textures: str = "classic",
) -> SynthScene:
    """Render ``num_views`` views of the seeded scene ``kind`` (one of ``KINDS``).

    ``size_wh`` is the image (width, height) in pixels; None draws one from
    ``RANDOM_SIZES_WH`` with the seed, for varied aspect ratios. ``supersample = k``
    averages ``k x k`` rays per pixel into the colours (anti-aliased, band-limited images
    like a camera's, at k² the cost); the default 1 point-samples one ray per pixel
    centre. ``textures`` picks the texture family (a key of ``TEXTURE_FAMILIES``):
    ``"classic"`` (the default, the original patterns), ``"natural"`` (natural-image
    statistics) or ``"mixed"`` (both). Depths, normals, masks, ids and cameras depend on
    neither ``supersample`` nor ``textures``. The same arguments always give bitwise
    identical arrays. Raises ValueError for an unknown kind or texture family, or a
    ``supersample`` that is not a positive integer.
    """
    world = build_world(kind, seed, textures)
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    rng = np.random.default_rng([seed, KINDS.index(kind), 1])
    # Drawn even when unused, so that the cameras do not depend on how the size was given.
    drawn_size = RANDOM_SIZES_WH[rng.integers(len(RANDOM_SIZES_WH))]
    width, height = drawn_size if size_wh is None else size_wh
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    w2c, K = _cameras(kind, world, rng, num_views, width, height)
    renders = render_views(world, w2c, K, width, height, supersample=supersample)
    names = [f"{i:03d}" for i in range(num_views)]
    return SynthScene(**renders._asdict(), extrinsics_w2c=w2c, intrinsics=K, kind=kind, seed=seed, names=names,
                      supersample=int(supersample), textures=textures)
