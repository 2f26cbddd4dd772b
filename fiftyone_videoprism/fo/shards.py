"""Embedding runs (sample embeddings, or the windows of moments) split into shards that many
workers run: FiftyOne delegated operations, picked up by any number of
``fiftyone delegated launch`` processes that share ``FIFTYONE_DATABASE_URI``. The CLI's
``--workers`` and the operators' *Workers* call :func:`embed_on_workers` or
:func:`moments_on_workers`, then build the index once.

The rules that make a sharded run correct, all here:

- The output fields are declared once, before any shard is queued: two workers creating a new
  field on the same documents can lose a schema entry.
- Shards are disjoint lists of sample IDs, and each is one delegated operation, which exactly one
  worker claims (FiftyOne moves it from queued to running atomically).
- A shard embeds only its samples whose field is still empty and saves each model batch (each
  video, for windows), so a shard queued again after a worker died does only what the dead
  worker had not saved.
- A running shard beats (its operation's progress is updated every ``heartbeat_s`` seconds).
  Open-source FiftyOne has no lease: a killed worker leaves its operation "running" forever. The
  waiting side (:func:`wait`) marks a shard whose last beat is older than ``timeout_s`` as
  failed and queues it again; a worker that finds its shard so marked stops at its next batch.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fiftyone_videoprism.fo.plugin import PLUGIN_NAME

SHARD_OPERATOR = f"{PLUGIN_NAME}/embed_shard"
# What a shard can run: a sample embedding per video, or the windows of moments.
JOBS = ("embeddings", "moments")
# Seconds without a beat after which a running shard counts as dead; beats come six times as
# often, so a busy machine's late beat is not mistaken for a death.
DEFAULT_TIMEOUT_S = 120.0


class ShardRevoked(RuntimeError):
    """This shard was declared dead and queued again elsewhere; this worker stops."""


@dataclasses.dataclass(frozen=True)
class ShardProgress:
    """Where a sharded run stands: shards per state, and samples with an embedding."""

    states: dict[str, int]
    done: int
    total: int
    requeued: int

    @property
    def progress(self) -> float:
        """The fraction of samples done (so that a FiftyOne progress callback takes it)."""
        return self.done / self.total if self.total else 1.0

    def __str__(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()))
        again = f", {self.requeued} re-queued" if self.requeued else ""
        return f"shards: {states}{again}; {self.done}/{self.total} videos embedded"


def prepare(samples, embeddings_field: str, model, *, recompute: bool = False) -> list[str]:
    """Declares the output fields before any worker writes (the embeddings field with
    ``model``'s provenance, so that workers find it theirs and leave the schema alone), clears
    it for a recompute; returns the IDs of the samples still lacking an embedding.

    Raises:
        ProvenanceError: the field holds another model's embeddings (and no ``recompute``)
    """
    import fiftyone.core.fields as fof

    from fiftyone_videoprism.fo import runs

    dataset = samples._dataset
    runs.prepare_embeddings_field(samples, embeddings_field, model, replace=recompute)
    error_field = runs.default_error_field(embeddings_field)
    if not dataset.has_field(error_field):
        dataset.add_sample_field(error_field, fof.StringField)
    if recompute:
        samples.clear_sample_field(embeddings_field)
    return samples.exists(embeddings_field, False).values("id")


def embed_on_workers(samples, model, model_name: str, model_kwargs: Mapping[str, Any],
                     embeddings_field: str, num_shards: int, *, recompute: bool = False,
                     timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 1.0,
                     report: Callable[[ShardProgress], None] | None = None) -> ShardProgress:
    """Embeds ``samples`` into ``embeddings_field`` on ``fiftyone delegated launch`` workers:
    declares the fields (:func:`prepare`), queues at most ``num_shards`` shards of the samples
    lacking an embedding and waits for them (:func:`wait`). ``model`` is the loaded zoo model
    ``model_name`` with ``model_kwargs``, which every worker loads again. The caller builds
    the index once this returns.

    Raises:
        ValueError: ``num_shards`` below 1
        RuntimeError: a shard failed on its own
    """
    ids = prepare(samples, embeddings_field, model, recompute=recompute)
    return _on_workers(samples, "embeddings", embeddings_field, ids, num_shards, model_name,
                       model_kwargs, timeout_s, poll_s, report)


def moments_on_workers(samples, model, model_name: str, model_kwargs: Mapping[str, Any],
                       windows_field: str, num_shards: int, *,
                       grid: Mapping[str, float] | None = None, recompute: bool = False,
                       backend: str | None = None,
                       backend_params: Mapping[str, Any] | None = None,
                       timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 1.0,
                       report: Callable[[ShardProgress], None] | None = None) -> ShardProgress:
    """:func:`~fiftyone_videoprism.fo.moments.compute_moments` with the windows embedded on
    workers: declares the windows field, its store and record
    (:func:`~fiftyone_videoprism.fo.moments.prepare_moments`), queues shards of the videos
    without windows, waits for them, then builds the index
    (:func:`~fiftyone_videoprism.fo.moments.index_moments`, on ``backend``)."""
    from fiftyone_videoprism.fo import loading, moments

    kwargs = loading.model_kwargs(**model_kwargs)
    pending = moments.prepare_moments(samples, model, windows_field, model_kwargs=kwargs,
                                      skip_existing=not recompute, **(grid or {}))
    if recompute:
        # Shards skip videos that have windows (so a re-queued shard redoes nothing): a
        # recompute clears them first.
        pending.clear_sample_field(windows_field)
    status = _on_workers(samples, "moments", windows_field, pending.values("id"), num_shards,
                         model_name, kwargs, timeout_s, poll_s, report)
    moments.index_moments(samples._root_dataset, windows_field, backend=backend,
                          backend_params=backend_params)
    return status


def _on_workers(samples, job: str, field: str, ids: list[str], num_shards: int,
                model_name: str, model_kwargs: Mapping[str, Any], timeout_s: float,
                poll_s: float,
                report: Callable[[ShardProgress], None] | None) -> ShardProgress:
    op_ids = queue(samples._dataset, job, field, ids, num_shards, model_name, model_kwargs,
                   timeout_s=timeout_s)
    return wait(samples, field, op_ids, timeout_s=timeout_s, poll_s=poll_s, report=report)


def queue(dataset, job: str, field: str, ids: list[str], num_shards: int, model_name: str,
          model_kwargs: Mapping[str, Any], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
    """Splits ``ids`` into at most ``num_shards`` shards and queues one delegated operation
    per shard, each running ``job`` (one of :data:`JOBS`) into ``field`` on its samples;
    returns their IDs. The fields must be declared already.

    Raises:
        ValueError: ``num_shards`` below 1, or an unknown job
    """
    import fiftyone.operators as foo

    from fiftyone_videoprism.fo import loading
    from fiftyone_videoprism.fo.plugin import install_plugin

    if num_shards < 1:
        raise ValueError(f"the number of workers must be at least 1, got {num_shards}")
    if job not in JOBS:
        raise ValueError(f"unknown sharded job {job!r}; one of {', '.join(JOBS)}")
    install_plugin()  # this process queues by operator URI, so it must know the plugin
    run = uuid.uuid4().hex[:8]
    chunks = [c.tolist() for c in np.array_split(np.array(ids, dtype=object), num_shards) if len(c)]
    op_ids = []
    for i, chunk in enumerate(chunks):
        queued = foo.execute_operator(SHARD_OPERATOR, dataset=dataset, request_delegation=True,
                                      params={"job": job, "field": field,
                                              "model": model_name,
                                              "model_kwargs": loading.model_kwargs(**model_kwargs),
                                              "sample_ids": chunk, "run": run, "shard": i,
                                              "num_shards": len(chunks),
                                              "heartbeat_s": timeout_s / 6})
        op_ids.append(str(queued.result["id"]))
    return op_ids


def execute_shard(ctx):
    """Runs the shard of the delegated operation ``ctx`` (queued by :func:`queue`) with
    heartbeats; returns its :class:`~fiftyone_videoprism.fo.runs.RunStats`. Only the shard's
    samples still lacking a result are computed, so a shard queued again redoes nothing."""
    from fiftyone_videoprism.fo import loading, moments, runs

    params = ctx.params
    model = loading.zoo_model(params["model"], params["model_kwargs"])
    target = ctx.dataset.select(params["sample_ids"])
    field = params["field"]
    if params["job"] == "moments":
        def work(progress):
            return moments.embed_windows(target, model, field, skip_existing=True,
                                         progress=progress)
    else:
        def work(progress):
            return runs.compute_embeddings(target, model, field, skip_existing=True,
                                           cache=True, progress=progress)
    label = f"shard {params['shard'] + 1}/{params['num_shards']} of run {params['run']}"
    return run_shard(ctx, work, params["heartbeat_s"], label)


def run_shard(ctx, work: Callable[[Callable], Any], heartbeat_s: float, label: str) -> Any:
    """Runs ``work(progress)`` for the delegated operation of ``ctx``, beating every
    ``heartbeat_s`` seconds; ``progress`` raises :class:`ShardRevoked` once the operation is
    no longer running (declared dead and queued again)."""
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    service = DelegatedOperationService()
    op_id = ctx._delegated_operation_id  # FiftyOne 1.22 has no public accessor for it
    stop, revoked = threading.Event(), threading.Event()
    fraction = [0.0]

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            ctx.set_progress(progress=fraction[0], label=label)
            doc = service.get(op_id)
            if doc is not None and doc.run_state != ExecutionRunState.RUNNING:
                revoked.set()

    def progress(pb) -> None:
        fraction[0] = pb.progress
        if revoked.is_set():
            raise ShardRevoked(f"{label} was queued again after missing its heartbeat")

    thread = threading.Thread(target=beat, name="videoprism-heartbeat", daemon=True)
    thread.start()
    try:
        return work(progress)
    finally:
        stop.set()
        thread.join()


def stats_of(samples, field: str, status: ShardProgress):
    """A finished sharded run as :class:`~fiftyone_videoprism.fo.runs.RunStats`: the samples
    of ``samples`` holding ``field``, and those that failed, with their errors."""
    from fiftyone_videoprism.fo import runs

    error_field = runs.default_error_field(field)
    ids, errors = samples.exists(error_field).values(["id", error_field])
    return runs.RunStats(status.done, ids, errors=dict(zip(ids, errors, strict=True)),
                         error_field=error_field)


def wait(samples, field: str, op_ids: list[str], *,
         timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 1.0,
         report: Callable[[ShardProgress], None] | None = None) -> ShardProgress:
    """Waits until every shard has completed, queueing again each shard whose worker stopped
    beating for ``timeout_s`` seconds; ``report`` gets each change of progress (the samples
    of ``samples`` with ``field`` set count as done).

    Raises:
        RuntimeError: a shard failed on its own (its error is in the message)
    """
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionResult, ExecutionRunState

    service = DelegatedOperationService()
    ids = list(op_ids)
    total = len(samples)
    requeued, last = 0, None
    while True:
        docs = [service.get(ObjectId(op_id)) for op_id in ids]
        now = datetime.datetime.utcnow()
        for i, doc in enumerate(docs):
            if doc.run_state == ExecutionRunState.FAILED:
                error = doc.result.error if doc.result else "(no error recorded)"
                raise RuntimeError(f"shard {i + 1}/{len(ids)} failed: {error}")
            if doc.run_state == ExecutionRunState.RUNNING:
                beat = (doc.status.updated_at if doc.status and doc.status.updated_at
                        else doc.started_at)
                if beat is None or (now - beat).total_seconds() <= timeout_s:
                    continue
                # Failed first, and only if still running: a shard that finished at the last
                # moment is not queued twice.
                error = ExecutionResult(error=f"no heartbeat for more than {timeout_s:g} s: "
                                              "the worker died; queued again")
                if service.set_failed(doc.id, result=error,
                                      required_state=ExecutionRunState.RUNNING) is not None:
                    ids[i] = str(service.rerun_operation(doc.id).id)
                    requeued += 1
        states: dict[str, int] = {}
        for doc in docs:
            states[doc.run_state] = states.get(doc.run_state, 0) + 1
        status = ShardProgress(states, samples.exists(field).count(), total, requeued)
        if status != last and report is not None:
            report(status)
        last = status
        if states.get(ExecutionRunState.COMPLETED, 0) == len(ids):
            return status
        time.sleep(poll_s)

