"""Batch reconstruction: every subfolder (or video) of a root folder is one scene.

Output: ``OUT/<scene>/`` with the chosen exports, and ``OUT/manifest.json`` holding one
entry per scene (status, timings, error, files skipped as unusable). A scene's folder appears whole or not at all
(it is written beside and renamed into place), and its manifest entry is written after
that, so the manifest is the record of what is done: a rerun skips scenes marked
``done`` and retries the rest, and a batch killed at any point reruns to a consistent
state. One model load per worker; workers are local processes or Ray actors.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recon3d.errors import InputError, Recon3DError
from recon3d.io.atomic import atomic_directory, atomic_path
from recon3d.jobs import reconstruct_scene
from recon3d.refine import refinement_summary
from recon3d.settings import ReconstructionSettings

__all__ = ["discover_scenes", "load_manifest", "run_batch", "EXECUTORS"]

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
MANIFEST = "manifest.json"


def discover_scenes(root: str | Path) -> dict[str, Path]:
    """Scene name → input: each non-hidden subfolder of ``root``, and each video file in it."""
    from recon3d.io.images import VIDEO_EXTENSIONS, natural_sort_key

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"batch root '{root}' is not a folder; give a folder whose subfolders are scenes")
    scenes: dict[str, Path] = {}
    for entry in sorted(root.iterdir(), key=lambda p: natural_sort_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            scenes[entry.name] = entry
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            scenes.setdefault(entry.stem, entry)
    if not scenes:
        raise InputError(f"'{root}' has no scene subfolders or videos; put each scene's images in its own subfolder")
    return scenes


def load_manifest(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return {"version": 1, "scenes": {}}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a valid manifest ({exc}); move it away to start the batch afresh") from exc
    manifest.setdefault("scenes", {})
    return manifest


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete the half-written scene folders a killed run left behind."""
    for entry in out_dir.glob(".*"):
        if entry.is_dir() and (entry.name.endswith(".part") or entry.name.endswith(".old")):
            shutil.rmtree(entry, ignore_errors=True)


def process_scene(name: str, source: str, out_root: str, settings: ReconstructionSettings) -> dict[str, Any]:
    """Reconstruct one scene into ``out_root/name``; never raises: errors go in the entry.

    The network comes from `recon3d.zoo.cached_model`, so each worker loads it once.
    """
    started = time.perf_counter()
    entry: dict[str, Any] = {"input": source}
    try:
        with atomic_directory(Path(out_root) / name) as tmp:
            result = reconstruct_scene([source], tmp, settings)
        entry.update(
            status="done", views=result.prediction.num_views, model=result.prediction.model_name,
            stage_seconds={k: round(v, 3) for k, v in result.stage_seconds.items()}, counts=result.report.counts,
            outputs=sorted(str(p.relative_to(tmp)) for paths in result.report.files.values() for p in paths),
            error=None, skipped=[s.as_dict() for s in result.inputs.skipped],
            dropped_frames=result.inputs.dropped_frames, notes=result.inputs.notes,
        )
        refinement = result.prediction.refinement
        if refinement is not None:
            entry["refinement"] = refinement_summary(refinement, result.prediction.names)
    except Recon3DError as err:
        entry.update(status="failed", error=str(err))
    except Exception as err:  # noqa: BLE001 - one broken scene must not stop the batch
        log.debug("scene %s failed", name, exc_info=True)
        entry.update(status="failed", error=f"internal error: {type(err).__name__}: {err}")
    entry["seconds"] = round(time.perf_counter() - started, 3)
    entry["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return entry


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_local(todo, out_dir, settings, workers, record) -> None:
    if workers == 1:
        for name, source in todo.items():
            record(name, process_scene(name, str(source), str(out_dir), settings))
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(process_scene, name, str(source), str(out_dir), settings): name
                   for name, source in todo.items()}
        for future in as_completed(futures):
            name = futures[future]
            try:
                entry = future.result()
            except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS
                entry = {"input": str(todo[name]), "status": "failed", "error": f"worker died: {err}"}
            record(name, entry)


def ray_actor_resources(device: str, workers: int, cluster_gpus: float) -> dict[str, float]:
    """Resources each Ray scene worker asks for.

    Ray hides the GPUs from an actor that asks for none (``CUDA_VISIBLE_DEVICES=""``),
    so a worker meant to use CUDA must ask for a share of one: the cluster's GPUs are
    split evenly over the workers, at most one each.

    Raises:
        InputError: ``device`` names CUDA and the cluster has no GPU.
    """
    if device == "cpu" or (cluster_gpus <= 0 and device == "auto"):
        return {"num_cpus": 1, "num_gpus": 0}
    if cluster_gpus <= 0:
        raise InputError(f"--device {device} was asked for, but the Ray cluster has no GPUs; use --device cpu or auto")
    return {"num_cpus": 1, "num_gpus": min(1.0, cluster_gpus / workers)}


def _run_ray(todo, out_dir, settings, workers, record, address) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise InputError("--executor ray needs Ray: pip install 'ray>=2.40'") from exc
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)

    resources = ray_actor_resources(settings.device, workers, ray.cluster_resources().get("GPU", 0.0))

    @ray.remote
    class SceneWorker:
        def process(self, name: str, source: str, out_root: str,
                    batch_settings: ReconstructionSettings) -> tuple[str, dict]:
            return name, process_scene(name, source, out_root, batch_settings)

    actors = [SceneWorker.options(**resources).remote() for _ in range(workers)]
    pool = ActorPool(actors)
    jobs = [(name, str(source)) for name, source in todo.items()]
    for name, entry in pool.map_unordered(lambda actor, job: actor.process.remote(*job, str(out_dir), settings), jobs):
        record(name, entry)


def run_batch(
    root: str | Path,
    out_dir: str | Path,
    settings: ReconstructionSettings,
    *,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    on_scene: Callable[[str, dict[str, Any]], None] | None = None,
    on_plan: Callable[[list[str], list[str]], None] | None = None,
) -> dict[str, Any]:
    """Run every scene of ``root`` not yet done; return the manifest.

    Args:
        root: folder of scenes (subfolders of images, or videos).
        out_dir: output folder (holds the manifest).
        settings: what every scene is run and written with.
        workers: scenes processed at once (processes or Ray actors), each loading the
            model once.
        executor: ``"local"`` (processes on this machine) or ``"ray"``.
        address: Ray cluster address (None: start or join a local instance). On a
            cluster, ``root`` and ``out_dir`` must be on a filesystem every node sees.
        on_scene: called with each finished scene's name and manifest entry.
        on_plan: called once with the scenes to run and the scenes skipped as done.
    """
    if executor not in EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, not '{executor}'")
    if workers < 1:
        raise InputError("--workers must be at least 1")
    scenes = discover_scenes(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    manifest = load_manifest(out_dir)
    done = [n for n in scenes if manifest["scenes"].get(n, {}).get("status") == "done"]
    todo = {n: p.resolve() for n, p in scenes.items() if n not in done}
    if on_plan is not None:
        on_plan(list(todo), done)

    def record(name: str, entry: dict[str, Any]) -> None:
        manifest["scenes"][name] = entry
        _write_manifest(out_dir, manifest)
        if on_scene is not None:
            on_scene(name, entry)

    if todo:
        if executor == "ray":
            _run_ray(todo, out_dir.resolve(), settings, workers, record, address)
        else:
            _run_local(todo, out_dir.resolve(), settings, min(workers, len(todo)), record)
    return manifest
