"""Model families as data: what recon3d needs to know to load and run each kind of network.

A family (VGGT, DUSt3R, ...) declares its config and network classes, how to recognise
its ``config.json`` and its checkpoints, the preprocessing it was trained with, how to
describe itself, and ``predict`` (views in, the arrays of a ``Prediction`` out). The zoo,
the pipeline and the CLI ask the family of a config or a network; none of them branches
on network classes. Adding a family: write ``recon3d/networks/<name>/family.py`` with a
``FAMILY`` and list it in ``families()`` below (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from recon3d.settings import ReconstructionSettings

StageFn = Callable[[str], None]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelFamily:
    """Everything family-specific, as plain data and functions.

    Attributes:
        name: short name, also the ``"architecture"`` value of a recon3d ``config.json``.
        title: the name users know it by, in messages (``"VGGT"``, ``"DUSt3R"``).
        config_type, network_type: the family's classes (``network_type(config)`` builds one).
        claims_config: whether a parsed ``config.json`` belongs to this family.
        config_from_json: the config from a parsed ``config.json`` (raises ValueError/TypeError).
        claims_weights: whether a state dict without ``config.json`` is one of this family's.
        config_from_weights: its config read off such a state dict (``path`` names the file).
        ignorable_keys: checkpoint keys that may be absent or extra without it mattering.
        input_size: the side the preprocessing resizes to, from a config.
        patch_size: the pixels per token side (input sides are made multiples of it).
        default_preprocess: the preprocessing mode the family was trained with.
        describe: lines for ``recon3d models info``.
        predict: ``(network, images [S,3,H,W] in [0,1], settings, on_stage, on_progress)`` →
            float32 arrays extrinsics_w2c ``[S,4,4]``, intrinsics ``[S,3,3]``, depth,
            depth_conf ``[S,H,W]``, points ``[S,H,W,3]``, points_conf ``[S,H,W]``, and, for
            families with a Gaussian head, ``gaussians`` (a `recon3d.types.Gaussians`).
    """

    name: str
    title: str
    config_type: type
    network_type: type
    claims_config: Callable[[Mapping[str, Any]], bool]
    config_from_json: Callable[[dict[str, Any]], Any]
    claims_weights: Callable[[Mapping[str, torch.Tensor]], bool]
    config_from_weights: Callable[[Mapping[str, torch.Tensor], Path], Any]
    ignorable_keys: Callable[[torch.nn.Module, Mapping[str, torch.Tensor]], set[str]]
    input_size: Callable[[Any], int]
    patch_size: Callable[[Any], int]
    default_preprocess: Callable[[Any], str]
    describe: Callable[[Any], list[str]]
    predict: Callable[[torch.nn.Module, torch.Tensor, ReconstructionSettings, StageFn, ProgressFn | None],
                      dict[str, Any]]


@functools.cache
def families() -> tuple[ModelFamily, ...]:
    """Every family, VGGT last: it is the fallback for configs and checkpoints nobody else
    claims. Built on first use, so a family module can import this module at its top."""
    from recon3d.networks.anysplat.family import FAMILY as ANYSPLAT
    from recon3d.networks.dust3r.family import FAMILY as DUST3R
    from recon3d.networks.vggt.family import FAMILY as VGGT

    return (DUST3R, ANYSPLAT, VGGT)


def family_of(config_or_network: Any) -> ModelFamily:
    """The family of a config or network object (by its exact class)."""
    for family in families():
        if type(config_or_network) in (family.config_type, family.network_type):
            return family
    raise TypeError(f"{type(config_or_network).__name__} belongs to no model family")


def family_for_json(data: Mapping[str, Any]) -> ModelFamily:
    """The family a parsed ``config.json`` describes (official VGGT configs name none)."""
    return next((f for f in families() if f.claims_config(data)), families()[-1])


def family_for_weights(state_dict: Mapping[str, torch.Tensor]) -> ModelFamily:
    """The family of a checkpoint that came without a ``config.json``."""
    return next((f for f in families() if f.claims_weights(state_dict)), families()[-1])


def build_network(config: Any) -> torch.nn.Module:
    """An untrained network of the architecture ``config`` describes."""
    return family_of(config).network_type(config)
