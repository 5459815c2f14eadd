"""Random scene content: objects on a ground plane, or a furnished closed room.

World frame: z up, metres, ground or floor at z = 0. Both layouts keep a free zone for
the cameras (see ``recon3d.synth.paths``): open scenes keep their objects within
``World.radius`` of ``World.centre``; rooms keep furniture within ``WALL_BAND`` of the
walls or within ``CENTRE_ZONE`` of the room's vertical axis.

Both take a texture family (a key of ``recon3d.synth.textures.TEXTURE_FAMILIES``); the
family changes the objects' textures only, never the geometry, light or noise lattice.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recon3d.synth.primitives import Box, Cylinder, Quad, Shape, Sphere, rotation_zyx
from recon3d.synth.textures import NoiseField, Texture, family_patterns, random_texture
from recon3d.synth.world import SceneObject, World

WALL_BAND = 0.9  # metres from a wall that furniture may occupy
CENTRE_ZONE = 0.7  # radius (metres) of the central group of furniture
_SEAM = 1e-6  # walls overlap by this much, so that no ray slips through a corner


def _facing_quad(centre: np.ndarray, normal: np.ndarray, u: np.ndarray, half_u: float, half_v: float) -> Quad:
    """Quad whose normal is ``normal``: ``v = normal x u`` makes ``u x v == normal``."""
    return Quad(centre, u, np.cross(normal, u), half_u, half_v)


def _texture_drawer(rng: np.random.Generator, textures: str) -> Callable[[tuple[float, float]], Texture]:
    """A function drawing one object's texture of family ``textures`` with a scale range
    (cells per metre); raises ValueError for an unknown family.

    The classic family draws from the layout's ``rng``, exactly as before families existed.
    Other families draw from their own generator, a copy of ``rng`` jumped far ahead in its
    sequence (which leaves ``rng`` untouched), and still make and discard the classic draws
    from ``rng``: the layout's stream, and with it everything drawn after the textures (the
    light), is then the same for every family.
    """
    patterns = family_patterns(textures)
    if textures == "classic":
        return lambda scale_range: random_texture(rng, scale_range)
    own = np.random.Generator(rng.bit_generator.jumped())

    def draw(scale_range: tuple[float, float]) -> Texture:
        random_texture(rng, scale_range)
        return random_texture(own, scale_range, patterns)

    return draw


def _light(rng: np.random.Generator, ambient: tuple[float, float]) -> tuple[np.ndarray, float]:
    """A unit direction towards a light high in the sky, and an ambient fraction drawn
    from the range ``ambient``."""
    azimuth, elevation = rng.uniform(0.0, 2 * np.pi), rng.uniform(np.radians(35), np.radians(70))
    horizontal = np.cos(elevation) * np.array([np.cos(azimuth), np.sin(azimuth)])
    direction = np.array([*horizontal, np.sin(elevation)])
    return direction, float(rng.uniform(*ambient))


def _random_solid(rng: np.random.Generator, xy: np.ndarray, size: float) -> tuple[Shape, float, float]:
    """A box, sphere or cylinder of about ``size`` metres resting on z = 0 at ``xy``.

    Returns the shape, the radius of its footprint around ``xy`` and its height (metres).
    """
    kind = rng.choice(["box", "sphere", "cylinder"])
    yaw = rng.uniform(0.0, 2 * np.pi)
    if kind == "box":
        half = rng.uniform(0.5, 1.0, size=3) * size
        box = Box(np.array([*xy, half[2]]), half, rotation_zyx(yaw))
        return box, float(np.hypot(half[0], half[1])), float(2 * half[2])
    if kind == "sphere":
        r = rng.uniform(0.6, 1.0) * size
        return Sphere(np.array([*xy, r]), r, rotation_zyx(yaw, rng.uniform(0, np.pi))), float(r), float(2 * r)
    r, half_h = rng.uniform(0.4, 0.8) * size, rng.uniform(0.5, 1.4) * size
    if rng.random() < 0.3:  # lying on its side
        lying = Cylinder(np.array([*xy, r]), r, half_h, rotation_zyx(yaw, np.pi / 2))
        return lying, float(np.hypot(r, half_h)), float(2 * r)
    return Cylinder(np.array([*xy, half_h]), r, half_h, rotation_zyx(yaw)), float(r), float(2 * half_h)


def objects_world(rng: np.random.Generator, textures: str = "classic") -> World:
    """3 to 6 non-overlapping solids on a finite textured ground plane, under a sky;
    textures of the family ``textures``."""
    draw_texture = _texture_drawer(rng, textures)
    noise = NoiseField(rng)
    solids: list[tuple[Shape, np.ndarray, float, float]] = []
    count = rng.integers(3, 7)
    for _ in range(200):  # rejection sampling of footprints; bounded so it always ends
        if len(solids) == count:
            break
        xy = rng.uniform(-1.6, 1.6, size=2)
        shape, foot, height = _random_solid(rng, xy, rng.uniform(0.25, 0.6))
        if all(np.linalg.norm(xy - other[1]) > foot + other[2] + 0.1 for other in solids):
            solids.append((shape, xy, foot, height))
    centre = np.array([*np.mean([s[1] for s in solids], axis=0), 0.35])
    # Radius of a sphere about `centre` holding every solid's bounding cylinder.
    radius = max(
        np.hypot(np.linalg.norm(xy - centre[:2]) + foot, max(height - centre[2], centre[2]))
        for _, xy, foot, height in solids
    )
    ground_half = rng.uniform(5.0, 8.0)
    ex, _, ez = np.eye(3)
    ground = _facing_quad(np.zeros(3), ez, ex, ground_half, ground_half)
    objects = [SceneObject(ground, draw_texture((0.8, 2.5)))]
    objects += [SceneObject(s[0], draw_texture((2.0, 6.0))) for s in solids]
    light, ambient = _light(rng, (0.3, 0.45))
    return World(tuple(objects), noise, light, ambient, centre, float(radius), None)


def _room_shell(half: np.ndarray) -> list[Quad]:
    """Floor, ceiling and four walls of the box ``[-hx,hx] x [-hy,hy] x [0,2hz]``, facing inward."""
    hx, hy, hz = half + _SEAM
    ex, ey, ez = np.eye(3)
    return [
        _facing_quad(np.zeros(3), ez, ex, hx, hy),
        _facing_quad(np.array([0.0, 0.0, 2 * half[2]]), -ez, ex, hx, hy),
        _facing_quad(np.array([half[0], 0.0, half[2]]), -ex, ey, hy, hz),
        _facing_quad(np.array([-half[0], 0.0, half[2]]), ex, ey, hy, hz),
        _facing_quad(np.array([0.0, half[1], half[2]]), -ey, ex, hx, hz),
        _facing_quad(np.array([0.0, -half[1], half[2]]), ey, ex, hx, hz),
    ]


def _wall_furniture(rng: np.random.Generator, half: np.ndarray) -> list[Shape]:
    """A box against a random wall, within ``WALL_BAND`` of it, sometimes with a ball on top."""
    wall = rng.integers(4)
    along_axis, across_axis = (1, 0) if wall < 2 else (0, 1)
    depth, width, height = rng.uniform(0.3, 0.8), rng.uniform(0.5, 1.6), rng.uniform(0.4, 2.0)
    centre = np.zeros(3)
    centre[across_axis] = (1 if wall % 2 == 0 else -1) * (half[across_axis] - depth / 2)
    centre[along_axis] = rng.uniform(-1, 1) * (half[along_axis] - width / 2 - 0.05)
    centre[2] = height / 2
    box_half = np.zeros(3)
    box_half[across_axis], box_half[along_axis], box_half[2] = depth / 2, width / 2, height / 2
    shapes: list[Shape] = [Box(centre, box_half, np.eye(3))]
    if rng.random() < 0.5:
        r = rng.uniform(0.3, 0.5) * depth
        shapes.append(Sphere(centre + [0.0, 0.0, height / 2 + r], r, rotation_zyx(rng.uniform(0, 2 * np.pi))))
    return shapes


def _centre_group(rng: np.random.Generator) -> list[Shape]:
    """A table-like box at the room's axis with a ball or a can on it, within ``CENTRE_ZONE``."""
    half = np.array([rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.45), rng.uniform(0.2, 0.45)])
    table = Box(np.array([0.0, 0.0, half[2]]), half, rotation_zyx(rng.uniform(0, np.pi)))
    top = 2 * half[2]
    if rng.random() < 0.5:
        r = rng.uniform(0.12, 0.25)
        return [table, Sphere(np.array([0.0, 0.0, top + r]), r, rotation_zyx(rng.uniform(0, 2 * np.pi)))]
    r, half_h = rng.uniform(0.08, 0.2), rng.uniform(0.1, 0.3)
    return [table, Cylinder(np.array([0.0, 0.0, top + half_h]), r, half_h, np.eye(3))]


