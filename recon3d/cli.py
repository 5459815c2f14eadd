"""The ``recon3d`` command line.

Exit codes: 0 success, 1 input error (a one-line message, no traceback), 2 usage error
(the command's usage line and what was wrong with it), 3 internal error (set
RECON3D_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recon3d.errors import Recon3DError
from recon3d.io.images import MIN_IMAGE_SIDE
from recon3d.pairwise.graph import GRAPH_HELP, check_scene_graph

app = typer.Typer(
    name="recon3d",
    help="Feed-forward 3D reconstruction from unposed photos: cameras, depth, point maps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect and download models of the zoo.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from recon3d import __version__

        print(f"recon3d {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print recon3d's version and exit."),
) -> None:
    pass


app.add_typer(models_app, name="models")
INTERNAL_ERROR = 3
"""Exit code of a bug in recon3d (1 is an input error, 2 a usage error, as in click)."""
console = Console(stderr=True)


# Options shared by several commands.
MODEL_OPT = typer.Option("auto", "--model", "-m", help="Zoo name, weights file or directory, or Hugging Face repo id ('auto': VGGT-1B if cached, else the embedded default).")
DEVICE_OPT = typer.Option("auto", help="auto, cpu, cuda or cuda:N.")
PRECISION_OPT = typer.Option("auto", help="Backbone precision: auto (bf16 on recent GPUs, fp32 on CPU), fp32, bf16 or fp16.")
MODE_OPT = typer.Option("auto", help="Preprocessing: auto (the model's own), crop (width 518, centre crop), pad (long side 518, white square), fit (long side 518, aspect kept), long-crop (DUSt3R 512: long side 512, crop to 16 px multiples) or square-crop (DUSt3R 224: centre square).")
EXPORT_OPT = typer.Option("glb,ply,npz", "--export", "-e", help="Comma-separated: npz, glb, ply (points), mesh (mesh.ply + mesh.obj), colmap, gaussians (3DGS .ply), splat, ply_compressed (SuperSplat's compressed .ply); or 'all'.")
CONF_OPT = typer.Option(50.0, "--conf-percentile", min=0.0, max=100.0, help="Drop this percentage of the least confident pixels.")
FILTER_OPT = typer.Option("edges", "--filter", help="Comma-separated pixel filters: sky, black, white (backgrounds), edges (depth discontinuities, which make floaters), overlap (each surface point only from the view that sees it most finely: fewer, sharper Gaussians); 'none' for no filter.")
POINTS_FROM_OPT = typer.Option("depth", "--points-from", help="3D points from the depth maps ('depth') or the point-map head ('points').")
MESH_OPT = typer.Option("tsdf", "--mesh", help="Mesher: tsdf (fused), poisson (hole-filling) or grid (fast per-view sheets).")
MESH_DEPTH_OPT = typer.Option("prediction", "--mesh-depth", help="TSDF input: the predicted depth, or depth rendered from the Gaussians ('gaussians').")
MESH_FACES_OPT = typer.Option(None, "--mesh-faces", min=100, help="Decimate the mesh to about this many faces.")
GLB_MESH_OPT = typer.Option(False, "--glb-mesh", help="Put the mesh in scene.glb instead of the point cloud.")
FRUSTUMS_OPT = typer.Option(True, "--frustums/--no-frustums", help="Draw the cameras in scene.glb.")
MAX_POINTS_OPT = typer.Option(1_000_000, "--max-points", min=1, help="At most this many points in points.ply and scene.glb.")
COLMAP_CAMERA_OPT = typer.Option("PINHOLE", "--colmap-camera", help="COLMAP camera model: PINHOLE or SIMPLE_PINHOLE.")
COLMAP_POINTS_OPT = typer.Option(100_000, "--colmap-points", min=0, help="At most this many COLMAP points3D.")
INPUTS_ARG = typer.Argument(..., metavar="INPUTS", help="Image files, folders of images (a folder holding only one video uses it), or video files. Images under " f"{MIN_IMAGE_SIDE} px on a side are refused.")
FPS_OPT = typer.Option(None, min=0.001, help="Video inputs: frames per second to sample (default 1).")
EVERY_N_OPT = typer.Option(None, "--every-n", min=1, help="Video inputs: take every N-th frame instead.")
MAX_FRAMES_OPT = typer.Option(None, "--max-frames", min=1, help="Video inputs: at most this many frames, evenly spread.")
SELECT_FRAMES_OPT = typer.Option("all", "--select-frames", help="all, or sharp: drop blurred frames (low variance of the Laplacian next to their neighbours) and near-duplicates of the previous kept frame, from videos and from each image folder, before the --fps/--every-n/--max-frames sampling (which then takes the sharpest frame of each window); what was dropped is listed.")
STRICT_OPT = typer.Option(False, "--strict", help="Stop at the first unusable file in an input folder (unreadable, unsupported, too small, a link leaving the folder) instead of skipping it with a warning.")
FOLLOW_LINKS_OPT = typer.Option(False, "--follow-links", help="Use symbolic links in input folders that point outside the folder (skipped by default).")
MERGE_OPT = typer.Option("auto", "--merge", help="VGGT models: token merging in global attention (faster on long sequences): auto (on from 32 frames), off, or a ratio in [0, 1] of tokens merged.")
SCENE_GRAPH_OPT = typer.Option("complete", "--scene-graph", help="DUSt3R models. " + GRAPH_HELP)
ALIGN_ITERS_OPT = typer.Option(300, "--align-iters", min=0, help="DUSt3R models: global alignment iterations (two views use a closed form).")
REFINE_OPT = typer.Option("auto", "--refine", help="Geometric refinement after the network: ba (SIFT tracks on the original photos, bundle adjustment of cameras and focal lengths, depth re-fitted to the tracks; the network's cameras are kept where it fails, and the COLMAP export gets the real tracks), none, or auto (ba for the embedded default model, whose own cameras are not usable yet; none for the others).")


def _bad_value(message: str, flag: str | None = None) -> typer.BadParameter:
    """A usage error: main() prints the command's usage line and this message (exit code 2)."""
    return typer.BadParameter(message, param_hint=f"'{flag}'" if flag else None)


