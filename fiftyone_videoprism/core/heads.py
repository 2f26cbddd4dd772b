"""Classifier heads on the frozen VideoPrism encoder, and their files: arrays in, arrays out.

- :class:`AttentionHead`: the head of the original ``FactorizedVideoClassifier``: an attention
  pooler over the encoder's space-time tokens (AttenTokenPoolingLayer, one query, inner width
  D) and a linear projection to the classes.
- :class:`LinearHead`: a linear probe on the unit-norm video embedding of
  :func:`fiftyone_videoprism.core.embedding.embed_videos`; much cheaper to store and train.
- :class:`FactorizedVideoClassifier` and :func:`load_classifier`: the original's classifier
  (encoder + attention head) from its Flax parameters.
- :class:`HeadSpec`, :func:`save_head`, :func:`load_head`: a trained head as safetensors plus
  a JSON file naming the backbone (name and weights digest), frames, image size and classes;
  loading refuses a head made for another backbone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from fiftyone_videoprism.core import checkpoint as ckpt
from fiftyone_videoprism.core.configs import VideoPrismConfig
from fiftyone_videoprism.core.factory import resolve_config
from fiftyone_videoprism.core.model import AttentionPooler, FactorizedEncoder

HEAD_KINDS = ("attention", "linear")
HEAD_FORMAT = "fiftyone-videoprism-head/1"
# The original classifier's subtrees in its Flax parameter tree.
_ENCODER = "params/encoder/"
_POOLER = "params/atten_pooler"
_PROJECTION = "params/projection/linear"


class HeadMismatchError(ValueError):
    """A saved head that was trained on another backbone or with other frame settings."""


class AttentionHead(nn.Module):
    """tokens (B, S, D) -> logits (B, C): the original's ``atten_pooler`` + ``projection``."""

    def __init__(self, dim: int, num_heads: int, num_classes: int):
        super().__init__()
        self.atten_pooler = AttentionPooler(dim, num_heads, hidden_dim=dim)
        self.projection = nn.Linear(dim, num_classes)

    def pool(self, tokens: mx.array) -> mx.array:
        """(B, S, D) -> (B, D) pooled embedding (the original's ``global_embeddings``)."""
        return self.atten_pooler(tokens)

    def __call__(self, tokens: mx.array) -> mx.array:
        return self.projection(self.pool(tokens))