def room_world(rng: np.random.Generator, textures: str = "classic") -> World:
    """A closed box room with textured walls, floor and ceiling, and furniture; textures of
    the family ``textures``."""
    draw_texture = _texture_drawer(rng, textures)
    noise = NoiseField(rng)
    half = np.array([rng.uniform(2.8, 4.5), rng.uniform(2.5, 4.0), rng.uniform(1.25, 1.7)])
    shapes: list[Shape] = []
    for _ in range(rng.integers(3, 6)):
        shapes += _wall_furniture(rng, half)
    if rng.random() < 0.6:
        r = rng.uniform(0.15, 0.35)
        corner = np.array([rng.choice([-1, 1]) * (half[0] - 0.45), rng.choice([-1, 1]) * (half[1] - 0.45)])
        shapes.append(Cylinder(np.array([*corner, half[2]]), r, half[2], np.eye(3)))
    shapes += _centre_group(rng)
    objects = [SceneObject(quad, draw_texture((0.8, 3.0))) for quad in _room_shell(half)]
    objects += [SceneObject(shape, draw_texture((2.0, 6.0))) for shape in shapes]
    # Half the walls face away from a directional light; more ambient keeps them readable.
    light, ambient = _light(rng, (0.45, 0.6))
    centre = np.array([0.0, 0.0, half[2]])
    return World(tuple(objects), noise, light, ambient, centre, float(np.linalg.norm(half)), half)
