"""Moments: *when* something happens in long videos, found by text or tagged zero-shot.

:func:`compute_moments` lays overlapping windows over every video
(:mod:`fiftyone_videoprism.core.windows`: 16 frames per 8 s, a window every 4 s by default;
each frame's spatial work is shared by the windows that contain it) and stores:

- on each video sample, ``windows_field``: a ``TemporalDetections`` of its windows, label
  ``"window"``, ``support`` the window's [first, last] frames, ``index`` its position. Small:
  about 120 bytes a window, so a 6-hour video (5,400 windows) stays far below MongoDB's 16 MB
  document cap;
- each window's (D,) embedding, one small document per window, in a companion dataset
  (:func:`window_store`, named ``"<dataset>.<windows_field>"``, persistent when the dataset
  is). Embeddings cannot live in the video's document: 5,400 x 768 float32 is 16.6 MB. One
  document per window scales to any video length, is written as soon as its video is done
  (so a killed run keeps every finished video) and is read back by video in one query;
- a similarity index (``brain_key``, default ``windows_field``) over the clips view
  ``dataset.to_clips(windows_field)``, whose clip IDs are the windows' label IDs. It records
  the model by zoo name and load kwargs, so the App's search box on that clips view embeds
  text queries with the same model, in the App server's own process. It is rebuilt from the
  companion dataset at the end of each run.

The dataset's ``info["videoprism_moments"][windows_field]`` records the store, the index and
the model and grid the windows were made with, so a new process (or the App) finds them.

:func:`find_moments` ranks the windows against a text query and returns the best moments as
a clips view; :func:`tag_moments` segments each video by its windows' zero-shot classes.
Runs take the options of :mod:`fiftyone_videoprism.fo.runs`: progress, ``skip_failures`` with
``<field>_error``, ``skip_existing`` to resume, and the embeddings cache (one entry a window).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import fiftyone as fo
import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.core.media as fomm
import fiftyone.core.utils as fou
import numpy as np
from fiftyone import ViewField as F

from fiftyone_videoprism.core import windows
from fiftyone_videoprism.core.cache import EmbeddingsCache
from fiftyone_videoprism.fo import index, maps, runs
from fiftyone_videoprism.fo.defaults import (DEFAULT_MOMENT_LABELS_FIELD, DEFAULT_MOMENTS_FIELD,
                                             DEFAULT_WINDOWS_FIELD)
from fiftyone_videoprism.fo.model import VideoPrismModel
from fiftyone_videoprism.fo.zoo import register_zoo

logger = logging.getLogger(__name__)

INFO_KEY = "videoprism_moments"
WINDOW_LABEL = "window"
# Part of every window's cache key: bump when what a window embeds changes.
_WINDOWS_FORMAT = "fiftyone-videoprism-windows/1"
_GRID_KEYS = ("window_seconds", "stride_seconds", "window_frames", "stride_frames")


def compute_moments(
    samples,
    model: VideoPrismModel,
    windows_field: str = DEFAULT_WINDOWS_FIELD,
    *,
    window_seconds: float | None = None,
    stride_seconds: float | None = None,
    window_frames: int | None = None,
    stride_frames: int | None = None,
    brain_key: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    backend: str | None = None,
    backend_params: dict[str, Any] | None = None,
    skip_existing: bool = False,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    error_field: str | None = None,
    cache: runs.CacheArg = True,
) -> runs.RunStats:
    """Embeds overlapping windows of every video and indexes them for text search:
    :func:`prepare_moments`, :func:`embed_windows`, then :func:`index_moments`. Sharded
    over many workers, the middle step runs on each (:func:`fiftyone_videoprism.fo.shards.
    moments_on_workers`).

    Args:
        samples: a video dataset or view
        model: a :class:`~fiftyone_videoprism.fo.model.VideoPrismModel` (LvT for text search);
            each window has ``model.num_frames`` frames
        windows_field ("videoprism_windows"): the ``TemporalDetections`` field of windows
        window_seconds, stride_seconds (8.0, 4.0): window span and the time between window
            starts; the stride must be a whole number of grid steps
            ``window_seconds / num_frames``
        window_frames, stride_frames (None): the same in video frames, instead of seconds
        brain_key (None): key of the similarity index; default ``windows_field``
        model_kwargs (None): load kwargs the index records for the App server; default
            :meth:`~fiftyone_videoprism.fo.model.VideoPrismModel.zoo_kwargs`
        backend (None): similarity backend (default the brain config's), as in
            :func:`fiftyone_videoprism.fo.index.build_index`
        backend_params (None): its parameters
        skip_existing (False): leave videos that already have windows (and no error) as they
            are (resumes an interrupted run)
        skip_failures (True): record a failing video's error and go on, instead of raising
        progress (None): FiftyOne's progress argument
        error_field (None): string field for a failed video's error; default
            ``<windows_field>_error``. A video that fails part way keeps the windows
            finished before the failure
        cache (True): as in :func:`fiftyone_videoprism.fo.runs.compute_embeddings`, one entry
            per window

    Returns:
        a :class:`~fiftyone_videoprism.fo.runs.RunStats` counting videos
    """
    pending = prepare_moments(samples, model, windows_field, window_seconds=window_seconds,
                              stride_seconds=stride_seconds, window_frames=window_frames,
                              stride_frames=stride_frames, brain_key=brain_key,
                              model_kwargs=model_kwargs, skip_existing=skip_existing,
                              error_field=error_field)
    skipped = len(samples) - len(pending)  # now: the view changes as videos get windows
    stats = embed_windows(pending, model, windows_field, skip_failures=skip_failures,
                          progress=progress, error_field=error_field, cache=cache)
    stats = dataclasses.replace(stats, skipped=skipped)
    index_moments(samples._root_dataset, windows_field, backend=backend,
                  backend_params=backend_params)
    runs.log_summary("compute_moments", stats, stats.error_field)
    return stats


def prepare_moments(
    samples,
    model: VideoPrismModel,
    windows_field: str = DEFAULT_WINDOWS_FIELD,
    *,
    window_seconds: float | None = None,
    stride_seconds: float | None = None,
    window_frames: int | None = None,
    stride_frames: int | None = None,
    brain_key: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    skip_existing: bool = False,
    error_field: str | None = None,
):
    """Checks a moments run and declares what it writes before any window is computed: the
    windows and error fields, the window store, and the dataset's record of the model and
    grid (which :func:`embed_windows` reads, in this process or on a worker). Returns the
    videos of ``samples`` to compute. Arguments as in :func:`compute_moments`.

    Raises:
        ValueError: a bad grid or field name, or videos outside the run that hold windows of
            another model or grid
    """
    error_field = error_field or f"{windows_field}_error"
    runs.check_fields(windows_field, error_field)
    grid = {key: value for key, value in zip(
        _GRID_KEYS, (window_seconds, stride_seconds, window_frames, stride_frames), strict=True)
        if value is not None}
    windows.plan_windows(np.zeros(1), model.num_frames, **grid)  # bad grid: fail before work
    dataset = samples._root_dataset
    settings = {"embedding_key": model.embedding_key, "grid": grid}
    record = _records(dataset).get(windows_field)
    pending = _pending(samples, windows_field, error_field) if skip_existing else samples
    if record is not None and record["settings"] != settings:
        kept = dataset.exists(windows_field).exclude(pending.values("id"))
        if len(kept):
            raise ValueError(
                f"{len(kept)} videos hold windows in '{windows_field}' made with another model "
                "or grid; recompute all of them (skip_existing=False over the whole dataset) "
                "or use another windows_field")
        # Cleared before the new record: a kill part way leaves videos to redo, never windows
        # of two settings under one record.
        pending.clear_sample_field(windows_field)
    store = window_store(dataset, windows_field, create=True)
    for field, kind in ((windows_field, fof.EmbeddedDocumentField), (error_field, fof.StringField)):
        if not dataset.has_field(field):
            extra = {"embedded_doc_type": fol.TemporalDetections} if field == windows_field else {}
            dataset.add_sample_field(field, kind, **extra)
    kwargs = model.zoo_kwargs() if model_kwargs is None else model_kwargs
    _set_record(dataset, windows_field, {
        "store": store.name, "brain_key": brain_key or windows_field, "settings": settings,
        "error_field": error_field, "model": model.config.model_name, "model_kwargs": kwargs})
    return pending


def embed_windows(
    samples,
    model: VideoPrismModel,
    windows_field: str = DEFAULT_WINDOWS_FIELD,
    *,
    skip_existing: bool = False,
    skip_failures: bool = True,
    progress: bool | Callable | None = None,
    error_field: str | None = None,
    cache: runs.CacheArg = True,
) -> runs.RunStats:
    """Embeds the windows of each video of ``samples`` on the grid that
    :func:`prepare_moments` recorded, saving each video as it finishes; builds no index.
    Videos are disjoint between concurrent callers (shards), so they never write the same
    documents.

    Raises:
        ValueError: no record (run :func:`prepare_moments` first), or ``model`` is not the
            recorded one
    """
    dataset = samples._root_dataset
    record = _record(dataset, windows_field)
    if record["settings"]["embedding_key"] != model.embedding_key:
        raise ValueError(f"'{windows_field}' records windows of {record['model']}, not of "
                         f"this {model.config.model_name} model; prepare_moments first")
    grid = record["settings"]["grid"]
    error_field = error_field or record.get("error_field") or f"{windows_field}_error"
    pending, skipped = samples, 0
    if skip_existing:
        pending = _pending(samples, windows_field, error_field)
        skipped = len(samples) - len(pending)
    store = window_store(dataset, windows_field)
    cache = runs.open_cache(cache)
    ids, paths = pending.values(["id", "filepath"])
    written, computed, errors = 0, 0, {}
    with fou.ProgressBar(total=len(ids), progress=progress) as pb:
        for sample_id, path in zip(ids, paths, strict=True):
            result = _embed_video(model, path, grid, cache)
            _save(dataset, store, windows_field, error_field, sample_id, path, result)
            computed += result.computed > 0
            if result.error is None:
                written += 1
            elif not skip_failures:
                raise result.error
            else:
                errors[sample_id] = runs.describe_error(result.error, path)
            pb.update()
    return runs.RunStats(written, list(errors), computed=computed, skipped=skipped,
                         errors=errors, error_field=error_field)


def find_moments(
    samples,
    query: str,
    k: int = 10,
    *,
    threshold: float | None = None,
    windows_field: str = DEFAULT_WINDOWS_FIELD,
    moments_field: str = DEFAULT_MOMENTS_FIELD,
    model: VideoPrismModel | None = None,
):
    """The ``k`` moments of ``samples`` that best match a text query, as a clips view.

    Each window's score is the cosine similarity of its embedding with the query's. With
    ``threshold`` None every window is a moment. Otherwise windows scoring at least
    ``threshold`` that follow one another in a video merge into one moment spanning them,
    scored by its best window (temporal non-maximum suppression: one event gives one moment,
    not k near-copies), and windows below it are no moments.

    The moments are written (replacing the previous search's) to ``moments_field``, a
    ``TemporalDetections`` with the query as label and the score as ``confidence``; the result
    is ``samples.to_clips(moments_field)``, best first.

    Args:
        samples: a video dataset or view with windows from :func:`compute_moments`
        query: the text
        k (10): moments to return
        threshold (None): score from which adjacent windows merge into one moment
        windows_field ("videoprism_windows"): the windows to search
        moments_field ("videoprism_moments"): where the moments are written
        model (None): the LvT model for the query; default the index's (by zoo name)
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be non-empty text, got {query!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dataset = samples._root_dataset
    record = _record(dataset, windows_field)
    if model is None:
        model = dataset.load_brain_results(record["brain_key"]).get_model()
    text = model.embed_prompt(query)
    # Scored from the window store, not the index: exact on any backend, and only the windows
    # of ``samples`` are read.
    store = window_store(dataset, windows_field)
    window_ids, vectors = store.match(F("video_id").is_in(samples.values("id"))).values(
        ["window_id", "embedding"])
    score_of = dict(zip(window_ids, np.stack(vectors) @ text if vectors else [], strict=True))

    candidates: list[tuple[float, str, tuple[int, int]]] = []
    ids, detections = samples.exists(windows_field).values(
        ["id", f"{windows_field}.detections"])
    for sample_id, dets in zip(ids, detections, strict=True):
        rows = [(tuple(d.support), float(score_of[d.id])) for d in dets]
        candidates.extend((score, sample_id, support)
                          for support, score in merge_windows(rows, threshold))
    candidates.sort(key=lambda c: -c[0])
    best: dict[str, list[fol.TemporalDetection]] = {}
    for score, sample_id, support in candidates[:k]:
        best.setdefault(sample_id, []).append(
            fol.TemporalDetection(label=query, support=list(support), confidence=score))
    if not dataset.has_field(moments_field):
        dataset.add_sample_field(moments_field, fof.EmbeddedDocumentField,
                                 embedded_doc_type=fol.TemporalDetections)
    samples.set_values(moments_field, {
        sample_id: fol.TemporalDetections(detections=best[sample_id]) if sample_id in best
        else None for sample_id in samples.values("id")}, key_field="id")
    return samples.to_clips(moments_field).sort_by(F(f"{moments_field}.confidence"),
                                                    reverse=True)


def merge_windows(rows: list[tuple[tuple[int, int], float]],
                  threshold: float | None) -> list[tuple[tuple[int, int], float]]:
    """One video's windows as (support, score) in window order -> its moments: every window
    when ``threshold`` is None, else the runs of consecutive windows scoring at least
    ``threshold``, each spanning its windows with its best score."""
    if threshold is None:
        return list(rows)
    moments: list[tuple[tuple[int, int], float]] = []
    run: tuple[tuple[int, int], float] | None = None
    for support, score in rows:
        if score < threshold:
            if run is not None:
                moments.append(run)
            run = None
        elif run is None:
            run = (support, score)
        else:
            run = ((run[0][0], max(run[0][1], support[1])), max(run[1], score))
    if run is not None:
        moments.append(run)
    return moments


def tag_moments(
    samples,
    model: VideoPrismModel,
    classes: list[str] | None = None,
    label_field: str = DEFAULT_MOMENT_LABELS_FIELD,
    *,
    threshold: float = 0.0,
    prompt_templates: list[str] | None = None,
    windows_field: str = DEFAULT_WINDOWS_FIELD,
    **run_options: Any,
) -> runs.RunStats:
    """Zero-shot temporal localisation: labelled segments of every video.

    Each window gets its most probable class over ``classes`` (as
    :meth:`~fiftyone_videoprism.fo.model.VideoPrismModel.classify` gives it); consecutive
    windows with the same class and a probability of at least ``threshold`` become one
    ``TemporalDetection`` spanning their supports, with their mean probability as
    ``confidence``. Videos without windows get them first (:func:`compute_moments` with
    ``run_options``, e.g. ``window_seconds``, ``cache``, ``progress``).

    Args:
        samples: a video dataset or view
        model: an LvT :class:`~fiftyone_videoprism.fo.model.VideoPrismModel`, the one that
            made the windows
        classes (None): class names; default ``model.config.classes``
        label_field ("videoprism_moment_labels"): the ``TemporalDetections`` field to write
        threshold (0.0): probability a window needs to be part of a segment
        prompt_templates (None): templates (default ``model.config.prompt_templates``)
        windows_field ("videoprism_windows"): the windows to classify
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a probability in [0, 1], got {threshold}")
    with model.run_settings(classes=classes, prompt_templates=prompt_templates):
        model.classify(np.zeros((0, model.embedding_dim), np.float32))  # bad classes fail now
        dataset = samples._root_dataset
        record = _records(dataset).get(windows_field)
        if record is not None and not set(_GRID_KEYS) & set(run_options):
            run_options = {**run_options, **record["settings"]["grid"]}
        stats = runs.RunStats(0, [])
        if record is None or len(_pending(samples, windows_field, run_options.get(
                "error_field") or f"{windows_field}_error")):
            stats = compute_moments(samples, model, windows_field, skip_existing=True,
                                    **run_options)
        record = _record(dataset, windows_field)
        if record["settings"]["embedding_key"] != model.embedding_key:
            raise ValueError(f"the windows in '{windows_field}' were made with another model; "
                             "tag with that model, or recompute the windows with this one")
        store = window_store(dataset, windows_field)
        labels: dict[str, fol.TemporalDetections] = {}
        ids, detections = samples.exists(windows_field).values(
            ["id", f"{windows_field}.detections"])
        for sample_id, dets in zip(ids, detections, strict=True):
            vectors = _window_vectors(store, sample_id)
            picks = model.classify(np.stack([vectors[d.id] for d in dets]))
            labels[sample_id] = fol.TemporalDetections(detections=[
                fol.TemporalDetection(label=label, support=list(support), confidence=conf)
                for label, support, conf in segment_windows(
                    [(tuple(d.support), p.label, p.confidence) for d, p in zip(dets, picks)],
                    threshold)])
    samples.set_values(label_field, labels, key_field="id")
    return dataclasses.replace(stats, written=len(labels))


def segment_windows(rows: list[tuple[tuple[int, int], str, float]],
                    threshold: float) -> list[tuple[str, tuple[int, int], float]]:
    """One video's windows as (support, top class, probability) in window order -> segments
    (class, support, mean probability) of consecutive windows with one class at or above
    ``threshold``."""
    segments: list[tuple[str, tuple[int, int], float]] = []
    run: list[tuple[tuple[int, int], str, float]] = []

    def close() -> None:
        if run:
            support = (run[0][0][0], max(r[0][1] for r in run))
            segments.append((run[0][1], support, float(np.mean([r[2] for r in run]))))
        run.clear()

    for row in rows:
        if row[2] < threshold:
            close()
            continue
        if run and run[-1][1] != row[1]:
            close()
        run.append(row)
    close()
    return segments


def window_store(dataset, windows_field: str = DEFAULT_WINDOWS_FIELD, *,
                 create: bool = False) -> fo.Dataset:
    """The companion dataset holding one document per window of ``windows_field``:
    ``video_id``, ``window_id`` (the window's label ID, i.e. its clip ID), ``index`` and
    ``embedding``.

    Raises:
        ValueError: there is none and ``create`` is False
    """
    record = _records(dataset).get(windows_field)
    name = record["store"] if record else f"{dataset.name}.{windows_field}"
    if fo.dataset_exists(name):
        return fo.load_dataset(name)
    if not create:
        raise ValueError(f"dataset {dataset.name!r} has no windows in '{windows_field}'; "
                         "run compute_moments first")
    store = fo.Dataset(name, persistent=dataset.persistent)
    # Set now, not by the first window added: workers that add their first windows at once
    # would both try to set it, and all but one fail.
    store.media_type = fomm.VIDEO
    store.add_sample_field("video_id", fof.StringField)
    store.add_sample_field("window_id", fof.StringField)
    store.add_sample_field("index", fof.IntField)
    store.add_sample_field("embedding", fof.VectorField)
    store.create_index("video_id")
    return store


# --------------------------------------------------------------------------------------------
# One video


@dataclasses.dataclass
class _VideoWindows:
    supports: list[tuple[int, int]]
    embeddings: list[np.ndarray | None]  # None: not computed (the video failed first)
    error: Exception | None = None
    computed: int = 0  # windows the model embedded (the others came from the cache)


def _embed_video(model: VideoPrismModel, path: str, grid: dict[str, Any],
                 cache: EmbeddingsCache | None) -> _VideoWindows:
    try:
        plan = windows.read_plan(path, model.num_frames, **grid)
    except Exception as err:  # the video fails alone
        return _VideoWindows([], [], err)
    result = _VideoWindows(plan.supports(), [None] * len(plan.starts))
    keys = _cache_keys(model, path, plan, cache)
    for w, key in enumerate(keys):
        result.embeddings[w] = cache.get(key)
    skip = frozenset(w for w, e in enumerate(result.embeddings) if e is not None)
    try:
        for window in windows.iter_file_windows(model.mlx_model, path, plan, model.image_size,
                                                resize=model.config.resize, skip=skip):
            result.embeddings[window.index] = window.embedding
            result.computed += 1
            if keys:
                try:
                    cache.put(keys[window.index], window.embedding)
                except OSError as err:
                    logger.warning("Not caching the windows of %s: %s", path, err)
                    keys = []
    except Exception as err:  # keeps the windows finished before it
        result.error = err
    return result


def _cache_keys(model: VideoPrismModel, path: str, plan: windows.WindowPlan,
                cache: EmbeddingsCache | None) -> list[str]:
    """One key per window: the file's content, the model, and the frames the window sees."""
    if cache is None:
        return []
    try:
        digest = cache.known_digest(path) or cache.digest(path)
    except OSError:
        return []
    model_key = hashlib.sha256(f"{_WINDOWS_FORMAT}:{model.embedding_key}".encode()).hexdigest()
    return [cache.key(model_key, digest, tuple(int(i) for i in plan.window_frames(w)))
            for w in range(len(plan.starts))]


def _save(dataset, store: fo.Dataset, windows_field: str, error_field: str, sample_id: str,
          path: str, result: _VideoWindows) -> None:
    """Stores a video's finished windows: embeddings first, then the windows field, so that a
    kill in between leaves the video to be redone (its rows are replaced then)."""
    store.delete_samples(store.match(F("video_id") == sample_id))
    done = [w for w, e in enumerate(result.embeddings) if e is not None]
    labels = [fol.TemporalDetection(label=WINDOW_LABEL, support=list(result.supports[w]),
                                    index=w) for w in done]
    if labels:
        store.add_samples([
            fo.Sample(filepath=path, video_id=sample_id, window_id=label.id, index=w,
                      embedding=result.embeddings[w]) for w, label in zip(done, labels)])
    sample = dataset[sample_id]
    if result.error is None and sample.has_field(error_field):
        sample[error_field] = None
    sample[windows_field] = fol.TemporalDetections(detections=labels) if labels else None
    if result.error is not None:
        sample[error_field] = runs.describe_error(result.error, path)
    sample.save()


# --------------------------------------------------------------------------------------------
# Records and the index


def _pending(samples, windows_field: str, error_field: str):
    """The videos without windows, or whose last run failed."""
    if not samples.has_field(windows_field):
        return samples
    return samples.match((F(windows_field) == None) | (F(error_field) != None))  # noqa: E711


def _records(dataset) -> dict[str, Any]:
    return dataset.info.get(INFO_KEY, {})


def _record(dataset, windows_field: str) -> dict[str, Any]:
    record = _records(dataset).get(windows_field)
    if record is None:
        raise ValueError(f"dataset {dataset.name!r} has no moments in '{windows_field}'; run "
                         "compute_moments (or 'fiftyone-videoprism moments') first")
    return record


def _set_record(dataset, windows_field: str, record: dict[str, Any]) -> None:
    # Round-tripped through JSON: info must hold plain values (tuples become lists).
    dataset.info[INFO_KEY] = {**_records(dataset),
                              windows_field: json.loads(json.dumps(record))}
    dataset.save()


def _window_vectors(store: fo.Dataset, sample_id: str) -> dict[str, np.ndarray]:
    ids, vectors = store.match(F("video_id") == sample_id).values(["window_id", "embedding"])
    return dict(zip(ids, vectors, strict=True))


def index_moments(dataset, windows_field: str = DEFAULT_WINDOWS_FIELD, *,
                  backend: str | None = None, backend_params: dict[str, Any] | None = None):
    """(Re)builds the similarity index over the clips view ``dataset.to_clips(windows_field)``
    from the window store, through :func:`fiftyone_videoprism.fo.index.build_index` (the old
    index keeps answering until the new one works), with the model the record names; drops
    store rows whose window is gone, and lays the windows out for the Embeddings panel.
    Returns the index, or None when no video has windows.

    Raises:
        ValueError: no moments record for ``windows_field``
        RuntimeError: windows without a stored embedding
        IndexBuildError: the new index failed (the previous one is unchanged)
    """
    record = _record(dataset, windows_field)
    store = window_store(dataset, windows_field)
    clips = dataset.to_clips(windows_field)
    clip_ids = clips.values("id")
    store.delete_samples(store.match(~F("window_id").is_in(clip_ids)))
    vector_of = dict(zip(*store.values(["window_id", "embedding"]), strict=True))
    missing = [i for i in clip_ids if i not in vector_of]
    if missing:
        raise RuntimeError(f"{len(missing)} windows of '{windows_field}' have no stored "
                           f"embedding (e.g. {missing[0]}); recompute them")
    if not clip_ids:
        if dataset.has_brain_run(record["brain_key"]):
            index.delete_index(dataset, record["brain_key"])
        return None
    register_zoo()  # the index loads the model by zoo name, here and in the App server
    vectors = np.stack([vector_of[i] for i in clip_ids])
    results = index.build_index(clips, record["model"], record["model_kwargs"], vectors,
                                record["brain_key"], backend=backend,
                                backend_params=backend_params)
    # The windows in the App's Embeddings panel, on the same clips view.
    maps.map_vectors(clips, vectors, maps.map_brain_key(windows_field))
    return results
