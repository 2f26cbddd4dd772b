"""Dataset-wide VideoPrism runs: embeddings and zero-shot labels for every video or clip of a
FiftyOne collection, written as they are computed.

FiftyOne's own ``compute_embeddings`` / ``apply_model`` call a video model once per sample and
have no batched route for video models (``fiftyone.core.models._compute_video_embeddings``).
The functions here batch ``model.config.batch_size`` videos per MLX call and decode the next
batch in a background thread while the model runs (:func:`fiftyone_videoprism.video.iter_frames`);
each batch's results are saved before the next one starts, so an interrupted run keeps its work.
The CLI and the plugin operators call these.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.core.utils as fou
import numpy as np

from fiftyone_videoprism import video
from fiftyone_videoprism.fo_model import VideoPrismModel

logger = logging.getLogger(__name__)


class RunStats(NamedTuple):
    """What a run did: samples written, and IDs of samples skipped because they failed."""

    written: int
    failed: list[str]


def compute_embeddings(
    samples,
    model: VideoPrismModel,
    embeddings_field: str,
    *,
    skip_existing: bool = False,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
) -> RunStats:
    """Stores one (D,) float32 unit-norm embedding per video or clip in ``embeddings_field``.

    The vectors equal what ``samples.compute_embeddings(model, embeddings_field)`` stores (same
    frames, same model), computed several videos per MLX call.

    Args:
        samples: a video dataset or view, or a clips view (a clip uses only its own frames)
        model: a :class:`~fiftyone_videoprism.fo_model.VideoPrismModel`
        embeddings_field: the sample field to write
        skip_existing (False): leave samples whose field is already set untouched
        skip_failures (True): log and skip videos that cannot be decoded, instead of raising
        progress (None): FiftyOne's progress argument (True/False, None for
            ``fo.config.show_progress_bars``, or a callback)
    """
    pending = samples.exists(embeddings_field, False) if skip_existing else samples

    # Writes go through the unfiltered collection: a written sample leaves the pending view.
    def write(ids: list[str], embeddings: np.ndarray) -> None:
        values = dict(zip(ids, embeddings, strict=True))
        samples.set_values(embeddings_field, values, key_field="id")

    return _run(pending, model, write, skip_failures, progress)


def apply_zero_shot(
    samples,
    model: VideoPrismModel,
    label_field: str,
    *,
    embeddings_field: str | None = None,
    tag_samples: bool = False,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
) -> RunStats:
    """Stores a zero-shot :class:`fiftyone.core.labels.Classification` over
    ``model.config.classes`` for every video or clip in ``label_field`` (LvT models only).

    Args:
        samples: a video dataset or view, or a clips view
        model: an LvT :class:`~fiftyone_videoprism.fo_model.VideoPrismModel` with ``classes``
            (and optionally ``prompt_templates``, ``temperature``, ``store_logits``)
        label_field: the sample field to write
        embeddings_field (None): a field of stored embeddings of this model; samples that have
            one are classified from it without decoding, the others are embedded and their
            embedding stored there too
        tag_samples (False): also add each predicted class name to the sample's tags
        skip_failures (True): log and skip videos that cannot be decoded, instead of raising
        progress (None): FiftyOne's progress argument
    """
    model.class_embeddings()  # a video-only model or missing classes fail here, before decoding
    written = 0
    pending = samples
    if embeddings_field is not None and samples.has_field(embeddings_field):
        ids, vectors = samples.exists(embeddings_field).values(["id", embeddings_field])
        if ids:
            _write_labels(samples, label_field, ids, model.classify(np.stack(vectors)),
                          tag_samples)
        written = len(ids)
        pending = samples.exists(embeddings_field, False)

    # Writes go through the unfiltered collection: a written sample leaves the pending view.
    def write(ids: list[str], embeddings: np.ndarray) -> None:
        if embeddings_field is not None:
            values = dict(zip(ids, embeddings, strict=True))
        samples.set_values(embeddings_field, values, key_field="id")
        _write_labels(samples, label_field, ids, model.classify(embeddings), tag_samples)

    stats = _run(pending, model, write, skip_failures, progress)
    return RunStats(written + stats.written, stats.failed)


def _write_labels(samples, label_field: str, ids: list[str], labels: list[fol.Classification],
                  tag_samples: bool) -> None:
    samples.set_values(label_field, dict(zip(ids, labels, strict=True)), key_field="id")
    if tag_samples:
        by_class: dict[str, list[str]] = defaultdict(list)
        for sample_id, label in zip(ids, labels, strict=True):
            by_class[label.label].append(sample_id)
        for name, class_ids in by_class.items():
            samples.select(class_ids).tag_samples(name)


def _run(samples, model: VideoPrismModel, write: Callable[[list[str], np.ndarray], None],
         skip_failures: bool, progress: Any) -> RunStats:
    """Decodes every sample (prefetching), embeds full batches, hands each batch to ``write``."""
    ids, paths = samples.values(["id", "filepath"])
    if not ids:
        return RunStats(0, [])
    # A clips view's samples carry their [first, last] frame support.
    if isinstance(samples.get_field("support"), fof.FrameSupportField):
        supports = [tuple(s) for s in samples.values("support")]
    else:
        supports = [None] * len(ids)
    batch_size = model.config.batch_size
    items = zip(ids, paths, supports, strict=True)
    frames_iter = video.iter_frames(items, model.num_frames, model.image_size,
                                    resize=model.config.resize, prefetch=batch_size)
    batch_ids: list[str] = []
    batch_frames: list[np.ndarray] = []
    written = 0
    failed: list[str] = []

    def flush() -> None:
        nonlocal written
        write(batch_ids, model.embed_frames(np.stack(batch_frames)))
        written += len(batch_ids)
        pb.update(len(batch_ids))
        batch_ids.clear()
        batch_frames.clear()

    with contextlib.closing(frames_iter), fou.ProgressBar(total=len(ids),
                                                          progress=progress) as pb:
        for sample_id, frames in frames_iter:
            if isinstance(frames, Exception):
                if not skip_failures:
                    raise frames
                logger.warning("Sample: %s\nError: %s\n", sample_id, frames)
                failed.append(sample_id)
                pb.update()
                continue
            batch_ids.append(sample_id)
            batch_frames.append(frames)
            if len(batch_ids) == batch_size:
                flush()
        if batch_ids:
            flush()
    return RunStats(written, failed)
