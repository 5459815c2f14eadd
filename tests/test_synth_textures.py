"""recon3d.synth texture families: natural-image statistics of the "natural" patterns
(dead leaves, 1/f spectral noise, strokes), the solid-texture invariant, and scenes whose
texture family changes their colours only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon3d.synth import TEXTURE_FAMILIES, build_world, make_scene, read_scene, write_scene
from recon3d.synth.textures import ALL_PATTERNS, PATTERNS, NoiseField, Texture, random_palette, random_texture

REPO = Path(__file__).resolve().parents[1]
LUMA = np.array([0.299, 0.587, 0.114])
N = 256  # samples per side of planar slices


def _texture(pattern: str, seed: int, alpha: float = 1.0) -> tuple[Texture, NoiseField]:
    """A texture of ``pattern`` at one cell per metre (coordinates are texture cells)."""
    rng = np.random.default_rng(seed)
    noise = NoiseField(rng)
    texture = Texture(pattern, random_palette(rng), 1.0, np.array([0.0, 0.0, 1.0]), rng.uniform(0, 64, 3), alpha)
    return texture, noise


def _plane(extent: float, seed: int) -> np.ndarray:
    """``[N*N,3]`` points of an ``N x N`` grid spanning ``extent`` on a randomly oriented
    plane (row-major), so that no lattice axis lies in it."""
    rng = np.random.default_rng(seed + 100)
    frame, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    u, v = np.meshgrid(np.arange(N) * extent / N, np.arange(N) * extent / N)
    return u.ravel()[:, None] * frame[:, 0] + v.ravel()[:, None] * frame[:, 1] + rng.uniform(0, 20, 3)


def _spectrum_slope(image: np.ndarray, extent: float, f_lo: float, f_hi: float) -> float:
    """Slope of log radially averaged power against log frequency (cycles per unit) of an
    ``[N,N]`` image spanning ``extent``, fitted over ``[f_lo, f_hi]``. A Hann window keeps
    the jump between opposite borders from adding its own ``f^-2`` leakage."""
    window = np.outer(np.hanning(N), np.hanning(N))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    f = np.fft.fftfreq(N, d=extent / N)
    radius = np.hypot(*np.meshgrid(f, f)).ravel()
    edges = np.geomspace(f_lo, f_hi, 13)
    band = np.digitize(radius, edges)
    mean_power = [power.ravel()[band == k].mean() for k in range(1, len(edges))]
    return float(np.polyfit(np.log(np.sqrt(edges[:-1] * edges[1:])), np.log(mean_power), 1)[0])


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (pixels) with mirrored borders."""
    r = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(r, r) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        image = sum(w * np.take(padded, np.arange(i, i + N), axis=axis) for i, w in enumerate(kernel))
    return image


def _orientation_histogram(image: np.ndarray) -> np.ndarray:
    """Fraction of oriented edge energy of an ``[N,N]`` image in each 30-degree bin of edge
    orientation, from the smoothed structure tensor (per-pixel gradients of a sampled step
    edge snap to the pixel axes; the tensor over a neighbourhood does not)."""
    gy, gx = np.gradient(_blur(image, 1.0))
    jxx, jyy, jxy = (_blur(a, 2.0) for a in (gx * gx, gy * gy, gx * gy))
    angle = np.mod(0.5 * np.arctan2(2 * jxy, jxx - jyy), np.pi)
    energy = np.hypot(jxx - jyy, 2 * jxy)  # zero where the structure has no orientation
    hist, _ = np.histogram(angle, bins=6, range=(0, np.pi), weights=energy)
    return hist / hist.sum()


def test_families_partition_the_patterns():
    assert TEXTURE_FAMILIES["classic"] == PATTERNS == ("noise", "checker", "stripes", "gradient", "dots")
    assert set(TEXTURE_FAMILIES["natural"]) == {"deadleaves", "spectral", "strokes"}
    assert set(TEXTURE_FAMILIES["classic"]).isdisjoint(TEXTURE_FAMILIES["natural"])
    assert set(TEXTURE_FAMILIES["mixed"]) == set(ALL_PATTERNS) == set(PATTERNS) | set(TEXTURE_FAMILIES["natural"])
    rng = np.random.default_rng(0)
    drawn = {random_texture(rng, patterns=TEXTURE_FAMILIES["natural"]).pattern for _ in range(40)}
    assert drawn == set(TEXTURE_FAMILIES["natural"])
    with pytest.raises(ValueError, match="valid patterns"):
        random_texture(rng, patterns=("noise", "marble"))


def test_cell_vectors_match_cell_values():
    noise = NoiseField(np.random.default_rng(5))
    cells = np.random.default_rng(6).integers(-300, 300, size=(500, 3))
    table = noise.cell_vectors(cells)
    for k in range(table.shape[1]):
        assert np.array_equal(table[:, k], noise.cell_values(cells, k)), k


@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_albedo_is_a_pure_function_of_the_point(pattern):
    texture, noise = _texture(pattern, 3, alpha=1.3)
    points = np.random.default_rng(4).uniform(-5, 5, size=(3000, 3))
    rgb = texture.albedo(noise, points)
    assert rgb.dtype == np.float32 and rgb.shape == (3000, 3)
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1 and rgb.std() > 0.02
    assert np.array_equal(texture.albedo(noise, points), rgb)
    order = np.random.default_rng(5).permutation(len(points))
    assert np.array_equal(texture.albedo(noise, points[order]), rgb[order])
    parts = [texture.albedo(noise, points[i : i + 700]) for i in range(0, len(points), 700)]
    assert np.array_equal(np.concatenate(parts), rgb)


