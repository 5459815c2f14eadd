"""Check browser uploads by content and copy the usable ones into the session's own folder.

Nothing the browser sends becomes a path: an upload is used only if it is a regular file
inside gradio's upload folder, it is copied under a name the app makes itself, and its
kind (image or video) and format come from its first bytes, never from its name. Every
limit (file count, bytes, megapixels) is checked before a single pixel is decoded.
"""
from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from recon3d.errors import InputError
from recon3d.io.inputs import InputOptions, InputSet, SkippedFile, collect_inputs, limit_views, number_repeats

IMAGE_FORMATS: dict[str, str] = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "TIFF": ".tiff",
                                 "WEBP": ".webp"}
"""Pillow format names recon3d reads -> extension of the staged copy."""

_PILLOW_OPENERS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")  # Pillow opens MPO files through its JPEG opener

VIDEO_CONTAINERS: dict[str, str] = {"mov": ".mp4", "matroska": ".mkv", "avi": ".avi"}
"""FFmpeg demuxers of the video containers recon3d reads -> extension of the staged copy."""

MAX_NAME_CHARS = 120
"""Longest display name kept (characters); longer names are cut at the end."""

_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_COPY_CHUNK = 1 << 20  # bytes read per step while copying


@dataclass(frozen=True)
class UploadLimits:
    """What one request may upload.

    Attributes:
        max_files: number of files.
        max_bytes: size of each file in bytes.
        max_megapixels: pixels of each image (or video frame) in 10^6 pixels, from its header.
    """

    max_files: int
    max_bytes: int
    max_megapixels: float


@dataclass(frozen=True)
class Upload:
    """One uploaded file: where gradio saved it and the name the browser gave it (None: the path's basename)."""

    path: str
    name: str | None = None


@dataclass(frozen=True)
class StagedFile:
    """An accepted upload: the app's own copy (inside the session folder), its display name and kind."""

    path: Path
    name: str
    kind: Literal["image", "video"]


@dataclass
class StagedUploads:
    """The result of staging one request's uploads.

    Attributes:
        files: the accepted copies, in upload order.
        rejected: the refused uploads, by display name, with a one-line reason each.
        total: the number of uploads in the request.
    """

    files: list[StagedFile]
    rejected: list[SkippedFile]
    total: int


class _Refused(Exception):
    """An upload that cannot be used; the message is the reason shown to the user."""


def display_name(raw: str) -> str:
    """The browser's file name reduced to a harmless label: the last path part (``/`` or ``\\``),
    without control or format characters, at most ``MAX_NAME_CHARS`` characters; ``"upload"`` if nothing is left."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    # Category C covers control characters (NUL, newline) and invisible format characters
    # such as right-to-left overrides, which could disguise a name in the status line.
    cleaned = "".join(ch for ch in base if not unicodedata.category(ch).startswith("C")).strip()
    if cleaned in ("", ".", ".."):
        return "upload"
    return cleaned[:MAX_NAME_CHARS]


def _staged_name(index: int, name: str, extension: str) -> str:
    """``<index>_<stem><extension>``: the stem keeps only ASCII letters, digits, ``.``, ``_`` and ``-``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:60].strip("._") or "upload"
    return f"{index:03d}_{stem}{extension}"


def _check_source(path: Path, upload_root: Path, max_bytes: int) -> None:
    """Refuse a path that is a link, not a regular file, outside ``upload_root``, empty or over ``max_bytes``.

    Only metadata is read (lstat), never the file's content.
    """
    if not Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(upload_root))):
        raise _Refused("not a file uploaded to this server")
    try:
        info = path.lstat()
    except OSError as exc:
        raise _Refused(f"cannot be opened ({exc.strerror})") from exc
    if stat.S_ISLNK(info.st_mode):
        raise _Refused("a symbolic link, not an uploaded file")
    if not stat.S_ISREG(info.st_mode):
        raise _Refused("not a regular file")
    if info.st_size == 0:
        raise _Refused("empty file (0 bytes)")
    if info.st_size > max_bytes:
        raise _Refused(f"{info.st_size / 2**20:.1f} MB, over this server's limit of {max_bytes / 2**20:g} MB per file")