def _input_options(fps, every_n, max_frames, select_frames: str, strict: bool, follow_links: bool):
    from recon3d.io.frame_selection import SELECT_MODES
    from recon3d.io.inputs import InputOptions

    if fps is not None and every_n is not None:
        raise _bad_value("give either --fps or --every-n, not both")
    if select_frames not in SELECT_MODES:
        raise _bad_value(f"choose from {', '.join(SELECT_MODES)}, not '{select_frames}'", "--select-frames")
    return InputOptions(video_fps=fps, video_every_n=every_n, video_max_frames=max_frames,
                        select_frames=select_frames, strict=strict, follow_links=follow_links)


def _refine_options(refine: str):
    from recon3d.refine import RefineOptions

    try:
        return RefineOptions(method=refine.strip().lower())
    except Recon3DError as err:
        raise _bad_value(str(err), "--refine") from None


def _pairwise_options(scene_graph: str, align_iters: int):
    from recon3d.pairwise.reconstruct import PairwiseOptions

    try:
        return PairwiseOptions(scene_graph=check_scene_graph(scene_graph), align_iters=align_iters)
    except Recon3DError as err:
        raise _bad_value(str(err), "--scene-graph") from None


def _check_device_and_precision(device: str, precision: str) -> None:
    from recon3d.networks.precision import PRECISIONS

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise _bad_value(f"use auto, cpu, cuda or cuda:N, not '{device}'", "--device")
    if precision not in PRECISIONS:
        raise _bad_value(f"choose from {', '.join(PRECISIONS)}, not '{precision}'", "--precision")


def _check_mode(mode: str) -> None:
    from recon3d.io.preprocess import MODES

    if mode != "auto" and mode not in MODES:
        raise _bad_value(f"choose from auto, {', '.join(MODES)}, not '{mode}'", "--mode")


def _merge_config(value: str):
    from recon3d.networks.token_merging import parse_merge_option

    try:
        return parse_merge_option(value)
    except ValueError as err:
        raise _bad_value(str(err), "--merge") from None



