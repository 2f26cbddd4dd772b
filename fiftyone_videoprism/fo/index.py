"""Similarity indexes over an embeddings field: one build-and-replace policy for the CLI, the
operators and Python users, on any FiftyOne brain backend.

:func:`build_index` never leaves a dataset without a working index. It builds the new index
beside the old one under a temporary brain key, checks it the way the App will use it (a fresh
load of the stored run, whose zoo model is loaded from the stored load kwargs and embeds a text
query), and only then swaps it in under the real key. A failure deletes the new index and
leaves the previous one as it was.

Backend parameters that FiftyOne does not store with the run (the ones its
``load_credentials`` takes, such as LanceDB's ``uri`` or pgvector's ``connection_string``) are
written to the FiftyOne brain config file, so that a new process and the App server reach the
same backend with no extra step.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Parameters chosen where FiftyOne's defaults lose recall or time, as measured with
# bench/backends.py (README, "Similarity indexes"). pgvector's HNSW search list defaults to the
# server's 40, which on 100,000 random unit vectors found 4% of the true top 10 of random
# queries and 73% of near duplicates; 1000 (pgvector's largest) found 47% and all of them, at
# 177 ms a query against 28. Recall comes first: the largest. Parameters the caller gives win.
_SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {"pgvector": {"hnsw_ef_search": 1000}}
# pgvector builds its HNSW graph fast only while the graph fits in maintenance_work_mem (64 MB
# by default, about 18,000 768-d vectors); past that it goes on much slower. The grant is sized
# to the graph, capped so that a million-video build asks a shared server for at most 8 GB.
_PG_BUILD_MEMORY_MB = (64, 8192)
# The text query that checks a new prompt-capable index end to end.
_CHECK_QUERY = "a video."


class IndexBuildError(ValueError):
    """The new index failed to build or failed its check; the previous index is unchanged."""


def parse_backend_params(items: Iterable[str] | None) -> dict[str, Any]:
    """``["uri=/data/lancedb", "metric=cosine", "ef_search=200"]`` as a dict; values are read
    as JSON when they parse (numbers, booleans), else kept as strings.

    Raises:
        ValueError: an item without ``=``
    """
    params: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"backend parameter {item!r} is not NAME=VALUE, e.g. uri=/data/lancedb")
        try:
            params[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[name.strip()] = value
    return params


def build_index(samples, model: str, model_kwargs: Mapping[str, Any] | None,
                embeddings: str | np.ndarray, brain_key: str, *, backend: str | None = None,
                backend_params: Mapping[str, Any] | None = None):
    """Builds the similarity index ``brain_key`` of ``samples`` over ``embeddings`` (an
    embeddings field, or one vector per sample of ``samples`` in order, as moments index their
    windows' clips) and replaces any index of that key only once the new one works; returns
    the new index.

    ``model`` is a zoo name and ``model_kwargs`` its load kwargs: the index stores both (paths
    absolute), and every process that answers a text query reloads the model from them.
    ``backend`` is any FiftyOne brain similarity backend (default: the brain config's), and
    ``backend_params`` its parameters.

    Raises:
        IndexBuildError: the new index could not be built or failed its check (the message
            names the cause); the previous index, if any, is unchanged
        ValueError: an unknown backend, or connection parameters that contradict the
            environment or brain config
    """
    import fiftyone.brain as fob

    from fiftyone_videoprism.fo import loading

    dataset = samples._root_dataset
    backend = backend or fob.brain_config.default_similarity_backend
    if isinstance(embeddings, str):
        stored = samples.exists(embeddings)
        count = stored.count()
        dim = len(stored.first()[embeddings]) if count else 0
    else:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        count, dim = embeddings.shape
    params = {**backend_defaults(backend, count, dim), **(backend_params or {})}
    _configure_connection(backend, params)
    kwargs = loading.model_kwargs(**(model_kwargs or {}))
    pending = _free_key(f"{brain_key}_pending")
    try:
        fob.compute_similarity(samples, model=model, model_kwargs=kwargs,
                               embeddings=embeddings, brain_key=pending,
                               backend=backend, **params)
        _check(dataset, pending, count)
    except Exception as err:
        if dataset.has_brain_run(pending):
            delete_index(dataset, pending)
        kept = (f"the previous index '{brain_key}' is unchanged" if dataset.has_brain_run(brain_key)
                else "no index was stored")
        raise IndexBuildError(f"index '{brain_key}' was not replaced ({kept}): {err}") from err
    _swap(dataset, pending, brain_key)
    return dataset.load_brain_results(brain_key)


def backend_defaults(backend: str, count: int, dim: int = 768) -> dict[str, Any]:
    """The parameters :func:`build_index` gives ``backend`` for ``count`` vectors of ``dim``
    where FiftyOne's defaults lose recall or time (the caller's parameters win)."""
    params = dict(_SEARCH_DEFAULTS.get(backend, {}))
    if backend == "pgvector":
        # Per row: the vector, 2 x m neighbour links of 8 bytes (m = 16), a tuple header; with
        # half again as margin for pgvector's own bookkeeping.
        mb = math.ceil(1.5 * count * (4 * dim + 2 * 16 * 8 + 64) / 2**20)
        low, high = _PG_BUILD_MEMORY_MB
        params["maintenance_work_mem"] = f"{min(max(mb, low), high)}MB"
    return params


def require_index(dataset, brain_key: str) -> None:
    """Raises a ValueError that lists the dataset's similarity indexes when ``brain_key`` is
    not one of them."""
    import fiftyone.brain as fob

    if dataset.has_brain_run(brain_key):
        return
    keys = dataset.list_brain_runs(type=fob.Similarity)
    raise ValueError(f"dataset {dataset.name!r} has no similarity index {brain_key!r}; its indexes: "
                     f"{', '.join(keys) or '(none: build one with fiftyone-videoprism embed)'}")


def _check(dataset, key: str, expected: int) -> None:
    """Loads the index ``key`` afresh, as another process would, and queries it."""
    results = dataset.load_brain_results(key, cache=False)
    if results.total_index_size != expected:
        raise RuntimeError(f"the new index holds {results.total_index_size} vectors, "
                           f"but {expected} samples have embeddings")
    if not expected:
        return
    if results.config.supports_prompts:
        query = _CHECK_QUERY  # loads the zoo model from the stored kwargs, tokenizer included
    else:
        query = results.sample_ids[0]
    results.sort_by_similarity(query, k=1)


def _swap(dataset, pending: str, brain_key: str) -> None:
    """Renames ``pending`` to ``brain_key``; the old index moves aside first and is deleted
    (with its backend storage) only once the new one holds the key."""
    if not dataset.has_brain_run(brain_key):
        dataset.rename_brain_run(pending, brain_key)
        return
    old = _free_key(f"{brain_key}_replaced")
    dataset.rename_brain_run(brain_key, old)
    try:
        dataset.rename_brain_run(pending, brain_key)
    except Exception:
        dataset.rename_brain_run(old, brain_key)
        raise
    delete_index(dataset, old)


def delete_index(dataset, key: str) -> None:
    """Deletes the index ``key`` with its backend storage (a LanceDB table, a pgvector table),
    which ``delete_brain_run`` alone leaves behind."""
    try:
        dataset.load_brain_results(key).cleanup()
    except Exception as err:  # an index that cannot even load has no storage to reach
        logger.warning("Could not remove the backend storage of index '%s': %s", key, err)
    dataset.delete_brain_run(key)


def _free_key(prefix: str) -> str:
    # Random, so two runs building the same key at once never collide.
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _configure_connection(backend: str, params: dict[str, Any]) -> None:
    """Moves the connection parameters out of ``params`` into the brain config (this process's
    and the file's), since FiftyOne does not store them with the run."""
    import fiftyone.brain as fob
    import fiftyone.brain.config as fbc

    backends = fob.brain_config.similarity_backends
    if backend not in backends:
        raise ValueError(f"unknown similarity backend {backend!r}; FiftyOne has: "
                         f"{', '.join(sorted(backends))}")
    config_cls = backends[backend]["config_cls"]
    if isinstance(config_cls, str):
        import eta.core.utils as etau

        config_cls = etau.get_class(config_cls)
    names = [n for n in inspect.signature(config_cls.load_credentials).parameters if n != "self"]
    wanted = {n: params.pop(n) for n in names if n in params}
    current = backends[backend]
    changed = {n: v for n, v in wanted.items() if current.get(n) != v}
    if not changed:
        return
    path = fbc.locate_brain_config()
    data = json.loads(open(path, encoding="utf-8").read()) if os.path.isfile(path) else {}
    stored = data.setdefault("similarity_backends", {}).setdefault(backend, {})
    for name, value in changed.items():
        env = f"FIFTYONE_BRAIN_SIMILARITY_{backend.upper()}_{name.upper()}"
        if env in os.environ:
            raise ValueError(f"{backend} {name}={value!r} contradicts the environment variable "
                             f"{env}={os.environ[env]!r}, which every process reads instead; "
                             "unset it or pass the same value")
        if stored.get(name) is not None:
            raise ValueError(f"{backend} {name}={value!r} contradicts the brain config {path}, "
                             f"which sets {stored[name]!r} for the indexes already built there; "
                             "pass the same value, or edit that file")
        stored[name] = value
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as sink:
        json.dump(data, sink, indent=4)
    os.replace(tmp, path)
    current.update(changed)
