"""Turn what the user named (folders, image files, videos) into views, tolerating bad files.

Inside a folder, a file that cannot be used (unreadable, truncated, too small, an image
format recon3d does not read, a link that leaves the folder) is skipped with a warning
and recorded, as COLMAP does, so one bad JPEG does not cost a whole scene; ``strict``
turns every such skip into an error. A file named directly is never skipped: the user
asked for it, so a problem with it is an error.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recon3d.errors import InputError
from recon3d.io.frame_selection import SELECT_MODES, curate, evenly_spaced, score_frame
from recon3d.io.images import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    LoadedImage,
    check_image_size,
    load_image,
    natural_sort_key,
)

logger = logging.getLogger(__name__)

UNSUPPORTED_IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".heic", ".heif", ".avif", ".jxl", ".gif", ".exr", ".hdr", ".dng", ".raw", ".cr2", ".cr3", ".nef", ".arw",
    ".orf", ".rw2", ".raf",
)
"""Photo formats a folder may hold that recon3d does not read: reported when skipped, so a
folder of HEIC or raw files does not just look empty."""


@dataclass
class InputOptions:
    """How named inputs become views (shared by every front end).

    Attributes:
        video_fps, video_every_n, video_max_frames: frame sampling of videos (see
            `recon3d.io.video.load_video_frames`; default one frame per second).
        select_frames: ``"all"``, or ``"sharp"`` to drop blurred and near-duplicate
            frames of videos and of each folder (a burst) before sampling.
        strict: fail on the first unusable file in a folder instead of skipping it.
        follow_links: use symbolic links in folders that point outside the folder.
        max_megapixels: largest image accepted (default `recon3d.io.images.MAX_MEGAPIXELS`).
        max_views: at most this many views in all, evenly spread (first and last kept).
    """

    video_fps: float | None = None
    video_every_n: int | None = None
    video_max_frames: int | None = None
    select_frames: str = "all"
    strict: bool = False
    follow_links: bool = False
    max_megapixels: float | None = None
    max_views: int | None = None

    def __post_init__(self) -> None:
        if self.select_frames not in SELECT_MODES:
            raise ValueError(f"select_frames must be one of {', '.join(SELECT_MODES)}, not '{self.select_frames}'")


@dataclass
class SkippedFile:
    """A file left out of the views, and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class InputSet:
    """The views to reconstruct, with what was left out on the way.

    Attributes:
        views: the images, in input order, with unique names.
        skipped: unusable files found in folders (empty with ``strict``).
        dropped_frames: frame or file name -> reason, for what ``select_frames="sharp"`` dropped.
        notes: one-line remarks for the user (e.g. a folder's video used in place of images).
    """

    views: list[LoadedImage]
    skipped: list[SkippedFile] = field(default_factory=list)
    dropped_frames: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _supported_list() -> str:
    return ", ".join(IMAGE_EXTENSIONS)


def _link_leaves(entry: Path, folder: Path) -> str | None:
    """Why the symbolic link ``entry`` may not be used, or None when it stays inside ``folder``."""
    try:
        target = entry.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop (RuntimeError before Python 3.13)
        return "broken or looping symbolic link"
    if not target.is_relative_to(folder.resolve()):
        return f"symbolic link to '{target}', outside the folder (pass --follow-links to use it)"
    return None


@dataclass
class _FolderListing:
    """A folder's candidate files in natural order; ``entries`` pairs each image candidate
    with the reason it is refused (None when it is to be loaded)."""

    entries: list[tuple[Path, str | None]] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)

    @property
    def images(self) -> list[Path]:
        return [path for path, reason in self.entries if reason is None]

    @property
    def refused(self) -> list[SkippedFile]:
        return [SkippedFile(str(path), reason) for path, reason in self.entries if reason is not None]


