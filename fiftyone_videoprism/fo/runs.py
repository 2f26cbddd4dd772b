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
- With ``cache``, each embedding is also stored on disk as soon as the model returns it, keyed
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
import fiftyone.core.utils as fou
import numpy as np

from fiftyone_videoprism.core import video
from fiftyone_videoprism.core.cache import EmbeddingsCache
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
    cache: CacheArg = None,
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
        cache (None): an :class:`~fiftyone_videoprism.core.cache.EmbeddingsCache`, a folder for
            one, or True for the default folder; None uses no cache
    """
    error_field = error_field or default_error_field(embeddings_field)
    _check_fields(embeddings_field, error_field)
    pending, skipped = samples, 0
    if skip_existing and samples.has_field(embeddings_field):
        pending = samples.exists(embeddings_field, False)
        skipped = len(samples) - len(pending)  # counted now: the view shrinks as samples are done

    def write(ids: list[str], embeddings: np.ndarray) -> None:
        # Through the unfiltered collection: a written sample leaves the pending view.
        samples.set_values(embeddings_field, dict(zip(ids, embeddings, strict=True)),
                           key_field="id")

    stats = _run(pending, model, _Writes(samples, write, [embeddings_field], error_field),
                 _open_cache(cache), skip_failures, progress)
    stats = dataclasses.replace(stats, skipped=skipped, error_field=error_field)
    _summarise("compute_embeddings", stats, error_field)
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
    cache: CacheArg = None,
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
        cache (None): as in :func:`compute_embeddings`
    """
    # A video-only model, bad classes or a bad top_k fail here, before anything is decoded.
    model.classify(np.zeros((0, model.embedding_dim), np.float32), top_k)
    error_field = error_field or default_error_field(label_field)
    _check_fields(label_field, error_field)
    if embeddings_field is not None:
        _check_fields(embeddings_field, error_field)

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
        stored = _Writes(samples, write_labels, [label_field], error_field)
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

    stats = _run(pending, model, _Writes(samples, write, [label_field], error_field),
                 _open_cache(cache), skip_failures, progress)
    stats = dataclasses.replace(stats, written=stats.written + reused, error_field=error_field)
    _summarise("apply_zero_shot", stats, error_field)
    return stats


# --------------------------------------------------------------------------------------------
# The run


class _Writes:
    """Results and failures waiting to be saved, and the counts of what was saved."""

    def __init__(self, samples, write: Callable[[list[str], np.ndarray], None],
                 result_fields: list[str], error_field: str) -> None:
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
            if samples.has_field(error_field):
                samples.set_values(error_field, dict.fromkeys(self._ids), key_field="id")
            self._write(self._ids, np.stack(self._vectors))
            self.written += len(self._ids)
        if self._failures:
            for field in self._result_fields:
                if samples.has_field(field):
                    samples.set_values(field, dict.fromkeys(self._failures), key_field="id")
            samples.set_values(error_field, self._failures, key_field="id")
            self.errors.update(self._failures)
        self._ids, self._vectors, self._failures = [], [], {}


