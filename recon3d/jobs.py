"""One scene, start to finish: load the views, run the network, write the exports.

Shared by ``recon3d reconstruct`` (one scene), ``recon3d batch`` (many, in worker
processes or Ray tasks) and the web app, so they all time and report the same stages.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recon3d.exports import ExportReport, export_scene
from recon3d.io.inputs import InputSet, collect_inputs
from recon3d.settings import ReconstructionSettings
from recon3d.types import Prediction

__all__ = ["SceneResult", "StageClock", "reconstruct_scene"]


@dataclass
class SceneResult:
    prediction: Prediction
    report: ExportReport
    inputs: InputSet
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())


class StageClock:
    """Times named stages: each call to ``stage(name)`` ends the previous stage.

    ``listener`` (e.g. a progress display) hears every stage name as it starts.
    """

    def __init__(self, listener: Callable[[str], None] | None = None):
        self.seconds: dict[str, float] = {}
        self._listener = listener
        self._current: str | None = None
        self._started = 0.0

    def stage(self, name: str) -> None:
        self.stop()
        self._current, self._started = name, time.perf_counter()
        if self._listener is not None:
            self._listener(name)

    def stop(self) -> None:
        if self._current is not None:
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + time.perf_counter() - self._started
            self._current = None


def reconstruct_scene(
    inputs: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    settings: ReconstructionSettings | None = None,
    *,
    model: torch.nn.Module | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SceneResult:
    """Reconstruct the views named by ``inputs`` and write ``settings.formats`` into ``out_dir``.

    Args:
        inputs: folders, images or videos (see `recon3d.io.inputs.collect_inputs`).
        out_dir: the output folder.
        settings: everything to run and write (`recon3d.settings.ReconstructionSettings`).
        model: an already loaded network (else ``settings.model`` is loaded, or reused
            from `recon3d.zoo.cached_model`).
        on_stage, on_progress: progress callbacks, as for `recon3d.pipeline.reconstruct`.

    Raises:
        InputError / WeightsError: bad inputs or weights (one-line messages).
    """
    from recon3d.pipeline import reconstruct

    settings = settings or ReconstructionSettings()
    clock = StageClock(on_stage)
    clock.stage("load images")
    loaded = collect_inputs(inputs, settings.inputs)
    prediction = reconstruct(loaded, model, settings, on_stage=clock.stage, on_progress=on_progress)
    report = export_scene(prediction, out_dir, settings.formats, settings.export,
                          original_images=[x.image for x in loaded.views], on_stage=clock.stage)
    clock.stop()
    return SceneResult(prediction, report, loaded, clock.seconds)
