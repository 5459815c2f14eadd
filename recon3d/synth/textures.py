"""Procedural solid textures: albedo as a function of a 3D surface coordinate.

Textures are defined in 3D shape coordinates (metres), so they need no UV unwrapping and
a surface point has the same colour in every view. Every pattern carries fine detail for
feature matching: a multiplicative fractal-noise modulation, or its own finest octaves.

Patterns come in families (``TEXTURE_FAMILIES``), so that a whole family can be held out
of training to measure how well a model generalises to textures it has never seen:

* ``"classic"``: the original procedural look: fractal noise, checkers, stripes, gradients
  with blots, dots.
* ``"natural"``: patterns with the statistics of natural images (after Baradad et al.,
  "Learning to See by Looking at Noise", 2021): dead-leaves occlusion (scale-invariant
  discs with T-junctions), 1/f^alpha spectral noise with colour varying across opponent
  channels, and random oriented strokes with edges and corners at every orientation.
* ``"mixed"``: all of the above.
* ``"training"`` and ``"heldout"``: the split the embedded model's recipe uses: it trains
  on every pattern but the strokes, which measure generalisation to a look never seen.
"""
from __future__ import annotations

import colorsys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

# The patterns `random_texture` draws from by default: the classic family, as before families existed.
PATTERNS = ("noise", "checker", "stripes", "gradient", "dots")
NATURAL_PATTERNS = ("deadleaves", "spectral", "strokes")
ALL_PATTERNS = PATTERNS + NATURAL_PATTERNS
# Family name -> its patterns (see the module docstring); `make_scene(..., textures=name)`.
TEXTURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "classic": PATTERNS,
    "natural": NATURAL_PATTERNS,
    "mixed": ALL_PATTERNS,
    "training": PATTERNS + ("deadleaves", "spectral"),
    "heldout": ("strokes",),
}

_PERIOD = 64  # lattice period in cells; a power of two so that `& (_PERIOD - 1)` wraps
_SIDE = _PERIOD + 1
# Fixed rotation between octaves, so that lattice axes and periods of octaves do not line up.
_OCTAVE_ROTATION = np.array(
    [[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]]
)
_CELL_CHANNELS = 12  # columns of `NoiseField.cell_vectors`
_VALUE_STD = 0.185  # standard deviation of `NoiseField.value` (measured over 400k random points)

