"""A scene's geometry, materials and light, and the ray caster over it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.synth.primitives import T_MIN, Shape
from recon3d.synth.textures import NoiseField, Texture


@dataclass(frozen=True)
class SceneObject:
    """One textured shape; its index in ``World.objects`` is its object id."""

    shape: Shape
    texture: Texture


@dataclass(frozen=True)
class World:
    """Everything a renderer needs besides the cameras. World frame: z up, metres.

    Attributes:
        objects: textured shapes.
        noise: the seeded noise lattice shared by all textures.
        light_dir: ``[3]`` unit vector pointing towards the directional light.
        ambient: fraction of light that reaches every surface regardless of orientation.
        centre: ``[3]`` point cameras look towards (objects' centre or room centre).
        radius: radius of a sphere around ``centre`` holding the interesting content.
        room_half: ``[3]`` half sizes ``(hx, hy, hz)`` of a closed room spanning
            ``[-hx,hx] x [-hy,hy] x [0,2hz]``, or None for an open scene under a sky.
    """

    objects: tuple[SceneObject, ...]
    noise: NoiseField
    light_dir: np.ndarray
    ambient: float
    centre: np.ndarray
    radius: float
    room_half: np.ndarray | None


def trace(world: World, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays from ``origin`` ``[3]`` along unit ``dirs`` ``[N,3]`` (world frame).

    Returns:
        t: ``[N]`` float64 ray length to the nearest hit (metres), ``inf`` on a miss.
        ids: ``[N]`` int16 index of the object hit, -1 on a miss.
    """
    t = np.full(len(dirs), np.inf)
    ids = np.full(len(dirs), -1, dtype=np.int16)
    for k, obj in enumerate(world.objects):
        rays = _candidates(origin, dirs, obj.shape.bounding_sphere, t)
        tk = obj.shape.distance(origin, dirs[rays])
        nearer = tk < t[rays]
        t[rays[nearer]] = tk[nearer]
        ids[rays[nearer]] = k
    return t, ids


def _candidates(
    origin: np.ndarray, dirs: np.ndarray, sphere: tuple[np.ndarray, float] | None, t: np.ndarray
) -> np.ndarray:
    """Indices ``[M]`` of the rays that enter ``sphere`` before their current nearest hit ``t``.

    Exact culling: a shape inside the sphere can only be hit where the sphere is.
    """
    if sphere is None:
        return np.arange(len(dirs))
    centre, radius = sphere
    o = origin - centre
    b = dirs @ o
    disc = b * b - (o @ o - radius**2)
    with np.errstate(invalid="ignore"):
        root = np.sqrt(disc)
    return np.flatnonzero((disc >= 0) & (root - b > T_MIN) & (-b - root < t))


def shade(world: World, ids: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambertian colour and normals of hit ``points`` ``[M,3]`` on objects ``ids`` ``[M]``.

    Shading depends only on the surface point and the light, never on the camera, so a
    point has the same colour in every view.

    Returns:
        rgb: ``[M,3]`` float32 in [0,1].
        normals: ``[M,3]`` float32 unit world-frame normals.
    """
    rgb = np.zeros((len(ids), 3), dtype=np.float32)
    normals = np.zeros((len(ids), 3), dtype=np.float32)
    # Group the points by object with one sort instead of one full-length mask per object.
    order = np.argsort(ids, kind="stable")
    present, starts = np.unique(ids[order], return_index=True)
    for k, sel in zip(present, np.split(order, starts[1:])):
        obj = world.objects[k]
        n, coords = obj.shape.surface(points[sel])
        lambert = np.clip(n @ world.light_dir, 0.0, None)
        light = (world.ambient + (1.0 - world.ambient) * lambert).astype(np.float32)
        rgb[sel] = obj.texture.albedo(world.noise, coords) * light[:, None]
        normals[sel] = n
    return rgb, normals


def sky(dirs: np.ndarray) -> np.ndarray:
    """Colour ``[N,3]`` float32 of rays ``[N,3]`` that hit nothing: a pale-to-blue gradient."""
    up = np.clip(dirs[:, 2:3], 0.0, 1.0).astype(np.float32)
    horizon = np.array([0.85, 0.88, 0.92], dtype=np.float32)
    zenith = np.array([0.35, 0.55, 0.85], dtype=np.float32)
    return horizon + up * (zenith - horizon)
