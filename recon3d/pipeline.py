"""``reconstruct``: photos in, a ``Prediction`` out (cameras, depth, point maps)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from recon3d.devices import resolve_device
from recon3d.errors import InputError
from recon3d.io.images import LoadedImage, check_image_size, to_rgb
from recon3d.io.inputs import InputOptions, InputSet, collect_inputs
from recon3d.networks.families import family_of
from recon3d.refine import refine_prediction
from recon3d.settings import ReconstructionSettings
from recon3d.types import Prediction

log = logging.getLogger(__name__)

ImageInput = str | Path | PIL.Image.Image


def _load_inputs(inputs: ImageInput | Sequence[ImageInput] | InputSet, options: InputOptions,
                 stage: Callable[[str], None]) -> tuple[list[PIL.Image.Image], list[str]]:
    """The views as RGB images and names; paths are read here (the "load images" stage),
    views loaded by `recon3d.io.inputs.collect_inputs` are used as they are."""
    if isinstance(inputs, InputSet):
        inputs = inputs.views
    items = [inputs] if isinstance(inputs, (str, Path, PIL.Image.Image)) else list(inputs)
    if not items:
        raise InputError("no input images given")
    if all(isinstance(x, LoadedImage) for x in items):
        return [x.image for x in items], [x.name for x in items]
    if all(isinstance(x, PIL.Image.Image) for x in items):
        for i, image in enumerate(items):
            check_image_size(image.width, image.height, f"input image {i}")
        return [to_rgb(x) for x in items], [f"image_{i:04d}" for i in range(len(items))]
    stage("load images")
    loaded = collect_inputs(items, options).views
    return [x.image for x in loaded], [x.name for x in loaded]


def reconstruct(
    images: ImageInput | Sequence[ImageInput] | InputSet,
    model: str | Path | torch.nn.Module | None = None,
    settings: ReconstructionSettings | None = None,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Predict cameras, depth and point maps for unposed photos.

    Args:
        images: a folder, image or video paths, PIL images, or the views loaded by
            `recon3d.io.inputs.collect_inputs` (at least one).
        model: a loaded network, or anything ``recon3d.load_model`` accepts; None takes
            ``settings.model``. Loaded networks are kept (`recon3d.zoo.cached_model`).
        settings: everything else (`recon3d.settings.ReconstructionSettings`): the device
            (``"auto"`` runs a loaded network where it is, a named device moves it there),
            precision, preprocessing (``"auto"``: the model family's own), how paths
            become views, token merging (VGGT), scene graph and alignment (DUSt3R) and
            the geometric refinement after the network.
        on_stage: called with a short stage name as work progresses (for progress bars).
        on_progress: called with ``(done, total)`` within stages that count steps
            (DUSt3R's pairs and alignment iterations, refinement).

    Returns:
        A ``Prediction`` whose world frame is the first view's camera.
    """
    from recon3d.io.preprocess import preprocess_images
    from recon3d.zoo import cached_model

    settings = settings or ReconstructionSettings()
    stage = on_stage or (lambda name: None)
    device = resolve_device(settings.device)
    pil_images, names = _load_inputs(images, settings.inputs, stage)
    model = settings.model if model is None else model
    if not isinstance(model, torch.nn.Module):
        stage("load model")
        model = cached_model(model, device=device, precision=settings.precision)
    elif settings.device != "auto" and next(model.parameters()).device != device:
        # An explicit device wins over where a loaded network happens to be.
        log.info("moving the network from %s to %s", next(model.parameters()).device, device)
        model.to(device)
    family = family_of(model)
    stage("preprocess")
    mode = family.default_preprocess(model.config) if settings.preprocess_mode == "auto" else settings.preprocess_mode
    batch = preprocess_images(pil_images, mode=mode, target_size=family.input_size(model.config),
                              patch_size=family.patch_size(model.config))
    arrays = family.predict(model, batch.images, settings, stage, on_progress)
    info = getattr(model, "info", None)
    prediction = Prediction(
        images=batch.images.numpy().astype(np.float32),
        to_original=np.asarray(batch.to_original, dtype=np.float32),
        original_sizes=np.asarray(batch.original_sizes, dtype=np.int64),
        names=names,
        model_name=info.name if info else type(model).__name__,
        **arrays,
    )
    refine = settings.refine.resolve(info)
    if refine.method != "none":
        stage("refine")
        prediction = refine_prediction(prediction, pil_images, refine, on_progress=on_progress)
        if prediction.gaussians is not None:
            log.warning("the learned Gaussians were placed by the network's cameras, not the refined ones; "
                        "use --gaussians geometric to build Gaussians from the refined depth and cameras")
    return prediction
