"""Preprocessing: bit-exact parity with VGGT's load_and_preprocess_images, and the
model-pixel -> original-pixel maps checked against drawn markers and analytic corners."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from recon3d.errors import InputError
from recon3d.io.images import load_image
from recon3d.io.preprocess import preprocess_images

SOURCES = {
    "landscape": "landscape_640x480.png",
    "portrait": "portrait_480x640.png",
    "square_rgba": "square_rgba_300x300.png",
}


@pytest.fixture(scope="module")
def parity(vggt_parity: Path) -> dict:
    folder = vggt_parity / "preprocess"
    if not folder.is_dir():
        pytest.skip(f"preprocess parity vectors not found in {folder}")
    images = {key: load_image(folder / name) for key, name in SOURCES.items()}
    return {"images": images, **load_file(folder / "preprocess.safetensors")}


def test_crop_of_mixed_list_matches_reference(parity: dict, caplog: pytest.LogCaptureFixture) -> None:
    images = parity["images"]
    with caplog.at_level(logging.WARNING):
        result = preprocess_images([images["landscape"], images["portrait"], images["square_rgba"]], "crop")
    assert result.images.dtype == torch.float32
    assert torch.equal(result.images, parity["crop"])
    # The reference warns about the mixed shapes (392x518 landscape vs 518x518).
    assert any("different sizes" in r.getMessage() for r in caplog.records)


def test_pad_of_three_matches_reference(parity: dict, caplog: pytest.LogCaptureFixture) -> None:
    images = parity["images"]
    with caplog.at_level(logging.WARNING):
        result = preprocess_images([images["landscape"], images["portrait"], images["square_rgba"]], "pad")
    crop, pad_portrait = parity["crop"], parity["pad_portrait"]
    assert torch.equal(result.images, torch.stack([crop[0], pad_portrait[0], crop[2]]))
    assert not caplog.records  # all three are already 518x518


@pytest.mark.parametrize(
    ("key", "mode", "expected"),
    [
        ("landscape", "crop", lambda r: r["crop"][0:1, :, 63:455, :]),
        ("landscape", "pad", lambda r: r["crop"][0:1]),
        ("portrait", "crop", lambda r: r["crop"][1:2]),
        ("portrait", "pad", lambda r: r["pad_portrait"]),
        ("square_rgba", "crop", lambda r: r["crop"][2:3]),
        ("square_rgba", "pad", lambda r: r["crop"][2:3]),
    ],
)
def test_single_image_matches_reference(parity: dict, key: str, mode: str, expected) -> None:
    result = preprocess_images([parity["images"][key]], mode)
    assert torch.equal(result.images, expected(parity))


def test_rgba_passed_directly_is_composited_like_reference(vggt_parity: Path, parity: dict) -> None:
    with Image.open(vggt_parity / "preprocess" / SOURCES["square_rgba"]) as raw:
        assert raw.mode == "RGBA"
        result = preprocess_images([raw], "crop")
    assert torch.equal(result.images, parity["crop"][2:3])


def test_original_sizes(parity: dict) -> None:
    images = parity["images"]
    result = preprocess_images([images["landscape"], images["portrait"]], "pad")
    np.testing.assert_array_equal(result.original_sizes, [[480, 640], [640, 480]])


# --- to_original ---------------------------------------------------------------------------

def _apply(matrix: np.ndarray, x: float, y: float) -> np.ndarray:
    return (matrix @ np.array([x, y, 1.0]))[:2]


def _marker_image(width: int, height: int, markers: list[tuple[int, int]]) -> Image.Image:
    """Black image with one single-pixel marker per colour channel (R, G, B)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    for channel, (x, y) in enumerate(markers):
        array[y, x, channel] = 255
    return Image.fromarray(array)


def _peak_centroid(channel: np.ndarray) -> tuple[float, float]:
    """Continuous (x, y) of the intensity-weighted centroid around the brightest pixel."""
    v, u = np.unravel_index(int(np.argmax(channel)), channel.shape)
    v0, u0 = max(v - 2, 0), max(u - 2, 0)
    window = channel[v0 : v + 3, u0 : u + 3]
    ys, xs = np.mgrid[v0 : v0 + window.shape[0], u0 : u0 + window.shape[1]]
    total = window.sum()
    return float((window * (xs + 0.5)).sum() / total), float((window * (ys + 0.5)).sum() / total)


# Markers sit inside the rows that crop mode keeps (portrait keeps original rows ~78..562).
MARKER_CASES = {
    "landscape": (640, 480, [(100, 120), (333, 250), (570, 401)]),
    "portrait": (480, 640, [(60, 150), (241, 333), (420, 500)]),
}


