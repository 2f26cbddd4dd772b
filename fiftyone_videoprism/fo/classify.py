"""Few-shot classifiers on the frozen VideoPrism encoder, trained from the labels a FiftyOne
collection already holds, and applied to the rest of it.

- :func:`train_classifier`: features of the labelled samples (computed once with the batched
  run of :mod:`fiftyone_videoprism.fo.runs` and kept on disk), a seeded validation split, MLX
  training with early stopping and per-epoch metrics, and the held-out quality through
  FiftyOne's own ``evaluate_classifications``.
- :class:`VideoPrismClassifier`: the frozen model plus a trained head, a FiftyOne model (so
  ``samples.apply_model(classifier, field)`` works) that saves to and loads from disk
  (:func:`load_head`).
- :func:`apply_classifier`: the batched run writing ``Classification`` labels (or
  ``Classifications`` for multi-label heads) with confidences and optional logits.

The CLI (``train``, ``classify``) and the plugin operators call these.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fiftyone.core.labels as fol
import fiftyone.core.models as fom
import fiftyone.core.utils as fou
import numpy as np

from fiftyone_videoprism.core import features as feats
from fiftyone_videoprism.core import heads, training
from fiftyone_videoprism.core.zeroshot import check_classes
from fiftyone_videoprism.core.cache import EmbeddingsCache
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.model import (SelfDecodingVideoModel, VideoPrismModel,
                                          VideoPrismModelConfig)

logger = logging.getLogger(__name__)

TAGS = "tags"
StoreArg = feats.FeatureStore | EmbeddingsCache | str | os.PathLike | bool | None


class VideoPrismClassifier(SelfDecodingVideoModel, fom.LogitsMixin):
    """A frozen :class:`~fiftyone_videoprism.fo.model.VideoPrismModel` and a trained head.

    Attributes:
        model: the frozen model
        head: the MLX head (:class:`~fiftyone_videoprism.core.heads.AttentionHead` or
            :class:`~fiftyone_videoprism.core.heads.LinearHead`)
        spec: its :class:`~fiftyone_videoprism.core.heads.HeadSpec`
        history: per-epoch metrics of the training run (empty for a loaded head)
        evaluation: FiftyOne's ``ClassificationResults`` on the held-out samples, or None
        feature_stats: the feature run's :class:`~fiftyone_videoprism.fo.runs.RunStats`
            (``computed`` = videos the encoder ran on; the rest came from the store)
    """

    def __init__(self, model: VideoPrismModel, head, spec: heads.HeadSpec,
                 source: str = "head") -> None:
        fom.LogitsMixin.__init__(self)
        spec.check_backbone(model.weights_digest, model.num_frames, model.image_size,
                            model.config.resize, source)
        self.model = model
        self.head = head
        self.spec = spec
        self.history: list[dict[str, Any]] = []
        self.evaluation = None
        self.feature_stats: runs.RunStats | None = None

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def multi_label(self) -> bool:
        return self.spec.multi_label

    # -- features -> labels ------------------------------------------------------------------

    def features(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, S, S, 3) frames -> what the head reads: tokens (B, T*N, D) at the head's
        stored precision, or unit-norm embeddings (B, D)."""
        if self.spec.head == "linear":
            return self.model.embed_frames(frames)
        tokens = self.model.encode_frames(frames)
        return np.stack([feats.quantize_tokens(t, self.spec.precision) for t in tokens])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(B, ...) features -> (B, C) float32 logits."""
        return training.predict_logits(self.head, features)

    def labels(self, logits: np.ndarray) -> list[fol.Classification | fol.Classifications]:
        """One label per row: the most probable class with its softmax probability, or for a
        multi-label head every class whose sigmoid probability is at least 0.5 (a
        ``Classifications``, most probable first). Logits are attached when ``store_logits``."""
        out = []
        for row in np.asarray(logits, np.float32):
            if self.multi_label:
                probs = 1.0 / (1.0 + np.exp(-row))
                picks = [fol.Classification(label=self.spec.classes[i], confidence=float(probs[i]))
                         for i in np.argsort(-probs, kind="stable") if probs[i] >= 0.5]
                label = fol.Classifications(classifications=picks)
            else:
                probs = np.exp(row - row.max())
                probs /= probs.sum()
                best = int(np.argmax(probs))
                label = fol.Classification(label=self.spec.classes[best],
                                           confidence=float(probs[best]))
            if self.store_logits:
                label.logits = row
            out.append(label)
        return out

    def predict(self, arg: Any) -> fol.Classification | fol.Classifications:
        """The label of one video or clip (anything ``VideoPrismModel.read_frames`` takes)."""
        return self.predict_all([arg])[0]

    def predict_all(self, args: Sequence[Any]) -> list[fol.Classification | fol.Classifications]:
        frames = np.stack([self.model.read_frames(arg) for arg in args])
        return self.labels(self.logits(self.features(frames)))

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``<stem>.safetensors`` + ``<stem>.json``; returns the weights path."""
        return heads.save_head(path, self.head, self.spec)