def _list_folder(folder: Path, options: InputOptions) -> _FolderListing:
    """Images and videos directly inside ``folder`` (no hidden files), in natural order."""
    listing = _FolderListing()
    for entry in sorted(folder.iterdir(), key=lambda p: natural_sort_key(p.name)):
        suffix = entry.suffix.lower()
        known = suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS or suffix in UNSUPPORTED_IMAGE_EXTENSIONS
        if entry.name.startswith(".") or not known:
            logger.debug("ignoring '%s': not an image or video", entry)
            continue
        reason = _link_leaves(entry, folder) if entry.is_symlink() and not options.follow_links else None
        if reason is None and not entry.is_file():
            continue  # a folder named like an image: nested folders are not searched
        if reason is None and suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
            reason = f"'{suffix}' images are not supported (supported: {_supported_list()}); convert it to JPEG or PNG"
        if reason is None and suffix in VIDEO_EXTENSIONS:
            listing.videos.append(entry)
        else:
            listing.entries.append((entry, reason))
    return listing


def _load_view(path: Path, options: InputOptions) -> LoadedImage:
    """One image file as a view; refused when unreadable, too large or too small."""
    image = load_image(path, max_megapixels=options.max_megapixels)
    check_image_size(image.width, image.height, f"image '{path}'")
    return LoadedImage(path.name, image)


def _skip(skipped: list[SkippedFile], item: SkippedFile, strict: bool) -> None:
    if strict:
        raise InputError(f"cannot use '{item.path}': {item.reason} (--strict stops at the first unusable file)")
    logger.warning("skipping '%s': %s", item.path, item.reason)
    skipped.append(item)


def number_repeats(names: list[str]) -> list[str]:
    """Names made unique by appending ``#2``, ``#3``, ... to the second, third, ... copy."""
    unique: list[str] = []
    seen: set[str] = set()
    for name in names:
        candidate, k = name, 2
        while candidate in seen:
            candidate, k = f"{name}#{k}", k + 1
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _unique_names(sources: list[Path], names: list[str]) -> list[str]:
    """Make names unique: a clashing name gets its source's parent folder as a prefix
    (``parent/name``); clashes left after that are numbered (``number_repeats``)."""
    counts = Counter(names)
    return number_repeats([f"{src.parent.name}/{n}" if counts[n] > 1 else n for src, n in zip(sources, names)])


def _curate_burst(views: list[LoadedImage], dropped: dict[str, str]) -> list[LoadedImage]:
    kept, reasons = curate([score_frame(v.image) for v in views])
    for position, why in sorted(reasons.items()):
        dropped[views[position].name] = why
        logger.debug("dropping '%s': %s", views[position].name, why)
    return [views[p] for p in kept]


