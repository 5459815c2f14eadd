"""``ReconstructionSettings``: every choice a reconstruction makes, declared once.

Each front end (the CLI, batch, the web app, eval) builds one ``ReconstructionSettings``
and passes it down; nothing below it takes loose options. Each shared command-line
option is declared once, in ``OPTIONS``: its flag, default and help, the settings field
it fills, and how its value is checked. The CLI adds the declared options to each
command that takes them (`recon3d.cli`), and the web app fills the same settings through
``apply_option``, so a value is checked the same way wherever it comes from.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import typer

from recon3d.errors import Recon3DError
from recon3d.exports import EXPORT_FORMATS, FILTERS, GAUSSIAN_SOURCES, ExportOptions
from recon3d.io.frame_selection import SELECT_MODES
from recon3d.io.images import MIN_IMAGE_SIDE
from recon3d.io.inputs import InputOptions
from recon3d.networks.token_merging import MergeConfig, parse_merge_option
from recon3d.pairwise.graph import GRAPH_HELP, check_scene_graph
from recon3d.pairwise.reconstruct import PairwiseOptions
from recon3d.refine import RefineOptions

DEFAULT_FORMATS = ("glb", "ply", "npz")


@dataclass
class ReconstructionSettings:
    """What to run and how, from the input photos to the written files.

    Attributes:
        model: zoo name, weights file or folder, or Hugging Face repo id (``auto``: see
            `recon3d.zoo.resolve_auto`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: backbone precision (`recon3d.networks.precision.PRECISIONS`).
        preprocess_mode: ``auto`` (the model family's own) or a mode of `recon3d.io.preprocess`.
        inputs: how paths become views (video sampling, frame selection, skipping).
        token_merging: VGGT's token merging in global attention (None: dense).
        pairwise: scene graph and global alignment of DUSt3R-style models.
        refine: geometric refinement after the network.
        formats: the exports to write (`recon3d.exports.EXPORT_FORMATS`).
        export: which pixels to use and how to shape each export.
    """

    model: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    preprocess_mode: str = "auto"
    inputs: InputOptions = field(default_factory=InputOptions)
    token_merging: MergeConfig | None = field(default_factory=lambda: parse_merge_option("auto"))
    pairwise: PairwiseOptions = field(default_factory=PairwiseOptions)
    refine: RefineOptions = field(default_factory=RefineOptions)
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    export: ExportOptions = field(default_factory=ExportOptions)


# --- checking and storing one option's value ------------------------------------------------

def _choice(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise ValueError(f"choose from {', '.join(allowed)}, not '{value}'")
    return value


def _names(value: str, allowed: tuple[str, ...], all_word: str | None = None) -> list[str]:
    """A comma-separated list of names from ``allowed``; ``none`` for none, ``all_word`` for all."""
    if all_word is not None and value.strip() == all_word:
        return list(allowed)
    if value.strip() == "none":
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or (all_word is not None and not items):
        either = f" or '{all_word}'" if all_word else ""
        raise ValueError(f"unknown value(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}{either}")
    return items


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"use auto, cpu, cuda or cuda:N, not '{value}'")
    return value


def _precision(value: str) -> str:
    from recon3d.networks.precision import PRECISIONS

    return _choice(value, PRECISIONS)


def _preprocess_mode(value: str) -> str:
    from recon3d.io.preprocess import MODES

    return _choice(value, ("auto", *MODES))


def _stride(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"use auto or a positive whole number, not '{value}'")
    return int(value)


def _user_error(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse`` with recon3d's own input errors turned into ValueError, the one error type
    every option raises for a bad value."""
    def checked(value: Any) -> Any:
        try:
            return parse(value)
        except Recon3DError as err:
            raise ValueError(str(err)) from None
    return checked


def _set_points_from(s: ReconstructionSettings, source: str) -> None:
    s.export = dataclasses.replace(s.export, point_source=source,
                                   mesh=dataclasses.replace(s.export.mesh, point_source=source))


# --- the shared options -----------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One shared command-line option.

    Attributes:
        name: the command function's parameter name.
        group: ``run`` (model, inputs and how the network runs: predict, reconstruct,
            batch) or ``export`` (which pixels and files: reconstruct, batch).
        annotation: the parameter's Python type (typer reads it).
        declaration: ``typer.Option(default, flags..., help=...)``.
        parse: checks a value and converts it (raises ValueError with the problem).
        store: puts the parsed value into the settings.
    """

    name: str
    group: str
    annotation: Any
    declaration: Any
    parse: Callable[[Any], Any]
    store: Callable[[ReconstructionSettings, Any], None]

    @property
    def flag(self) -> str:
        return self.declaration.param_decls[0] if self.declaration.param_decls else f"--{self.name.replace('_', '-')}"


def _field(path: str) -> Callable[[ReconstructionSettings, Any], None]:
    """A store that sets ``settings.<path>`` (``export.max_points``, ``inputs.strict``...);
    nested option objects may be frozen, so they are replaced by updated copies."""
    parts = path.split(".")

    def updated(obj: Any, names: list[str], value: Any) -> Any:
        if len(names) > 1:
            value = updated(getattr(obj, names[0]), names[1:], value)
        return dataclasses.replace(obj, **{names[0]: value})

    def store(settings: ReconstructionSettings, value: Any) -> None:
        if len(parts) > 1:
            value = updated(getattr(settings, parts[0]), parts[1:], value)
        setattr(settings, parts[0], value)
    return store


def _same(value: Any) -> Any:
    return value


OPTIONS: tuple[Option, ...] = (
    # run: which model runs where, on which views, and how
    Option("model", "run", str, typer.Option("auto", "--model", "-m", help="Zoo name, weights file or directory, or Hugging Face repo id ('auto': VGGT-1B if cached, else the embedded default)."),
           _same, _field("model")),
    Option("device", "run", str, typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
           _device, _field("device")),
    Option("precision", "run", str, typer.Option("auto", "--precision", help="Backbone precision: auto (bf16 on recent GPUs and on CPUs with native bf16 matrix instructions that measure faster, fp32 elsewhere; the choice is printed), fp32, bf16 or fp16."),
           _precision, _field("precision")),
    Option("mode", "run", str, typer.Option("auto", "--mode", help="Preprocessing: auto (the model's own), crop (width 518, centre crop), pad (long side 518, white square), fit (long side 518, aspect kept), long-crop (DUSt3R 512: long side 512, crop to 16 px multiples) or square-crop (DUSt3R 224: centre square)."),
           _preprocess_mode, _field("preprocess_mode")),
    Option("fps", "run", Optional[float], typer.Option(None, "--fps", min=0.001, help="Video inputs: frames per second to sample (default 1)."),
           _same, _field("inputs.video_fps")),
    Option("every_n", "run", Optional[int], typer.Option(None, "--every-n", min=1, help="Video inputs: take every N-th frame instead."),
           _same, _field("inputs.video_every_n")),
    Option("max_frames", "run", Optional[int], typer.Option(None, "--max-frames", min=1, help="Video inputs: at most this many frames, evenly spread."),
           _same, _field("inputs.video_max_frames")),
    Option("max_views", "run", Optional[int], typer.Option(None, "--max-views", min=1, help="At most this many views in all (photos and video frames), evenly spread, first and last kept; applied after skipping and --select-frames."),
           _same, _field("inputs.max_views")),
    Option("select_frames", "run", str, typer.Option("all", "--select-frames", help="all, or sharp: drop blurred frames (low variance of the Laplacian next to their neighbours) and near-duplicates of the previous kept frame, from videos and from each image folder, before the --fps/--every-n/--max-frames sampling (which then takes the sharpest frame of each window); what was dropped is listed."),
           lambda v: _choice(v, SELECT_MODES), _field("inputs.select_frames")),
    Option("strict", "run", bool, typer.Option(False, "--strict", help="Stop at the first unusable file in an input folder (unreadable, unsupported, too small, a link leaving the folder) instead of skipping it with a warning."),
           _same, _field("inputs.strict")),
    Option("follow_links", "run", bool, typer.Option(False, "--follow-links", help="Use symbolic links in input folders that point outside the folder (skipped by default)."),
           _same, _field("inputs.follow_links")),
    Option("merge", "run", str, typer.Option("auto", "--merge", help="VGGT models: token merging in global attention (faster on long sequences): auto (on from 32 frames), off, or a ratio in [0, 1] of tokens merged."),
           parse_merge_option, _field("token_merging")),
    Option("scene_graph", "run", str, typer.Option("complete", "--scene-graph", help="DUSt3R models. " + GRAPH_HELP),
           _user_error(check_scene_graph), _field("pairwise.scene_graph")),
    Option("align_iters", "run", int, typer.Option(300, "--align-iters", min=0, help="DUSt3R models: global alignment iterations (two views use a closed form)."),
           _same, _field("pairwise.align_iters")),
    Option("align_stride", "run", str, typer.Option("auto", "--align-stride", help="DUSt3R models: optimise the global alignment on every N-th pixel of each view, then solve the full-resolution depth in closed form (auto: about 6k pixels per view, N=6 at 512x384; 1: every pixel, slowest)."),
           _stride, _field("pairwise.align_stride")),
    Option("refine", "run", str, typer.Option("auto", "--refine", help="Geometric refinement after the network: ba (SIFT tracks on the original photos, bundle adjustment of cameras and focal lengths, depth re-fitted to the tracks; the network's cameras are kept where it fails, and the COLMAP export gets the real tracks), none, or auto (ba for the embedded default model, whose own cameras are not usable yet; none for the others)."),
           _user_error(lambda v: RefineOptions(method=v.strip().lower())), _field("refine")),
    Option("refine_features", "run", int, typer.Option(3072, "--refine-features", min=64, help="Refinement: SIFT keypoints kept per photo, largest first (more: better cameras on large or weakly textured photos, slower matching)."),
           _same, _field("refine.max_features")),
    # export: which pixels, which files
    Option("export", "export", str, typer.Option(",".join(DEFAULT_FORMATS), "--export", "-e", help="Comma-separated: npz, glb, ply (points), mesh (mesh.ply + mesh.obj), colmap, gaussians (3DGS .ply), splat, ply_compressed (SuperSplat's compressed .ply); or 'all'."),
           lambda v: _names(v, EXPORT_FORMATS, all_word="all"), _field("formats")),
    Option("conf", "export", float, typer.Option(50.0, "--conf-percentile", min=0.0, max=100.0, help="Drop this percentage of the least confident pixels."),
           _same, _field("export.conf_percentile")),
    Option("filters", "export", str, typer.Option("edges", "--filter", help="Comma-separated pixel filters: sky, black, white (backgrounds), edges (depth discontinuities, which make floaters), overlap (each surface point only from the view that sees it most finely: fewer, sharper Gaussians); 'none' for no filter."),
           lambda v: frozenset(_names(v, FILTERS)), _field("export.filters")),
    Option("points_from", "export", str, typer.Option("depth", "--points-from", help="3D points from the depth maps ('depth') or the point-map head ('points')."),
           lambda v: _choice(v, ("depth", "points")), _set_points_from),
    Option("mesh", "export", str, typer.Option("tsdf", "--mesh", help="Mesher: tsdf (fused), poisson (hole-filling) or grid (fast per-view sheets)."),
           lambda v: _choice(v, _mesh_methods()), _field("export.mesh.method")),
    Option("mesh_depth", "export", str, typer.Option("prediction", "--mesh-depth", help="TSDF input: the predicted depth, or depth rendered from the Gaussians ('gaussians')."),
           lambda v: _choice(v, ("prediction", "gaussians")) == "gaussians", _field("export.mesh_from_gaussians")),
    Option("mesh_faces", "export", Optional[int], typer.Option(None, "--mesh-faces", min=100, help="Decimate the mesh to about this many faces."),
           _same, _field("export.mesh.target_faces")),
    Option("glb_mesh", "export", bool, typer.Option(False, "--glb-mesh", help="Put the mesh in scene.glb instead of the point cloud."),
           lambda v: "mesh" if v else "points", _field("export.glb_geometry")),
    Option("frustums", "export", bool, typer.Option(True, "--frustums/--no-frustums", help="Draw the cameras in scene.glb."),
           _same, _field("export.frustums")),
    Option("max_points", "export", int, typer.Option(1_000_000, "--max-points", min=1, help="At most this many points in points.ply and scene.glb."),
           _same, _field("export.max_points")),
    Option("gaussians", "export", str, typer.Option("auto", "--gaussians", help="Gaussians of the gaussians/splat/ply_compressed exports: learned (the model's Gaussian head, e.g. AnySplat), geometric (pixel-aligned, from depth, confidence and colour) or auto (learned when the model has a Gaussian head)."),
           lambda v: _choice(v, GAUSSIAN_SOURCES), _field("export.gaussians")),
    Option("colmap_camera", "export", str, typer.Option("PINHOLE", "--colmap-camera", help="COLMAP camera model: PINHOLE or SIMPLE_PINHOLE."),
           lambda v: _choice(v, _colmap_models()), _field("export.colmap_camera")),
    Option("colmap_points", "export", int, typer.Option(100_000, "--colmap-points", min=0, help="At most this many COLMAP points3D."),
           _same, _field("export.colmap_points")),
)

INPUTS_HELP = (f"Image files, folders of images (a folder holding only one video uses it), or video files. "
               f"Images under {MIN_IMAGE_SIDE} px on a side are refused.")


def _mesh_methods() -> tuple[str, ...]:
    from recon3d.mesh import MESH_METHODS

    return tuple(MESH_METHODS)


def _colmap_models() -> tuple[str, ...]:
    from recon3d.io.colmap import CAMERA_MODELS

    return tuple(CAMERA_MODELS)


OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def apply_option(settings: ReconstructionSettings, name: str, value: Any) -> None:
    """Check ``value`` as option ``name`` does and store it in ``settings``.

    Raises:
        ValueError: the value is not allowed (the message says why, without the flag).
    """
    option = OPTIONS_BY_NAME[name]
    option.store(settings, option.parse(value))


def check_consistency(settings: ReconstructionSettings) -> None:
    """Rules between options.

    Raises:
        ValueError: naming the options that conflict.
    """
    if settings.inputs.video_fps is not None and settings.inputs.video_every_n is not None:
        raise ValueError("give either --fps or --every-n, not both")