@pytest.mark.parametrize("orientation", list(MARKER_CASES))
@pytest.mark.parametrize(("mode", "target_size"), [("crop", 518), ("pad", 518), ("fit", 518), ("fit", 224)])
def test_to_original_finds_drawn_markers(orientation: str, mode: str, target_size: int) -> None:
    width, height, markers = MARKER_CASES[orientation]
    result = preprocess_images([_marker_image(width, height, markers)], mode, target_size=target_size)
    model = result.images[0].numpy().copy()
    model[:, (model == 1.0).all(axis=0)] = 0.0  # white padding is no marker response
    for channel, (x, y) in enumerate(markers):
        found = _apply(result.to_original[0], *_peak_centroid(model[channel]))
        # Well under the ~0.6 original px that a half-pixel convention slip would cost.
        assert np.abs(found - (x + 0.5, y + 0.5)).max() < 0.35, (channel, found, (x, y))


def test_to_original_pad_landscape_corners() -> None:
    # 640x480 -> 518x392 content, 63 white rows above and below.
    result = preprocess_images([Image.new("RGB", (640, 480))], "pad")
    np.testing.assert_allclose(_apply(result.to_original[0], 0, 63), [0, 0], atol=1e-9)
    np.testing.assert_allclose(_apply(result.to_original[0], 518, 455), [640, 480], atol=1e-9)


def test_to_original_pad_portrait_corners() -> None:
    # 480x640 -> 392x518 content, 63 white columns left and right.
    result = preprocess_images([Image.new("RGB", (480, 640))], "pad")
    np.testing.assert_allclose(_apply(result.to_original[0], 63, 0), [0, 0], atol=1e-9)
    np.testing.assert_allclose(_apply(result.to_original[0], 455, 518), [480, 640], atol=1e-9)


def test_to_original_crop_portrait_corners() -> None:
    # 480x640 -> 518x686, rows 84:602 kept.
    result = preprocess_images([Image.new("RGB", (480, 640))], "crop")
    assert result.images.shape == (1, 3, 518, 518)
    np.testing.assert_allclose(_apply(result.to_original[0], 0, 0), [0, 84 * 640 / 686], atol=1e-9)
    np.testing.assert_allclose(_apply(result.to_original[0], 518, 518), [480, 602 * 640 / 686], atol=1e-9)


def test_to_original_mixed_list_includes_list_padding() -> None:
    # In crop mode the 392x518 landscape is padded by 63 rows on top to match the portrait.
    result = preprocess_images([Image.new("RGB", (640, 480)), Image.new("RGB", (480, 640))], "crop")
    np.testing.assert_allclose(_apply(result.to_original[0], 0, 63), [0, 0], atol=1e-9)
    np.testing.assert_allclose(_apply(result.to_original[0], 518, 455), [640, 480], atol=1e-9)


def test_fit_keeps_aspect_ratio_without_padding() -> None:
    result = preprocess_images([Image.new("RGB", (640, 480), (10, 20, 30))], "fit", target_size=224)
    assert result.images.shape == (1, 3, 168, 224)  # 480 * 224 / 640 = 168 = 12 patches
    assert not (result.images == 1.0).any()
    np.testing.assert_allclose(_apply(result.to_original[0], 0, 0), [0, 0], atol=1e-9)
    np.testing.assert_allclose(_apply(result.to_original[0], 224, 168), [640, 480], atol=1e-9)

    portrait = preprocess_images([Image.new("RGB", (480, 640))], "fit", target_size=224)
    assert portrait.images.shape == (1, 3, 224, 168)


def test_fit_keeps_at_least_one_patch() -> None:
    result = preprocess_images([Image.new("RGB", (1000, 10))], "fit", target_size=224, patch_size=14)
    assert result.images.shape == (1, 3, 14, 224)


def test_fit_mixed_shapes_are_padded_white(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = preprocess_images(
            [Image.new("RGB", (640, 480)), Image.new("RGB", (480, 640))], "fit", target_size=224
        )
    assert result.images.shape == (2, 3, 224, 224)
    assert caplog.records
    # Landscape 168x224 content: 28 white rows above and below; portrait: 28 white columns.
    assert (result.images[0, :, :28] == 1.0).all() and (result.images[0, :, 196:] == 1.0).all()
    assert (result.images[0, :, 28:196] == 0.0).all()
    assert (result.images[1, :, :, :28] == 1.0).all() and (result.images[1, :, :, 28:196] == 0.0).all()


def test_validation() -> None:
    with pytest.raises(InputError, match="no images to process"):
        preprocess_images([])
    with pytest.raises(ValueError, match="multiple of patch_size"):
        preprocess_images([Image.new("RGB", (8, 8))], target_size=500, patch_size=14)
    with pytest.raises(ValueError, match="mode"):
        preprocess_images([Image.new("RGB", (8, 8))], mode="stretch")