class _Collector:
    """Accumulates views, their sources and what was left out, input by input."""

    def __init__(self, options: InputOptions):
        self.options = options
        self.result = InputSet(views=[])
        self.sources: list[Path] = []

    def add_views(self, views: list[LoadedImage], source_of: list[Path]) -> None:
        self.result.views += views
        self.sources += source_of

    def video(self, path: Path) -> None:
        from recon3d.io.video import load_video_frames

        o = self.options
        frames = load_video_frames(path, every_n=o.video_every_n, fps=o.video_fps, max_frames=o.video_max_frames,
                                   select=o.select_frames, dropped=self.result.dropped_frames)
        self.add_views(frames, [path] * len(frames))

    def folder(self, folder: Path) -> None:
        listing = _list_folder(folder, self.options)
        if not listing.images:
            for item in listing.refused:
                _skip(self.result.skipped, item, self.options.strict)
            if len(listing.videos) == 1:
                note = f"'{folder}' holds no images: using its video '{listing.videos[0].name}'"
                logger.debug("%s", note)
                self.result.notes.append(note)
                self.video(listing.videos[0])
                return
            if listing.videos:
                names = ", ".join(v.name for v in listing.videos)
                raise InputError(f"'{folder}' holds no images but {len(listing.videos)} videos ({names}); "
                                 "name the video to use")
            unusable = ""
            if listing.refused:
                first = listing.refused[0]
                unusable = (f"; skipped {len(listing.refused)} unusable file(s), "
                            f"first '{Path(first.path).name}': {first.reason}")
            subfolders = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
            hint = (f"it holds folders ({', '.join(subfolders[:5])}{', …' if len(subfolders) > 5 else ''}): pass "
                    "the one with the photos, or use `recon3d batch` for a folder of scenes" if subfolders else
                    "add images to the folder or pass image or video files")
            raise InputError(f"no images found in '{folder}' (supported: {_supported_list()}){unusable}; {hint}")
        if listing.videos:
            videos = ", ".join(v.name for v in listing.videos)
            note = f"'{folder}': using its images; its videos ({videos}) are not used"
            logger.debug("%s", note)
            self.result.notes.append(note)
        views, failures = [], []
        for path, reason in listing.entries:
            if reason is None:
                try:
                    views.append(_load_view(path, self.options))
                    continue
                except InputError as err:
                    reason = _reason(err, path)
            failures.append(SkippedFile(str(path), reason))
            _skip(self.result.skipped, failures[-1], self.options.strict)
        if not views:
            raise InputError(f"none of the {len(listing.entries)} image files in '{folder}' could be used "
                             f"('{Path(failures[0].path).name}': {failures[0].reason})")
        if self.options.select_frames == "sharp":
            views = _curate_burst(views, self.result.dropped_frames)
        self.add_views(views, [folder / v.name for v in views])


def _reason(err: InputError, file: Path) -> str:
    """The error's message without the file's path, which the skip record already holds."""
    return str(err).replace(f" '{file}'", "")


def collect_inputs(inputs: str | Path | Sequence[str | Path], options: InputOptions | None = None) -> InputSet:
    """Load every view named by ``inputs``, in order, with unique names.

    Each input is a folder (its image files, not recursive, hidden files skipped,
    natural sort order; a folder holding only one video uses that video), an image
    file, or a video file (frames sampled as ``options`` says; one per second by default).
    Unusable files inside folders are skipped and listed in the result's ``skipped``
    (``options.strict``: an error instead).

    Names are file names (images) or ``<stem>_f<frame index>`` (video frames); names
    that would clash are prefixed with their parent folder as ``parent/name``.

    Raises:
        InputError: no inputs, a missing path, a folder without usable images, an
            unusable file named directly, or any unusable file with ``strict``.
    """
    options = options or InputOptions()
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise InputError("no inputs given; pass an image folder, image files or a video")

    collector = _Collector(options)
    for item in items:
        path = Path(item).expanduser()
        if not path.exists():
            raise InputError(f"input '{path}' does not exist; check the path")
        suffix = path.suffix.lower()
        if path.is_dir():
            collector.folder(path)
        elif suffix in VIDEO_EXTENSIONS:
            collector.video(path)
        elif suffix in IMAGE_EXTENSIONS:
            collector.add_views([_load_view(path, options)], [path])
        else:
            raise InputError(
                f"'{path}' is not a supported image or video (images: {_supported_list()}; "
                f"videos: {', '.join(VIDEO_EXTENSIONS)}); convert it or leave it out"
            )

    result = collector.result
    for view, name in zip(result.views, _unique_names(collector.sources, [v.name for v in result.views])):
        view.name = name
    return limit_views(result, options)


def limit_views(result: InputSet, options: InputOptions) -> InputSet:
    """``result`` with at most ``options.max_views`` views, evenly spread (noted when it cuts);
    the last step of every loader of views (folders and files here, the web app's uploads)."""
    if options.max_views is not None and len(result.views) > options.max_views:
        result.notes.append(f"kept {options.max_views} of {len(result.views)} views, evenly spread (--max-views)")
        result.views = [result.views[i] for i in evenly_spaced(len(result.views), options.max_views)]
    return result
