"""Per-browser-session state of the web app: the last prediction and a private folder.

The network runs once per Reconstruct click; every control afterwards re-exports from
the prediction kept here. Each session writes only inside its own folder under
`session_root()`, named ``<server pid>-<random>``; the folder is deleted when the
session ends (page closed, or its state expires), and folders left by a server that is
no longer running are deleted when the next one starts (`remove_stale_sessions`).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon3d.exports import ExportOptions, chosen_gaussians, export_scene
from recon3d.gaussians.fusion import prune_to_count
from recon3d.io.ply import write_gaussians_ply
from recon3d.types import Prediction

_SESSION_NAME = re.compile(r"(\d+)-[A-Za-z0-9_]+")


def session_root() -> Path:
    """``<system temp folder>/recon3d-ui``, created private to this user, holding every session's folder.

    Raises:
        RuntimeError: the path exists but is a link or belongs to another user.
    """
    root = Path(tempfile.gettempdir()) / "recon3d-ui"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    # Another user could have made it first (shared /tmp) to read or plant session files.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"'{root}' is not a folder owned by this user; remove it or set TMPDIR to another folder")
    return root


def new_session_folder(root: Path) -> Path:
    """A new private folder ``<root>/<pid>-<random>``: the name says which server process owns it."""
    # The owner is in the name, not in a file written afterwards, so no other server can
    # ever see the folder without its owner.
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


def remove_stale_sessions(root: Path) -> list[Path]:
    """Delete the session folders in ``root`` whose owning process is no longer running.

    Folders of live processes (this one included) and anything not named like a session
    folder are left alone.

    Returns:
        The deleted folders.
    """
    removed = []
    for entry in root.iterdir():
        match = _SESSION_NAME.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match.group(1))
        if pid <= 0 or pid == os.getpid() or _process_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


@dataclass
class Session:
    """One browser (or API client) session: its private folder and the last reconstruction."""

    folder: Path = field(default_factory=lambda: new_session_folder(session_root()))
    prediction: Prediction | None = None
    images: list = field(default_factory=list)
    model_line: str = ""
    input_note: str = ""
    exports: int = 0

    def inputs_folder(self) -> Path:
        """An empty folder for this run's staged uploads; the previous run's copies are deleted."""
        folder = self.folder / "inputs"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def next_folder(self) -> Path:
        """A fresh subfolder per export, so browsers never show a cached older file."""
        self.exports += 1
        folder = self.folder / f"export_{self.exports:03d}"
        folder.mkdir(parents=True)
        return folder

    def close(self) -> None:
        """Delete the folder; a later export makes it again (the session may still be in use)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def delete_session(session: Session | None) -> None:
    if session is not None:
        session.close()


def viewer_export(session: Session, options: ExportOptions, show: str, max_gaussians: int) -> tuple[Path, list[Path]]:
    """Files for the 3D viewer: scene.glb (points or mesh, with cameras) or gaussians.ply.

    Returns:
        The file to show and the files offered for download.
    """
    folder = session.next_folder()
    pred = session.prediction
    if show == "gaussians":
        # The learned Gaussians of models with a Gaussian head, else pixel-aligned ones, as the downloads.
        gaussians = chosen_gaussians(pred, options)
        if len(gaussians) > max_gaussians:
            # Browsers draw a few hundred thousand splats smoothly; drop small faint ones first.
            gaussians = prune_to_count(gaussians, max_gaussians)
        write_gaussians_ply(folder / "gaussians.ply", gaussians)
        export_scene(pred, folder, ["glb"], options)
        return folder / "gaussians.ply", [folder / "scene.glb", folder / "gaussians.ply"]
    options.glb_geometry = "mesh" if show == "mesh" else "points"
    formats = ["glb", "mesh"] if show == "mesh" else ["glb"]
    report = export_scene(pred, folder, formats, options)
    return folder / "scene.glb", [p for paths in report.files.values() for p in paths]


def all_downloads(session: Session, options: ExportOptions) -> list[Path]:
    """Every download: GLB, Gaussian PLY, mesh (PLY, OBJ) and the COLMAP folder as a zip."""
    folder = session.next_folder()
    report = export_scene(session.prediction, folder, ["glb", "gaussians", "mesh", "colmap"], options,
                          original_images=session.images)
    colmap_dir = report.files.pop("colmap")[0]
    archive = folder / "colmap.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(colmap_dir.rglob("*")):
            if path.is_file():
                zf.write(path, Path("colmap") / path.relative_to(colmap_dir))
    return [p for paths in report.files.values() for p in paths] + [archive]


def depth_and_confidence_images(pred: Prediction) -> list[tuple[np.ndarray, str]]:
    """Gallery items: per view a viridis depth map and a confidence map (uint8 RGB)."""
    from recon3d.io.video_writer import colorize_depth

    items = []
    for view in range(pred.num_views):
        depth = pred.depth[view]
        valid = np.isfinite(depth) & (depth > 0)
        near, far = (np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        name = pred.names[view] if pred.names else str(view)
        items.append((colorize_depth(depth, valid, float(near), float(max(far, near + 1e-6))), f"{name}: depth"))
        conf = np.log(np.maximum(pred.depth_conf[view], 1.0))
        top = float(np.percentile(conf, 99)) or 1.0
        items.append((colorize_depth(conf, np.isfinite(conf), 0.0, top), f"{name}: confidence (log)"))
    return items
