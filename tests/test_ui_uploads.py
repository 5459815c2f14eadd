"""Upload staging of the web app: content sniffing, limits, file names, links, session folders.

These call `recon3d_ui.uploads` and `recon3d_ui.session` directly, with a temporary folder
standing in for gradio's upload folder; tests/test_ui.py covers the same through a live app.
"""
from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

pytest.importorskip("gradio")

from recon3d_ui import uploads  # noqa: E402
from recon3d_ui.session import Session, new_session_folder, remove_stale_sessions, session_root  # noqa: E402
from recon3d_ui.uploads import Upload, UploadLimits, load_staged, stage_uploads  # noqa: E402

from recon3d.errors import InputError  # noqa: E402
from recon3d.io.inputs import InputOptions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "assets" / "scenes" / "object_8" / "images"
LIMITS = UploadLimits(max_files=10, max_bytes=10 * 2**20, max_megapixels=40.0)


@pytest.fixture
def upload_root(tmp_path: Path) -> Path:
    root = tmp_path / "gradio"
    root.mkdir()
    return root


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "session" / "inputs"
    folder.mkdir(parents=True)
    return folder


def sample(index: int = 0) -> bytes:
    return (SCENE / f"{index:03d}.png").read_bytes()


def put(upload_root: Path, name: str, data: bytes) -> Path:
    """Save ``data`` as gradio does: ``<upload folder>/<sha256 of the content>/<name>``."""
    folder = upload_root / hashlib.sha256(data + name.encode()).hexdigest()
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return path


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (the pixel data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def tiny_video(path: Path, frames: int = 6) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for k in range(frames):
            image = np.full((64, 64, 3), 40 * k, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Absolute paths passed to os.open (the only way staging reads an upload) while the test runs."""
    paths: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        paths.append(os.path.abspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(uploads.os, "open", spy)
    return paths


def test_png_named_jpg_is_staged_and_loaded_as_png(upload_root, inputs):
    data = sample()
    staged = stage_uploads([Upload(str(put(upload_root, "photo.jpg", data)))], inputs, LIMITS, upload_root)
    assert staged.rejected == []
    (file,) = staged.files
    assert file.kind == "image" and file.name == "photo.jpg"
    assert file.path.parent == inputs and file.path.suffix == ".png" and file.path.read_bytes() == data
    (view,) = load_staged(staged, InputOptions()).views
    assert view.name == "photo.jpg" and view.size_hw == Image.open(SCENE / "000.png").size[::-1]


NOT_IMAGES = {
    "html.png": b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
    "drawing.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="9" height="9"/></svg>',
    "noise.png": np.random.default_rng(0).bytes(4096),
    "fake.mp4": b"\0\0\0\x18ftypisom" + np.random.default_rng(1).bytes(2048),
}


@pytest.mark.parametrize("name", sorted(NOT_IMAGES))
def test_content_that_is_no_image_or_video_is_refused(upload_root, inputs, name):
    staged = stage_uploads([Upload(str(put(upload_root, name, NOT_IMAGES[name])))], inputs, LIMITS, upload_root)
    assert staged.files == [] and [r.path for r in staged.rejected] == [name]
    assert staged.rejected[0].reason
    assert files_under(inputs) == set()


def test_zero_byte_and_unsupported_format_are_refused(upload_root, inputs):
    gif = upload_root / "anim.png"
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    empty = put(upload_root, "empty.png", b"")
    staged = stage_uploads([Upload(str(empty)), Upload(str(gif))], inputs, LIMITS, upload_root)
    assert staged.files == []
    reasons = {r.path: r.reason for r in staged.rejected}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["anim.png"]


def test_bad_uploads_among_good_ones_are_skipped_with_reasons(upload_root, inputs):
    truncated = sample(2)[: len(sample(2)) // 2]
    paths = [put(upload_root, "a.png", sample(0)), put(upload_root, "page.png", NOT_IMAGES["html.png"]),
             put(upload_root, "b.png", sample(1)), put(upload_root, "cut.png", truncated)]
    staged = stage_uploads([Upload(str(p)) for p in paths], inputs, LIMITS, upload_root)
    # The truncated PNG has a valid header: it is staged, and skipped only when decoding fails.
    assert [f.name for f in staged.files] == ["a.png", "b.png", "cut.png"]
    loaded = load_staged(staged, InputOptions())
    assert [v.name for v in loaded.views] == ["a.png", "b.png"]
    reasons = {s.path: s.reason for s in loaded.skipped}
    assert set(reasons) == {"page.png", "cut.png"}
    assert str(inputs) not in reasons["cut.png"]  # the server's folder is not shown to the user


def test_no_usable_upload_raises_the_first_reason(upload_root, inputs):
    paths = [put(upload_root, "page.png", NOT_IMAGES["html.png"]), put(upload_root, "empty.jpg", b"")]
    staged = stage_uploads([Upload(str(p)) for p in paths], inputs, LIMITS, upload_root)
    with pytest.raises(InputError, match=r"page\.png") as info:
        load_staged(staged, InputOptions())
    assert staged.rejected[0].reason in str(info.value)


@pytest.mark.parametrize("side", [8000, 20000])  # under and over Pillow's own decompression-bomb limit
def test_megapixel_bomb_is_refused_from_its_header_without_decoding(upload_root, inputs, monkeypatch, side):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    bomb = put(upload_root, "bomb.png", png_header(side, side))
    assert bomb.stat().st_size < 1000
    good = put(upload_root, "good.png", sample())
    staged = stage_uploads([Upload(str(bomb)), Upload(str(good))], inputs, LIMITS, upload_root)
    assert [f.name for f in staged.files] == ["good.png"]
    (rejected,) = staged.rejected
    assert rejected.path == "bomb.png" and "megapixels" in rejected.reason


def test_byte_limit_per_file(upload_root, inputs, opened):
    data = sample()
    path = put(upload_root, "a.png", data)
    tight = UploadLimits(max_files=10, max_bytes=len(data) - 1, max_megapixels=40.0)
    staged = stage_uploads([Upload(str(path))], inputs, tight, upload_root)
    assert staged.files == [] and "MB" in staged.rejected[0].reason
    assert str(path) not in opened  # refused from its size alone
    exact = UploadLimits(max_files=10, max_bytes=len(data), max_megapixels=40.0)
    assert len(stage_uploads([Upload(str(path))], inputs, exact, upload_root).files) == 1


def test_count_limit_refuses_before_copying(upload_root, inputs):
    paths = [put(upload_root, f"{k}.png", sample(k)) for k in range(3)]
    two = UploadLimits(max_files=2, max_bytes=10 * 2**20, max_megapixels=40.0)
    with pytest.raises(InputError, match=r"3 files uploaded.*at most 2"):
        stage_uploads([Upload(str(p)) for p in paths], inputs, two, upload_root)
    assert files_under(inputs) == set()


@pytest.mark.parametrize(("raw", "shown"), [
    ("../../x.png", "x.png"), ("/abs/x.png", "x.png"), ("/etc/passwd", "passwd"), ("a\x00b.png", "ab.png"),
    ("line\nbreak.png", "linebreak.png"), ("..\\..\\win.png", "win.png"), ("..", "upload"),
    ("\u202egnp.exe", "gnp.exe"),
])
def test_browser_names_never_leave_the_session_folder(tmp_path, upload_root, inputs, raw, shown):
    path = put(upload_root, "x.png", sample())
    before = files_under(tmp_path)
    staged = stage_uploads([Upload(str(path), raw), Upload(str(path), raw)], inputs, LIMITS, upload_root)
    assert [f.name for f in staged.files] == [shown, shown]
    assert all(f.path.resolve().parent == inputs.resolve() for f in staged.files)
    assert files_under(tmp_path) - before == {f.path for f in staged.files}
    assert [v.name for v in load_staged(staged, InputOptions()).views] == [shown, f"{shown}#2"]


def test_symbolic_links_are_refused_unopened(tmp_path, upload_root, inputs, opened):
    target = put(upload_root, "real.png", sample())
    inside = upload_root / "inside.png"
    inside.symlink_to(target)
    outside_target = tmp_path / "secret.png"
    outside_target.write_bytes(sample(1))
    outside = upload_root / "outside.png"
    outside.symlink_to(outside_target)
    staged = stage_uploads([Upload(str(inside)), Upload(str(outside))], inputs, LIMITS, upload_root)
    assert staged.files == [] and [r.path for r in staged.rejected] == ["inside.png", "outside.png"]
    assert "symbolic link" in staged.rejected[0].reason
    assert str(inside) not in opened and str(outside) not in opened and files_under(inputs) == set()


def test_paths_outside_the_upload_folder_are_refused_unread(tmp_path, upload_root, inputs, opened):
    elsewhere = tmp_path / "elsewhere" / "x.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(sample())
    sneaky = upload_root / "sub" / ".." / ".." / "elsewhere" / "x.png"
    staged = stage_uploads([Upload(str(elsewhere)), Upload(str(sneaky))], inputs, LIMITS, upload_root)
    assert staged.files == [] and len(staged.rejected) == 2
    assert all("not a file uploaded" in r.reason for r in staged.rejected)
    assert str(elsewhere) not in opened and files_under(inputs) == set()


def test_one_video_is_staged_by_content_and_not_mixed_with_images(tmp_path, upload_root, inputs):
    video = tmp_path / "clip.mp4"
    tiny_video(video)
    clip = put(upload_root, "clip.mov", video.read_bytes())
    staged = stage_uploads([Upload(str(clip))], inputs, LIMITS, upload_root)
    (file,) = staged.files
    assert file.kind == "video" and file.path.suffix == ".mp4" and file.name == "clip.mov"
    views = load_staged(staged, InputOptions(video_every_n=2)).views
    assert [v.name for v in views] == ["clip_f000000", "clip_f000002", "clip_f000004"]

    image = put(upload_root, "a.png", sample())
    for folder_name, mixed in [("mixed", [clip, image]), ("two", [clip, clip])]:
        folder = inputs.parent / folder_name
        folder.mkdir()
        with pytest.raises(InputError, match="video"):
            stage_uploads([Upload(str(p)) for p in mixed], folder, LIMITS, upload_root)


def test_stale_session_folders_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{dead.pid}-abc123"
    (stale / "inputs").mkdir(parents=True)
    (stale / "inputs" / "000_x.png").write_bytes(b"x")
    mine = new_session_folder(tmp_path)
    parent = tmp_path / f"{os.getppid()}-def456"  # a live process that is not this one
    parent.mkdir()
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    assert remove_stale_sessions(tmp_path) == [stale]
    assert not stale.exists() and mine.is_dir() and parent.is_dir() and unrelated.is_dir()


def test_sessions_get_separate_folders_under_one_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second = Session(), Session()
    root = session_root()
    assert root == tmp_path / "recon3d-ui" and (root.stat().st_mode & 0o777) == 0o700
    assert first.folder != second.folder and {first.folder.parent, second.folder.parent} == {root}
    assert first.folder.name.startswith(f"{os.getpid()}-")
    first.close()
    assert not first.folder.exists() and second.folder.is_dir()
