"""Image loading: orientation, colour modes, bit depths, damaged files, size limits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon3d.errors import InputError
from recon3d.io.images import load_image, to_rgb

RED = (255, 0, 0)
EXIF_ORIENTATION = 0x0112


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _marked_landscape() -> Image.Image:
    """40 wide x 20 high, black, with a red 6x6 block in the stored top-left corner."""
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:6, :6] = RED
    return Image.fromarray(array)


def _is_red(image: Image.Image, xy: tuple[int, int]) -> bool:
    r, g, b = image.getpixel(xy)
    return r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [
        # EXIF 6: display = stored rotated 90 degrees clockwise; stored top-left -> top-right.
        (6, "top_right"),
        # EXIF 8: display = stored rotated 90 degrees counter-clockwise; top-left -> bottom-left.
        (8, "bottom_left"),
    ],
)
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, red_corner: str) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = _save(_marked_landscape(), tmp_path / "photo.jpg", exif=exif, quality=95)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (20, 40)  # (width, height): transposed
    corners = {"top_left": (2, 2), "top_right": (17, 2), "bottom_left": (2, 37), "bottom_right": (17, 37)}
    assert [name for name, xy in corners.items() if _is_red(image, xy)] == [red_corner]


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[0, 0] = (10, 20, 30, 0)  # fully transparent
    array[0, 1] = (0, 0, 0, 255)  # opaque black
    array[1, 0] = (0, 0, 0, 128)  # half-transparent black over white: 255 * (1 - 128/255) = 127
    path = _save(Image.fromarray(array, "RGBA"), tmp_path / "rgba.png")
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (0, 0, 0)
    assert all(abs(c - 127) <= 1 for c in image.getpixel((0, 1)))


def test_la_is_composited_on_white(tmp_path: Path) -> None:
    array = np.array([[[50, 0], [50, 255]]], dtype=np.uint8)
    image = load_image(_save(Image.fromarray(array, "LA"), tmp_path / "la.png"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (50, 50, 50)


def test_palette_image(tmp_path: Path) -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([0, 0, 0, 200, 10, 20, 5, 100, 250] + [0] * (256 * 3 - 9))
    palette_image.putdata([0, 1, 2])
    image = load_image(_save(palette_image, tmp_path / "p.png"))
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (200, 10, 20), (5, 100, 250)]

    path = _save(palette_image, tmp_path / "p_transparent.png", transparency=1)
    image = load_image(path)
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (255, 255, 255), (5, 100, 250)]


def test_grayscale_image(tmp_path: Path) -> None:
    image = load_image(_save(Image.new("L", (4, 3), 77), tmp_path / "gray.png"))
    assert image.mode == "RGB" and image.size == (4, 3)
    assert image.getpixel((3, 2)) == (77, 77, 77)


def test_16bit_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 32768, 257 * 10]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "depth16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really read back as a 16-bit image
    image = load_image(path)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0))[0] for x in range(4)] == [0, 255, 128, 10]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.fromarray(np.array([[0, 65535, 32768]], dtype=">u2")), [0, 255, 128]),  # I;16B
        (Image.fromarray(np.array([[0, 65535, 32768]], dtype=np.int32), "I"), [0, 255, 128]),
        (Image.fromarray(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), "F"), [0, 255, 128]),
    ],
)
def test_high_bit_depth_modes(image: Image.Image, expected: list[int]) -> None:
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert [rgb.getpixel((x, 0)) for x in range(3)] == [(v, v, v) for v in expected]


def test_cmyk_image(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), tmp_path / "cmyk.tif")
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == RED


def _noise_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return _save(Image.fromarray(noise), path)


def test_truncated_png_is_an_input_error(tmp_path: Path) -> None:
    path = _noise_png(tmp_path / "broken.png")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError) as info:
        load_image(path)
    message = str(info.value)
    assert "broken.png" in message and "\n" not in message


def test_garbage_and_missing_files_are_input_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg\nat all\n")
    with pytest.raises(InputError, match="garbage.jpg") as info:
        load_image(garbage)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_huge_image_over_limit(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (2000, 1000)), tmp_path / "big.png")  # 2.0 megapixels
    with pytest.raises(InputError, match=r"big\.png.*2\.0 megapixels.*limit of 1.*max_megapixels"):
        load_image(path, max_megapixels=1)


def test_our_limit_replaces_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow alone would refuse this 2 Mpx image (over 2x its limit); ours (178 Mpx) allows it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)
    path = _save(Image.new("RGB", (2000, 1000)), tmp_path / "big.png")
    assert load_image(path).size == (2000, 1000)
    assert Image.MAX_IMAGE_PIXELS == 500_000
