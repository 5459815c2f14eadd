"""The recon3d web app: upload photos or a video, reconstruct, look around, download.

``build_app(UIConfig())`` returns the Gradio Blocks; ``recon3d ui`` launches it. The
network runs only on Reconstruct; the confidence, frame, filter, camera and output
controls re-export from the prediction kept in the session.
"""
from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from recon3d.errors import Recon3DError
from recon3d.exports import FILTERS, ExportOptions
from recon3d.settings import ReconstructionSettings, apply_option
from recon3d_ui.session import (
    Session,
    all_downloads,
    delete_session,
    depth_and_confidence_images,
    remove_stale_sessions,
    session_root,
    viewer_export,
)
from recon3d_ui.uploads import Upload, UploadLimits, load_staged, stage_uploads

if TYPE_CHECKING:
    from recon3d.io.inputs import SkippedFile

REPO = Path(__file__).resolve().parents[1]
SHOW_CHOICES = ["points", "mesh", "gaussians"]
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def zoo_loader(device: str = "auto") -> Callable[[str], tuple[object, str]]:
    """Zoo loader on ``device`` (``auto``: the GPU when there is one), through the one model
    cache (`recon3d.zoo.cached_model`); returns (model, a line saying which model runs where,
    in which backbone precision, and why)."""
    from recon3d.devices import describe_device, resolve_device
    from recon3d.networks.precision import choose_precision
    from recon3d.zoo import cached_model, resolve_auto

    torch_device = resolve_device(device)
    precision = choose_precision("auto", torch_device)
    where = f"on {describe_device(torch_device)}, backbone in {precision.name} ({precision.reason})"

    def load(name: str):
        line = f"model {name} {where}"
        if name == "auto":
            resolved, why = resolve_auto()
            line = f"auto → {resolved} ({why}) {where}"
            name = resolved
        return cached_model(name, device=torch_device), line

    return load


def _example_sets() -> list[list[str]]:
    scenes = sorted((REPO / "assets" / "scenes").glob("*/images"))
    return [[str(p) for p in sorted(folder.iterdir())][:8] for folder in scenes]


@dataclass
class UIConfig:
    """Limits and hooks of the app (all configurable from `recon3d ui`).

    Attributes:
        max_images: files per upload, and views after sampling a video.
        max_megapixels: pixels of one image or video frame (10^6 pixels), read from its header.
        max_upload_mb: bytes of one uploaded file, in MiB (2^20 bytes).
        max_gaussians: splats sent to the browser's viewer.
        load_model: name -> (network, status line); default: the zoo on ``recon3d ui --device``.
    """

    models: list[str] = field(default_factory=lambda: [
        "auto", "recon3d-tiny", "vggt-1b", "dust3r-512-dpt", "dust3r-224-linear", "vggt-untrained-small",
        "dust3r-untrained-tiny", "anysplat",
    ])
    max_images: int = 200
    max_megapixels: float = 40.0
    max_upload_mb: int = 500
    max_gaussians: int = 300_000
    load_model: Callable[[str], tuple[object, str]] = field(default_factory=zoo_loader)
    examples: list[list[str]] = field(default_factory=_example_sets)


def _settings(model_name, fps, max_frames, max_views, merge, scene_graph, align_iters, refine,
              refine_features) -> ReconstructionSettings:
    """The controls' values, checked as the command line checks them (ValueError when one is not allowed)."""
    settings = ReconstructionSettings(model=str(model_name))
    for name, value in (("fps", fps or None), ("max_frames", int(max_frames or 0) or None),
                        ("max_views", int(max_views or 0) or None), ("merge", str(merge)),
                        ("scene_graph", str(scene_graph)), ("align_iters", int(align_iters or 0)),
                        ("refine", str(refine or "auto")), ("refine_features", int(refine_features or 3072))):
        apply_option(settings, name, value)
    return settings


