"""The ``recon3d`` command line.

Exit codes: 0 success, 1 input error (a one-line message, no traceback), 2 usage error
(the command's usage line and what was wrong with it), 3 internal error (set
RECON3D_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recon3d.errors import Recon3DError
from recon3d.settings import INPUTS_HELP, OPTIONS, OPTIONS_BY_NAME, ReconstructionSettings, check_consistency

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


INPUTS_ARG = typer.Argument(..., metavar="INPUTS", help=INPUTS_HELP)


def _bad_value(message: str, flag: str | None = None) -> typer.BadParameter:
    """A usage error: main() prints the command's usage line and this message (exit code 2)."""
    return typer.BadParameter(message, param_hint=f"'{flag}'" if flag else None)


def _checked(name: str, value):
    """``value`` parsed as the shared option ``name`` does (`recon3d.settings.OPTIONS`), for
    commands that take that option on its own; a bad value is a usage error."""
    option = OPTIONS_BY_NAME[name]
    try:
        return option.parse(value)
    except ValueError as err:
        raise _bad_value(str(err), option.flag) from None


def _with_settings(*groups: str):
    """Give a command the shared options of ``groups`` (declared once, in
    `recon3d.settings.OPTIONS`) and call it with the ``settings`` they describe.

    The command declares only its own parameters plus ``settings``; the options are added
    to the signature typer reads, and their values are checked and stored in one
    ``ReconstructionSettings`` before the command runs (a bad value is a usage error).
    """
    options = [option for option in OPTIONS if option.group in groups]

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "settings"]
        shared = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.declaration, annotation=o.annotation)
                  for o in options]

        @functools.wraps(command)
        def run(**kwargs):
            settings = ReconstructionSettings()
            for option in options:
                try:
                    option.store(settings, option.parse(kwargs.pop(option.name)))
                except ValueError as err:
                    raise _bad_value(str(err), option.flag) from None
            try:
                check_consistency(settings)
            except ValueError as err:
                raise _bad_value(str(err)) from None
            return command(settings=settings, **kwargs)

        run.__signature__ = signature.replace(parameters=own + shared)
        run.__annotations__ = {p.name: p.annotation for p in own + shared}
        return run

    return decorate


@app.command()
@_with_settings("run")
def predict(
    inputs: list[Path] = INPUTS_ARG,
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the prediction (.npz)."),
    *,
    settings: ReconstructionSettings,
) -> None:
    """Predict cameras, depth and point maps for a set of photos and save them as .npz."""
    from recon3d.io.inputs import collect_inputs
    from recon3d.pipeline import reconstruct

    if output.suffix != ".npz":
        raise _bad_value(f"'{output}' must end in .npz", "--output")
    start = time.perf_counter()
    with console.status("loading images") as status:
        loaded = collect_inputs(inputs, settings.inputs)
        prediction = reconstruct(loaded, settings=settings, on_stage=lambda name: status.update(f"{name}…"))
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


@app.command()
@_with_settings("run", "export")
def reconstruct(
    inputs: list[Path] = INPUTS_ARG,
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    *,
    settings: ReconstructionSettings,
) -> None:
    """Reconstruct one photo set or video and write point clouds, meshes, Gaussians, GLB and COLMAP files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recon3d.jobs import reconstruct_scene

    if output.exists() and not output.is_dir():
        raise Recon3DError(f"output '{output}' exists and is not a folder")
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
            result = reconstruct_scene(inputs, output, settings, on_stage=on_stage, on_progress=on_progress)
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
@_with_settings("run", "export")
def batch(
    root: Path = typer.Argument(..., help="A folder whose subfolders (image sets) and video files are the scenes."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: one subfolder per scene and manifest.json."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Scenes processed in parallel (processes or Ray actors), each loading the model once."),
    executor: str = typer.Option("local", "--executor", help="local (processes on this machine) or ray (a Ray cluster; output must be on a shared filesystem)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start or join a local Ray instance)."),
    *,
    settings: ReconstructionSettings,
) -> None:
    """Reconstruct every scene under ROOT; resumable (scenes marked done in manifest.json are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recon3d.batch import discover_scenes, run_batch

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
    _checked("device", device)
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
    refine: str = OPTIONS_BY_NAME["refine"].declaration,
) -> None:
    """Score a model's cameras, depth and geometry against ground truth, beside pycolmap."""
    from recon3d.eval.harness import run_eval_cli

    settings = ReconstructionSettings(model=model, device=_checked("device", device), refine=_checked("refine", refine))
    if not scene.is_dir():
        raise Recon3DError(f"scene folder '{scene}' does not exist")
    run_eval_cli(scene, settings, json_path=json_path, max_views=max_views, baseline=baseline)


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
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: the recipe's); lower it to continue trained weights from --init-from."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from scratch instead of resuming the run folder's checkpoint."),
    workers: Optional[int] = typer.Option(None, min=0, help="Scene-rendering processes (default: the recipe's)."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads for the network."),
    device: str = typer.Option("auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N (on CUDA the aggregator trains under bf16 autocast)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from these model weights (a model folder) when the run folder has no checkpoint; the optimiser starts fresh."),
    start_step: int = typer.Option(0, "--start-step", min=0, help="With --init-from: the step the weights were trained to (sets the learning-rate schedule)."),
    scene_cache: Optional[Path] = typer.Option(None, "--scene-cache", help="Folder of rendered training scenes: read when present, filled otherwise (a resumed or GPU run then renders nothing twice)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", min=0.1, help="Stop with a checkpoint after this many minutes (the schedule still follows the recipe's steps); resume later."),
    precision: str = typer.Option("auto", "--precision", help="Aggregator precision while training: auto (bf16 on CUDA and on CPUs with native bf16 instructions, fp32 elsewhere), fp32 or bf16."),
) -> None:
    """Train a small VGGT on procedurally generated scenes (resumes by default)."""
    import dataclasses

    from recon3d.train.loop import train as run_training
    from recon3d.train.recipes import RECIPES

    _checked("device", device)
    if recipe not in RECIPES:
        raise Recon3DError(f"unknown recipe '{recipe}'; recipes: {', '.join(RECIPES)}")
    if precision not in ("auto", "fp32", "bf16"):
        raise _bad_value(f"must be auto, fp32 or bf16, got {precision!r}", "--precision")
    if lr is not None and not lr > 0:
        raise _bad_value(f"must be positive, got {lr}", "--lr")
    overrides = {k: v for k, v in {"steps": steps, "lr": lr, "render_workers": workers, "threads": threads,
                                   "device": device, "precision": precision, "max_minutes": minutes,
                                   "scene_cache": None if scene_cache is None else str(scene_cache)}.items()
                 if v is not None}
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
    from recon3d.networks.families import family_of
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
    for line in family_of(c).describe(c):
        out.print(line)


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