def _copy(source: Path, dest: Path, max_bytes: int) -> None:
    """Copy ``source`` to the new file ``dest``, reading at most ``max_bytes`` + 1 bytes."""
    # O_NOFOLLOW and the fstat close the gap between the lstat check and this open;
    # O_NONBLOCK keeps a FIFO swapped in meanwhile from blocking the open.
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as src, open(dest, "xb") as out:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise _Refused("not a regular file")
        copied = 0
        while chunk := src.read(_COPY_CHUNK):
            copied += len(chunk)
            if copied > max_bytes:
                raise _Refused(f"over this server's limit of {max_bytes / 2**20:g} MB per file")
            out.write(chunk)


def _megapixel_check(width: int, height: int, limit: float, what: str) -> None:
    megapixels = width * height / 1e6
    if megapixels > limit:
        raise _Refused(f"{what} of {width}x{height} pixels ({megapixels:.1f} megapixels), over this server's "
                       f"limit of {limit:g} megapixels")


def _sniff_image(path: Path, max_megapixels: float) -> str | None:
    """The staged extension of an image recon3d reads, from its header only; None if it is no such image."""
    try:
        # Image.open parses the header; pixels are decoded only by load(), which is never called here.
        with Image.open(path, formats=_PILLOW_OPENERS) as image:
            image_format, width, height = image.format, image.width, image.height
    except Image.UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        # Pillow refuses headers above about 179 megapixels before returning the image.
        raise _Refused(f"{exc} (this server's limit is {max_megapixels:g} megapixels)") from exc
    # Format plugins raise many exception types on a malformed header; each means "unusable".
    except Exception as exc:
        raise _Refused(f"broken image header ({' '.join(str(exc).split())})") from exc
    _megapixel_check(width, height, max_megapixels, "image")
    return IMAGE_FORMATS[image_format]


def _video_demuxer(path: Path) -> str | None:
    """The FFmpeg demuxer for the file's container, from its magic bytes; None if not MP4/MOV, Matroska/WebM or AVI."""
    with open(path, "rb") as file:
        head = file.read(12)
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head[4:8] in _MP4_BOXES:
        return "mov"
    return None


def _sniff_video(path: Path, max_megapixels: float) -> str | None:
    """The staged extension of a video recon3d reads (a container with a video stream); None if it is no video."""
    demuxer = _video_demuxer(path)
    if demuxer is None:
        return None
    import av

    try:
        # Naming the demuxer stops FFmpeg from guessing a format (it would take any bytes for an image sequence).
        with av.open(str(path), format=demuxer) as container:
            sizes = [(s.codec_context.width, s.codec_context.height) for s in container.streams.video]
    except (av.FFmpegError, OSError) as exc:
        raise _Refused(f"broken video ({' '.join(str(exc).split())})") from exc
    if not sizes:
        raise _Refused("a media file without a video stream")
    _megapixel_check(*sizes[0], max_megapixels, "video frames")
    return VIDEO_CONTAINERS[demuxer]


def _sniff(path: Path, max_megapixels: float) -> tuple[Literal["image", "video"], str]:
    """(kind, extension) of the file at ``path`` from its content: ``"image"`` or ``"video"``."""
    extension = _sniff_image(path, max_megapixels)
    if extension is not None:
        return "image", extension
    extension = _sniff_video(path, max_megapixels)
    if extension is not None:
        return "video", extension
    raise _Refused("not an image or video recon3d reads (images: PNG, JPEG, BMP, TIFF, WebP; videos: MP4, MOV, "
                   "MKV, WebM, AVI)")