def _run(samples, model: VideoPrismModel, writes: _Writes, cache: EmbeddingsCache | None,
         skip_failures: bool, progress: Any) -> RunStats:
    """Takes embeddings from the cache or decodes (prefetching) and embeds full batches; saves
    each model batch as soon as it is computed."""
    ids, paths = samples.values(["id", "filepath"])
    if not ids:
        return RunStats(0, [])
    # A clips view's samples carry their [first, last] frame support.
    if isinstance(samples.get_field("support"), fof.FrameSupportField):
        supports = [tuple(s) for s in samples.values("support")]
    else:
        supports = [None] * len(ids)
    path_of = dict(zip(ids, paths, strict=True))
    model_key = model.embedding_key if cache is not None else None
    batch_size = model.config.batch_size
    computed = 0
    keys: dict[str, str] = {}  # sample ID -> cache key, filled by the decode thread

    def hashed(items: list[_Item]) -> Iterator[_Item]:
        for sample_id, path, support in items:
            if cache is not None:
                try:
                    keys[sample_id] = cache.key(model_key, cache.digest(path), support)
                except OSError:
                    pass  # the decoder reports the missing or unreadable file with its cause
            yield sample_id, path, support

    batch_ids: list[str] = []
    batch_frames: list[np.ndarray] = []

    def fail(sample_ids: list[str], err: Exception) -> None:
        if not skip_failures:
            writes.flush()  # keep what was saved up before raising
            raise err
        for sample_id in sample_ids:
            writes.fail(sample_id, _describe(err, path_of[sample_id]))
        pb.update(len(sample_ids))

    def embed_batch() -> None:
        nonlocal computed, cache
        try:
            embeddings = model.embed_frames(np.stack(batch_frames))
        except Exception as err:  # FiftyOne's convention: a failed batch fails its samples
            fail(batch_ids, err)
        else:
            computed += len(batch_ids)
            for sample_id, vector in zip(batch_ids, embeddings, strict=True):
                if cache is not None and sample_id in keys:
                    try:
                        cache.put(keys[sample_id], vector)
                    except OSError as err:
                        logger.warning("Embeddings cache disabled for this run: cannot write "
                                       "to %s (%s)", cache.folder, err)
                        cache = None
                writes.done(sample_id, vector)
            pb.update(len(batch_ids))
        writes.flush()
        batch_ids.clear()
        batch_frames.clear()

    with contextlib.ExitStack() as stack:
        pb = stack.enter_context(fou.ProgressBar(total=len(ids), progress=progress))
        # Cache hits found by stat alone need no video read; the other files are hashed in the
        # decode thread, where that full read overlaps the model's work.
        misses: list[_Item] = []
        for sample_id, path, support in zip(ids, paths, supports, strict=True):
            digest = cache.known_digest(path) if cache is not None else None
            vector = cache.get(cache.key(model_key, digest, support)) if digest else None
            if vector is None:
                misses.append((sample_id, path, support))
                continue
            writes.done(sample_id, vector)
            pb.update()
            if len(writes) >= _WRITE_CHUNK:
                writes.flush()
        writes.flush()

        frames_iter = stack.enter_context(contextlib.closing(video.iter_frames(
            hashed(misses), model.num_frames, model.image_size, resize=model.config.resize,
            prefetch=batch_size)))
        for sample_id, frames in frames_iter:
            if isinstance(frames, Exception):
                if not skip_failures and batch_ids:
                    embed_batch()  # the videos decoded before this one are kept
                fail([sample_id], frames)
            else:
                # A file met under another path (or a clip cached by another run) may hit now.
                key = keys.get(sample_id)
                vector = cache.get(key) if cache is not None and key else None
                if vector is not None:
                    writes.done(sample_id, vector)
                    pb.update()
                else:
                    batch_ids.append(sample_id)
                    batch_frames.append(frames)
                    if len(batch_ids) == batch_size:
                        embed_batch()
            if len(writes) >= _WRITE_CHUNK:
                writes.flush()
        if batch_ids:
            embed_batch()
        writes.flush()
    return RunStats(writes.written, list(writes.errors), computed=computed,
                    errors=writes.errors)


# --------------------------------------------------------------------------------------------
# Helpers


def _open_cache(cache: CacheArg) -> EmbeddingsCache | None:
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


def _check_fields(result_field: str, error_field: str) -> None:
    for name, value in (("field", result_field), ("error_field", error_field)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty field name, got {value!r}")
    if result_field == error_field:
        raise ValueError(f"the error field must differ from the result field {result_field!r}")


def _describe(err: Exception, path: str) -> str:
    """``"<ExceptionType>: <file>: <cause>"``: every message names the file."""
    message = str(err).strip() or "(no message)"
    if path not in message:
        message = f"{path}: {message}"
    return f"{type(err).__name__}: {message}"


def _summarise(run: str, stats: RunStats, error_field: str) -> None:
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
        error_field, error_field)
