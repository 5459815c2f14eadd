"""Model zoo: a name, a local path or a Hugging Face repo id → a ready network.

``load_model("vggt-1b")`` reads the official checkpoint from the Hugging Face cache
(downloading it when online), ``load_model("path/to/dir")`` reads ``config.json`` +
``model.safetensors``, ``load_model("model.pt")`` reads a torch file without unpickling
anything but tensors, and ``load_model("auto")`` picks the best model available here.
Weights are read from safetensors or ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recon3d.errors import WeightsError
from recon3d.networks.anysplat import AnySplat, AnySplatConfig
from recon3d.networks.dust3r import DUSt3R, DUSt3RConfig
from recon3d.networks.families import build_network, family_for_json, family_for_weights, family_of
from recon3d.networks.vggt import VGGT, VGGTConfig

log = logging.getLogger(__name__)

def _models_dir() -> Path:
    """Where shipped models live: ``RECON3D_MODELS_DIR``, else the package data of an
    installed wheel (``recon3d/_embedded``, copied from models/ at build time), else the
    repository's own ``models/`` (a source checkout or an editable install)."""
    if os.environ.get("RECON3D_MODELS_DIR"):
        return Path(os.environ["RECON3D_MODELS_DIR"])
    packaged = Path(str(importlib.resources.files("recon3d"))) / "_embedded"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "models"


MODELS_DIR = _models_dir()
WEIGHT_FILES = ("model.safetensors", "model.pt")
LOCAL_WEIGHT_FILES = (*WEIGHT_FILES, "weights.safetensors")
"""Weight file names looked for in a model folder (the parity folders' ``weights.safetensors`` too)."""
CONFIG_FILES = ("model_config.json", "config.json")
"""Config file names beside a weights file, first found wins (a parity folder's config.json is a
record of how its data were made, its model_config.json the network)."""
DUST3R_LICENCE = "CC BY-NC-SA 4.0"
Config = VGGTConfig | DUSt3RConfig | AnySplatConfig
Network = VGGT | DUSt3R | AnySplat


@dataclass(frozen=True)
class ZooEntry:
    """One named model: its architecture, where its weights come from, and its licence.

    ``config`` is the network the entry's weights are for, and the one ``load_model``
    builds: as it is for Hugging Face and random-initialisation entries; for a model
    shipped in a folder, its ``config.json`` describes the weights, so where the two
    differ the file wins and the difference is logged (see ``config_differences``).
    """

    name: str
    description: str
    licence: str
    config: Config = field(default_factory=VGGTConfig)
    hf_repo: str | None = None
    gated: bool = False
    local_dir: Path | None = None
    random_init_seed: int | None = None
    # Its cameras are not usable without geometric refinement: `--refine auto` refines.
    refine_by_default: bool = False


def _untrained_small_config() -> VGGTConfig:
    return VGGTConfig(
        embed_dim=128, depth=4, num_heads=4, patch_embed={"type": "conv"},
        camera_head={"trunk_depth": 1, "num_heads": 4},
        dpt={"features": 64, "out_channels": [32, 64, 128, 128], "intermediate_layer_idx": [0, 1, 2, 3]},
        enable_track=False,
    )


