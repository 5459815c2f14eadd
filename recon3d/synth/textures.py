"""Procedural solid textures: albedo as a function of a 3D surface coordinate.

Textures are defined in 3D shape coordinates (metres), so they need no UV unwrapping and
a surface point has the same colour in every view. Every pattern is modulated by fractal
noise, so that surfaces carry fine detail for feature matching.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

PATTERNS = ("noise", "checker", "stripes", "gradient", "dots")

_PERIOD = 64  # lattice period in cells; a power of two so that `& (_PERIOD - 1)` wraps
_SIDE = _PERIOD + 1
# Fixed rotation between octaves, so that lattice axes and periods of octaves do not line up.
_OCTAVE_ROTATION = np.array(
    [[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]]
)


class NoiseField:
    """Seeded periodic lattice of random values in [0, 1) for value noise and per-cell draws."""

    def __init__(self, rng: np.random.Generator) -> None:
        lattice = rng.random((_PERIOD,) * 3, dtype=np.float32)
        # One wrapped extra layer per axis: the +1 corners of trilinear interpolation then
        # never need a second wrap-around.
        self._values = np.pad(lattice, (0, 1), mode="wrap").ravel()
        self._corners = np.array(
            [dz * _SIDE * _SIDE + dy * _SIDE + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)],
            dtype=np.int32,
        )

    def _index(self, cells: np.ndarray) -> np.ndarray:
        """Flat lattice index ``[N]`` of integer cells ``[N,3]`` (wrapped into the period)."""
        c = cells & (_PERIOD - 1)
        return (c[:, 2] * _SIDE + c[:, 1]) * _SIDE + c[:, 0]

    def cell_values(self, cells: np.ndarray, channel: int) -> np.ndarray:
        """Random value ``[N]`` in [0,1) per integer cell ``[N,3]``; channels are independent."""
        return self._values[self._index(cells + np.array([7, 13, 29]) * channel)]

    def value(self, p: np.ndarray) -> np.ndarray:
        """Smooth value noise ``[N]`` float32 in [0,1] at points ``[N,3]`` (lattice units)."""
        cell = np.floor(p)
        f = (p - cell).astype(np.float32)
        f = f * f * (3.0 - 2.0 * f)
        v = self._values[self._index(cell.astype(np.int32))[:, None] + self._corners]
        fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
        v = v[:, 0::2] + fx * (v[:, 1::2] - v[:, 0::2])
        v = v[:, 0::2] + fy * (v[:, 1::2] - v[:, 0::2])
        return (v[:, 0:1] + fz * (v[:, 1:2] - v[:, 0:1]))[:, 0]

    def fbm(self, p: np.ndarray, octaves: int = 4) -> np.ndarray:
        """Fractal noise ``[N]`` float32, contrast-stretched to [0,1], at ``[N,3]`` points."""
        total = np.zeros(len(p), dtype=np.float32)
        amplitude, norm = 1.0, 0.0
        for _ in range(octaves):
            total += amplitude * self.value(p)
            norm += amplitude
            p = 2.0 * p @ _OCTAVE_ROTATION + 5.3
            amplitude *= 0.5
        # A sum of octaves concentrates near its mean; stretch it back to use the range.
        return np.clip((total / norm - 0.5) * 2.5 + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Texture:
    """A pattern in one of ``PATTERNS`` with its colours and placement.

    Attributes:
        pattern: name of the pattern.
        colours: ``[3,3]`` float32 RGB in [0,1]; background, first and second accent.
        scale: pattern cells per metre.
        axis: ``[3]`` unit direction of stripes and gradients (shape frame).
        offset: ``[3]`` shift in noise space, so that shapes do not share noise.
    """

    pattern: str
    colours: np.ndarray
    scale: float
    axis: np.ndarray
    offset: np.ndarray

    def albedo(self, noise: NoiseField, coords: np.ndarray) -> np.ndarray:
        """Albedo ``[N,3]`` float32 in [0,1] at texture coordinates ``[N,3]`` (metres)."""
        q = coords * self.scale + self.offset
        c0, c1, c2 = self.colours
        if self.pattern == "noise":
            t = noise.fbm(q)[:, None]
            rgb = np.where(t < 0.5, c0 + 2 * t * (c1 - c0), c1 + (2 * t - 1) * (c2 - c1))
        elif self.pattern == "checker":
            odd = (np.floor(q).astype(np.int64).sum(axis=1) & 1).astype(bool)
            rgb = np.where(odd[:, None], c1, c0)
        elif self.pattern == "stripes":
            phase = q @ self.axis + 0.8 * noise.fbm(0.5 * q, octaves=2)
            rgb = np.where((phase % 1.0 < 0.5)[:, None], c1, c0)
        elif self.pattern == "gradient":
            t = (0.5 + 0.5 * np.sin(0.5 * (q @ self.axis))).astype(np.float32)[:, None]
            blot = noise.fbm(q + 31.7, octaves=3) > 0.65
            rgb = np.where(blot[:, None], c2, c0 + t * (c1 - c0))
        elif self.pattern == "dots":
            rgb = self._dots(noise, q)
        else:
            raise ValueError(f"unknown pattern {self.pattern!r}; valid patterns: {', '.join(PATTERNS)}")
        detail = 0.7 + 0.6 * noise.fbm(2.0 * q + 101.0, octaves=3)
        return np.clip(rgb * detail[:, None], 0.0, 1.0).astype(np.float32)

    def _dots(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """One dot of random centre, radius and accent colour per lattice cell."""
        cell = np.floor(q)
        cells = cell.astype(np.int64)
        centre = np.stack([noise.cell_values(cells, k) for k in range(3)], axis=1) * 0.4 + 0.3
        radius = 0.12 + 0.16 * noise.cell_values(cells, 3)
        inside = np.linalg.norm(q - cell - centre, axis=1) < radius
        accent = np.where((noise.cell_values(cells, 4) < 0.5)[:, None], self.colours[1], self.colours[2])
        return np.where(inside[:, None], accent, self.colours[0])


def random_palette(rng: np.random.Generator) -> np.ndarray:
    """``[3,3]`` float32 RGB colours: a base hue, a contrasting hue and a neighbour."""
    hue = rng.random()
    hues = (hue, hue + 0.5 + rng.uniform(-0.1, 0.1), hue + rng.uniform(0.08, 0.2))
    values = rng.permutation([rng.uniform(0.25, 0.45), rng.uniform(0.6, 0.8), rng.uniform(0.85, 1.0)])
    return np.array(
        [colorsys.hsv_to_rgb(h % 1.0, rng.uniform(0.3, 0.9), v) for h, v in zip(hues, values)],
        dtype=np.float32,
    )


def random_texture(rng: np.random.Generator, scale_range: tuple[float, float] = (2.0, 6.0)) -> Texture:
    """A texture with a random pattern, palette, scale (cells per metre) and placement."""
    axis = rng.normal(size=3)
    return Texture(
        pattern=str(rng.choice(PATTERNS)),
        colours=random_palette(rng),
        scale=float(rng.uniform(*scale_range)),
        axis=axis / np.linalg.norm(axis),
        offset=rng.uniform(0.0, _PERIOD, size=3),
    )
