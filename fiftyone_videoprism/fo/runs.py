"""Dataset-wide VideoPrism runs: embeddings and zero-shot labels for every video or clip of a
FiftyOne collection, written as they are computed.

FiftyOne's own ``compute_embeddings`` / ``apply_model`` call a video model once per sample and
have no batched route for video models (``fiftyone.core.models._compute_video_embeddings``).
The functions here batch ``model.config.batch_size`` videos per MLX call and decode the next
batch in a background thread while the model runs (:func:`fiftyone_videoprism.core.video.iter_frames`).
The CLI and the plugin operators call these.

What a long run over real, messy data can rely on:

- A video that cannot be used (missing, empty, truncated or corrupt file, no video stream, a clip
  past the end, ...) fails alone. With ``skip_failures`` (the default, as in FiftyOne) the run
  goes on; the sample's result field is cleared and the string field ``<field>_error`` gets
  ``"<ExceptionType>: <file>: <cause>"``, so ``view.exists("<field>_error")`` lists the failures.
  A later successful run clears it. :class:`RunStats` and one log line summarise the failures.
- Results are saved after every model batch, so a killed process loses at most the batch in
  flight; running again with ``skip_existing=True`` does only what is missing. The error field
  is cleared before a result is written and the result before an error is written, so a sample
  is never left looking done with a stale state.
- With ``cache`` (on by default), each embedding is also stored on disk as soon as the model returns it, keyed
  by the file's content and the model's ``embedding_key`` (:mod:`fiftyone_videoprism.core.cache`):
  a run killed between the model and the database, a recompute with the same settings, or the
  same video in another dataset or clips view reuses it instead of running the model again.
- Two processes may fill one field from disjoint (or overlapping) views of one dataset: each
  sample is updated on its own, and equal inputs give equal values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.core.utils as fou
import numpy as np

from fiftyone_videoprism.core import video
from fiftyone_videoprism.core.cache import EmbeddingsCache
from fiftyone_videoprism.fo.defaults import RUN_SUMMARY_LOG_KEY
from fiftyone_videoprism.fo.model import VideoPrismModel

logger = logging.getLogger(__name__)

# Results that need no model call (cache hits, failures) are saved in groups of this many:
# one database round trip each instead of one per model batch.
_WRITE_CHUNK = 256

CacheArg = EmbeddingsCache | str | os.PathLike | bool | None
_Item = tuple[str, str, tuple[int, int] | None]  # sample ID, video path, clip support


@dataclasses.dataclass(frozen=True)
class RunStats:
    """What a run did. Equality compares ``written`` and ``failed`` only.

    Attributes:
        written: samples whose result was stored by this run
        failed: IDs of the samples that could not be processed, in processing order
        computed: videos the model embedded in this run; the rest of ``written`` came from the
            embeddings cache or from stored embeddings
        skipped: samples left untouched because they already had a result (``skip_existing``)
        errors: sample ID -> ``"<ExceptionType>: <file>: <cause>"``, as in the error field
        error_field: the string field where failed samples' errors are stored
    """

    written: int
    failed: list[str]
    computed: int = dataclasses.field(default=0, compare=False)
    skipped: int = dataclasses.field(default=0, compare=False)
    errors: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    error_field: str | None = dataclasses.field(default=None, compare=False)


def default_error_field(result_field: str) -> str:
    """The string field that holds the errors of the samples that failed ``result_field``."""
    return f"{result_field}_error"


def compute_embeddings(
    samples,
    model: VideoPrismModel,
    embeddings_field: str,
    *,
    skip_existing: bool = False,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    error_field: str | None = None,
    cache: CacheArg = True,
) -> RunStats:
    """Stores one (D,) float32 unit-norm embedding per video or clip in ``embeddings_field``.

    The vectors equal what ``samples.compute_embeddings(model, embeddings_field)`` stores (same
    frames, same model), computed several videos per MLX call.

    Args:
        samples: a video dataset or view, or a clips view (a clip uses only its own frames)
        model: a :class:`~fiftyone_videoprism.fo.model.VideoPrismModel`
        embeddings_field: the sample field to write
        skip_existing (False): leave samples whose field is already set untouched (resumes an
            interrupted run)
        skip_failures (True): record a failing video's error and go on, instead of raising
        progress (None): FiftyOne's progress argument (True/False, None for
            ``fo.config.show_progress_bars``, or a callback)
        error_field (None): string field for each failed sample's error; default
            ``<embeddings_field>_error``
        cache (True): the on-disk embeddings cache, so that a second run over the same files
            and settings computes nothing: True for the default folder
            (``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE``), a folder, an
            :class:`~fiftyone_videoprism.core.cache.EmbeddingsCache`, or False for none
    """
    error_field = error_field or default_error_field(embeddings_field)
    check_fields(embeddings_field, error_field)
    prepare_embeddings_field(samples, embeddings_field, model, replace=not skip_existing)
    pending, skipped = samples, 0
    if skip_existing and samples.has_field(embeddings_field):
        pending = samples.exists(embeddings_field, False)
        skipped = len(samples) - len(pending)  # counted now: the view shrinks as samples are done

    def write(ids: list[str], embeddings: np.ndarray) -> None:
        # Through the unfiltered collection: a written sample leaves the pending view.
        samples.set_values(embeddings_field, dict(zip(ids, embeddings, strict=True)),
                           key_field="id")

    stats = run_batches(pending, model,
                        PendingWrites(samples, write, [embeddings_field], error_field),
                        open_cache(cache), skip_failures, progress)
    stats = dataclasses.replace(stats, skipped=skipped, error_field=error_field)
    log_summary("compute_embeddings", stats, error_field)
    return stats


def apply_zero_shot(
    samples,
    model: VideoPrismModel,
    label_field: str,
    *,
    embeddings_field: str | None = None,
    tag_samples: bool = False,
    top_k: int | None = None,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    error_field: str | None = None,
    cache: CacheArg = True,
) -> RunStats:
    """Stores a zero-shot :class:`fiftyone.core.labels.Classification` over
    ``model.config.classes`` for every video or clip in ``label_field`` (LvT models only), or
    with ``top_k`` a :class:`fiftyone.core.labels.Classifications` of the k best classes.

    Args:
        samples: a video dataset or view, or a clips view
        model: an LvT :class:`~fiftyone_videoprism.fo.model.VideoPrismModel` with ``classes``
            (and optionally ``prompt_templates``, ``temperature``, ``store_logits``)
        label_field: the sample field to write
        embeddings_field (None): a field of stored embeddings of this model; samples that have
            one are classified from it without decoding, the others are embedded and their
            embedding stored there too
        tag_samples (False): also add each predicted class name to the sample's tags (all k
            names with ``top_k``)
        top_k (None): store the ``top_k`` most probable classes, best first, instead of one
        skip_failures (True): record a failing video's error and go on, instead of raising
        progress (None): FiftyOne's progress argument
        error_field (None): string field for each failed sample's error; default
            ``<label_field>_error``
        cache (True): as in :func:`compute_embeddings`
    """
    # A video-only model, bad classes, a bad top_k or a field of another type or model fail
    # here, before anything is decoded.
    model.classify(np.zeros((0, model.embedding_dim), np.float32), top_k)
    error_field = error_field or default_error_field(label_field)
    check_fields(label_field, error_field)
    label_type = fol.Classifications if top_k is not None else fol.Classification
    previous_tags = prepare_label_field(samples, label_field, label_type, model,
                                        tag_samples=tag_samples)
    if embeddings_field is not None:
        check_fields(embeddings_field, error_field)
        # Stored vectors are reused only when this model made them.
        prepare_embeddings_field(samples, embeddings_field, model, replace=False)
    if previous_tags:
        # The tags an earlier run of this field added would otherwise outlive its labels.
        samples.untag_samples(previous_tags)

    def write_labels(ids: list[str], embeddings: np.ndarray) -> None:
        labels = model.classify(embeddings, top_k)
        samples.set_values(label_field, dict(zip(ids, labels, strict=True)), key_field="id")
        if tag_samples:
            by_class: dict[str, list[str]] = defaultdict(list)
            for sample_id, label in zip(ids, labels, strict=True):
                picks = label.classifications if top_k is not None else [label]
                for pick in picks:
                    by_class[pick.label].append(sample_id)
            for name, class_ids in by_class.items():
                samples.select(class_ids).tag_samples(name)

    reused = 0
    pending = samples
    if embeddings_field is not None and samples.has_field(embeddings_field):
        ids, vectors = samples.exists(embeddings_field).values(["id", embeddings_field])
        stored = PendingWrites(samples, write_labels, [label_field], error_field)
        for sample_id, vector in zip(ids, vectors, strict=True):
            stored.done(sample_id, np.asarray(vector, np.float32))
        stored.flush()
        reused = len(ids)
        pending = samples.exists(embeddings_field, False)

    def write(ids: list[str], embeddings: np.ndarray) -> None:
        if embeddings_field is not None:
            samples.set_values(embeddings_field, dict(zip(ids, embeddings, strict=True)),
                               key_field="id")
        write_labels(ids, embeddings)

    stats = run_batches(pending, model,
                        PendingWrites(samples, write, [label_field], error_field),
                        open_cache(cache), skip_failures, progress)
    stats = dataclasses.replace(stats, written=stats.written + reused, error_field=error_field)
    log_summary("apply_zero_shot", stats, error_field)
    return stats


# --------------------------------------------------------------------------------------------
# Provenance: what made each output field


# Key under a field's ``info`` where the model that wrote it is recorded.
PROVENANCE_KEY = "fiftyone_videoprism"


class ProvenanceError(ValueError):
    """An output field holds results of another model, or of another kind."""


def field_provenance(samples, field: str) -> dict[str, Any] | None:
    """What wrote ``field`` (:attr:`VideoPrismModel.provenance`, plus ``classes`` and ``tags``
    for label fields), or None for a field this package did not write."""
    declared = samples.get_field(field)
    return None if declared is None else (declared.info or {}).get(PROVENANCE_KEY)


def describe_provenance(provenance: dict[str, Any] | None) -> str:
    """One line naming a model and its settings, for messages."""
    if not provenance:
        return "an unknown model (the field was not written by fiftyone-videoprism)"
    return (f"{provenance['model']} ({provenance['num_frames']} frames at "
            f"{provenance['image_size']} px, resize {provenance['resize']}, "
            f"{provenance['dtype']}, weights {provenance['weights']})")


def prepare_embeddings_field(samples, field: str, model: VideoPrismModel, *,
                             replace: bool) -> None:
    """Declares ``field`` as a vector field recording ``model``'s provenance, or checks that it
    already holds this model's vectors.

    A field of another model is refused, since its vectors cannot be compared with this
    model's (base and LvT are both 768-d: nothing else would notice). With ``replace`` and
    ``samples`` covering every stored vector, the old vectors are cleared first instead, so an
    interrupted replacement leaves missing vectors (resumable), never a mix.

    Raises:
        ProvenanceError: the field holds something else, or another model's vectors
    """
    dataset = samples._dataset
    mine = model.provenance
    declared = dataset.get_field(field)
    if declared is None:
        dataset.add_sample_field(field, fof.VectorField, info={PROVENANCE_KEY: mine})
        return
    if not isinstance(declared, (fof.VectorField, fof.ListField)):
        raise ProvenanceError(
            f"field '{field}' holds {type(declared).__name__} values, not embeddings; write "
            f"the embeddings to another field (--field NAME / embeddings_field=...)")
    theirs = (declared.info or {}).get(PROVENANCE_KEY)
    if theirs is not None and theirs.get("embedding_key") == mine["embedding_key"]:
        return
    stored = dataset.exists(field)
    covered = replace and not len(stored.exclude(samples.values("id")))
    if len(stored) and not covered:
        raise ProvenanceError(
            f"field '{field}' holds embeddings of {describe_provenance(theirs)}, and this run "
            f"uses {describe_provenance(mine)}: one field must not mix the two. Recompute "
            f"the whole field (--recompute; Python: skip_existing=False on the whole "
            f"dataset) or write to another field (--field NAME / embeddings_field=...)")
    if len(stored):
        stored.set_field(field, None).save()
    declared.info = {**(declared.info or {}), PROVENANCE_KEY: mine}
    declared.save()


def check_label_field(samples, field: str, label_type: type) -> None:
    """Raises ProvenanceError unless ``field`` is new or holds ``label_type`` labels."""
    declared = samples._dataset.get_field(field)
    if declared is None:
        return
    held = getattr(declared, "document_type", None)
    if held is not label_type:
        what = held.__name__ if held is not None else type(declared).__name__
        raise ProvenanceError(
            f"field '{field}' holds {what} labels and this run writes {label_type.__name__}"
            f" ({'top-k' if label_type is fol.Classifications else 'one label per video'}"
            f"); use another label field (--label-field NAME / label_field=...) or delete "
            f"it first: dataset.delete_sample_field({field!r})")


def label_counts(samples, field: str) -> dict[str, int]:
    """Videos per label in a zero-shot field (videos without one are not counted); for top-k
    labels, per best label."""
    if samples.get_field(field).document_type is fol.Classifications:
        best = [labels.classifications[0].label
                for labels in samples.exists(field).values(field) if labels.classifications]
        return dict(Counter(best))
    return samples.exists(field).count_values(f"{field}.label")


def prepare_label_field(samples, field: str, label_type: type, model: VideoPrismModel, *,
                        tag_samples: bool) -> list[str]:
    """Declares ``field`` for ``label_type`` labels recording the model, classes and tags of
    this run, after :func:`check_label_field`; returns the sample tags the previous run of
    this field added (to remove before tagging again)."""
    check_label_field(samples, field, label_type)
    dataset = samples._dataset
    declared = dataset.get_field(field)
    previous: dict[str, Any] = {}
    if declared is not None:
        previous = (declared.info or {}).get(PROVENANCE_KEY) or {}
    else:
        dataset.add_sample_field(field, fof.EmbeddedDocumentField, embedded_doc_type=label_type)
        declared = dataset.get_field(field)
    classes = list(model.config.classes)
    declared.info = {**(declared.info or {}), PROVENANCE_KEY: {
        **model.provenance, "classes": classes,
        "prompt_templates": list(model.config.prompt_templates),
        "tags": classes if tag_samples else []}}
    declared.save()
    return list(previous.get("tags") or [])


# --------------------------------------------------------------------------------------------
# The run


class PendingWrites:
    """Results and failures waiting to be saved, and the counts of what was saved."""

    def __init__(self, samples, write: Callable[[list[str], np.ndarray], None],
                 result_fields: list[str], error_field: str | None) -> None:
        """``error_field`` None keeps failures in ``errors`` only, writing nothing."""
        self._samples = samples
        self._write = write
        self._result_fields = result_fields
        self._error_field = error_field
        self._ids: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._failures: dict[str, str] = {}
        self.written = 0
        self.errors: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._ids) + len(self._failures)

    def done(self, sample_id: str, vector: np.ndarray) -> None:
        self._ids.append(sample_id)
        self._vectors.append(vector)

    def fail(self, sample_id: str, message: str) -> None:
        self._failures[sample_id] = message

    def flush(self) -> None:
        """Saves what is waiting. A sample's old error is cleared before its result is written
        and its old result before its error, so a kill in between leaves it to be redone."""
        samples, error_field = self._samples, self._error_field
        if self._ids:
            # The error field exists only once some video has failed.
            if error_field is not None and samples.has_field(error_field):
                samples.set_values(error_field, dict.fromkeys(self._ids), key_field="id")
            self._write(self._ids, np.stack(self._vectors))
            self.written += len(self._ids)
        if self._failures and error_field is not None:
            for field in self._result_fields:
                if samples.has_field(field):
                    samples.set_values(field, dict.fromkeys(self._failures), key_field="id")
            samples.set_values(error_field, self._failures, key_field="id")
        self.errors.update(self._failures)
        self._ids, self._vectors, self._failures = [], [], {}


def run_batches(samples, model: VideoPrismModel, writes: PendingWrites,
                cache: EmbeddingsCache | None, skip_failures: bool, progress: Any,
                compute: Callable[[np.ndarray], np.ndarray] | None = None) -> RunStats:
    """Takes embeddings from the cache or decodes (prefetching) and embeds full batches; saves
    each model batch as soon as it is computed.

    ``compute`` replaces ``model.embed_frames`` (frames (B, T, S, S, 3) -> one array per
    video), e.g. for encoder tokens kept in a ``FeatureStore``, which ``cache`` is then."""
    return _Run(samples, model, writes, cache, skip_failures, compute).run(progress)


class _Run:
    """One pass over a collection: cache hits first, then the rest decoded in a background
    thread and embedded ``batch_size`` videos per model call."""

    def __init__(self, samples, model: VideoPrismModel, writes: PendingWrites,
                 cache: EmbeddingsCache | None, skip_failures: bool,
                 compute: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.samples, self.model, self.writes = samples, model, writes
        self.compute = model.embed_frames if compute is None else compute
        self.cache, self.skip_failures = cache, skip_failures
        # Turned off (not the cache itself: the decode thread still reads keys) when the
        # cache folder cannot be written.
        self.store = cache is not None
        self.model_key = model.embedding_key if cache is not None else None
        self.keys: dict[str, str] = {}  # sample ID -> cache key, filled by the decode thread
        self.batch: list[tuple[str, np.ndarray]] = []
        self.computed = 0
        self.pb: Any = None

    def run(self, progress: Any) -> RunStats:
        ids, paths = self.samples.values(["id", "filepath"])
        if not ids:
            return RunStats(0, [])
        # A clips view's samples carry their [first, last] frame support.
        if isinstance(self.samples.get_field("support"), fof.FrameSupportField):
            supports = [tuple(s) for s in self.samples.values("support")]
        else:
            supports = [None] * len(ids)
        self.path_of = dict(zip(ids, paths, strict=True))
        with contextlib.ExitStack() as stack:
            self.pb = stack.enter_context(fou.ProgressBar(total=len(ids), progress=progress))
            misses = self._take_known_hits(list(zip(ids, paths, supports, strict=True)))
            frames = stack.enter_context(contextlib.closing(video.iter_frames(
                self._hashed(misses), self.model.num_frames, self.model.image_size,
                resize=self.model.config.resize, prefetch=self.model.config.batch_size)))
            for sample_id, decoded in frames:
                if isinstance(decoded, Exception):
                    if not self.skip_failures and self.batch:
                        self._embed_batch()  # the videos decoded before this one are kept
                    self._fail([sample_id], decoded)
                else:
                    self._decoded(sample_id, decoded)
                if len(self.writes) >= _WRITE_CHUNK:
                    self.writes.flush()
            if self.batch:
                self._embed_batch()
            self.writes.flush()
        return RunStats(self.writes.written, list(self.writes.errors), computed=self.computed,
                        errors=self.writes.errors)

    def _take_known_hits(self, items: list[_Item]) -> list[_Item]:
        """Saves the cache hits found by stat alone (no video read); returns the rest, whose
        files are hashed in the decode thread, where that full read overlaps the model."""
        misses = []
        for sample_id, path, support in items:
            digest = self.cache.known_digest(path) if self.cache is not None else None
            vector = (self.cache.get(self.cache.key(self.model_key, digest, support))
                      if digest else None)
            if vector is None:
                misses.append((sample_id, path, support))
                continue
            self._done(sample_id, vector)
        self.writes.flush()
        return misses

    def _hashed(self, items: list[_Item]) -> Iterator[_Item]:
        for sample_id, path, support in items:
            if self.cache is not None:
                try:
                    self.keys[sample_id] = self.cache.key(self.model_key,
                                                          self.cache.digest(path), support)
                except OSError:
                    pass  # the decoder reports the missing or unreadable file with its cause
            yield sample_id, path, support

    def _decoded(self, sample_id: str, frames: np.ndarray) -> None:
        # A file met under another path (or a clip cached by another run) may hit now.
        key = self.keys.get(sample_id)
        vector = self.cache.get(key) if self.cache is not None and key else None
        if vector is not None:
            self._done(sample_id, vector)
            return
        self.batch.append((sample_id, frames))
        if len(self.batch) == self.model.config.batch_size:
            self._embed_batch()

    def _done(self, sample_id: str, vector: np.ndarray) -> None:
        self.writes.done(sample_id, vector)
        self.pb.update()
        if len(self.writes) >= _WRITE_CHUNK:
            self.writes.flush()

    def _fail(self, sample_ids: list[str], err: Exception) -> None:
        if not self.skip_failures:
            self.writes.flush()  # keep what was saved up before raising
            raise err
        for sample_id in sample_ids:
            self.writes.fail(sample_id, describe_error(err, self.path_of[sample_id]))
        self.pb.update(len(sample_ids))

    def _embed_batch(self) -> None:
        ids = [sample_id for sample_id, _ in self.batch]
        try:
            embeddings = self.compute(np.stack([frames for _, frames in self.batch]))
        except Exception as err:  # FiftyOne's convention: a failed batch fails its samples
            self.batch.clear()
            self._fail(ids, err)
        else:
            self.computed += len(ids)
            for sample_id, vector in zip(ids, embeddings, strict=True):
                self._store(sample_id, vector)
                self.writes.done(sample_id, vector)
            self.pb.update(len(ids))
        self.writes.flush()
        self.batch.clear()

    def _store(self, sample_id: str, vector: np.ndarray) -> None:
        if not self.store or sample_id not in self.keys:
            return
        try:
            self.cache.put(self.keys[sample_id], vector)
        except OSError as err:
            logger.warning("Embeddings cache disabled for this run: cannot write to %s (%s)",
                           self.cache.folder, err)
            self.store = False


# --------------------------------------------------------------------------------------------
# Helpers for every dataset-wide run (moments and classifiers use them too)


def open_cache(cache: CacheArg) -> EmbeddingsCache | None:
    """The cache a run's ``cache`` argument names (None: no cache)."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return EmbeddingsCache()
    if isinstance(cache, EmbeddingsCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return EmbeddingsCache(cache)
    raise TypeError(f"cache must be an EmbeddingsCache, a folder, True or None; got "
                    f"{type(cache).__name__}")


def check_fields(result_field: str, error_field: str) -> None:
    """Raises a ValueError unless both are field names and differ."""
    for name, value in (("field", result_field), ("error_field", error_field)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty field name, got {value!r}")
    if result_field == error_field:
        raise ValueError(f"the error field must differ from the result field {result_field!r}")


def describe_error(err: Exception, path: str) -> str:
    """``"<ExceptionType>: <file>: <cause>"``: every message names the file."""
    message = str(err).strip() or "(no message)"
    if path not in message:
        message = f"{path}: {message}"
    return f"{type(err).__name__}: {message}"


def log_summary(run: str, stats: RunStats, error_field: str) -> None:
    """One log line for a finished run (a warning naming the error field when some failed)."""
    if not stats.failed:
        logger.info("%s: %d written (%d computed), %d skipped", run, stats.written,
                    stats.computed, stats.skipped)
        return
    kinds = Counter(message.split(":", 1)[0] for message in stats.errors.values())
    logger.warning(
        "%s: %d written (%d computed), %d skipped, %d failed (%s); each failed sample's error "
        "is in its '%s' field: view.exists('%s')", run, stats.written, stats.computed,
        stats.skipped, len(stats.failed),
        ", ".join(f"{count} {kind}" for kind, count in kinds.most_common()),
        error_field, error_field, extra={RUN_SUMMARY_LOG_KEY: True})