def recon3d_tiny_config() -> VGGTConfig:
    """recon3d-tiny, the embedded default: a 28-pixel-patch VGGT working at width 252.

    The weights in models/recon3d-tiny/ are this network, and `recon3d.train.recipes`
    trains it (its config.json must agree: loading checks).

    28-pixel patches at width 252 give 9x7 tokens per 4:3 view, so 8 views run in well
    under a second on two CPU cores: on a CPU budget the model gets many samples rather
    than fine pixels. It trains at the sizes it is used at (widths 196-280), so
    positions are never extrapolated.

    Its cameras are solved, not regressed (``cameras_from="matches"``): a descriptor head
    (trained in a second stage on the frozen network) matches 4x4-pixel cells between the
    views, and `recon3d.geometry.pose_from_matches` solves the views' relative poses from
    those matches (an essential matrix per pair), with the predicted depth for the scale.
    On held-out scenes that beats the camera head and the poses solved from the point-map
    head by far (benchmarks/RESULTS.md); the camera head still gives the intrinsics, and
    its poses stand in for views that no verified pair reaches.

    Unlike VGGT-1B (DINOv2 tokens, LayerScale 0.01) it trains from scratch: its conv
    patch tokens are LayerNormed and its residual branches start at full weight
    (LayerScale 1.0). With VGGT's settings the conv tokens grew to norms near 160
    while the blocks added about 0.01 each, so the camera tokens of different views
    stayed equal to 0.2 % and every view got the same pose.
    """
    return VGGTConfig(
        img_size=252, patch_size=28, embed_dim=128, depth=8, num_heads=4, init_values=1.0,
        patch_embed={"type": "conv", "norm": True},
        camera_head={"trunk_depth": 2, "num_heads": 4, "init_values": 1.0},
        dpt={"features": 32, "out_channels": [32, 64, 128, 128], "intermediate_layer_idx": [1, 3, 5, 7]},
        enable_point=True, enable_track=False, enable_descriptor=True, cameras_from="matches",
    )


def _dust3r_entries() -> list[ZooEntry]:
    """The released DUSt3R checkpoints (naver/DUSt3R_ViTLarge_BaseDecoder_*)."""
    entries = []
    for head_type, size in (("dpt", 512), ("linear", 512), ("linear", 224)):
        repo = f"naver/DUSt3R_ViTLarge_BaseDecoder_{size}_{head_type}"
        entries.append(ZooEntry(
            f"dust3r-{size}-{head_type}",
            f"Official DUSt3R ViT-L/ViT-B, {size} px, {head_type} head (Wang et al., CVPR 2024); "
            "pairs + global alignment; non-commercial use only",
            DUST3R_LICENCE, config=DUSt3RConfig(head_type=head_type, img_size=(size, size)), hf_repo=repo,
        ))
    return entries


def _untrained_dust3r_config() -> DUSt3RConfig:
    return DUSt3RConfig(img_size=(224, 224), enc_embed_dim=64, enc_depth=2, enc_num_heads=4, dec_embed_dim=48,
                        dec_depth=4, dec_num_heads=4, head_type="linear")


REGISTRY: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "vggt-1b", "Official VGGT-1B (Wang et al., CVPR 2025); non-commercial use only",
            "CC BY-NC 4.0", hf_repo="facebook/VGGT-1B",
        ),
        ZooEntry(
            "vggt-1b-commercial",
            "Official VGGT-1B, commercial-use release: gated, accept its licence at "
            "huggingface.co/facebook/VGGT-1B-Commercial",
            "VGGT commercial (gated)", hf_repo="facebook/VGGT-1B-Commercial", gated=True,
        ),
        ZooEntry(
            "recon3d-tiny", "recon3d's embedded default: a small VGGT trained on procedural scenes (CPU-friendly)",
            "Apache-2.0", config=recon3d_tiny_config(), local_dir=MODELS_DIR / "recon3d-tiny",
            refine_by_default=True,
        ),
        ZooEntry(
            "vggt-untrained-small", "Small VGGT with random weights: exercises the pipeline, predicts nothing useful",
            "Apache-2.0", config=_untrained_small_config(), random_init_seed=0,
        ),
        *_dust3r_entries(),
        ZooEntry(
            "anysplat", "Official AnySplat (Jiang et al., 2025): VGGT cameras and depth plus learned 3D Gaussians "
            "fused per voxel", "MIT", config=AnySplatConfig(), hf_repo="lhjiang/anysplat",
        ),
        ZooEntry(
            "dust3r-untrained-tiny",
            "Tiny DUSt3R with random weights: exercises pairs + global alignment, predicts nothing useful",
            "Apache-2.0", config=_untrained_dust3r_config(), random_init_seed=0,
        ),
    )
}