@app.command()
def predict(
    inputs: list[Path] = INPUTS_ARG,
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the prediction (.npz)."),
    model: str = MODEL_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    mode: str = MODE_OPT,
    fps: Optional[float] = FPS_OPT,
    every_n: Optional[int] = EVERY_N_OPT,
    max_frames: Optional[int] = MAX_FRAMES_OPT,
    select_frames: str = SELECT_FRAMES_OPT,
    strict: bool = STRICT_OPT,
    follow_links: bool = FOLLOW_LINKS_OPT,
    merge: str = MERGE_OPT,
    scene_graph: str = SCENE_GRAPH_OPT,
    align_iters: int = ALIGN_ITERS_OPT,
    refine: str = REFINE_OPT,
) -> None:
    """Predict cameras, depth and point maps for a set of photos and save them as .npz."""
    from recon3d.io.inputs import collect_inputs
    from recon3d.pipeline import reconstruct

    _check_device_and_precision(device, precision)
    merging = _merge_config(merge)
    if output.suffix != ".npz":
        raise _bad_value(f"'{output}' must end in .npz", "--output")
    _check_mode(mode)
    pairwise = _pairwise_options(scene_graph, align_iters)
    refinement = _refine_options(refine)
    input_options = _input_options(fps, every_n, max_frames, select_frames, strict, follow_links)
    start = time.perf_counter()
    with console.status("loading images") as status:
        loaded = collect_inputs(inputs, input_options)
        prediction = reconstruct(
            loaded, model, device=device, precision=precision, preprocess_mode=mode,
            on_stage=lambda name: status.update(f"{name}…"), token_merging=merging, pairwise=pairwise,
            refine=refinement,
        )
        status.update("writing")
        prediction.save_npz(output)
    _print_inputs(loaded)
    h, w = prediction.image_size_hw
    console.print(
        f"[green]wrote[/green] {output}: {prediction.num_views} views at {w}x{h} "
        f"with model {prediction.model_name} in {time.perf_counter() - start:.1f} s"
    )
    if prediction.refinement is not None:
        _print_refinement(prediction)


def _parse_list(value: str, allowed: tuple[str, ...], flag: str, *, all_word: str | None = None) -> list[str]:
    if all_word is not None and value.strip() == all_word:
        return list(allowed)
    if value.strip() == "none":
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or (all_word is not None and not items):
        raise _bad_value(f"unknown value(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}"
                         + (f" or '{all_word}'" if all_word else ""), flag)
    return items


def _export_settings(export, conf, filters, points_from, mesh, mesh_depth, mesh_faces, glb_mesh, frustums, max_points,
                     colmap_camera, colmap_points, mode):
    """Validate the shared options; return (formats, ExportOptions)."""
    from recon3d.exports import EXPORT_FORMATS, FILTERS, ExportOptions
    from recon3d.io.colmap import CAMERA_MODELS
    from recon3d.mesh import MESH_METHODS, MeshOptions

    formats = _parse_list(export, EXPORT_FORMATS, "--export", all_word="all")
    chosen_filters = _parse_list(filters, FILTERS, "--filter")
    for value, allowed, flag in ((mesh, MESH_METHODS, "--mesh"), (colmap_camera, CAMERA_MODELS, "--colmap-camera"),
                                 (points_from, ("depth", "points"), "--points-from"),
                                 (mesh_depth, ("prediction", "gaussians"), "--mesh-depth")):
        if value not in allowed:
            raise _bad_value(f"choose from {', '.join(allowed)}, not '{value}'", flag)
    _check_mode(mode)
    options = ExportOptions(
        conf_percentile=conf, mask_sky="sky" in chosen_filters, mask_black="black" in chosen_filters,
        mask_white="white" in chosen_filters, mask_edges="edges" in chosen_filters,
        mask_overlap="overlap" in chosen_filters, point_source=points_from,
        max_points=max_points, glb_geometry="mesh" if glb_mesh else "points", frustums=frustums,
        mesh=MeshOptions(method=mesh, point_source=points_from, target_faces=mesh_faces),
        mesh_from_gaussians=mesh_depth == "gaussians", colmap_camera=colmap_camera, colmap_points=colmap_points,
    )
    return formats, options