# Dead leaves: layers of cells shrinking by sqrt(2), each cell holding one sphere of radius
# _LEAF_RADIUS (cell units). Spheres per volume grow as size^-3 per octave, i.e. radius
# density r^-4 in 3D, whose discs cut by a plane have the scale-invariant density r^-3.
_LEAF_LAYERS = 10
_LEAF_COARSEST = 2.0  # cell size of the coarsest layer, in texture cells
_LEAF_RADIUS = (0.32, 0.5)
# Spectral noise: value-noise octaves from a quarter texture cell per period upwards.
_SPECTRAL_BASE = 0.25
_SPECTRAL_OCTAVES = 7  # luminance; 1/f content over 2^7 in frequency
_CHROMA_OCTAVES = 3  # chroma varies at coarser scales than luminance, as in natural images
_SPECTRAL_ALPHA = (0.8, 1.8)  # amplitude-spectrum exponent; natural images have about 1
# Strokes: layers of cells shrinking by sqrt(2), each cell holding at most one thin plate.
_STROKE_LAYERS = 8
_STROKE_COARSEST = 1.5
_PLATE_RADIUS = (0.3, 0.47)  # cell units
_PLATE_HALF_WIDTH = (0.02, 0.09)  # half the plate's thickness, cell units
_STROKE_PRESENCE = 0.9  # fraction of cells that hold a stroke
# The octave rotation's angle (cos = 7/25) is no rational multiple of pi, so its powers never
# repeat: layers of cell lattices rotated by successive powers never share axes.
_LAYER_ROTATIONS = tuple(
    np.linalg.matrix_power(_OCTAVE_ROTATION, k) for k in range(max(_LEAF_LAYERS, _STROKE_LAYERS))
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
        self._table: np.ndarray | None = None

    def _index(self, cells: np.ndarray) -> np.ndarray:
        """Flat lattice index ``[N]`` of integer cells ``[N,3]`` (wrapped into the period)."""
        c = cells & (_PERIOD - 1)
        return (c[:, 2] * _SIDE + c[:, 1]) * _SIDE + c[:, 0]

    def cell_values(self, cells: np.ndarray, channel: int) -> np.ndarray:
        """Random value ``[N]`` in [0,1) per integer cell ``[N,3]``; channels are independent."""
        return self._values[self._index(cells + np.array([7, 13, 29]) * channel)]

    def cell_vectors(self, cells: np.ndarray) -> np.ndarray:
        """``[N,_CELL_CHANNELS]`` float32 random values per integer cell ``[N,3]``; column ``k``
        equals ``cell_values(cells, k)``, gathered in one row lookup instead of one per channel."""
        if self._table is None:  # built on first use: only cell-based patterns need it
            lattice = self._values.reshape((_SIDE,) * 3)[:-1, :-1, :-1]  # axes z, y, x
            self._table = np.stack(
                [np.roll(lattice, (-29 * k, -13 * k, -7 * k), axis=(0, 1, 2)) for k in range(_CELL_CHANNELS)],
                axis=-1,
            ).reshape(-1, _CELL_CHANNELS)
        c = cells & (_PERIOD - 1)
        return self._table[(c[:, 2] * _PERIOD + c[:, 1]) * _PERIOD + c[:, 0]]

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

    def spectral(self, p: np.ndarray, octaves: int, alpha: float) -> np.ndarray:
        """Zero-mean, unit-variance 1/f^alpha noise ``[N]`` float32 at points ``[N,3]`` (lattice units).

        Octave ``k`` has frequency ``2^k`` and amplitude ``2^(-k (alpha - 1))``. An octave of
        frequency ``f`` and amplitude ``a`` adds power ``a^2 / f^2`` near ``f`` to the 2D power
        spectrum of a planar slice, so the slice's power spectrum falls as ``f^(-2 alpha)``
        (amplitude spectrum ``f^-alpha``) between the first and last octave's frequencies.
        """
        gain = 2.0 ** (1.0 - alpha)
        total = np.zeros(len(p), dtype=np.float32)
        amplitudes = gain ** np.arange(octaves)
        for amplitude in amplitudes:
            total += np.float32(amplitude) * (self.value(p) - 0.5)
            p = 2.0 * p @ _OCTAVE_ROTATION + 5.3
        # Octaves are nearly independent, so their variances add: no contrast collapse.
        return total / np.float32(_VALUE_STD * np.sqrt(np.sum(amplitudes**2)))


@dataclass(frozen=True)
class Texture:
    """A pattern in one of ``ALL_PATTERNS`` with its colours and placement.

    Attributes:
        pattern: name of the pattern.
        colours: ``[3,3]`` float32 RGB in [0,1]; background, first and second accent.
        scale: pattern cells per metre.
        axis: ``[3]`` unit direction of stripes and gradients (shape frame).
        offset: ``[3]`` shift in noise space, so that shapes do not share noise.
        alpha: amplitude-spectrum exponent of ``"spectral"`` (power falls as
            ``f^(-2 alpha)``); unused by other patterns.
    """

    pattern: str
    colours: np.ndarray
    scale: float
    axis: np.ndarray
    offset: np.ndarray
    alpha: float = 1.0

    def albedo(self, noise: NoiseField, coords: np.ndarray) -> np.ndarray:
        """Albedo ``[N,3]`` float32 in [0,1] at texture coordinates ``[N,3]`` (metres).

        A pure function of each point: the same point gets the same colour in any batch.
        """
        q = coords * self.scale + self.offset
        rgb = self._pattern_at(noise, q)
        if self.pattern == "spectral":  # its finest octaves are its detail
            return np.clip(rgb, 0.0, 1.0).astype(np.float32)
        detail = 0.7 + 0.6 * noise.fbm(2.0 * q + 101.0, octaves=3)
        return np.clip(rgb * detail[:, None], 0.0, 1.0).astype(np.float32)

    def pattern_rgb(self, noise: NoiseField, coords: np.ndarray) -> np.ndarray:
        """The pattern's colour ``[N,3]`` at coordinates ``[N,3]`` (metres) before the fine
        detail modulation and the clipping to [0,1] of `albedo`."""
        return self._pattern_at(noise, coords * self.scale + self.offset)

    def _pattern_at(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """Pattern colour ``[N,3]`` at points ``q`` ``[N,3]`` in texture cells."""
        c0, c1, c2 = self.colours
        if self.pattern == "noise":
            t = noise.fbm(q)[:, None]
            return np.where(t < 0.5, c0 + 2 * t * (c1 - c0), c1 + (2 * t - 1) * (c2 - c1))
        if self.pattern == "checker":
            odd = (np.floor(q).astype(np.int64).sum(axis=1) & 1).astype(bool)
            return np.where(odd[:, None], c1, c0)
        if self.pattern == "stripes":
            phase = q @ self.axis + 0.8 * noise.fbm(0.5 * q, octaves=2)
            return np.where((phase % 1.0 < 0.5)[:, None], c1, c0)
        if self.pattern == "gradient":
            t = (0.5 + 0.5 * np.sin(0.5 * (q @ self.axis))).astype(np.float32)[:, None]
            blot = noise.fbm(q + 31.7, octaves=3) > 0.65
            return np.where(blot[:, None], c2, c0 + t * (c1 - c0))
        if self.pattern == "dots":
            return self._dots(noise, q)
        if self.pattern == "deadleaves":
            return self._dead_leaves(noise, q)
        if self.pattern == "spectral":
            return self._spectral(noise, q)
        if self.pattern == "strokes":
            return self._strokes(noise, q)
        raise ValueError(f"unknown pattern {self.pattern!r}; valid patterns: {', '.join(ALL_PATTERNS)}")

    def _dots(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """One dot of random centre, radius and accent colour per lattice cell."""
        cell = np.floor(q)
        cells = cell.astype(np.int64)
        centre = np.stack([noise.cell_values(cells, k) for k in range(3)], axis=1) * 0.4 + 0.3
        radius = 0.12 + 0.16 * noise.cell_values(cells, 3)
        inside = np.linalg.norm(q - cell - centre, axis=1) < radius
        accent = np.where((noise.cell_values(cells, 4) < 0.5)[:, None], self.colours[1], self.colours[2])
        return np.where(inside[:, None], accent, self.colours[0])

    def _dead_leaves(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """Dead leaves: the latest of the random spheres covering each point gives its colour.

        Every cell of every layer holds one sphere inside it, with a random radius, centre,
        time and colour, so only a point's own cell per layer can cover it. Points no sphere
        covers (a few percent) show the background colour.
        """
        latest = np.full(len(q), -1.0, dtype=np.float32)
        # Colour draws of the latest leaf so far; these draws give the background colour.
        paint = np.tile(np.array([0.0, 0.0, 0.5], dtype=np.float32), (len(q), 1))
        lo, hi = _LEAF_RADIUS
        for cells, f in _layers(q, _LEAF_LAYERS, _LEAF_COARSEST):
            v = noise.cell_vectors(cells)
            radius = lo + (hi - lo) * v[:, 3]
            centre = radius[:, None] + (1.0 - 2.0 * radius[:, None]) * v[:, :3]
            gap = f - centre
            later = (np.einsum("ij,ij->i", gap, gap) < radius * radius) & (v[:, 4] > latest)
            latest = np.where(later, v[:, 4], latest)
            paint = np.where(later[:, None], v[:, 5:8], paint)
        return _palette_colours(self.colours, paint)

    def _spectral(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """1/f^alpha luminance times a palette colour picked by two coarser 1/f^alpha chroma fields."""
        p = _SPECTRAL_BASE * q
        luminance = noise.spectral(p, _SPECTRAL_OCTAVES, self.alpha)
        # Independent lattice regions per channel, so that hue and luminance vary independently.
        hue = np.clip(0.5 + 0.3 * noise.spectral(p + 17.1, _CHROMA_OCTAVES, self.alpha), 0.0, 1.0)[:, None]
        tint = np.clip(0.5 + 0.3 * noise.spectral(p + 43.9, _CHROMA_OCTAVES, self.alpha), 0.0, 1.0)[:, None]
        c0, c1, c2 = self.colours
        base = c0 + hue * (c1 - c0)
        base = base + tint * (c2 - base)
        return base * np.clip(1.0 + 0.45 * luminance, 0.1, 2.0)[:, None]

    def _strokes(self, noise: NoiseField, q: np.ndarray) -> np.ndarray:
        """Random strokes over the background colour: per cell of every layer at most one thin
        round plate of random orientation. A surface cuts a plate in a strip of random direction,
        with straight sides and sharp corners where they meet the plate's rim (a thin tube would
        leave only dots). Finer layers paint over coarser ones."""
        paint = np.tile(np.array([0.0, 0.0, 0.5], dtype=np.float32), (len(q), 1))
        for cells, f in _layers(q, _STROKE_LAYERS, _STROKE_COARSEST):
            v = noise.cell_vectors(cells)
            radius = _PLATE_RADIUS[0] + (_PLATE_RADIUS[1] - _PLATE_RADIUS[0]) * v[:, 3]
            half_width = _PLATE_HALF_WIDTH[0] + (_PLATE_HALF_WIDTH[1] - _PLATE_HALF_WIDTH[0]) * v[:, 4]
            # Centres at least the plate's bounding radius from the cell's faces: plates stay in their cell.
            bound = np.sqrt(radius * radius + half_width * half_width)[:, None]
            rel = f - (bound + (1.0 - 2.0 * bound) * v[:, 0:3])
            normal = 2.0 * v[:, 5:8] - 1.0
            height = np.einsum("ij,ij->i", rel, normal) / np.maximum(np.linalg.norm(normal, axis=1), 1e-6)
            inside = (np.abs(height) < half_width) & (np.einsum("ij,ij->i", rel, rel) - height * height < radius**2)
            inside &= v[:, 11] < _STROKE_PRESENCE
            paint = np.where(inside[:, None], v[:, 8:11], paint)
        return _palette_colours(self.colours, paint)


def _layers(q: np.ndarray, count: int, coarsest: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``count`` layers of cell lattices shrinking by sqrt(2) from size ``coarsest``
    (texture cells), each rotated and shifted against the others so that their cell faces
    never line up: per layer, integer cells ``[N,3]`` int64 of points ``q`` ``[N,3]`` and the
    points' float32 positions ``[N,3]`` in [0,1) within their cells."""
    for k in range(count):
        p = q @ (_LAYER_ROTATIONS[k] * (2.0 ** (k / 2) / coarsest)) + 7.31 * k
        cell = np.floor(p)
        yield cell.astype(np.int64), (p - cell).astype(np.float32)


def _palette_colours(colours: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Colours ``[N,3]`` of leaves or strokes from three uniform draws ``[N,3]`` each: a palette
    colour, mixed up to halfway towards another one, times a brightness in [0.55, 1.45]."""
    pick = draws[:, 0] * 3.0
    first = np.minimum(pick.astype(np.int64), 2)
    second = (first + 1 + (draws[:, 1] < 0.5)) % 3
    mix = 0.5 * (pick - first)[:, None]
    base = colours[first] + mix * (colours[second] - colours[first])
    return base * (0.55 + 0.9 * draws[:, 2:3])


def random_palette(rng: np.random.Generator) -> np.ndarray:
    """``[3,3]`` float32 RGB colours: a base hue, a contrasting hue and a neighbour."""
    hue = rng.random()
    hues = (hue, hue + 0.5 + rng.uniform(-0.1, 0.1), hue + rng.uniform(0.08, 0.2))
    values = rng.permutation([rng.uniform(0.25, 0.45), rng.uniform(0.6, 0.8), rng.uniform(0.85, 1.0)])
    return np.array(
        [colorsys.hsv_to_rgb(h % 1.0, rng.uniform(0.3, 0.9), v) for h, v in zip(hues, values)],
        dtype=np.float32,
    )


def family_patterns(family: str) -> tuple[str, ...]:
    """The patterns of texture family ``family`` (a key of ``TEXTURE_FAMILIES``).

    Raises ValueError, naming the valid families, for an unknown one.
    """
    if family not in TEXTURE_FAMILIES:
        raise ValueError(f"unknown texture family {family!r}; valid families: {', '.join(TEXTURE_FAMILIES)}")
    return TEXTURE_FAMILIES[family]


def random_texture(
    rng: np.random.Generator, scale_range: tuple[float, float] = (2.0, 6.0), patterns: tuple[str, ...] = PATTERNS
) -> Texture:
    """A texture with a pattern drawn from ``patterns``, and a random palette, scale (cells
    per metre) and placement. With the default classic patterns the draws from ``rng`` are
    exactly those made before texture families existed. Raises ValueError for an unknown pattern."""
    unknown = set(patterns) - set(ALL_PATTERNS)
    if unknown:
        raise ValueError(f"unknown patterns {sorted(unknown)}; valid patterns: {', '.join(ALL_PATTERNS)}")
    axis = rng.normal(size=3)
    texture = Texture(
        pattern=str(rng.choice(patterns)),
        colours=random_palette(rng),
        scale=float(rng.uniform(*scale_range)),
        axis=axis / np.linalg.norm(axis),
        offset=rng.uniform(0.0, _PERIOD, size=3),
    )
    if texture.pattern == "spectral":  # drawn last, so that the classic patterns' draws are unchanged
        return replace(texture, alpha=float(rng.uniform(*_SPECTRAL_ALPHA)))
    return texture
