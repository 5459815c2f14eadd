"""Store synthetic scenes on disk and read them back; write the small sample assets.

Layout of a scene folder::

    images/000.png ...   uint8 RGB views
    geometry.npz         depths [S,H,W], normals [S,H,W,3], masks [S,H,W], object_ids [S,H,W]
    cameras.json         kind, seed, supersample (only when not 1), textures (only when
                         not "classic"), conventions, and per
                         view: name, image, width, height,
                         K (3x3), extrinsics_w2c (4x4)

Every file is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from recon3d.io.atomic import atomic_path
from recon3d.synth.scenes import SynthScene, make_scene

CONVENTIONS = {
    "camera_axes": "OpenCV: x right, y down, z forward",
    "extrinsics_w2c": "4x4 world-to-camera: X_cam = R @ X_world + t",
    "intrinsics": "3x3 K in pixels; image spans [0,W]x[0,H]; pixel (v,u) centred at (u+0.5, v+0.5)",
    "world": "metres, z up, ground or floor at z = 0",
    "depth": "z-depth along the optical axis (metres), 0 where mask is false",
    "normals": "unit, world frame, 0 where mask is false",
    "object_ids": "index of the object seen, -1 where nothing is",
}

# Normals are stored as int8 in compact folders: round(n * 127).
_NORMAL_SCALE = 127.0

# (folder name, kind, views, (width, height)); small enough to keep in git (about 3 MB).
SAMPLE_ASSETS = (
    ("object_8", "object", 8, (320, 240)),
    ("room_8", "room", 8, (320, 240)),
    ("trajectory_16", "trajectory", 16, (224, 168)),
)


def write_scene(scene: SynthScene, out_dir: str | Path, *, compact: bool = False) -> Path:
    """Write ``scene`` to the folder ``out_dir`` (created if needed); returns its path.

    ``compact`` stores depths as float16 (relative error below 5e-4) and normals as int8
    (error below 0.01), about 8x smaller, for assets kept in git; images, masks, object ids
    and cameras stay exact either way.
    """
    out = Path(out_dir)
    for name, image in zip(scene.names, scene.images):
        with atomic_path(out / "images" / f"{name}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG", optimize=True)
    depths, normals = scene.depths, scene.normals
    if compact:
        depths = depths.astype(np.float16)
        normals = np.round(normals * _NORMAL_SCALE).astype(np.int8)
    with atomic_path(out / "geometry.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, depths=depths, normals=normals, masks=scene.masks, object_ids=scene.object_ids
        )
    width, height = scene.size_wh
    views = [
        {"name": name, "image": f"images/{name}.png", "width": width, "height": height,
         "K": K.tolist(), "extrinsics_w2c": w2c.tolist()}
        for name, K, w2c in zip(scene.names, scene.intrinsics, scene.extrinsics_w2c)
    ]
    cameras = {"kind": scene.kind, "seed": scene.seed, "conventions": CONVENTIONS, "views": views}
    if scene.supersample != 1:  # absent means 1, so default scenes' files are unchanged
        cameras["supersample"] = scene.supersample
    if scene.textures != "classic":  # likewise: absent means the classic family
        cameras["textures"] = scene.textures
    # One line per matrix row keeps the file readable; json keeps floats exact (repr).
    text = re.sub(r"\[\s+([^\[\]]+?)\s+\]", _one_line, json.dumps(cameras, indent=1))
    with atomic_path(out / "cameras.json") as tmp:
        tmp.write_text(text + "\n")
    return out


def _one_line(match: re.Match) -> str:
    """A JSON list without nested lists, on one line."""
    return "[" + " ".join(match.group(1).split()) + "]"


def read_scene(scene_dir: str | Path) -> SynthScene:
    """Read a folder written by ``write_scene`` (compact or not) back into a SynthScene.

    Compact folders give float32 depths and unit float32 normals decoded from their
    float16 and int8 storage, so they match the original only to that precision.
    """
    root = Path(scene_dir)
    cameras = json.loads((root / "cameras.json").read_text())
    views = cameras["views"]
    images = np.stack([np.asarray(Image.open(root / v["image"]).convert("RGB")) for v in views])
    with np.load(root / "geometry.npz", allow_pickle=False) as geo:
        depths, normals, masks, ids = geo["depths"], geo["normals"], geo["masks"], geo["object_ids"]
    if normals.dtype == np.int8:
        normals = normals.astype(np.float32) / _NORMAL_SCALE
        length = np.linalg.norm(normals, axis=-1, keepdims=True)
        normals = np.where(length > 0, normals / np.maximum(length, 1e-12), 0.0).astype(np.float32)
    return SynthScene(
        images=images,
        depths=depths.astype(np.float32),
        normals=normals,
        masks=masks,
        object_ids=ids,
        extrinsics_w2c=np.array([v["extrinsics_w2c"] for v in views], dtype=np.float64),
        intrinsics=np.array([v["K"] for v in views], dtype=np.float64),
        kind=cameras["kind"],
        seed=int(cameras["seed"]),
        names=[v["name"] for v in views],
        supersample=int(cameras.get("supersample", 1)),
        textures=str(cameras.get("textures", "classic")),
    )


def make_sample_assets(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Render and write the demo scenes ``SAMPLE_ASSETS`` in compact form under ``out_dir``.

    Returns the scene folders: object_8, room_8 (320x240) and trajectory_16 (224x168).
    Their depths and normals are stored compactly (see ``write_scene``); ``read_scene``
    reads them like any other scene folder.
    """
    return [
        write_scene(make_scene(kind, seed, views, size), Path(out_dir) / name, compact=True)
        for name, kind, views, size in SAMPLE_ASSETS
    ]