@dataclass
class ModelInfo:
    """What was loaded, attached to the network as ``model.info``."""

    name: str
    source: str
    licence: str
    skipped_keys: list[str] = field(default_factory=list)
    trained: bool = True
    refine_by_default: bool = False


def count_parameters(config: Config) -> int:
    """Parameter count of a configuration, computed on the meta device (no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_network(config).parameters())


# ---------------------------------------------------------------- reading weights


_SAFETENSORS_FLOATS = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class SafetensorsWeights(Mapping[str, torch.Tensor]):
    """The tensors of a ``.safetensors`` file, each read from disk when asked for.

    Indexing gives safetensors' zero-copy tensor (its pages map the file). `read` gives
    one in another floating-point dtype from plain reads instead: the file's pages then
    never join this process's memory, so a bf16 backbone does not keep the fp32 file
    resident as well (VGGT-1B: 4.8 GB more).
    """

    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self._keys = list(self._file.keys())
            with open(path, "rb") as fh:
                length = int.from_bytes(fh.read(8), "little")
                self._header = json.loads(fh.read(length))
            self._data_start = 8 + length
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"cannot read '{path}' as safetensors: {err}") from None

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import SafetensorError

        if key not in self._header or key == "__metadata__":
            raise KeyError(key)
        try:
            return self._file.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"cannot read tensor '{key}' of '{self.path}': {err}") from None

    def read(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        """``key``'s tensor converted to ``dtype`` (a stored float type; others come as stored)."""
        entry = self._header[key]
        stored = _SAFETENSORS_FLOATS.get(entry["dtype"])
        if stored is None or stored == dtype:
            return self[key]
        begin, end = entry["data_offsets"]
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._data_start + begin)
                raw = bytearray(fh.read(end - begin))
        except OSError as err:
            raise WeightsError(f"cannot read tensor '{key}' of '{self.path}': {err}") from None
        expected = stored.itemsize * int(torch.Size(entry["shape"]).numel())
        if len(raw) != expected:
            raise WeightsError(f"tensor '{key}' of '{self.path}' is truncated ({len(raw)} of {expected} bytes)")
        tensor = torch.frombuffer(raw, dtype=stored) if raw else torch.empty(0, dtype=stored)
        return tensor.reshape(entry["shape"]).to(dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` (read lazily) or torch file, refusing anything that is not tensors."""
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        return SafetensorsWeights(path)
    try:
        # DUSt3R's training checkpoints store their arguments as an argparse.Namespace
        # beside the weights: allowed as plain data (its strings are never evaluated).
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"refusing to load '{path}': it is not a plain tensor checkpoint ({first}); "
            "recon3d never unpickles arbitrary objects — convert it to .safetensors"
        ) from None
    if isinstance(data, dict) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        for key in ("model", "state_dict"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"'{path}' does not hold a state dict of tensors")
    return data


def _config_from_json(path: Path) -> Config:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"cannot read model config '{path}': {err}") from None
    family = family_for_json(data)
    try:
        return family.config_from_json(data)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"invalid {family.title} config '{path}': {err}") from None


def _config_from_weights(state_dict: dict[str, torch.Tensor], path: Path) -> Config:
    """The configuration of a weights file without a ``config.json`` beside it."""
    family = family_for_weights(state_dict)
    try:
        return family.config_from_weights(state_dict, path)
    except KeyError as err:
        raise WeightsError(f"'{path}' looks like a {family.title} checkpoint but lacks {err}") from None
    except ValueError as err:
        raise WeightsError(f"cannot configure {family.title} from '{path}' alone: {err}; "
                           "put its config.json beside it") from None


def build_model(config: Config, state_dict: Mapping[str, torch.Tensor] | None, source: str,
                prepare: Callable[[Network], Network] | None = None) -> Network:
    """A network for ``config``, filled from ``state_dict`` (strict) or freshly initialised.

    ``prepare`` (e.g. `recon3d.networks.precision.apply_precision`) is applied to the empty
    network before it is filled; each tensor is converted to the dtype the prepared
    network holds it in as it is read, one at a time.
    """
    if state_dict is None:
        model = build_network(config).init_weights(seed=0)
        return prepare(model) if prepare else model
    # Built on the meta device and filled by assignment: no time spent on a random
    # initialisation that the checkpoint overwrites, and no second copy in memory.
    with torch.device("meta"):
        model = build_network(config)
    if prepare is not None:
        model = prepare(model)
    held = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    state_dict = {key: _as_held(state_dict, key, held.get(key)) for key in state_dict}
    try:
        skipped = model.load_checkpoint(state_dict)
    except RuntimeError as err:
        family = family_of(model)
        ignorable = family.ignorable_keys(model, state_dict)
        missing = [k for k in model.state_dict() if k not in state_dict and k not in ignorable]
        unexpected = [k for k in state_dict if k not in model.state_dict() and k not in ignorable]
        detail = f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        if not missing and not unexpected:
            detail = str(err).splitlines()[-1].strip()
        raise WeightsError(f"weights from '{source}' do not fit the {family.title} configuration: {detail}") from None
    model.skipped_keys = skipped
    if skipped:
        # Which layout the file holds: e.g. VGGT-1B with its tracking head, AnySplat with its
        # training-time distillation copies; both load, without the parts inference never runs.
        parts = sorted({".".join(k.split(".")[: 2 if k.startswith("encoder.") else 1]) for k in skipped})
        log.info("%s: %d checkpoint tensors not used at inference, skipped (%s)", source, len(skipped), ", ".join(parts))
    return model


def _as_held(state_dict: Mapping[str, torch.Tensor], key: str, held: torch.Tensor | None) -> torch.Tensor:
    """``state_dict[key]`` in the floating-point dtype the network holds it in (as stored otherwise)."""
    if held is not None and held.is_floating_point() and isinstance(state_dict, SafetensorsWeights):
        return state_dict.read(key, held.dtype)
    tensor = state_dict[key]
    if held is None or not tensor.is_floating_point() or tensor.dtype == held.dtype:
        return tensor
    return tensor.to(held.dtype)


def _load_dir(directory: Path, source: str, prepare: Callable[[Network], Network] | None = None) -> Network:
    for name in LOCAL_WEIGHT_FILES:
        if (directory / name).is_file():
            return _load_file(directory / name, source, prepare)
    raise WeightsError(f"no {' or '.join(LOCAL_WEIGHT_FILES)} in '{directory}'")


def _load_file(path: Path, source: str | None = None, prepare: Callable[[Network], Network] | None = None) -> Network:
    config_path = next((path.with_name(n) for n in CONFIG_FILES if path.with_name(n).is_file()), None)
    state_dict = read_state_dict(path)
    config = _config_from_json(config_path) if config_path else _config_from_weights(state_dict, path)
    return build_model(config, state_dict, source or str(path), prepare)


# ---------------------------------------------------------------- Hugging Face


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def hf_cached_file(repo: str, revision: str | None = None) -> Path | None:
    """Path of a weights file of ``repo`` already in the Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(hit, str):
            return Path(hit)
    return None


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (one TCP connection, no retries), or None.

    huggingface_hub retries a failed download five times with back-off, per file, which
    keeps an offline user waiting about 45 s for an answer this probe gives in at most
    ``timeout``. Behind a proxy (``HTTPS_PROXY`` and friends) the probe is skipped: only
    the proxy knows the way out.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot reach {host}:{port} ({err.strerror or type(err).__name__})"
    return None


def hf_download(repo: str, revision: str | None = None, *, gated: bool = False) -> Path:
    """Download (with a progress bar) or reuse the cached weights of ``repo``."""
    cached = hf_cached_file(repo, revision)
    if cached is not None:
        return cached
    how = (
        f"download model.safetensors from https://huggingface.co/{repo} on a machine with internet "
        f"access and pass its path with --model, or put it in the Hugging Face cache "
        f"(`huggingface-cli download {repo}`)"
    )
    if _hf_offline():
        raise WeightsError(f"weights of '{repo}' are not cached and HF_HUB_OFFLINE is set; {how}")
    unreachable = hub_unreachable()
    if unreachable:
        raise WeightsError(f"weights of '{repo}' are not cached and the Hugging Face Hub is offline: {unreachable}; {how}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    last: Exception | None = None
    for name in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, name, revision=revision))
        except GatedRepoError:
            raise WeightsError(
                f"'{repo}' is gated: accept its licence on huggingface.co and log in "
                "(`huggingface-cli login`), then retry"
            ) from None
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
            last = err
    reason = type(last).__name__ if last else "not found"
    raise WeightsError(f"cannot download the weights of '{repo}' ({reason}); {how}")


def _load_hf(repo: str, revision: str | None, config: Config | None, gated: bool = False,
             prepare: Callable[[Network], Network] | None = None) -> Network:
    weights = hf_download(repo, revision, gated=gated)
    if config is None:
        config_path = weights.with_name("config.json")
        if not config_path.is_file():
            from huggingface_hub import hf_hub_download

            try:
                config_path = Path(hf_hub_download(repo, "config.json", revision=revision))
            except Exception:
                config_path = None  # type: ignore[assignment]
        config = _config_from_json(config_path) if config_path else VGGTConfig()
    return build_model(config, read_state_dict(weights), f"hf://{repo}", prepare)


# ---------------------------------------------------------------- public API


def config_differences(a: Config, b: Config) -> list[str]:
    """The dotted names of the settings in which two configs differ (empty when equal)."""
    if type(a) is not type(b):
        return ["architecture"]

    def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    left, right = flat(a.to_dict()), flat(b.to_dict())
    return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))


def _load_entry(entry: ZooEntry, revision: str | None,
                prepare: Callable[[Network], Network] | None = None) -> tuple[Network, str]:
    if entry.random_init_seed is not None:
        model = build_network(entry.config).init_weights(seed=entry.random_init_seed)
        return (prepare(model) if prepare else model), "random initialisation"
    if entry.local_dir is not None:
        model = _load_dir(entry.local_dir, entry.name, prepare)
        differences = config_differences(model.config, entry.config)
        if differences:
            log.warning("%s: its config.json and its zoo entry describe different networks (%s); the config.json "
                        "shipped with the weights wins", entry.name, ", ".join(differences))
        return model, str(entry.local_dir)
    assert entry.hf_repo is not None
    return _load_hf(entry.hf_repo, revision, entry.config, entry.gated, prepare), f"hf://{entry.hf_repo}"


def embedded_default() -> str:
    """The shipped model ``auto`` falls back to: recon3d-tiny once its weights are in models/."""
    return "recon3d-tiny" if is_cached(REGISTRY["recon3d-tiny"]) else "vggt-untrained-small"


def resolve_auto() -> tuple[str, str]:
    """The zoo name ``auto`` stands for here, and why (one line)."""
    if hf_cached_file("facebook/VGGT-1B") is not None:
        return "vggt-1b", "VGGT-1B weights found in the Hugging Face cache"
    return embedded_default(), "no VGGT-1B weights in the Hugging Face cache (pass --model vggt-1b to download them)"


def load_model(
    source: str | Path = "auto",
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    revision: str | None = None,
) -> Network:
    """Load a network by zoo name, local file or directory, or Hugging Face repo id.

    Args:
        source: ``"auto"``, a name from ``REGISTRY``, a ``.safetensors``/``.pt``/``.pth``
            file (``config.json`` beside it; without one, a DUSt3R checkpoint's sizes
            are read off its tensors and anything else is taken as VGGT-1B), a directory
            with ``config.json`` + ``model.safetensors``, or ``"owner/repo"``.
        device: where the network runs: ``"auto"`` (the first CUDA device if any, else
            the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: backbone precision, see ``recon3d.networks.precision``.
        revision: Hugging Face revision (branch, tag or commit) for hub sources.

    Returns:
        The network in eval mode, with ``model.info`` (a ``ModelInfo``).
    """
    from recon3d.devices import resolve_device
    from recon3d.networks.precision import apply_precision, choose_precision

    device = resolve_device(device)
    choice = choose_precision(precision, device)

    def prepare(model: Network) -> Network:
        # Before the weights are read, so that they are converted one tensor at a time.
        return apply_precision(model, choice, device)

    source_str = str(source)
    if source_str == "auto":
        source_str, why = resolve_auto()
        log.info("model: %s (%s)", source_str, why)
    path = Path(source_str).expanduser()
    if source_str in REGISTRY:
        entry = REGISTRY[source_str]
        model, origin = _load_entry(entry, revision, prepare)
        info = ModelInfo(entry.name, origin, entry.licence, trained=entry.random_init_seed is None,
                         refine_by_default=entry.refine_by_default)
    elif path.is_dir():
        model, info = _load_dir(path, source_str, prepare), ModelInfo(path.name, str(path), "see the model's card")
    elif path.is_file():
        model, info = _load_file(path, prepare=prepare), ModelInfo(path.stem, str(path), "see the model's card")
    elif source_str.count("/") == 1 and not path.suffix and not source_str.startswith((".", "/")):
        model = _load_hf(source_str, revision, None, prepare=prepare)
        info = ModelInfo(source_str, f"hf://{source_str}", "see the repository's model card")
    else:
        names = ", ".join(["auto", *REGISTRY])
        raise WeightsError(f"unknown model '{source_str}': not a zoo name ({names}), a file, a directory or a Hugging Face repo id")
    if not info.trained:
        log.warning("model %s has random weights: its predictions are placeholders, not a reconstruction", info.name)
    info.skipped_keys = getattr(model, "skipped_keys", [])
    model.info = info
    if precision == "auto":
        log.info("precision: %s (%s)", choice.name, choice.reason)
    return model.to(device).eval()


MODEL_CACHE_SIZE = 2
"""Networks ``cached_model`` keeps loaded: the web app's last two choices, a batch
worker's one model; a VGGT-1B holds about 5 GB, so not more."""

_CACHE: OrderedDict[tuple[str, str, str], Network] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cached_model(source: str | Path = "auto", *, device: str | torch.device = "auto",
                 precision: str = "auto") -> Network:
    """``load_model``, keeping the last ``MODEL_CACHE_SIZE`` networks for the next call.

    The one model cache of the pipeline, batch workers, the web app and eval: the same
    source on the same device at the same precision is loaded once (``auto`` is keyed by
    the model it stands for, so it shares an entry with that model's name).
    """
    from recon3d.devices import resolve_device

    name = resolve_auto()[0] if str(source) == "auto" else str(source)
    key = (name, str(resolve_device(device)), precision)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        model = load_model(source, device=device, precision=precision)
        _CACHE[key] = model
        while len(_CACHE) > MODEL_CACHE_SIZE:
            _CACHE.popitem(last=False)
        return model


def save_model(model: VGGT, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically)."""
    from safetensors.torch import save_file

    from recon3d.io.atomic import atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": "vggt"})
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(json.dumps({"architecture": "vggt", **model.config.to_dict()}, indent=1) + "\n")
    return directory


def is_cached(entry: ZooEntry) -> bool:
    if entry.random_init_seed is not None:
        return True
    if entry.local_dir is not None:
        return any((entry.local_dir / n).is_file() for n in WEIGHT_FILES)
    return entry.hf_repo is not None and hf_cached_file(entry.hf_repo) is not None