def _gradio_upload_folder() -> Path:
    """Where gradio saves browser and API uploads: ``GRADIO_TEMP_DIR``, else ``<system temp>/gradio``."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def _skipped_note(skipped: list[SkippedFile], total: int) -> str:
    """Status-line note naming each skipped upload and why ('' when none was skipped)."""
    if not skipped:
        return ""
    # File names come from the browser: escaped, so a name cannot add links or markup to the status.
    listed = "; ".join(_MARKDOWN_SPECIAL.sub(r"\\\1", f"{s.path} ({s.reason})") for s in skipped)
    return f"; skipped {len(skipped)} of {total} uploads: {listed}"


def _options(conf: float, frames: list[str], names: list[str], show_cameras: bool, filters: list[str]) -> ExportOptions:
    views = [names.index(f) for f in frames if f in names]
    if not views:
        raise gr.Error("Select at least one frame to show.")
    return ExportOptions(conf_percentile=float(conf), views=views, frustums=bool(show_cameras),
                         filters=frozenset(filters), max_points=500_000)


def build_app(config: UIConfig | None = None) -> gr.Blocks:
    config = config or UIConfig()
    # One network run at a time: a second click queues behind the first.
    network_lock = threading.Lock()
    # Sessions by gradio session hash, so that closing the page deletes the folder at once
    # (gradio keeps a closed page's state, and calls its delete_callback, an hour later).
    live_sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
    limits = UploadLimits(max_files=config.max_images, max_bytes=config.max_upload_mb * 2**20,
                          max_megapixels=config.max_megapixels)

    def reconstruct(files, fps, max_frames, model_name, merge, scene_graph, align_iters, refine, conf, show_cameras,
                    filters, show, max_views, refine_features, session, request: gr.Request, progress=gr.Progress()):
        from recon3d.pipeline import reconstruct as run_network

        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        if not paths:
            raise gr.Error("Upload a few photos (or one video) first.")
        session = session or Session()
        if request.session_hash:
            live_sessions[request.session_hash] = session
        progress(0.02, desc="loading images")
        try:
            settings = _settings(model_name, fps, max_frames, max_views, merge, scene_graph, align_iters, refine,
                                 refine_features)
            settings.inputs.max_megapixels = config.max_megapixels
            staged = stage_uploads([Upload(p) for p in paths], session.inputs_folder(), limits, _gradio_upload_folder())
            inputs = load_staged(staged, settings.inputs)
            loaded = inputs.views
            if len(loaded) > config.max_images:
                raise gr.Error(f"{len(loaded)} views; this server takes at most {config.max_images} "
                               "(lower the video fps or max frames).")
            progress(0.1, desc="loading the model")
            model, model_line = config.load_model(model_name)
            # Progress fractions at which each stage starts and ends.
            spans = {"preprocess": (0.2, 0.3), "network": (0.3, 0.6), "global alignment": (0.6, 0.8),
                     "refine": (0.6, 0.8)}
            current = ["preprocess"]

            def on_stage(name: str) -> None:
                current[0] = name
                progress(spans.get(name, (0.2, 0.2))[0], desc=name)

            def on_progress(done: int, total: int) -> None:
                start, end = spans.get(current[0], (0.2, 0.2))
                progress(start + (end - start) * done / max(total, 1), desc=f"{current[0]} {done}/{total}")

            with network_lock:
                prediction = run_network(loaded, model, settings, on_stage=on_stage, on_progress=on_progress)
        except (Recon3DError, ValueError) as err:
            raise gr.Error(str(err)) from err
        if prediction.refinement is not None:
            model_line += f"; refinement {prediction.refinement.status}: {prediction.refinement.reason}"
        session.prediction, session.images, session.model_line = prediction, [x.image for x in loaded], model_line
        session.input_note = _skipped_note(inputs.skipped, staged.total)
        names = list(prediction.names)
        progress(0.8, desc="exporting")
        viewer, downloads, status = _export(session, conf, names, show_cameras, filters, show)
        gallery = depth_and_confidence_images(prediction)
        frames = gr.CheckboxGroup(choices=names, value=names)
        return session, viewer, downloads, status, gallery, frames

    def _export(session, conf, frames, show_cameras, filters, show):
        names = list(session.prediction.names)
        options = _options(conf, frames, names, show_cameras, filters)
        viewer, downloads = viewer_export(session, options, show, config.max_gaussians)
        pred = session.prediction
        height, width = pred.image_size_hw
        status = (f"{session.model_line}; {pred.num_views} views at {width}x{height}; "
                  f"export {session.exports}: {show}, {len(options.views)} frames, "
                  f"lowest {conf:.0f} % confidence dropped{session.input_note}")
        return str(viewer), [str(p) for p in downloads], status

    def reexport(conf, frames, show_cameras, filters, show, session):
        if session is None or session.prediction is None:
            return gr.skip(), gr.skip(), "Reconstruct first; the controls then re-export without rerunning the network."
        return _export(session, conf, frames, show_cameras, filters, show)

    def prepare_downloads(conf, frames, show_cameras, filters, session):
        if session is None or session.prediction is None:
            raise gr.Error("Reconstruct first.")
        options = _options(conf, frames, list(session.prediction.names), show_cameras, filters)
        return [str(p) for p in all_downloads(session, options)]

    def end_session(request: gr.Request) -> None:
        session = live_sessions.pop(request.session_hash, None) if request.session_hash else None
        if session is not None:
            session.close()

    with gr.Blocks(title="recon3d", delete_cache=(3600, 7200)) as app:
        session = gr.State(None, time_to_live=6 * 3600, delete_callback=delete_session)
        gr.Markdown("# recon3d\nFeed-forward 3D reconstruction from unposed photos: upload a few images "
                    "(or one video), press **Reconstruct**, then explore and download.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Images or one video", file_count="multiple",
                                file_types=["image", "video"], elem_id="inputs")
                with gr.Row():
                    fps = gr.Number(value=1.0, label="Video: frames per second", minimum=0.01)
                    max_frames = gr.Number(value=60, label="Video: max frames", minimum=0, precision=0)
                model_name = gr.Dropdown(config.models, value=config.models[0], label="Model")
                with gr.Accordion("Advanced", open=False):
                    max_views = gr.Number(value=0, minimum=0, precision=0,
                                          label="Most views used, evenly spread (0: all)")
                    merge = gr.Dropdown(["auto", "off", "0.5", "0.9", "1.0"], value="auto", allow_custom_value=True,
                                        label="Token merging (auto: on from 32 images; a ratio merges that "
                                              "fraction of tokens in global attention)")
                    scene_graph = gr.Dropdown(["complete", "swin-3", "swin-5", "logwin-3", "oneref-0"], value="complete",
                                              allow_custom_value=True,
                                              label="DUSt3R scene graph (which image pairs run: complete, swin-N, "
                                                    "logwin-N, oneref-ID; add -noncyclic to swin/logwin)")
                    align_iters = gr.Number(value=300, minimum=0, precision=0,
                                            label="DUSt3R global alignment iterations")
                    refine = gr.Dropdown(["auto", "ba", "none"], value="auto",
                                         label="Refine cameras with feature tracks and bundle adjustment "
                                               "(auto: for the embedded default model; ba: always)")
                    refine_features = gr.Number(value=3072, minimum=64, precision=0,
                                                label="Refinement: SIFT keypoints per photo")
                run = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct")
                status = gr.Markdown(elem_id="status")
                if config.examples:
                    gr.Examples([[e] for e in config.examples], inputs=[files], label="Sample scenes")
            with gr.Column(scale=2):
                viewer = gr.Model3D(label="3D view", elem_id="viewer", height=480, clear_color=(1, 1, 1, 1))
                with gr.Row():
                    conf = gr.Slider(0, 99, value=50, step=1, label="Drop lowest confidence (%)", elem_id="conf")
                    show = gr.Radio(SHOW_CHOICES, value="points", label="Show")
                with gr.Row():
                    show_cameras = gr.Checkbox(value=True, label="Show cameras")
                    filters = gr.CheckboxGroup(list(FILTERS), value=["edges"], label="Filters")
                frames = gr.CheckboxGroup([], label="Frames")
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
                prepare = gr.Button("Prepare all downloads (GLB, Gaussian PLY, mesh, COLMAP zip)")
                gallery = gr.Gallery(label="Depth and confidence per view", columns=4, height=320)

        controls = [conf, frames, show_cameras, filters, show]
        # New inputs go last, so API clients written for the earlier order keep working.
        run.click(reconstruct, [files, fps, max_frames, model_name, merge, scene_graph, align_iters, refine, conf,
                                show_cameras, filters, show, max_views, refine_features, session],
                  [session, viewer, downloads, status, gallery, frames], concurrency_id="network",
                  concurrency_limit=1, api_name="reconstruct")
        # User actions only (.input/.release): Reconstruct itself updates the frame list.
        conf.release(reexport, [*controls, session], [viewer, downloads, status], api_name="reexport",
                     concurrency_id="export", concurrency_limit=2)
        for control in (show_cameras, filters, show, frames):
            control.input(reexport, [*controls, session], [viewer, downloads, status], api_name=False,
                          concurrency_id="export", concurrency_limit=2)
        prepare.click(prepare_downloads, [conf, frames, show_cameras, filters, session], [downloads],
                      api_name="downloads")
        app.unload(end_session)
    return app


def launch(host: str = "127.0.0.1", port: int | None = None, share: bool = False, config: UIConfig | None = None,
           block: bool = True):
    config = config or UIConfig()
    remove_stale_sessions(session_root())
    app = build_app(config)
    app.queue(default_concurrency_limit=2)
    app.launch(server_name=host, server_port=port, share=share, max_file_size=f"{config.max_upload_mb}mb",
               prevent_thread_lock=not block, show_error=True, allowed_paths=[str(REPO / "assets")])
    return app
