"""From what the user names to views: folders, skipping unusable files, links, a folder's video."""
from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from recon3d.errors import InputError
from recon3d.io.images import MIN_IMAGE_SIDE, LoadedImage
from recon3d.io.inputs import InputOptions, collect_inputs

SIZE = (40, 32)  # (width, height): above the minimum side, small enough to be quick


def _image(path: Path, value: int = 0, size: tuple[int, int] = SIZE) -> Path:
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def _truncated_png(path: Path) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _write_video(path: Path, num_frames: int = 6, size: tuple[int, int] = (64, 48)) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(num_frames):
            array = np.full((size[1], size[0], 3), 30 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_folder_natural_order_skips_hidden_and_non_images(tmp_path: Path) -> None:
    for name in ["img10.png", "img2.png", "img1.jpg", "IMG3.JPEG", ".img0.png"]:
        _image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    _image(tmp_path / "sub" / "img4.png")
    loaded = collect_inputs(tmp_path)
    assert [v.name for v in loaded.views] == ["img1.jpg", "img2.png", "IMG3.JPEG", "img10.png"]
    assert all(isinstance(v, LoadedImage) and v.image.mode == "RGB" for v in loaded.views)
    assert loaded.views[0].size_hw == (SIZE[1], SIZE[0])
    assert loaded.skipped == []  # notes.txt and the subfolder are not candidates, so not "skipped"


def test_empty_and_imageless_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no images found in '.*empty' \(supported: \.png, \.jpg"):
        collect_inputs(empty)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("a")
    (texts / "b.txt").write_text("b")
    with pytest.raises(InputError, match="no images found"):
        collect_inputs([texts])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no inputs"):
        collect_inputs([])
    with pytest.raises(InputError, match="does not exist"):
        collect_inputs(tmp_path / "nowhere")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(InputError, match="notes.txt.*not a supported image or video"):
        collect_inputs([notes])


def test_duplicate_names_are_disambiguated(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _image(tmp_path / "a" / "x.png", 10)
    second = _image(tmp_path / "b" / "x.png", 20)
    other = _image(tmp_path / "a" / "y.png", 30)
    views = collect_inputs([first, second, other]).views
    assert [v.name for v in views] == ["a/x.png", "b/x.png", "y.png"]
    assert [v.image.getpixel((0, 0))[0] for v in views] == [10, 20, 30]

    twice = collect_inputs([other, other]).views
    assert len({v.name for v in twice}) == 2


def _folder_with_bad_files(folder: Path) -> dict[str, str]:
    """Three good images and one of each kind of unusable file; returns bad name -> expected reason."""
    folder.mkdir()
    for i in range(3):
        _image(folder / f"good_{i}.png", 40 * i)
    _truncated_png(folder / "bad_1_truncated.png")
    (folder / "bad_2_page.png").write_text("<!DOCTYPE html><html><body>not a picture</body></html>")
    (folder / "bad_3_empty.jpg").write_bytes(b"")
    (folder / "bad_4_noise.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _image(folder / "bad_5_tiny.png", size=(MIN_IMAGE_SIDE - 1, 200))
    (folder / "bad_6_phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    return {"bad_1_truncated.png": "cannot read", "bad_2_page.png": "cannot read", "bad_3_empty.jpg": "cannot read",
            "bad_4_noise.jpg": "cannot read", "bad_5_tiny.png": f"minimum of {MIN_IMAGE_SIDE} px",
            "bad_6_phone.heic": "not supported"}


def test_unusable_files_in_a_folder_are_skipped_and_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = _folder_with_bad_files(tmp_path / "photos")
    loaded = collect_inputs(tmp_path / "photos")
    assert [v.name for v in loaded.views] == ["good_0.png", "good_1.png", "good_2.png"]
    skipped = {Path(s.path).name: s.reason for s in loaded.skipped}
    assert sorted(skipped) == sorted(expected)
    for name, needle in expected.items():
        assert needle in skipped[name], (name, skipped[name])
        assert name not in skipped[name]  # the reason does not repeat the path
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == len(expected) and all(w.startswith("skipping ") for w in warnings)


def test_strict_stops_at_the_first_unusable_file(tmp_path: Path) -> None:
    _folder_with_bad_files(tmp_path / "photos")
    with pytest.raises(InputError, match=r"bad_1_truncated\.png.*--strict"):
        collect_inputs(tmp_path / "photos", InputOptions(strict=True))


def test_a_file_named_directly_is_never_skipped(tmp_path: Path) -> None:
    expected = _folder_with_bad_files(tmp_path / "photos")
    good = tmp_path / "photos" / "good_0.png"
    for name, needle in expected.items():
        if name.endswith(".heic"):
            continue  # not an image type at all when named: covered by test_bad_arguments
        with pytest.raises(InputError, match=needle):
            collect_inputs([good, tmp_path / "photos" / name])


def test_a_folder_without_any_usable_image_fails_naming_one(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    _truncated_png(folder / "a.png")
    _image(folder / "b.png", size=(8, 6))
    with pytest.raises(InputError, match=r"none of the 2 image files .*'a\.png': cannot read"):
        collect_inputs(folder)
    heic_only = tmp_path / "heic"
    heic_only.mkdir()
    (heic_only / "x.heic").write_bytes(b"\x00")
    with pytest.raises(InputError, match=r"no images found.*skipped 1 unusable file\(s\), first 'x\.heic'"):
        collect_inputs(heic_only)


def test_small_pil_images_are_refused_by_the_pipeline() -> None:
    from recon3d.pipeline import reconstruct

    # Refused while loading the inputs, before any model is loaded (the name does not exist).
    with pytest.raises(InputError, match=r"input image 1 is 2x3 pixels, smaller than the minimum"):
        reconstruct([Image.new("RGB", (64, 64)), Image.new("RGB", (2, 3))], "no-such-model")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_links_leaving_the_folder_are_skipped_unless_followed(tmp_path: Path) -> None:
    outside = _image(tmp_path / "outside.png", 200)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder / "a.png", 10)
    os.symlink(outside, folder / "b_out.png")
    os.symlink(folder / "a.png", folder / "c_inside.png")
    os.symlink(secret, folder / "d_secret.png")
    os.symlink(folder / "e_loop.png", folder / "e_loop.png")  # a link to itself
    os.symlink(tmp_path / "gone.png", folder / "f_dangling.png")
    os.symlink(folder, folder / "g_dir.png")  # a folder loop named like an image

    loaded = collect_inputs(folder)
    assert [v.name for v in loaded.views] == ["a.png", "c_inside.png"]
    reasons = {Path(s.path).name: s.reason for s in loaded.skipped}
    assert sorted(reasons) == ["b_out.png", "d_secret.png", "e_loop.png", "f_dangling.png"]
    assert "outside the folder" in reasons["b_out.png"] and "--follow-links" in reasons["b_out.png"]
    assert "outside the folder" in reasons["d_secret.png"]
    assert "looping" in reasons["e_loop.png"] and "broken" in reasons["f_dangling.png"]

    followed = collect_inputs(folder, InputOptions(follow_links=True))
    assert [v.name for v in followed.views] == ["a.png", "b_out.png", "c_inside.png"]
    assert followed.views[1].image.getpixel((0, 0)) == (200, 200, 200)
    assert {Path(s.path).name for s in followed.skipped} == {"d_secret.png"}  # followed, but not an image


def test_a_folder_holding_only_a_video_uses_it(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    _write_video(folder / "walk.mp4")
    (folder / "readme.txt").write_text("shot on a phone")
    loaded = collect_inputs(folder, InputOptions(video_every_n=2))
    assert [v.name for v in loaded.views] == ["walk_f000000", "walk_f000002", "walk_f000004"]
    assert len(loaded.notes) == 1 and "walk.mp4" in loaded.notes[0]

    _write_video(folder / "other.mov")
    with pytest.raises(InputError, match=r"2 videos \(other\.mov, walk\.mp4\); name the video"):
        collect_inputs(folder)

    _image(folder / "still.png")  # images present: the videos are not used, and the user is told
    loaded = collect_inputs(folder)
    assert [v.name for v in loaded.views] == ["still.png"]
    assert len(loaded.notes) == 1 and "other.mov, walk.mp4" in loaded.notes[0]


def test_videos_under_the_minimum_side_are_refused(tmp_path: Path) -> None:
    clip = _write_video(tmp_path / "thumb.mp4", size=(16, 16))
    with pytest.raises(InputError, match=r"video '.*thumb\.mp4' is 16x16 pixels"):
        collect_inputs(clip)


def test_megapixel_limit_applies_to_named_files(tmp_path: Path) -> None:
    path = _image(tmp_path / "big.png", size=(2000, 1000))
    with pytest.raises(InputError, match="megapixels"):
        collect_inputs([path], InputOptions(max_megapixels=1.5))


def test_max_views_keeps_an_even_spread_and_says_so(tmp_path: Path) -> None:
    for i in range(10):
        _image(tmp_path / f"v{i}.png", 20 * i)
    loaded = collect_inputs(tmp_path, InputOptions(max_views=4))
    assert [v.name for v in loaded.views] == ["v0.png", "v3.png", "v6.png", "v9.png"]  # rounded linspace(0, 9, 4)
    assert loaded.notes == ["kept 4 of 10 views, evenly spread (--max-views)"]
    assert len(collect_inputs(tmp_path, InputOptions(max_views=10)).views) == 10


def test_a_folder_of_folders_points_at_them(tmp_path: Path) -> None:
    (tmp_path / "scene" / "images").mkdir(parents=True)
    _image(tmp_path / "scene" / "images" / "a.png")
    (tmp_path / "scene" / "colmap_reference").mkdir()
    with pytest.raises(InputError, match=r"holds folders \(colmap_reference, images\): pass the one with the photos"):
        collect_inputs(tmp_path / "scene")
