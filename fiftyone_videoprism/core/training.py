"""Training a classifier head on stored features with ``mlx.optimizers``: no FiftyOne.

The encoder is frozen and its features (tokens for an attention head, embeddings for a linear
probe) are computed once (:mod:`fiftyone_videoprism.core.features`), so an epoch costs only
the head. Single-label heads minimise softmax cross-entropy, multi-label heads sigmoid binary
cross-entropy. Everything random (initialisation, minibatch order) follows ``seed``: the same
inputs and seed give the same head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from fiftyone_videoprism.core.heads import LinearHead

Targets = np.ndarray  # (N,) int class indices, or (N, C) {0, 1} for multi-label


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings.

    Attributes:
        epochs: most passes over the training features
        learning_rate: AdamW step size
        weight_decay: AdamW decoupled weight decay
        batch_size: features per step
        patience: stop after this many epochs without a lower validation loss (the best
            epoch's weights are kept); None trains every epoch
        seed: initialisation and minibatch order
    """

    epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    patience: int | None = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be a positive integer or None, got {self.patience}")


def loss_fn(logits: mx.array, targets: mx.array, multi_label: bool) -> mx.array:
    """Mean softmax cross-entropy (int targets) or sigmoid BCE (multi-hot targets)."""
    if multi_label:
        return nn.losses.binary_cross_entropy(logits, targets, with_logits=True, reduction="mean")
    return nn.losses.cross_entropy(logits, targets, reduction="mean")


def predict_logits(head: nn.Module, features: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, C) float32 logits of stored features (any float dtype), ``batch_size`` at a time."""
    if len(features) == 0:
        return np.empty((0, head.projection.weight.shape[0]), np.float32)
    return np.concatenate([
        np.array(head(mx.array(np.asarray(features[i:i + batch_size], np.float32))))
        for i in range(0, len(features), batch_size)
    ]).astype(np.float32)


def accuracy(logits: np.ndarray, targets: Targets, multi_label: bool) -> float:
    """Top-1 accuracy, or for multi-label the fraction of (sample, class) decisions at p=0.5
    that are right."""
    if len(targets) == 0:
        return math.nan
    if multi_label:
        return float(np.mean((logits > 0) == (targets > 0.5)))
    return float(np.mean(np.argmax(logits, axis=1) == targets))


def train_head(head: nn.Module, train: tuple[np.ndarray, Targets],
               val: tuple[np.ndarray, Targets] | None = None, *, multi_label: bool = False,
               settings: TrainSettings = TrainSettings(),
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Trains ``head`` in place on ``train = (features, targets)``; returns one metrics dict
    per epoch (``epoch``, ``train_loss``, and with ``val`` ``val_loss``, ``val_accuracy``).

    With ``val`` and ``settings.patience``, training stops early and the head keeps the
    weights of the epoch with the lowest validation loss.
    """
    features, targets = train
    if len(features) != len(targets) or len(features) == 0:
        raise ValueError(f"need as many targets as features, and at least one; got "
                         f"{len(features)} features and {len(targets)} targets")
    if isinstance(head, LinearHead):
        head.fit_input(features)
    rng = np.random.default_rng(settings.seed)
    optimizer = optim.AdamW(learning_rate=settings.learning_rate,
                            weight_decay=settings.weight_decay)
    step = nn.value_and_grad(head, lambda x, y: loss_fn(head(x), y, multi_label))
    target_dtype = np.float32 if multi_label else np.int32
    history: list[dict[str, Any]] = []
    best: tuple[float, Any] | None = None
    since_best = 0
    for epoch in range(1, settings.epochs + 1):
        head.train()
        order = rng.permutation(len(features))
        total = 0.0
        for lo in range(0, len(order), settings.batch_size):
            idx = np.sort(order[lo:lo + settings.batch_size])
            x = mx.array(np.asarray(features[idx], np.float32))
            y = mx.array(np.asarray(targets[idx], target_dtype))
            loss, grads = step(x, y)
            optimizer.update(head, grads)
            mx.eval(head.parameters(), optimizer.state, loss)
            total += float(loss) * len(idx)
        head.eval()
        metrics: dict[str, Any] = {"epoch": epoch, "train_loss": total / len(order)}
        if val is not None and len(val[0]):
            logits = predict_logits(head, val[0])
            metrics["val_loss"] = float(loss_fn(mx.array(logits),
                                                mx.array(np.asarray(val[1], target_dtype)),
                                                multi_label))
            metrics["val_accuracy"] = accuracy(logits, val[1], multi_label)
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        if "val_loss" not in metrics or settings.patience is None:
            continue
        if best is None or metrics["val_loss"] < best[0]:
            # Updates replace the arrays, never mutate them: this tree is a snapshot.
            best = (metrics["val_loss"], head.parameters())
            since_best = 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    if best is not None:
        head.update(best[1])
        mx.eval(head.parameters())
    return history