@app.command()
def reconstruct(
    inputs: list[Path] = INPUTS_ARG,
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    export: str = EXPORT_OPT,
    model: str = MODEL_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    mode: str = MODE_OPT,
    conf: float = CONF_OPT,
    filters: str = FILTER_OPT,
    points_from: str = POINTS_FROM_OPT,
    mesh: str = MESH_OPT,
    mesh_depth: str = MESH_DEPTH_OPT,
    mesh_faces: Optional[int] = MESH_FACES_OPT,
    glb_mesh: bool = GLB_MESH_OPT,
    frustums: bool = FRUSTUMS_OPT,
    max_points: int = MAX_POINTS_OPT,
    colmap_camera: str = COLMAP_CAMERA_OPT,
    colmap_points: int = COLMAP_POINTS_OPT,
    fps: Optional[float] = FPS_OPT,
    every_n: Optional[int] = EVERY_N_OPT,
    max_frames: Optional[int] = MAX_FRAMES_OPT,
    select_frames: str = SELECT_FRAMES_OPT,
    strict: bool = STRICT_OPT,
    follow_links: bool = FOLLOW_LINKS_OPT,
    merge: str = MERGE_OPT,
    scene_graph: str = SCENE_GRAPH_OPT,
    align_iters: int = ALIGN_ITERS_OPT,
    refine: str = REFINE_OPT,
) -> None:
    """Reconstruct one photo set or video and write point clouds, meshes, Gaussians, GLB and COLMAP files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recon3d.jobs import reconstruct_scene

    formats, options = _export_settings(export, conf, filters, points_from, mesh, mesh_depth, mesh_faces, glb_mesh,
                                        frustums, max_points, colmap_camera, colmap_points, mode)
    if output.exists() and not output.is_dir():
        raise Recon3DError(f"output '{output}' exists and is not a folder")
    _check_device_and_precision(device, precision)
    input_options = _input_options(fps, every_n, max_frames, select_frames, strict, follow_links)
    merging = _merge_config(merge)
    pairwise = _pairwise_options(scene_graph, align_iters)
    refinement = _refine_options(refine)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks: list[int] = []

        def finish_stage() -> None:
            if tasks:
                total = progress.tasks[-1].total or 1
                progress.update(tasks[-1], completed=total, total=total)

        def on_stage(name: str) -> None:
            finish_stage()
            tasks.append(progress.add_task(name, total=None))

        def on_progress(done: int, total: int) -> None:
            progress.update(tasks[-1], completed=done, total=total)

        try:
            result = reconstruct_scene(inputs, output, formats, options, model=model, device=device,
                                       precision=precision, preprocess_mode=mode, input_options=input_options,
                                       on_stage=on_stage, on_progress=on_progress, token_merging=merging,
                                       pairwise=pairwise, refine=refinement)
        except Recon3DError:
            # The error message alone names what failed; a half-drawn progress bar above it is noise.
            for task in list(progress.task_ids):
                progress.remove_task(task)
            raise
        finish_stage()
    _print_summary(result, output)


def _print_refinement(pred) -> None:
    """Per-view refinement status and the reprojection error before and after."""
    refinement = pred.refinement
    colour = "green" if refinement.status == "refined" else "yellow"
    table = Table(title=f"refinement ({refinement.method}): [{colour}]{refinement.status}[/{colour}], "
                        f"{refinement.seconds:.1f} s", show_header=True)
    for column in ("view", "status", "depth scale", "detail"):
        table.add_column(column)
    for view, name in enumerate(pred.names or [str(v) for v in range(pred.num_views)]):
        table.add_row(escape(name), refinement.view_status[view], f"{refinement.depth_scale[view]:.3f}",
                      escape(refinement.view_reason[view]))
    console.print(table)
    console.print(f"refinement: {escape(refinement.reason)}")


SHOWN_PER_LIST = 20
"""Longest list of skipped files or dropped frames printed in full."""


def _print_inputs(loaded) -> None:
    """What the input stage left out: unusable files, curated frames, and its remarks."""
    for note in loaded.notes:
        console.print(escape(note))
    lists = (("skipped", "unusable file(s)", [(s.path, s.reason) for s in loaded.skipped]),
             ("dropped", "frame(s) by --select-frames", list(loaded.dropped_frames.items())))
    for verb, what, items in lists:
        if not items:
            continue
        console.print(f"[yellow]{verb} {len(items)} {what}[/yellow]:")
        for name, reason in items[:SHOWN_PER_LIST]:
            console.print(f"  {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
        if len(items) > SHOWN_PER_LIST:
            console.print(f"  … and {len(items) - SHOWN_PER_LIST} more")


def _print_summary(result, output: Path) -> None:
    _print_inputs(result.inputs)
    pred = result.prediction
    height, width = pred.image_size_hw
    table = Table(title=f"{pred.num_views} views at {width}x{height}, model {pred.model_name}", show_header=True)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in result.stage_seconds.items():
        table.add_row(stage, f"{seconds:.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{result.total_seconds:.2f}[/bold]")
    console.print(table)
    counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.report.counts.items())
    if counts:
        console.print(counts)
    if pred.refinement is not None:
        _print_refinement(pred)
    console.print(f"[green]wrote[/green] into {escape(str(output))}: " + ", ".join(
        escape(str(p.relative_to(output))) for paths in result.report.files.values() for p in paths))


@app.command()
def batch(
    root: Path = typer.Argument(..., help="A folder whose subfolders (image sets) and video files are the scenes."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: one subfolder per scene and manifest.json."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Scenes processed in parallel (processes or Ray actors), each loading the model once."),
    executor: str = typer.Option("local", "--executor", help="local (processes on this machine) or ray (a Ray cluster; output must be on a shared filesystem)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start or join a local Ray instance)."),
    export: str = EXPORT_OPT,
    model: str = MODEL_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    mode: str = MODE_OPT,
    conf: float = CONF_OPT,
    filters: str = FILTER_OPT,
    points_from: str = POINTS_FROM_OPT,
    mesh: str = MESH_OPT,
    mesh_depth: str = MESH_DEPTH_OPT,
    mesh_faces: Optional[int] = MESH_FACES_OPT,
    glb_mesh: bool = GLB_MESH_OPT,
    frustums: bool = FRUSTUMS_OPT,
    max_points: int = MAX_POINTS_OPT,
    colmap_camera: str = COLMAP_CAMERA_OPT,
    colmap_points: int = COLMAP_POINTS_OPT,
    fps: Optional[float] = FPS_OPT,
    every_n: Optional[int] = EVERY_N_OPT,
    max_frames: Optional[int] = MAX_FRAMES_OPT,
    select_frames: str = SELECT_FRAMES_OPT,
    strict: bool = STRICT_OPT,
    follow_links: bool = FOLLOW_LINKS_OPT,
    merge: str = MERGE_OPT,
    scene_graph: str = SCENE_GRAPH_OPT,
    align_iters: int = ALIGN_ITERS_OPT,
    refine: str = REFINE_OPT,
) -> None:
    """Reconstruct every scene under ROOT; resumable (scenes marked done in manifest.json are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recon3d.batch import BatchSettings, discover_scenes, run_batch

    formats, options = _export_settings(export, conf, filters, points_from, mesh, mesh_depth, mesh_faces, glb_mesh,
                                        frustums, max_points, colmap_camera, colmap_points, mode)
    _check_device_and_precision(device, precision)
    input_options = _input_options(fps, every_n, max_frames, select_frames, strict, follow_links)
    settings = BatchSettings(formats, options, model, device, precision, mode, input_options,
                             _merge_config(merge), _pairwise_options(scene_graph, align_iters),
                             _refine_options(refine))
    discover_scenes(root)  # a bad root is reported before any progress display
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("scenes", total=None)

        def on_plan(todo: list[str], skipped: list[str]) -> None:
            progress.update(task, total=len(todo))
            if skipped:
                progress.console.print(f"skipping {len(skipped)} scene(s) already done: {', '.join(skipped)}")

        def on_scene(name: str, entry: dict) -> None:
            colour = "green" if entry["status"] == "done" else "red"
            detail = f"{entry['seconds']:.1f} s" if entry["status"] == "done" else entry["error"]
            if entry.get("skipped"):
                detail += f", {len(entry['skipped'])} unusable file(s) skipped (listed in the manifest)"
            progress.console.print(f"[{colour}]{entry['status']}[/{colour}] {escape(name)}: {escape(str(detail))}")
            progress.advance(task)

        manifest = run_batch(root, output, settings, workers=workers, executor=executor, address=address,
                             on_scene=on_scene, on_plan=on_plan)
    statuses = [e.get("status") for e in manifest["scenes"].values()]
    console.print(f"{statuses.count('done')} done, {statuses.count('failed')} failed; manifest: "
                  f"{escape(str(output / 'manifest.json'))}")
    if statuses.count("failed"):
        raise typer.Exit(1)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: Optional[int] = typer.Option(None, help="Port (default: the first free one from 7860)."),
    share: bool = typer.Option(False, "--share", help="Also open a public gradio.live link."),
    max_images: int = typer.Option(200, "--max-images", min=1, help="Most images (or video frames) per reconstruction."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", min=0.1, help="Largest image accepted, in megapixels."),
    max_upload_mb: int = typer.Option(500, "--max-upload-mb", min=1, help="Largest upload accepted, in MB."),
    device: str = typer.Option("auto", help="Where the networks run: auto (the GPU when there is one), cpu, cuda or cuda:N; the status line names it."),
) -> None:
    """Start the web app: upload photos or a video, reconstruct, view in 3D, download."""
    _check_device_and_precision(device, "auto")
    try:
        from recon3d_ui.app import UIConfig, launch, zoo_loader
    except ImportError as exc:
        raise Recon3DError(f"the web app needs gradio ({exc}); install it with pip install 'gradio>=6,<7'") from exc
    launch(host, port, share, UIConfig(max_images=max_images, max_megapixels=max_megapixels, max_upload_mb=max_upload_mb,
                                       load_model=zoo_loader(device)))


@app.command("eval")
def evaluate(
    scene: Path = typer.Argument(..., help="A synthetic scene folder (cameras.json + ground truth) or a photo set with colmap_reference/."),
    model: str = typer.Option("auto", "--model", "-m", help="Model to evaluate (as for predict)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
    max_views: Optional[int] = typer.Option(None, "--max-views", min=2, help="Evaluate on at most this many views, evenly spread."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Run the classical pycolmap baseline (SIFT, exhaustive matching, incremental mapping) beside the model."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    refine: str = REFINE_OPT,
) -> None:
    """Score a model's cameras, depth and geometry against ground truth, beside pycolmap."""
    from recon3d.eval.harness import run_eval_cli

    _check_device_and_precision(device, "auto")
    if not scene.is_dir():
        raise Recon3DError(f"scene folder '{scene}' does not exist")
    run_eval_cli(scene, model, json_path=json_path, max_views=max_views, baseline=baseline, device=device,
                 refine=_refine_options(refine))


@app.command()
def synth(
    output: Path = typer.Option(..., "-o", "--output", help="Scene folder to write (images/, cameras.json, ground truth)."),
    kind: str = typer.Option("object", help="object (objects on a ground plane, inward cameras), room (cameras inside a room) or trajectory (a smooth video-like path)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same scene, bit for bit."),
    views: int = typer.Option(8, min=1, help="Number of views."),
    size: str = typer.Option("256x256", help="Image size as WIDTHxHEIGHT."),
) -> None:
    """Render a procedural scene with exact ground truth (cameras, depth, normals, masks)."""
    from recon3d.synth import KINDS, make_scene, write_scene

    if kind not in KINDS:
        raise _bad_value(f"choose from {', '.join(KINDS)}, not '{kind}'", "--kind")
    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise _bad_value(f"must look like 320x240, not '{size}'", "--size") from None
    if width < 8 or height < 8:
        raise _bad_value("must be at least 8x8", "--size")
    with console.status(f"rendering {views} views"):
        write_scene(make_scene(kind, seed, views, (width, height)), output)
    console.print(f"[green]wrote[/green] {output}: {kind} scene, seed {seed}, {views} views at {width}x{height}")


@app.command("render")
def render_video(
    scene: Path = typer.Argument(..., help="3D Gaussians as an INRIA 3DGS .ply file."),
    output: Path = typer.Option(..., "-o", "--output", help="Video to write (.mp4)."),
    cameras: Optional[Path] = typer.Option(None, "--cameras", help="Input cameras: a JSON list of {extrinsics_w2c, K, width, height}, a synthetic scene's cameras.json, or a prediction .npz."),
    path: Optional[str] = typer.Option(None, "--path", help="orbit (a circle around the cameras' focus) or interpolate (a smooth path through them); without it the input cameras themselves are rendered."),
    frames: int = typer.Option(120, "--frames", min=1, help="Number of frames of the --path."),
    width: Optional[int] = typer.Option(None, min=2, help="Video width in pixels (default: the first camera's); intrinsics are scaled to it."),
    height: Optional[int] = typer.Option(None, min=2, help="Video height in pixels (default: the first camera's)."),
    backend: str = typer.Option("auto", help="Renderer: auto, cpu, torch or gsplat."),
    mode: str = typer.Option("RGB", help="RGB colours, or D: expected depth colour-mapped with viridis (near dark, far yellow, empty black)."),
    fps: float = typer.Option(30.0, min=0.001, help="Frames per second of the video."),
) -> None:
    """Render a video of 3D Gaussians seen from input cameras or a path built from them."""
    import dataclasses

    import numpy as np
    import torch
    from rich.progress import track

    from recon3d.io.ply import read_gaussians_ply
    from recon3d.io.video_writer import colorize_depth, write_mp4
    from recon3d.render import BACKENDS, render
    from recon3d.render.paths import interpolate_path, load_cameras, orbit_path

    if cameras is None:
        raise _bad_value("render needs input cameras: give --cameras FILE (camera JSON, a scene's cameras.json or a prediction .npz)", "--cameras")
    if output.suffix.lower() != ".mp4":
        raise _bad_value(f"'{output}' must end in .mp4", "--output")
    if path not in (None, "orbit", "interpolate"):
        raise _bad_value(f"choose from orbit, interpolate, not '{path}'", "--path")
    if backend not in BACKENDS:
        raise _bad_value(f"choose from {', '.join(BACKENDS)}, not '{backend}'", "--backend")
    if mode not in ("RGB", "D"):
        raise _bad_value(f"choose from RGB, D, not '{mode}'", "--mode")
    if not scene.is_file():
        raise Recon3DError(f"scene '{scene}' does not exist")
    gaussians = read_gaussians_ply(scene)
    if len(gaussians) == 0:
        raise Recon3DError(f"scene '{scene}' holds no Gaussians")
    source = load_cameras(cameras)

    # Every camera's intrinsics are brought to the output size first, so paths mixing
    # cameras of different sizes interpolate like with like.
    out_w = width or int(source.sizes_wh[0, 0])
    out_h = height or int(source.sizes_wh[0, 1])
    scale = np.stack([out_w / source.sizes_wh[:, 0], out_h / source.sizes_wh[:, 1], np.ones(len(source.sizes_wh))], axis=1)
    w2c, K = source.extrinsics_w2c, source.intrinsics * scale[:, :, None]
    try:
        if path == "orbit":
            w2c, K = orbit_path(w2c, K, frames)
        elif path == "interpolate":
            w2c, K = interpolate_path(w2c, K, frames)
    except ValueError as err:
        raise Recon3DError(f"cannot build the {path} path from {cameras}: {err}") from None

    device = "cuda" if backend != "cpu" and torch.cuda.is_available() else "cpu"
    gaussians = dataclasses.replace(gaussians, **{f.name: getattr(gaussians, f.name).to(device) for f in dataclasses.fields(gaussians)})
    viewmats = torch.as_tensor(w2c, dtype=torch.float32, device=device)
    Ks = torch.as_tensor(K, dtype=torch.float32, device=device)
    if mode == "D":
        # One depth range for the whole video (from a sample of the centres' camera
        # depths), so a colour means the same depth in every frame.
        sample = gaussians.means[torch.randperm(len(gaussians), generator=torch.Generator().manual_seed(0))[:100_000].to(device)]
        depths = (sample @ viewmats[:, 2, :3].T + viewmats[:, 2, 3]).flatten()
        depths = depths[depths > 0].double().cpu().numpy()
        near, far = np.percentile(depths, [2, 98]) if len(depths) else (0.0, 1.0)
        far = max(far, near + 1e-6)  # a scene at one depth still needs a range

    def video_frames():
        for i in track(range(len(viewmats)), description="rendering", console=console):
            out = render(gaussians, viewmats[i:i + 1], Ks[i:i + 1], out_w, out_h, backend=backend, mode="RGB" if mode == "RGB" else "ED")
            if mode == "RGB":
                yield (out.colors[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            else:
                yield colorize_depth(out.colors[0, ..., 0].cpu().numpy(), out.alphas[0, ..., 0].cpu().numpy() > 0.5, near, far)

    count = write_mp4(output, video_frames(), fps=fps)
    console.print(f"[green]wrote[/green] {output}: {count} frames at {out_w}x{out_h}")


@app.command()
def train(
    recipe: str = typer.Argument("recon3d-tiny", help="Training recipe (see recon3d.train.recipes)."),
    output: Path = typer.Option(Path("runs/recon3d-tiny"), "-o", "--output", help="Run folder: checkpoint.pt, log.jsonl, model/."),
    steps: Optional[int] = typer.Option(None, min=1, help="Train up to this step (default: the recipe's)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from scratch instead of resuming the run folder's checkpoint."),
    workers: Optional[int] = typer.Option(None, min=0, help="Scene-rendering processes (default: the recipe's)."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads for the network."),
    device: str = typer.Option("auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N (on CUDA the aggregator trains under bf16 autocast)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from these model weights (a model folder) when the run folder has no checkpoint; the optimiser starts fresh."),
    start_step: int = typer.Option(0, "--start-step", min=0, help="With --init-from: the step the weights were trained to (sets the learning-rate schedule)."),
) -> None:
    """Train a small VGGT on procedurally generated scenes (resumes by default)."""
    import dataclasses

    from recon3d.train.loop import train as run_training
    from recon3d.train.recipes import RECIPES

    _check_device_and_precision(device, "auto")
    if recipe not in RECIPES:
        raise Recon3DError(f"unknown recipe '{recipe}'; recipes: {', '.join(RECIPES)}")
    overrides = {k: v for k, v in {"steps": steps, "render_workers": workers, "threads": threads,
                                   "device": device}.items() if v is not None}
    if fresh and (output / "checkpoint.pt").exists():
        (output / "checkpoint.pt").unlink()
        (output / "log.jsonl").unlink(missing_ok=True)
    run_training(dataclasses.replace(RECIPES[recipe], **overrides), output, init_from=init_from, start_step=start_step)


@models_app.command("list")
def models_list() -> None:
    """Zoo models with parameter counts, licences and whether their weights are here."""
    from recon3d.zoo import REGISTRY, count_parameters, embedded_default, is_cached

    table = Table(title="recon3d model zoo")
    for col in ("name", "parameters", "licence", "weights here", "source"):
        table.add_column(col)
    for entry in REGISTRY.values():
        source = entry.hf_repo or (f"models/{entry.local_dir.name}" if entry.local_dir else "random init")
        name = entry.name + (" (default offline)" if entry.name == embedded_default() else "")
        table.add_row(name, f"{count_parameters(entry.config) / 1e6:,.1f} M", entry.licence,
                      "yes" if is_cached(entry) else "no", source)
    Console(width=max(Console().width, 110)).print(table)


@models_app.command("info")
def models_info(name: str = typer.Argument(..., help="A zoo name.")) -> None:
    """Configuration, size, licence and loading notes of one zoo model."""
    from recon3d.networks.dust3r import DUSt3RConfig
    from recon3d.networks.vggt.model import SKIPPED_CHECKPOINT_PREFIXES
    from recon3d.zoo import REGISTRY, count_parameters, is_cached

    if name not in REGISTRY:
        raise Recon3DError(f"unknown model '{name}'; `recon3d models list` shows the zoo")
    e = REGISTRY[name]
    c = e.config
    out = Console()
    out.print(f"[bold]{e.name}[/bold]: {e.description}")
    out.print(f"licence: {e.licence}")
    out.print(f"weights: {e.hf_repo or e.local_dir or 'random initialisation'} ({'here' if is_cached(e) else 'not here'})")
    out.print(f"parameters run by recon3d: {count_parameters(c):,}")
    if isinstance(c, DUSt3RConfig):
        out.print(
            f"architecture: DUSt3R, encoder {c.enc_embed_dim}x{c.enc_depth} ({c.enc_num_heads} heads), decoders "
            f"{c.dec_embed_dim}x{c.dec_depth} ({c.dec_num_heads} heads), {c.head_type} heads, input {max(c.img_size)} px; "
            "runs on image pairs, then a global alignment (--scene-graph, --align-iters)"
        )
        return
    out.print(
        f"architecture: VGGT, embed {c.embed_dim}, depth {c.depth}, heads {c.num_heads}, "
        f"patch embed {c.patch_embed.type}, camera trunk {c.camera_head.trunk_depth}, "
        f"DPT features {c.dpt.features} reading layers {c.dpt.intermediate_layer_idx}"
    )
    if c.enable_track:
        out.print(
            f"note: the checkpoint's tracking head ({', '.join(SKIPPED_CHECKPOINT_PREFIXES)}*) is skipped "
            "when loading: recon3d does not run point tracking"
        )


@models_app.command("download")
def models_download(
    name: str = typer.Argument(..., help="A zoo name with a Hugging Face source."),
    revision: Optional[str] = typer.Option(None, help="Branch, tag or commit."),
) -> None:
    """Download a model's weights into the Hugging Face cache (shows progress)."""
    from recon3d.zoo import REGISTRY, hf_download

    entry = REGISTRY.get(name)
    if entry is None or entry.hf_repo is None:
        raise Recon3DError(f"'{name}' is not a zoo model with downloadable weights; `recon3d models list` shows the zoo")
    path = hf_download(entry.hf_repo, revision, gated=entry.gated)
    Console().print(f"{name}: {path}")


def _click_exception_types() -> tuple[type[Exception], ...]:
    """Exceptions click raises for usage errors: typer's bundled click derives them from
    ``typer.TyperException``; older typer releases use the ``click`` package's own."""
    types: list[type[Exception]] = [typer.TyperException]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:
        pass
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the typer app and turns exceptions into exit codes."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        code = app(args=argv, prog_name="recon3d", standalone_mode=False)
        # Without standalone mode click returns the code of a typer.Exit instead of raising it.
        if isinstance(code, int):
            return code
    except Recon3DError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 1
    except (KeyboardInterrupt, typer.Abort):
        console.print("interrupted")
        return 130
    except typer.Exit as ex:
        return ex.exit_code
    except _click_exception_types() as err:
        # Usage errors (unknown option, missing argument, bad value): the usage line and the problem.
        err.show()
        return err.exit_code
    except Exception as err:  # noqa: BLE001 — anything else is our bug, reported as such
        if os.environ.get("RECON3D_DEBUG"):
            raise
        console.print(f"[red]internal error:[/red] {type(err).__name__}: {escape(str(err))} (set RECON3D_DEBUG=1 for details)",
                      highlight=False, soft_wrap=True)
        return INTERNAL_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
