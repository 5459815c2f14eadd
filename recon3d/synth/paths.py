"""Camera placements: rings and hemispheres around objects, views inside rooms, and
smooth video-like trajectories. All return ``(eyes [S,3], targets [S,3], rolls [S])``."""
from __future__ import annotations

import numpy as np

from recon3d.synth.layouts import CENTRE_ZONE, WALL_BAND
from recon3d.synth.world import World

Placement = tuple[np.ndarray, np.ndarray, np.ndarray]

_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
_CLEARANCE = 0.3  # metres kept between a camera and the furniture of a room


def _wiggle(rng: np.random.Generator, s: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth random function of the path angle ``s`` ``[S]`` (radians), within ±amplitude."""
    weights = rng.uniform(0.2, 1.0, size=3)
    weights *= amplitude / weights.sum()
    phases = rng.uniform(0.0, 2 * np.pi, size=3)
    return sum(w * np.sin(k * s + p) for w, k, p in zip(weights, (2, 3, 5), phases))


def _spherical(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """``[S,3]`` unit vectors for azimuth about z and elevation above the xy-plane (radians)."""
    return np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=1
    )


def _orbit_distance(world: World, half_fov: float, rng: np.random.Generator) -> float:
    """Camera distance (metres) at which the objects' bounding sphere about fills the view.

    The sphere is loose (it holds bounding cylinders), so the objects mostly stay in view
    even when it overfills the view."""
    return world.radius / np.sin(half_fov) * rng.uniform(0.7, 0.95)


def around_objects(world: World, rng: np.random.Generator, n: int, half_fov: float) -> Placement:
    """Inward-looking cameras on a jittered ring, or spread over a hemisphere."""
    distance = _orbit_distance(world, half_fov, rng) * rng.uniform(0.95, 1.05, size=n)
    azimuth0 = rng.uniform(0.0, 2 * np.pi)
    if rng.random() < 0.5:
        azimuth = azimuth0 + 2 * np.pi * (np.arange(n) + rng.uniform(-0.2, 0.2, size=n)) / n
        elevation = rng.uniform(np.radians(15), np.radians(45)) + rng.uniform(-1, 1, size=n) * np.radians(4)
    else:
        azimuth = azimuth0 + _GOLDEN_ANGLE * np.arange(n)
        elevation = rng.uniform(np.radians(12), np.radians(65), size=n)
    eyes = world.centre + distance[:, None] * _spherical(azimuth, elevation)
    targets = world.centre + rng.normal(0.0, 0.05 * world.radius, size=(n, 3))
    return eyes, targets, rng.uniform(-1, 1, size=n) * np.radians(3)


def orbit_trajectory(world: World, rng: np.random.Generator, n: int, half_fov: float) -> Placement:
    """A smooth orbit around the objects with breathing distance, height and aim."""
    step = min(2 * np.pi / n, np.radians(rng.uniform(1.0, 2.5)))
    s = rng.uniform(0.0, 2 * np.pi) + rng.choice([-1, 1]) * step * np.arange(n)
    distance = _orbit_distance(world, half_fov, rng) * (1.0 + _wiggle(rng, s, 0.12))
    elevation = rng.uniform(np.radians(15), np.radians(35)) + _wiggle(rng, s, np.radians(10))
    eyes = world.centre + distance[:, None] * _spherical(s, elevation)
    aim = np.stack([_wiggle(rng, s, 0.1 * world.radius) for _ in range(3)], axis=1)
    return eyes, world.centre + aim, _wiggle(rng, s, np.radians(3))


def _room_ellipse(world: World, rng: np.random.Generator) -> tuple[float, float]:
    """Semi-axes (metres) of an ellipse of camera positions clear of all furniture."""
    inner = CENTRE_ZONE + _CLEARANCE
    margin = WALL_BAND + _CLEARANCE
    # Cameras stay within [0.85, 1] of the ellipse, so its axes leave room on both sides.
    lo = inner / 0.85
    return (
        rng.uniform(lo, max(lo, world.room_half[0] - margin)),
        rng.uniform(lo, max(lo, world.room_half[1] - margin)),
    )


def _room_views(
    eyes_xy: np.ndarray, heights: np.ndarray, yaw: np.ndarray, pitch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Eyes ``[S,3]`` and targets one metre ahead along ``yaw`` and ``pitch`` (radians)."""
    eyes = np.concatenate([eyes_xy, heights[:, None]], axis=1)
    return eyes, eyes + _spherical(yaw, pitch)


def inside_room(world: World, rng: np.random.Generator, n: int) -> Placement:
    """Cameras spread over an arc inside the room, each turned its own way."""
    a, b = _room_ellipse(world, rng)
    span = np.radians(rng.uniform(120, 300))
    s = rng.uniform(0, 2 * np.pi) + span * (np.arange(n) + rng.uniform(-0.3, 0.3, size=n)) / max(n, 2)
    r = rng.uniform(0.85, 1.0, size=n)
    xy = np.stack([a * r * np.cos(s), b * r * np.sin(s)], axis=1)
    inward = np.arctan2(-xy[:, 1], -xy[:, 0])
    yaw = inward + np.radians(rng.uniform(-50, 50, size=n))
    pitch = np.radians(rng.uniform(-20, 5, size=n))
    eyes, targets = _room_views(xy, rng.uniform(1.1, 1.9, size=n), yaw, pitch)
    return eyes, targets, np.radians(rng.uniform(-4, 4, size=n))


def room_trajectory(world: World, rng: np.random.Generator, n: int) -> Placement:
    """A smooth walk around the room's ellipse, looking across the room, turning slowly."""
    a, b = _room_ellipse(world, rng)
    step = min(2 * np.pi / n, np.radians(rng.uniform(1.5, 3.0)))
    s = rng.uniform(0.0, 2 * np.pi) + rng.choice([-1, 1]) * step * np.arange(n)
    r = 0.925 + _wiggle(rng, s, 0.075)
    xy = np.stack([a * r * np.cos(s), b * r * np.sin(s)], axis=1)
    yaw = np.arctan2(-xy[:, 1], -xy[:, 0]) + _wiggle(rng, s, np.radians(50))
    pitch = np.radians(-8) + _wiggle(rng, s, np.radians(8))
    heights = rng.uniform(1.3, 1.7) + _wiggle(rng, s, 0.2)
    eyes, targets = _room_views(xy, heights, yaw, pitch)
    return eyes, targets, _wiggle(rng, s, np.radians(3))