class LinearHead(nn.Module):
    """embeddings (B, D) -> logits (B, C), on embeddings centred and scaled by the training
    set's statistics (``center``, ``spread``: frozen, set by :meth:`fit_input`).

    Unit-norm embeddings of one domain differ in a few hundredths per channel; centring them
    and scaling to unit spread lets a few hundred optimiser steps separate them.
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.center = mx.zeros((dim,))
        self.spread = mx.ones((1,))
        self.projection = nn.Linear(dim, num_classes)
        self.freeze(keys=["center", "spread"], recurse=False)

    def fit_input(self, embeddings: np.ndarray) -> None:
        """Sets ``center`` to the mean embedding and ``spread`` to the RMS distance from it."""
        x = np.asarray(embeddings, np.float32)
        center = x.mean(axis=0)
        spread = float(np.sqrt(np.mean(np.sum((x - center) ** 2, axis=1)))) or 1.0
        self.center = mx.array(center)
        self.spread = mx.array([spread], dtype=mx.float32)

    def __call__(self, embeddings: mx.array) -> mx.array:
        return self.projection((embeddings - self.center) / self.spread)


def new_head(kind: str, dim: int, num_heads: int, num_classes: int,
             seed: int = 0) -> AttentionHead | LinearHead:
    """A freshly initialised head; the same seed gives the same weights."""
    check_kind(kind)
    if num_classes < 1:
        raise ValueError(f"a head needs at least one class, got {num_classes}")
    mx.random.seed(seed)
    if kind == "linear":
        head = LinearHead(dim, num_classes)
    else:
        head = AttentionHead(dim, num_heads, num_classes)
        # The query starts small and random, so the first steps see a non-uniform pooling;
        # per_dim_scale stays 0 (the identity, as the original initialises it).
        pooler = head.atten_pooler
        pooler.pooling_attention_query = mx.random.normal((1, dim)) * (dim ** -0.5)
    mx.eval(head.parameters())
    return head


def check_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`HEAD_KINDS`, else a ValueError listing them."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"Unsupported head {kind!r}. Supported values are {HEAD_KINDS}")
    return kind


# --------------------------------------------------------------------------------------------
# The original classifier


class FactorizedVideoClassifier(nn.Module):
    """The original ``FactorizedVideoClassifier``: a ``FactorizedEncoder`` then the attention
    head. ``clf(video, frame_paddings=None)`` -> logits (B, C); with
    ``return_intermediate=True`` also ``{"global_embeddings": (B, D),
    "spatiotemporal_features": (B, T*N, D)}``. As in the original, frame paddings mask the
    encoder only; the pooler attends over every token."""

    def __init__(self, config: VideoPrismConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.encoder = FactorizedEncoder(config)
        self.head = AttentionHead(config.model_dim, config.num_heads, num_classes)

    def __call__(self, video, frame_paddings=None, return_intermediate: bool = False):
        tokens = self.encoder(video, frame_paddings).tokens
        pooled = self.head.pool(tokens)
        logits = self.head.projection(pooled)
        if return_intermediate:
            return logits, {"global_embeddings": pooled, "spatiotemporal_features": tokens}
        return logits


def _head_rules(d: int, heads: int, num_classes: int) -> list[ckpt.Rule]:
    # The original classifier's pooler has inner width D (hidden_dim=model_dim).
    return [*ckpt.pooler_rules(f"{_POOLER}/", "head.atten_pooler.", d, heads, d),
            *ckpt.dense_rules(f"{_PROJECTION}/", "head.projection.", d, num_classes)]


def load_classifier(encoder_config: str | VideoPrismConfig | Mapping[str, Any],
                    checkpoint: str | os.PathLike) -> FactorizedVideoClassifier:
    """The original's classifier from its saved Flax parameters.

    Args:
        encoder_config: the encoder's architecture: a model name (``videoprism-base``), a
            :class:`VideoPrismConfig`, or a dict of the original ``encoder_params`` kwargs
        checkpoint: a ``.npz`` of the original's ``FactorizedVideoClassifier`` params,
            ``/``-joined keys: ``params/encoder/...`` in the released encoder layout, then
            ``params/atten_pooler/...`` and ``params/projection/linear/...``; the number of
            classes is read from the projection

    Raises:
        CheckpointError: the file does not fit the architecture (every bad key is listed)
    """
    _, config = resolve_config(encoder_config)
    if config.is_lvt:
        raise ValueError("FactorizedVideoClassifier wraps a video-only FactorizedEncoder; got "
                         "an LvT config")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint not found: {path}")
    arrays = ckpt.read_flax_npz(path)
    bias = arrays.get(f"{_PROJECTION}/bias")
    if bias is None or bias.ndim != 1:
        raise ckpt.CheckpointError(f"{path}: no {_PROJECTION}/bias of shape (num_classes,); "
                                   f"not a FactorizedVideoClassifier checkpoint")
    num_classes = int(bias.shape[0])
    # The encoder subtree is a released encoder file under another prefix: the same converter.
    encoder = {"params/" + k[len(_ENCODER):]: v for k, v in arrays.items()
               if k.startswith(_ENCODER)}
    head = {k: v for k, v in arrays.items() if not k.startswith(_ENCODER)}
    rules = _head_rules(config.model_dim, config.num_heads, num_classes)
    problems = ckpt.shape_problems(head, ckpt.rule_shapes(rules))
    if problems:
        raise ckpt.CheckpointError(f"{path}: the head does not fit a FactorizedVideoClassifier "
                                   f"head with {num_classes} classes on {config.to_dict()}: "
                                   + "; ".join(problems))
    weights = {f"encoder.{k}": v for k, v in ckpt.convert(encoder, config, str(path)).items()}
    weights.update(ckpt.convert_rules(head, rules))
    net = FactorizedVideoClassifier(config, num_classes)
    net.load_weights([(k, mx.array(np.asarray(v, np.float32))) for k, v in weights.items()],
                     strict=True)
    mx.eval(net.parameters())
    net.eval()
    return net


# --------------------------------------------------------------------------------------------
# Trained heads on disk


@dataclass(frozen=True)
class HeadSpec:
    """What a trained head needs around it to be used again.

    Attributes:
        head: ``"attention"`` (on the encoder's tokens) or ``"linear"`` (on the embedding)
        classes: class names, in logit order
        multi_label: trained with sigmoid BCE (independent classes) instead of softmax CE
        backbone: ``{"name", "weights_digest", "architecture"}`` of the frozen model
        num_frames, image_size, resize: the frame settings its features were computed with
        dim, num_heads: the head's width and (attention) heads
        precision: how the tokens it reads were stored (attention heads; see
            :mod:`fiftyone_videoprism.core.features`)
        training: free-form record of how it was trained (seed, epochs, metrics)
    """

    head: str
    classes: list[str]
    multi_label: bool
    backbone: dict[str, Any]
    num_frames: int
    image_size: int
    resize: str
    dim: int
    num_heads: int
    precision: str = "float32"
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": HEAD_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "head") -> "HeadSpec":
        if d.get("format") != HEAD_FORMAT:
            raise ValueError(f"{source}: not a {HEAD_FORMAT} head config "
                             f"(format {d.get('format')!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(d) - {"precision", "training"})
        if missing:
            raise ValueError(f"{source}: head config lacks {missing}")
        spec = cls(**{k: v for k, v in d.items() if k in names})
        check_kind(spec.head)
        return spec

    def check_backbone(self, weights_digest: str, num_frames: int, image_size: int,
                       resize: str, source: str = "head") -> None:
        """Raises HeadMismatchError unless the head was trained on these weights and frames."""
        made_for = self.backbone.get("weights_digest")
        if made_for != weights_digest:
            raise HeadMismatchError(
                f"{source} was trained on backbone {self.backbone.get('name')!r} (weights "
                f"{str(made_for)[:12]}...), not on this model (weights {weights_digest[:12]}...): "
                f"load the model it names, with the same checkpoint")
        mine = (self.num_frames, self.image_size, self.resize)
        theirs = (num_frames, image_size, resize)
        if mine != theirs:
            raise HeadMismatchError(
                f"{source} was trained on features of (num_frames, image_size, resize) = "
                f"{mine}; this model is set to {theirs}")


def head_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights ``.safetensors``, config ``.json``) for a head saved at ``path`` (either file
    or their common stem)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_head(path: str | os.PathLike, head: nn.Module, spec: HeadSpec) -> Path:
    """Writes ``<stem>.safetensors`` and ``<stem>.json``; returns the weights path."""
    weights_path, config_path = head_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(weights_path), dict(tree_flatten(head.parameters())),
                        metadata={"format": HEAD_FORMAT})
    config_path.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True))
    return weights_path


def load_head(path: str | os.PathLike) -> tuple[AttentionHead | LinearHead, HeadSpec]:
    """A head saved by :func:`save_head` and its spec (check the backbone with
    :meth:`HeadSpec.check_backbone` before use)."""
    weights_path, config_path = head_paths(path)
    for p in (weights_path, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"head file not found: {p} (a head is a .safetensors "
                                    f"file and a .json file with one stem)")
    try:
        spec = HeadSpec.from_dict(json.loads(config_path.read_text()), str(config_path))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{config_path}: not a readable head config ({err})") from err
    head = new_head(spec.head, spec.dim, spec.num_heads, len(spec.classes))
    head.load_weights(str(weights_path), strict=True)
    mx.eval(head.parameters())
    return head, spec
