"""Architecture configs: the four released VideoPrism models, their aliases, and
configs built from the original constructor kwargs.

Field names are the original constructor kwargs (``FactorizedEncoder`` /
``FactorizedVideoCLIP``), so a fixture's ``config.json`` maps onto them 1:1.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

VIDEO_CLASS = "FactorizedEncoder"
LVT_CLASS = "FactorizedVideoCLIP"


@dataclass(frozen=True)
class VideoPrismConfig:
    """Architecture of one VideoPrism model (video encoder, or video-text LvT).

    Fields (default): meaning.

    - patch_size (18): side P of the square patches.
    - pos_emb_shape ((16, 16, 16)): (T0, Gh, Gw) of the learned positional tables;
      T0 is the trained frame count, Gh*P the trained image side.
    - model_dim (768): width D, shared by vision and text towers.
    - num_spatial_layers (12), num_temporal_layers (4): vision stack depths.
    - num_heads (12): attention heads (head width D / heads).
    - mlp_dim (3072): vision MLP width (the text MLP is always 4*D).
    - atten_logit_cap (50.0): logits become cap*tanh(logits/cap); 0 disables.
    - norm_policy ("pre"): only pre-LN blocks exist in the released models.
    - scan (True): parameter layout of the original (stacked layers); no numeric effect.
    - num_auxiliary_layers (None): LvT joint space-time layers; None for video-only models.
    - vocabulary_size (None): LvT text vocabulary; None for video-only models.
    - num_unimodal_layers (None): LvT text layers; None for video-only models.
    - enable_causal_atten (True): LvT text attention is causal.
    """

    patch_size: int = 18
    pos_emb_shape: tuple[int, int, int] = (16, 16, 16)
    model_dim: int = 768
    num_spatial_layers: int = 12
    num_temporal_layers: int = 4
    num_heads: int = 12
    mlp_dim: int = 3072
    atten_logit_cap: float = 50.0
    norm_policy: str = "pre"
    scan: bool = True
    num_auxiliary_layers: int | None = None
    vocabulary_size: int | None = None
    num_unimodal_layers: int | None = None
    enable_causal_atten: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pos_emb_shape", tuple(int(v) for v in self.pos_emb_shape))
        if len(self.pos_emb_shape) != 3:
            raise ValueError(f"pos_emb_shape must be (T, Gh, Gw), got {self.pos_emb_shape}")
        if self.pos_emb_shape[1] != self.pos_emb_shape[2]:
            raise ValueError(f"pos_emb_shape must have a square grid, got {self.pos_emb_shape}")
        if self.model_dim % self.num_heads:
            raise ValueError(
                f"model_dim {self.model_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.norm_policy != "pre":
            raise ValueError(
                f"norm_policy {self.norm_policy!r} is not supported: the released models use 'pre'"
            )
        lvt_fields = (self.num_auxiliary_layers, self.vocabulary_size, self.num_unimodal_layers)
        if any(v is not None for v in lvt_fields) and any(v is None for v in lvt_fields):
            raise ValueError(
                "an LvT config needs all of num_auxiliary_layers, vocabulary_size and "
                f"num_unimodal_layers; got {lvt_fields}"
            )

    @property
    def is_lvt(self) -> bool:
        """True for video-text (LvT) models, False for video-only encoders."""
        return self.vocabulary_size is not None

    @property
    def original_class(self) -> str:
        return LVT_CLASS if self.is_lvt else VIDEO_CLASS

    @property
    def num_frames(self) -> int:
        """Frame count the temporal table was trained with."""
        return self.pos_emb_shape[0]

    @property
    def image_size(self) -> int:
        """Input side the spatial table was trained with (e.g. 288)."""
        return self.pos_emb_shape[1] * self.patch_size

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """Original constructor kwargs (JSON-ready); inverse of :func:`from_original_kwargs`."""
        out = dataclasses.asdict(self)
        out["pos_emb_shape"] = list(self.pos_emb_shape)
        if not self.is_lvt:
            for key in ("num_auxiliary_layers", "vocabulary_size", "num_unimodal_layers",
                        "enable_causal_atten"):
                out.pop(key)
        return out


_FIELDS = {f.name for f in dataclasses.fields(VideoPrismConfig)}


def from_original_kwargs(kwargs: Mapping[str, Any]) -> VideoPrismConfig:
    """Builds a config from the original constructor kwargs (a fixture's ``config``).

    Unknown keys are rejected so that a typo never silently falls back to a default.
    """
    unknown = sorted(set(kwargs) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown VideoPrism config keys {unknown}; accepted: {sorted(_FIELDS)}")
    return VideoPrismConfig(**dict(kwargs))


_BASE = dict(patch_size=18, model_dim=768, num_spatial_layers=12, num_temporal_layers=4,
             num_heads=12, mlp_dim=3072)
_LARGE = dict(patch_size=18, model_dim=1024, num_spatial_layers=24, num_temporal_layers=4,
              num_heads=16, mlp_dim=4096)
_TEXT = dict(num_auxiliary_layers=2, vocabulary_size=32000, num_unimodal_layers=12)

MODEL_CONFIGS: dict[str, VideoPrismConfig] = {
    "videoprism-base": VideoPrismConfig(pos_emb_shape=(16, 16, 16), **_BASE),
    "videoprism-large": VideoPrismConfig(pos_emb_shape=(8, 16, 16), **_LARGE),
    "videoprism-lvt-base": VideoPrismConfig(pos_emb_shape=(16, 16, 16), **_BASE, **_TEXT),
    "videoprism-lvt-large": VideoPrismConfig(pos_emb_shape=(8, 16, 16), **_LARGE, **_TEXT),
}


# Where the released weights live: the Hub repo and file of each model.
class Release(NamedTuple):
    """A file on the Hugging Face Hub."""

    repo_id: str
    filename: str


RELEASES: dict[str, Release] = {
    "videoprism-base": Release("google/videoprism-base-f16r288", "flax_base_f16r288_repeated.npz"),
    "videoprism-large": Release("google/videoprism-large-f8r288", "flax_large_f8r288_repeated.npz"),
    "videoprism-lvt-base": Release(
        "google/videoprism-lvt-base-f16r288", "flax_lvt_base_f16r288_repeated.npz"
    ),
    "videoprism-lvt-large": Release(
        "google/videoprism-lvt-large-f8r288", "flax_lvt_large_f8r288_repeated.npz"
    ),
}

# Names used by the original code, and the Hub repo ids.
ALIASES: dict[str, str] = {
    "videoprism_public_v1_base": "videoprism-base",
    "videoprism_public_v1_large": "videoprism-large",
    "videoprism_lvt_public_v1_base": "videoprism-lvt-base",
    "videoprism_lvt_public_v1_large": "videoprism-lvt-large",
    **{release.repo_id: name for name, release in RELEASES.items()},
}


def _fold(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_LOOKUP = {_fold(k): v for k, v in {**{n: n for n in MODEL_CONFIGS}, **ALIASES}.items()}


def list_models() -> list[str]:
    """The canonical model names."""
    return list(MODEL_CONFIGS)


def canonical_name(name: str) -> str:
    """Maps a model name or alias to its canonical name; unknown names get a "did you mean"."""
    try:
        return _LOOKUP[_fold(name)]
    except KeyError:
        close = difflib.get_close_matches(_fold(name), list(_LOOKUP), n=1, cutoff=0.6)
        hint = f" Did you mean {_LOOKUP[close[0]]!r}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Available: {', '.join(MODEL_CONFIGS)} "
            f"(original names {', '.join(a for a in ALIASES if '/' not in a)} are accepted too)"
        ) from None


def get_config(name: str) -> VideoPrismConfig:
    """The config of a released model, by name or alias."""
    return MODEL_CONFIGS[canonical_name(name)]