def test_dead_leaves_are_piecewise_constant_with_a_natural_spectrum():
    texture, noise = _texture("deadleaves", 1)
    # Along a line, the colour before detail changes only where a leaf boundary is crossed.
    t = np.linspace(0.0, 4.0, 4000)[:, None]
    line = texture.pattern_rgb(noise, t * np.array([0.6, 0.48, 0.64]) + 10.0)
    changes = np.any(line[1:] != line[:-1], axis=1)
    assert changes.sum() < 0.1 * len(changes)
    assert len(np.unique(line, axis=0)) > 20  # many leaves of many colours, not a few flat regions
    # Scale-invariant occlusion: power falls about as f^-2, as in natural images.
    extent = 4.0
    image = texture.albedo(noise, _plane(extent, 1)).reshape(N, N, 3) @ LUMA
    slope = _spectrum_slope(image, extent, 4 / extent, N / extent / 4)
    assert -3.0 < slope < -1.0, slope


@pytest.mark.parametrize("alpha", [1.0, 1.6])
def test_spectral_noise_power_falls_as_f_to_minus_two_alpha(alpha):
    # Octave k: frequency f_k = 2^k / 4 cycles per cell, amplitude f_k^(1 - alpha). A 2D slice
    # of an octave spreads its variance a^2 over a frequency area ~ f_k^2, so the summed
    # power spectrum is ~ f^(2 (1 - alpha) - 2) = f^(-2 alpha) between the first and last
    # octaves (1/4 to 16 cycles per cell); fit well inside that band.
    texture, noise = _texture("spectral", 2, alpha)
    extent = 8.0
    image = texture.albedo(noise, _plane(extent, 2)).reshape(N, N, 3) @ LUMA
    slope = _spectrum_slope(image, extent, 0.5, 6.0)
    assert abs(slope + 2 * alpha) < 0.5, slope
    # Colour varies across channels, not along one ramp: chroma is not a function of luminance.
    rgb = texture.albedo(noise, _plane(extent, 2))
    chroma = rgb / np.maximum(rgb.sum(axis=1, keepdims=True), 1e-3)
    assert chroma.std(axis=0).max() > 0.02


def test_strokes_have_edges_at_every_orientation():
    extent = 3.0
    texture, noise = _texture("strokes", 0)
    hist = _orientation_histogram(texture.pattern_rgb(noise, _plane(extent, 0)).reshape(N, N, 3) @ LUMA)
    assert hist.max() < 0.35 and hist.min() > 0.05, hist
    # The measure can fail: a checkerboard's edges lie along two directions only.
    checker, noise = _texture("checker", 0)
    hist = _orientation_histogram(checker.pattern_rgb(noise, _plane(extent, 0)).reshape(N, N, 3) @ LUMA)
    assert hist.min() < 0.05


@pytest.mark.parametrize("kind, seed", [("object", 3), ("room", 5), ("trajectory", 7)])
def test_texture_family_changes_colours_only(kind, seed):
    size = (64, 48)
    default = make_scene(kind, seed, 2, size)
    classic = make_scene(kind, seed, 2, size, textures="classic")
    natural = make_scene(kind, seed, 2, size, textures="natural")
    for name in ("images", "depths", "normals", "masks", "object_ids", "extrinsics_w2c", "intrinsics"):
        assert np.array_equal(getattr(classic, name), getattr(default, name)), name
    for name in ("depths", "normals", "masks", "object_ids", "extrinsics_w2c", "intrinsics"):
        assert np.array_equal(getattr(natural, name), getattr(default, name)), name
    assert default.textures == "classic" and natural.textures == "natural"
    assert natural.images.shape == (2, 48, 64, 3) and natural.images.dtype == np.uint8
    assert not np.array_equal(natural.images, default.images)
    assert natural.images.std() > 10 and np.isfinite(natural.depths).all()
    # The family draws textures from their own stream: the light is the same too.
    worlds = {family: build_world(kind, seed, family) for family in TEXTURE_FAMILIES}
    for family, world in worlds.items():
        assert {obj.texture.pattern for obj in world.objects} <= set(TEXTURE_FAMILIES[family])
        assert np.array_equal(world.light_dir, worlds["classic"].light_dir)
        assert world.ambient == worlds["classic"].ambient


def test_classic_scene_matches_the_committed_sample_asset():
    # The sample assets were rendered before texture families existed.
    folder = REPO / "assets" / "scenes" / "object_8"
    if not folder.is_dir():
        pytest.skip(f"{folder} not generated (recon3d.synth.make_sample_assets)")
    stored = read_scene(folder)
    assert np.array_equal(make_scene("object", 0, 8, (320, 240)).images, stored.images)


def test_texture_family_round_trips_and_rebuilds_the_world(tmp_path):
    scene = make_scene("object", 4, 1, (24, 18), textures="mixed")
    back = read_scene(write_scene(scene, tmp_path / "mixed"))
    assert back.textures == "mixed" and np.array_equal(back.images, scene.images)
    patterns = [obj.texture.pattern for obj in back.world().objects]
    assert patterns == [obj.texture.pattern for obj in build_world("object", 4, "mixed").objects]
    plain = make_scene("object", 4, 1, (24, 18))
    assert "textures" not in (write_scene(plain, tmp_path / "plain") / "cameras.json").read_text()
    assert read_scene(tmp_path / "plain").textures == "classic"


def test_unknown_family_lists_valid_families():
    with pytest.raises(ValueError, match="classic, natural, mixed"):
        make_scene("object", 0, 1, (8, 8), textures="photos")