def _stage_one(upload: Upload, index: int, name: str, folder: Path, limits: UploadLimits,
               upload_root: Path) -> StagedFile:
    """Check one upload and copy it into ``folder``; raises _Refused (leaving nothing behind) when unusable."""
    source = Path(os.path.abspath(upload.path))
    _check_source(source, upload_root, limits.max_bytes)
    # The copy is sniffed, not the upload, so what was checked is exactly what gets decoded.
    copy = folder / f"{index:03d}.upload"
    try:
        _copy(source, copy, limits.max_bytes)
        kind, extension = _sniff(copy, limits.max_megapixels)
    except OSError as exc:
        copy.unlink(missing_ok=True)
        raise _Refused(f"cannot be read ({exc.strerror or exc})") from exc
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    staged = copy.rename(folder / _staged_name(index, name, extension))
    return StagedFile(staged, name, kind)


def stage_uploads(uploads: Sequence[Upload], folder: Path, limits: UploadLimits, upload_root: Path) -> StagedUploads:
    """Copy the usable uploads into ``folder`` as ``<index>_<clean stem>.<extension of the detected format>``.

    Args:
        uploads: the files gradio saved, in upload order.
        folder: an existing empty folder of this session; nothing is written elsewhere.
        limits: count, per-file size and megapixel limits, all checked before decoding.
        upload_root: gradio's upload folder; a path outside it (or a link) is refused unread.

    Returns:
        The staged copies and the refused uploads (reason per display name).

    Raises:
        InputError: too many files, more than one video, or a video mixed with images.
    """
    if len(uploads) > limits.max_files:
        raise InputError(f"{len(uploads)} files uploaded; this server takes at most {limits.max_files}")
    result = StagedUploads(files=[], rejected=[], total=len(uploads))
    for index, upload in enumerate(uploads):
        name = display_name(upload.name if upload.name is not None else upload.path)
        try:
            result.files.append(_stage_one(upload, index, name, folder, limits, upload_root))
        except _Refused as refused:
            result.rejected.append(SkippedFile(name, str(refused)))
    videos = [f.name for f in result.files if f.kind == "video"]
    if len(videos) > 1:
        raise InputError(f"{len(videos)} videos uploaded ({', '.join(videos)}); upload one video, or photos")
    if videos and len(result.files) > 1:
        raise InputError(f"the video '{videos[0]}' was uploaded with {len(result.files) - 1} images; upload either "
                         "photos or one video, not both")
    return result


def _without_path(message: str, path: Path, name: str) -> str:
    """``message`` with the staged path dropped where it is quoted and replaced by ``name`` elsewhere."""
    return message.replace(f" '{path}'", "").replace(str(path), name)


def load_staged(staged: StagedUploads, options: InputOptions) -> InputSet:
    """Decode the staged copies into views named after the uploads; a file that fails to decode is skipped.

    Args:
        staged: the result of `stage_uploads`.
        options: video sampling and megapixel limit, as for `recon3d.io.inputs.collect_inputs`.

    Returns:
        The views (display names, made unique; video frames ``<stem>_f<index>``) and every
        skipped upload, refused or undecodable, with its reason.

    Raises:
        InputError: no upload is usable; the message gives the first reason.
    """
    result = InputSet(views=[], skipped=list(staged.rejected))
    for file in staged.files:
        try:
            views = collect_inputs([file.path], options).views
        except InputError as err:
            result.skipped.append(SkippedFile(file.name, _without_path(str(err), file.path, file.name)))
            continue
        for view in views:
            # Images are named by their file, video frames by "<file stem>_f<index>".
            view.name = file.name if file.kind == "image" else Path(file.name).stem + view.name[len(file.path.stem):]
        result.views += views
    if not result.views:
        first = f" ('{result.skipped[0].path}': {result.skipped[0].reason})" if result.skipped else ""
        raise InputError(f"none of the {staged.total} uploaded files can be used{first}")
    for view, name in zip(result.views, number_repeats([v.name for v in result.views]), strict=True):
        view.name = name
    return limit_views(result, options)