def load_head(path: str | os.PathLike, model: VideoPrismModel | None = None,
              **model_kwargs: Any) -> VideoPrismClassifier:
    """A saved head on its backbone.

    Args:
        path: the head's ``.safetensors`` or ``.json`` (or their stem)
        model (None): the frozen model; by default one is loaded by the backbone name the head
            records, with ``model_kwargs`` (e.g. ``checkpoint_path``) and the head's frames

    Raises:
        HeadMismatchError: ``model`` is not the backbone the head was trained on
    """
    head, spec = heads.load_head(path)
    if model is None:
        kwargs = {"model_name": spec.backbone.get("name"), "num_frames": spec.num_frames,
                  "image_size": spec.image_size, "resize": spec.resize, **model_kwargs}
        model = VideoPrismModel(VideoPrismModelConfig(kwargs))
    return VideoPrismClassifier(model, head, spec, source=str(path))


# --------------------------------------------------------------------------------------------
# Labels


@dataclasses.dataclass(frozen=True)
class _Labels:
    ids: list[str]
    targets: np.ndarray  # (N,) class indices, or (N, C) multi-hot
    classes: list[str]
    multi_label: bool


def _read_labels(samples, label_field: str, classes: Sequence[str] | None,
                 multi_label: bool | None) -> _Labels:
    """The labelled samples of ``label_field``: a Classification field (single-label), a
    Classifications field (multi-label), or ``"tags"`` with ``classes`` the tags to learn.
    Samples without a label (or, single-label, with several of the tags) are left out."""
    if label_field == TAGS:
        if not classes:
            raise ValueError("training on sample tags needs classes=[...], the tags to learn")
        wanted = set(classes)
        ids, tag_lists = samples.values(["id", "tags"])
        names = [[t for t in tags if t in wanted] for tags in tag_lists]
        multi_label = bool(multi_label)
    else:
        field = samples.get_field(label_field)
        if field is None:
            raise ValueError(f"{samples._dataset.name!r} has no field {label_field!r}")
        kind = getattr(field, "document_type", None)
        if kind is fol.Classification:
            ids, labels = samples.values(["id", f"{label_field}.label"])
            names = [[name] if name is not None else [] for name in labels]
            inferred = False
        elif kind is fol.Classifications:
            ids, labels = samples.values(["id", f"{label_field}.classifications.label"])
            names = [list(row) if row else [] for row in labels]
            inferred = True
        else:
            raise ValueError(
                f"field {label_field!r} holds {getattr(kind, '__name__', type(field).__name__)}"
                f"; train on a Classification or Classifications field, or on 'tags' (for "
                f"TemporalDetections, train on samples.to_clips({label_field!r}))")
        if multi_label is not None and multi_label != inferred:
            raise ValueError(f"field {label_field!r} is {'multi' if inferred else 'single'}-"
                             f"label; multi_label={multi_label} does not fit it")
        multi_label = inferred
    if classes is None:
        classes = sorted({name for row in names for name in row})
    classes = list(classes)
    index = {name: i for i, name in enumerate(classes)}
    keep = [i for i, row in enumerate(names)
            if row and all(n in index for n in row) and (multi_label or len(row) == 1)]
    if multi_label:
        targets = np.zeros((len(keep), len(classes)), np.float32)
        for r, i in enumerate(keep):
            targets[r, [index[n] for n in names[i]]] = 1.0
    else:
        targets = np.array([index[names[i][0]] for i in keep], np.int64)
    if len(classes) < 2 and not multi_label:
        raise ValueError(f"{label_field!r} holds {len(classes)} class(es) {classes}; a "
                         f"single-label classifier needs at least two")
    return _Labels([ids[i] for i in keep], targets, classes, multi_label)


