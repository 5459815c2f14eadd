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

from recon3d.exports import ExportOptions, ExportReport, export_scene
from recon3d.io.inputs import InputOptions, InputSet, collect_inputs
from recon3d.networks.token_merging import MergeConfig
from recon3d.pairwise.reconstruct import PairwiseOptions
from recon3d.refine import RefineOptions
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
    formats: Sequence[str],
    options: ExportOptions | None = None,
    *,
    model: str | Path | torch.nn.Module = "auto",
    device: str = "auto",
    precision: str = "auto",
    preprocess_mode: str = "auto",
    input_options: InputOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    token_merging: MergeConfig | None = None,
    pairwise: PairwiseOptions | None = None,
    refine: RefineOptions | None = None,
) -> SceneResult:
    """Reconstruct the views named by ``inputs`` and write ``formats`` into ``out_dir``.

    Raises:
        InputError / WeightsError: bad inputs or weights (one-line messages).
    """
    from recon3d.pipeline import reconstruct

    clock = StageClock(on_stage)
    clock.stage("load images")
    loaded = collect_inputs(inputs, input_options)
    prediction = reconstruct(loaded, model, device=device, precision=precision, preprocess_mode=preprocess_mode,
                             on_stage=clock.stage, on_progress=on_progress, token_merging=token_merging,
                             pairwise=pairwise, refine=refine)
    report = export_scene(prediction, out_dir, formats, options, original_images=[x.image for x in loaded.views],
                          on_stage=clock.stage)
    clock.stop()
    return SceneResult(prediction, report, loaded, clock.seconds)
