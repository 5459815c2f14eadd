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
from recon3d.networks.dust3r import DUSt3R
from recon3d.networks.token_merging import MergeConfig
from recon3d.pairwise.reconstruct import PairwiseOptions
from recon3d.refine import RefineOptions, refine_prediction
from recon3d.types import Prediction

log = logging.getLogger(__name__)

ImageInput = str | Path | PIL.Image.Image


def _load_inputs(inputs: ImageInput | Sequence[ImageInput] | InputSet,
                 options: InputOptions | None) -> tuple[list[PIL.Image.Image], list[str]]:
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
    loaded = collect_inputs(items, options).views
    return [x.image for x in loaded], [x.name for x in loaded]


def default_preprocess_mode(model: torch.nn.Module) -> str:
    """The input layout a network was trained on (see `recon3d.io.preprocess`)."""
    if isinstance(model, DUSt3R):
        return "square-crop" if max(model.config.img_size) <= 224 else "long-crop"
    return "crop"


@torch.inference_mode()
def predict_tensors(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Run ``model`` on ``images [S,3,H,W]`` in [0,1]; return per-view fp32 numpy arrays.

    Keys: extrinsics_w2c ``[S,4,4]``, intrinsics ``[S,3,3]``, depth/depth_conf ``[S,H,W]``,
    points ``[S,H,W,3]``, points_conf ``[S,H,W]``. A network without a point-map head
    gets its points from depth and cameras, with the depth confidence.
    """
    from recon3d.geometry.cameras import pose_encoding_to_cameras, to_homogeneous, unproject_depth

    device = next(model.parameters()).device
    out = model(images.to(device))
    h, w = images.shape[-2:]
    extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"][0].float(), (h, w))

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    depth = out["depth"][0, ..., 0]
    if "world_points" in out:
        points, points_conf = out["world_points"][0], out["world_points_conf"][0]
    else:
        points = unproject_depth(depth, extrinsics, intrinsics, pixel_centre=0.5)
        points_conf = out["depth_conf"][0]
    return {
        "extrinsics_w2c": host(to_homogeneous(extrinsics)),
        "intrinsics": host(intrinsics),
        "depth": host(depth),
        "depth_conf": host(out["depth_conf"][0]),
        "points": host(points),
        "points_conf": host(points_conf),
    }


def reconstruct(
    images: ImageInput | Sequence[ImageInput],
    model: str | Path | torch.nn.Module = "auto",
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    preprocess_mode: str = "auto",
    input_options: InputOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    token_merging: MergeConfig | None = None,
    pairwise: PairwiseOptions | None = None,
    refine: RefineOptions | None = None,
) -> Prediction:
    """Predict cameras, depth and point maps for unposed photos.

    Args:
        images: a folder, image or video paths, PIL images, or the views loaded by
            `recon3d.io.inputs.collect_inputs` (at least one).
        model: a loaded network, or anything ``recon3d.load_model`` accepts.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; with a loaded
            ``model``, ``"auto"`` runs it where it is and a named device moves it there.
        precision: backbone precision when ``model`` is loaded here.
        preprocess_mode: ``"auto"`` (the model's own: ``"crop"`` for VGGT, ``"long-crop"``
            or ``"square-crop"`` for DUSt3R at 512 or 224 px), ``"crop"`` (width 518,
            centre crop), ``"pad"`` (long side 518, white padding to a square), ``"fit"``
            (long side 518, aspect kept); see `recon3d.io.preprocess`.
        input_options: how paths become views (video sampling, frame selection,
            skipping of unusable files in folders); see `recon3d.io.inputs.InputOptions`.
        on_stage: called with a short stage name as work progresses (for progress bars).
        on_progress: called with ``(done, total)`` within stages that count steps
            (DUSt3R's pairs and alignment iterations).
        token_merging: merge tokens in VGGT's global attention (long sequences; see
            `recon3d.networks.token_merging`); None runs dense attention.
        pairwise: scene graph and global alignment settings of two-view (DUSt3R) models.
        refine: geometric refinement after the network (`recon3d.refine`: feature tracks
            on the original photos and bundle adjustment); None or method "none" skips
            it, "auto" refines the models whose own cameras need it (the embedded default).

    Returns:
        A ``Prediction`` whose world frame is the first view's camera.
    """
    from recon3d.io.preprocess import preprocess_images
    from recon3d.zoo import load_model

    stage = on_stage or (lambda name: None)
    torch_device = resolve_device(device)
    stage("load images")
    pil_images, names = _load_inputs(images, input_options)
    if not isinstance(model, torch.nn.Module):
        stage("load model")
        model = load_model(model, device=torch_device, precision=precision)
    elif str(device) != "auto" and next(model.parameters()).device != torch_device:
        # An explicit device wins over where a loaded network happens to be.
        log.info("moving the network from %s to %s", next(model.parameters()).device, torch_device)
        model.to(torch_device)
    stage("preprocess")
    config = model.config
    size = max(config.img_size) if isinstance(config.img_size, tuple) else config.img_size
    batch = preprocess_images(pil_images, mode=default_preprocess_mode(model) if preprocess_mode == "auto" else preprocess_mode,
                              target_size=size, patch_size=config.patch_size)
    if isinstance(model, DUSt3R):
        from recon3d.pairwise.reconstruct import predict_scene

        arrays = predict_scene(model, batch.images, pairwise, on_stage=stage, on_progress=on_progress)
    else:
        stage("network")
        if hasattr(model, "set_token_merging"):
            model.set_token_merging(token_merging)
        arrays = predict_tensors(model, batch.images)
    info = getattr(model, "info", None)
    prediction = Prediction(
        images=batch.images.numpy().astype(np.float32),
        to_original=np.asarray(batch.to_original, dtype=np.float32),
        original_sizes=np.asarray(batch.original_sizes, dtype=np.int64),
        names=names,
        model_name=info.name if info else type(model).__name__,
        **arrays,
    )
    refine = refine.resolve(info) if refine is not None else None
    if refine is not None and refine.method != "none":
        stage("refine")
        prediction = refine_prediction(prediction, pil_images, refine, on_progress=on_progress)
    return prediction
