"""Shapes with exact ray intersection, vectorised over all rays of one camera.

Every shape answers two questions:

* ``distance(origin, dirs)``: ray length ``t`` (scene units) to the first hit in front of
  ``origin`` along each unit direction, ``inf`` on a miss. ``origin`` is ``[3]`` (all rays
  of a pinhole camera share it), ``dirs`` is ``[N,3]`` unit vectors.
* ``bounding_sphere``: ``(centre [3], radius)`` enclosing the shape, or None, so that a
  caster can skip rays that cannot hit it.
* ``surface(points)``: for ``[M,3]`` points on the shape, the unit outward normals ``[M,3]``
  (world frame) and texture coordinates ``[M,3]`` (metres, in the shape's own frame, so a
  texture moves with the shape and looks the same from every camera).

``rotation`` matrices hold the shape's local axes as columns: ``world = rotation @ local``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Hits closer than this (scene units) are ignored, so a ray never re-hits its own origin.
T_MIN = 1e-6


def rotation_zyx(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """``[3,3]`` rotation: roll about x, then pitch about y, then yaw about z (radians)."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    cx, sx = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return rz @ ry @ rx


def _front(t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Keep ``t`` where ``valid`` and in front of the origin, ``inf`` elsewhere."""
    return np.where(valid & (t > T_MIN), t, np.inf)


@dataclass(frozen=True)
class Quad:
    """Rectangle through ``centre`` spanned by unit axes ``u``, ``v``; normal ``u x v``.

    ``half_u``, ``half_v`` are half side lengths (metres). Seen from both sides, but its
    normal is fixed, so a quad should face the cameras (room walls face inward).
    """

    centre: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half_u: float
    half_v: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.u, self.v)

    @property
    def bounding_sphere(self) -> None:
        """None: quads are large (walls, ground), so a bounding test would rarely cull."""
        return None

    def distance(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        rel = origin - self.centre
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -(rel @ self.normal) / (dirs @ self.normal)
        a = rel @ self.u + t * (dirs @ self.u)
        b = rel @ self.v + t * (dirs @ self.v)
        return _front(t, (np.abs(a) <= self.half_u) & (np.abs(b) <= self.half_v))

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - self.centre
        coords = np.stack([rel @ self.u, rel @ self.v, np.zeros(len(points))], axis=1)
        return np.broadcast_to(self.normal, points.shape).copy(), coords


@dataclass(frozen=True)
class Box:
    """Box of half sizes ``half`` ``[3]`` (metres, local axes) centred at ``centre``."""

    centre: np.ndarray
    half: np.ndarray
    rotation: np.ndarray

    @property
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return self.centre, float(np.linalg.norm(self.half))

    def distance(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o = (origin - self.centre) @ self.rotation
        d = dirs @ self.rotation
        # Slab method: the ray is inside the box between the last entry and the first exit.
        t_in, t_out = np.full(len(dirs), -np.inf), np.full(len(dirs), np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis in range(3):
                t1 = (-self.half[axis] - o[axis]) / d[:, axis]
                t2 = (self.half[axis] - o[axis]) / d[:, axis]
                t_in = np.maximum(t_in, np.minimum(t1, t2))
                t_out = np.minimum(t_out, np.maximum(t1, t2))
        return _front(t_in, t_in <= t_out)

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = (points - self.centre) @ self.rotation
        # The face hit is the one whose plane the point lies on: largest |local| / half.
        axis = np.argmax(np.abs(local) / self.half, axis=1)
        rows = np.arange(len(points))
        normal_local = np.zeros_like(local)
        normal_local[rows, axis] = np.sign(local[rows, axis])
        return normal_local @ self.rotation.T, local


@dataclass(frozen=True)
class Sphere:
    """Sphere of ``radius`` (metres); ``rotation`` only orients its texture."""

    centre: np.ndarray
    radius: float
    rotation: np.ndarray

    @property
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return self.centre, self.radius

    def distance(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o = origin - self.centre
        b = dirs @ o
        disc = b * b - (o @ o - self.radius**2)
        with np.errstate(invalid="ignore"):
            root = np.sqrt(disc)
        # Nearer root when the origin is outside, farther one when inside.
        t = np.where(-b - root > T_MIN, -b - root, -b + root)
        return _front(t, disc >= 0)

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - self.centre
        normal = rel / np.linalg.norm(rel, axis=1, keepdims=True)
        return normal, rel @ self.rotation


@dataclass(frozen=True)
class Cylinder:
    """Capped cylinder along its local z axis: ``radius``, half height ``half_height``."""

    centre: np.ndarray
    radius: float
    half_height: float
    rotation: np.ndarray

    @property
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return self.centre, float(np.hypot(self.radius, self.half_height))

    def distance(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o = (origin - self.centre) @ self.rotation
        d = dirs @ self.rotation
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = o[0] * d[:, 0] + o[1] * d[:, 1]
        c = o[0] ** 2 + o[1] ** 2 - self.radius**2
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(disc)
            t_near, t_far = (-b - root) / a, (-b + root) / a
            t_side = np.where(t_near > T_MIN, t_near, t_far)
            side = _front(t_side, (disc >= 0) & (np.abs(o[2] + t_side * d[:, 2]) <= self.half_height))
            caps = []
            for z in (-self.half_height, self.half_height):
                t_cap = (z - o[2]) / d[:, 2]
                x, y = o[0] + t_cap * d[:, 0], o[1] + t_cap * d[:, 1]
                caps.append(_front(t_cap, x * x + y * y <= self.radius**2))
        return np.minimum(side, np.minimum(*caps))

    def surface(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = (points - self.centre) @ self.rotation
        rho = np.hypot(local[:, 0], local[:, 1])
        # A point belongs to a cap when it is closer to the cap plane than to the side.
        on_cap = np.abs(np.abs(local[:, 2]) - self.half_height) < np.abs(rho - self.radius)
        normal_local = np.zeros_like(local)
        normal_local[:, 2] = np.where(on_cap, np.sign(local[:, 2]), 0.0)
        radial = local[:, :2] / np.maximum(rho, 1e-12)[:, None]
        normal_local[:, :2] = np.where(on_cap[:, None], 0.0, radial)
        return normal_local @ self.rotation.T, local


Shape = Quad | Box | Sphere | Cylinder
