"""DUSt3R configuration: sizes, head type and output activations of a two-view network."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutputMode:
    """Activation of a raw head channel: ``type`` "exp" with optional clipping bounds.

    Points: ``xyz / |xyz| * expm1(|xyz|)``; confidence: ``vmin + exp(x)``. ``None``
    leaves a side unbounded.
    """

    type: str = "exp"
    vmin: float | None = None
    vmax: float | None = None

    @classmethod
    def parse(cls, value: Any) -> OutputMode:
        """From ``{"type","vmin","vmax"}`` (parity configs) or ``["exp", vmin, vmax]``
        (the reference constructor's tuple; ``±inf`` means unbounded)."""
        if isinstance(value, OutputMode):
            return value
        if isinstance(value, dict):
            kind, vmin, vmax = value.get("type", "exp"), value.get("vmin"), value.get("vmax")
        elif isinstance(value, (list, tuple)) and len(value) == 3:
            kind, vmin, vmax = value
        else:
            raise ValueError(f"cannot read an output mode from {value!r}")

        def bound(x: Any) -> float | None:
            return None if x is None or math.isinf(float(x)) else float(x)

        if kind != "exp":
            raise ValueError(f"output mode {kind!r} is not supported (only 'exp', as in every released DUSt3R)")
        return cls(kind, bound(vmin), bound(vmax))


@dataclass(frozen=True)
class DPTConfig:
    """Widths of the DPT head; ``hooks_idx`` index ``[encoder, decoder 1..depth]``."""

    feature_dim: int = 256
    last_dim: int = 128
    layer_dims: tuple[int, ...] = (96, 192, 384, 768)
    hooks_idx: tuple[int, ...] = (0, 6, 9, 12)


@dataclass(frozen=True)
class DUSt3RConfig:
    """Architecture of an asymmetric CroCo-style two-view network (DUSt3R).

    Defaults are the released ViT-Large encoder / ViT-Base decoder with a DPT head
    (``DUSt3R_ViTLarge_BaseDecoder_512_dpt``).
    """

    patch_size: int = 16
    img_size: tuple[int, int] = (512, 512)
    rope_freq: float = 100.0
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    head_type: str = "dpt"
    dpt: DPTConfig = field(default_factory=DPTConfig)
    depth_mode: OutputMode = field(default_factory=OutputMode)
    conf_mode: OutputMode = field(default_factory=lambda: OutputMode("exp", 1.0, None))

    def __post_init__(self) -> None:
        # Nested parts may come as plain dicts / lists (JSON, keyword arguments).
        if isinstance(self.dpt, dict):
            object.__setattr__(self, "dpt", DPTConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in self.dpt.items()}))
        object.__setattr__(self, "depth_mode", OutputMode.parse(self.depth_mode))
        object.__setattr__(self, "conf_mode", OutputMode.parse(self.conf_mode))
        object.__setattr__(self, "img_size", tuple(self.img_size))
        if self.head_type not in ("linear", "dpt"):
            raise ValueError(f"head_type must be 'linear' or 'dpt', got {self.head_type!r}")
        for width, heads, what in ((self.enc_embed_dim, self.enc_num_heads, "encoder"),
                                   (self.dec_embed_dim, self.dec_num_heads, "decoder")):
            if width % heads or (width // heads) % 4:
                raise ValueError(f"{what} head dimension must be a multiple of 4 for 2D RoPE ({width}/{heads})")
        if self.head_type == "dpt" and (len(self.dpt.hooks_idx) != 4 or max(self.dpt.hooks_idx) > self.dec_depth):
            raise ValueError(f"DPT hooks {self.dpt.hooks_idx} need 4 indices ≤ dec_depth {self.dec_depth}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DUSt3RConfig:
        """From a parity ``*_model_config.json`` or the Hugging Face ``config.json`` of a
        released checkpoint (the reference constructor's arguments)."""
        data = dict(data)
        for key in ("architecture", "landscape_only", "output_mode"):
            value = data.pop(key, None)
            if key == "output_mode" and value not in (None, "pts3d"):
                raise ValueError(f"output_mode {value!r} is not supported (only 'pts3d')")
        pos_embed = str(data.pop("pos_embed", "RoPE100"))
        if not pos_embed.startswith("RoPE"):
            raise ValueError(f"pos_embed {pos_embed!r} is not supported (only RoPE<freq>)")
        data.pop("patch_embed", None)
        data.pop("patch_embed_cls", None)  # both patch embeddings have the same weights at inference
        dec_depth = int(data.get("dec_depth", cls.dec_depth))
        dpt = data.pop("dpt", None) or {}
        hooks = dpt.get("hooks_idx", (0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth))
        kwargs: dict[str, Any] = {
            "rope_freq": float(pos_embed[4:] or 100),
            "dpt": DPTConfig(
                feature_dim=int(dpt.get("feature_dim", 256)), last_dim=int(dpt.get("last_dim", 128)),
                layer_dims=tuple(dpt.get("layer_dims", (96, 192, 384, 768))), hooks_idx=tuple(hooks),
            ),
        }
        for key in ("depth_mode", "conf_mode"):
            if key in data:
                kwargs[key] = OutputMode.parse(data.pop(key))
        if "img_size" in data:
            size = data.pop("img_size")
            kwargs["img_size"] = (int(size), int(size)) if isinstance(size, int) else tuple(size)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DUSt3R config keys: {sorted(unknown)}")
        return cls(**data, **kwargs)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any], img_size: int = 512) -> DUSt3RConfig:
        """Sizes read off a checkpoint's tensor shapes, for a bare ``.pth`` without a config.

        Head counts are not stored in weights: they follow the released models' 64-wide
        heads. ``img_size`` (512 or 224) only picks the preprocessing.
        """
        def count(prefix: str) -> int:
            return len({k.split(".")[1] for k in state_dict if k.startswith(prefix + ".")})

        enc_dim, _, patch, _ = state_dict["patch_embed.proj.weight"].shape
        dec_dim = state_dict["decoder_embed.weight"].shape[0]
        if enc_dim % 64 or dec_dim % 64:
            raise ValueError(f"widths {enc_dim}/{dec_dim} are not multiples of the released 64-wide heads, "
                             "so the number of attention heads is unknown")
        kwargs: dict[str, Any] = {
            "patch_size": int(patch), "img_size": (img_size, img_size),
            "enc_embed_dim": int(enc_dim), "enc_depth": count("enc_blocks"), "enc_num_heads": int(enc_dim) // 64,
            "dec_embed_dim": int(dec_dim), "dec_depth": count("dec_blocks"), "dec_num_heads": int(dec_dim) // 64,
            "mlp_ratio": state_dict["enc_blocks.0.mlp.fc1.weight"].shape[0] / enc_dim,
        }
        if "downstream_head1.proj.weight" in state_dict:
            return cls(head_type="linear", **kwargs)
        head = "downstream_head1.dpt."
        dpt = DPTConfig(
            feature_dim=int(state_dict[head + "scratch.layer1_rn.weight"].shape[0]),
            last_dim=int(state_dict[head + "head.2.weight"].shape[0]),
            layer_dims=tuple(int(state_dict[f"{head}act_postprocess.{k}.0.weight"].shape[0]) for k in range(4)),
            hooks_idx=(0, kwargs["dec_depth"] * 2 // 4, kwargs["dec_depth"] * 3 // 4, kwargs["dec_depth"]),
        )
        return cls(head_type="dpt", dpt=dpt, **kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> DUSt3RConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