def _split(labels: _Labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation indices, stratified by class for single-label data (each class
    keeps at least one training sample)."""
    rng = np.random.default_rng(seed)
    n = len(labels.ids)
    groups = ([np.flatnonzero(labels.targets == c) for c in range(len(labels.classes))]
              if not labels.multi_label else [np.arange(n)])
    val = []
    for group in groups:
        group = rng.permutation(group)
        take = min(int(round(len(group) * val_fraction)), max(len(group) - 1, 0))
        val.extend(group[:take])
    val = np.sort(np.array(val, np.int64))
    return np.setdiff1d(np.arange(n), val), val


# --------------------------------------------------------------------------------------------
# Features


def _open_store(store: StoreArg, kind: str, precision: str) -> EmbeddingsCache | None:
    if store is None or store is False:
        return None
    if isinstance(store, EmbeddingsCache):
        if kind == "attention" and not isinstance(store, feats.FeatureStore):
            raise TypeError("an attention head's tokens go to a FeatureStore, not an "
                            "EmbeddingsCache")
        if kind == "attention" and store.precision != precision:
            # A later run would read other values than this one trains on.
            raise ValueError(f"the feature store keeps {store.precision} tokens and the head "
                             f"reads {precision} ones; pass precision={store.precision!r}")
        return store
    folder = None if store is True else store
    if kind == "attention":
        return feats.FeatureStore(folder, precision=precision)
    return EmbeddingsCache(folder)


def _compute_features(samples, classifier_features: Callable[[np.ndarray], np.ndarray],
                      model: VideoPrismModel, store: EmbeddingsCache | None,
                      skip_failures: bool, progress: Any) -> tuple[dict[str, np.ndarray],
                                                                   runs.RunStats]:
    """sample ID -> features of every video of ``samples`` that could be read (batched,
    prefetched and stored by the dataset-run machinery); failures are in the stats."""
    found: dict[str, np.ndarray] = {}

    def keep(ids: list[str], arrays: np.ndarray) -> None:
        found.update(zip(ids, arrays, strict=True))

    stats = runs.run_batches(samples, model, runs.PendingWrites(samples, keep, [], None), store,
                      skip_failures, progress, compute=classifier_features)
    return found, stats


# --------------------------------------------------------------------------------------------
# Training


def train_classifier(
    samples,
    model: VideoPrismModel,
    label_field: str,
    head: str = "attention",
    *,
    classes: Sequence[str] | None = None,
    multi_label: bool | None = None,
    val_fraction: float = 0.2,
    epochs: int = 100,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    patience: int | None = 10,
    seed: int = 0,
    precision: str = feats.DEFAULT_PRECISION,
    store: StoreArg = True,
    eval_key: str | None = None,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> VideoPrismClassifier:
    """Trains a head on the frozen ``model`` from the labels in ``label_field``.

    Args:
        samples: a video dataset or view, or a clips view (clip labels: train on
            ``dataset.to_clips("events")`` with ``label_field="events"``)
        model: the frozen :class:`~fiftyone_videoprism.fo.model.VideoPrismModel`
        label_field: a ``Classification`` field (single-label), a ``Classifications`` field
            (multi-label), or ``"tags"`` with ``classes`` the tags to learn
        head ("attention"): ``"attention"`` (the original's attention pooler + projection on
            the encoder's tokens) or ``"linear"`` (a linear probe on the video embedding)
        classes (None): class names in logit order; default the sorted labels found. Samples
            with other labels are left out
        multi_label (None): for tags, whether a sample may carry several of them (sigmoid BCE);
            label fields decide this themselves
        val_fraction (0.2): share of the labelled samples held out (per class) for early
            stopping and evaluation
        epochs, learning_rate, weight_decay, batch_size, patience, seed: see
            :class:`~fiftyone_videoprism.core.training.TrainSettings`
        precision: how attention-head tokens are stored (:mod:`fiftyone_videoprism.core.features`)
        store (True): where features are kept across runs: True for the default folder, a
            folder, a ``FeatureStore`` / ``EmbeddingsCache``, or None to keep none
        eval_key (None): with a validation set and a single-label head, the held-out
            predictions are written to ``<eval_key>_predictions`` on those samples and
            evaluated with ``evaluate_classifications(eval_key=eval_key)`` (which marks each
            sample right or wrong in ``<eval_key>``); default ``"<label_field>_videoprism"``
        skip_failures (True): a video that cannot be read is left out instead of raising
        progress (None): FiftyOne's progress argument, for the feature run and the epochs
        on_epoch (None): called with each epoch's metrics dict
    """
    # Every setting is checked before any video is decoded.
    heads.check_kind(head)
    feats.check_precision(precision)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    settings = training.TrainSettings(epochs=epochs, learning_rate=learning_rate,
                                      weight_decay=weight_decay, batch_size=batch_size,
                                      patience=patience, seed=seed)
    labels = _read_labels(samples, label_field,
                          check_classes(classes) if classes is not None else None, multi_label)
    if not labels.ids:
        raise ValueError(f"no labelled samples in {label_field!r}")
    labelled = samples.select(labels.ids, ordered=True)
    spec = heads.HeadSpec(
        head=head, classes=labels.classes, multi_label=labels.multi_label,
        backbone={"name": model.config.model_name if model.config.model_config is None else None,
                  "weights_digest": model.weights_digest,
                  "architecture": model.mlx_model.config.to_dict()},
        num_frames=model.num_frames, image_size=model.image_size, resize=model.config.resize,
        dim=model.embedding_dim, num_heads=model.mlx_model.config.num_heads,
        precision=precision if head == "attention" else "float32")
    net = heads.new_head(head, spec.dim, spec.num_heads, len(labels.classes), seed)
    classifier = VideoPrismClassifier(model, net, spec)

    found, stats = _compute_features(labelled, classifier.features, model,
                                     _open_store(store, head, precision), skip_failures,
                                     progress)
    classifier.feature_stats = stats
    usable = [i for i, sample_id in enumerate(labels.ids) if sample_id in found]
    if len(usable) < len(labels.ids):
        logger.warning("train_classifier: %d labelled videos could not be read and are left "
                       "out (%s)", len(labels.ids) - len(usable),
                       "; ".join(list(stats.errors.values())[:3]))
    labels = _Labels([labels.ids[i] for i in usable], labels.targets[usable], labels.classes,
                     labels.multi_label)
    if not labels.ids:
        raise ValueError("none of the labelled videos could be read")
    x = np.stack([found[sample_id] for sample_id in labels.ids])
    train_idx, val_idx = _split(labels, val_fraction, seed)
    val = (x[val_idx], labels.targets[val_idx]) if len(val_idx) else None
    with fou.ProgressBar(total=epochs, progress=progress) as pb:
        def epoch_done(metrics: dict[str, Any]) -> None:
            logger.info("epoch %d: %s", metrics["epoch"], ", ".join(
                f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
            pb.update()
            if on_epoch is not None:
                on_epoch(metrics)

        classifier.history = training.train_head(
            net, (x[train_idx], labels.targets[train_idx]), val,
            multi_label=labels.multi_label, settings=settings, on_epoch=epoch_done)
    classifier.spec = dataclasses.replace(spec, training={
        **dataclasses.asdict(settings), "label_field": label_field, "val_fraction": val_fraction,
        "train_samples": int(len(train_idx)), "val_samples": int(len(val_idx)),
        "epochs_run": len(classifier.history), "last_epoch": classifier.history[-1]})
    if len(val_idx) and not labels.multi_label:
        classifier.evaluation = _evaluate(
            samples, classifier, labels, val_idx, classifier.logits(x[val_idx]), label_field,
            eval_key or f"{label_field}_videoprism")
    return classifier


def _evaluate(samples, classifier: VideoPrismClassifier, labels: _Labels, val_idx: np.ndarray,
              logits: np.ndarray, label_field: str, eval_key: str):
    """Writes the held-out predictions to ``<eval_key>_predictions`` and evaluates them with
    FiftyOne."""
    ids = [labels.ids[i] for i in val_idx]
    held_out = samples.select(ids, ordered=True)
    pred_field = f"{eval_key}_predictions"
    if samples.has_field(pred_field):
        # An earlier run's held-out samples are not this run's.
        samples.exists(pred_field).set_field(pred_field, None).save()
    samples.set_values(pred_field, dict(zip(ids, classifier.labels(logits), strict=True)),
                       key_field="id")
    gt_field = label_field
    if label_field == TAGS:
        # evaluate_classifications compares two label fields: the tags become one.
        gt_field = f"{eval_key}_truth"
        truth = [fol.Classification(label=labels.classes[int(labels.targets[i])])
                 for i in val_idx]
        samples.set_values(gt_field, dict(zip(ids, truth, strict=True)), key_field="id")
    if samples._dataset.has_evaluation(eval_key):
        samples._dataset.delete_evaluation(eval_key)
    return held_out.evaluate_classifications(pred_field, gt_field=gt_field, eval_key=eval_key,
                                             classes=labels.classes)


def save_confusion_matrix(results, path: str | os.PathLike) -> Path:
    """Saves the confusion matrix of ``evaluate_classifications`` results as an image (PNG by
    the suffix)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    fig = results.plot_confusion_matrix(backend="matplotlib")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Applying


def apply_classifier(
    samples,
    classifier: VideoPrismClassifier,
    label_field: str,
    *,
    store_logits: bool = False,
    store: StoreArg = None,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    error_field: str | None = None,
) -> runs.RunStats:
    """Writes the classifier's label for every video or clip of ``samples`` into
    ``label_field``: a ``Classification`` (single-label) or ``Classifications``
    (multi-label), with confidences and, with ``store_logits``, the (C,) logits.

    Args:
        samples: a video dataset or view, or a clips view
        classifier: a :class:`VideoPrismClassifier` (trained, or from :func:`load_head`)
        label_field: the sample field to write
        store_logits (False): attach each label's logits
        store (None): read (and fill) the feature store, as in :func:`train_classifier`;
            a linear head with ``True`` reuses the embeddings cache
        skip_failures, progress, error_field: as in
            :func:`~fiftyone_videoprism.fo.runs.compute_embeddings`
    """
    error_field = error_field or f"{label_field}_error"
    runs.check_fields(label_field, error_field)
    runs.check_label_field(samples, label_field, fol.Classifications if classifier.multi_label
                           else fol.Classification)
    classifier.store_logits = store_logits

    def write(ids: list[str], features: np.ndarray) -> None:
        labels = classifier.labels(classifier.logits(features))
        samples.set_values(label_field, dict(zip(ids, labels, strict=True)), key_field="id")

    stats = runs.run_batches(samples, classifier.model,
                      runs.PendingWrites(samples, write, [label_field], error_field),
                      _open_store(store, classifier.spec.head, classifier.spec.precision),
                      skip_failures, progress, compute=classifier.features)
    stats = dataclasses.replace(stats, error_field=error_field)
    runs.log_summary("apply_classifier", stats, error_field)
    return stats
