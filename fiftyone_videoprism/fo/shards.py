"""Embedding runs split into shards that many workers run: FiftyOne delegated operations, picked
up by any number of ``fiftyone delegated launch`` processes that share ``FIFTYONE_DATABASE_URI``.

The rules that make a sharded run correct, all here:

- The output fields are declared once, before any shard is queued: two workers creating a new
  field on the same documents can lose a schema entry.
- Shards are disjoint lists of sample IDs, and each is one delegated operation, which exactly one
  worker claims (FiftyOne moves it from queued to running atomically).
- A shard embeds only its samples whose field is still empty and saves each model batch, so a
  shard queued again after a worker died does only what the dead worker had not saved.
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

    def __str__(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items()))
        again = f", {self.requeued} re-queued" if self.requeued else ""
        return f"shards: {states}{again}; {self.done}/{self.total} videos embedded"


def prepare(dataset, embeddings_field: str, model, *, recompute: bool = False) -> list[str]:
    """Declares the output fields before any worker writes (the embeddings field with
    ``model``'s provenance, so that workers find it theirs and leave the schema alone), clears
    it for a recompute; returns the IDs of the samples still lacking an embedding.

    Raises:
        ProvenanceError: the field holds another model's embeddings (and no ``recompute``)
    """
    import fiftyone.core.fields as fof

    from fiftyone_videoprism.fo import runs

    runs.prepare_embeddings_field(dataset, embeddings_field, model, replace=recompute)
    error_field = runs.default_error_field(embeddings_field)
    if not dataset.has_field(error_field):
        dataset.add_sample_field(error_field, fof.StringField)
    if recompute:
        dataset.clear_sample_field(embeddings_field)
    return dataset.exists(embeddings_field, False).values("id")


def queue(dataset, embeddings_field: str, num_shards: int, model, model_name: str,
          model_kwargs: Mapping[str, Any], *, recompute: bool = False,
          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
    """Declares the output fields (:func:`prepare`), splits the samples still lacking an
    embedding into at most ``num_shards`` shards, and queues one delegated operation per shard;
    returns their IDs. ``model`` is the loaded zoo model ``model_name`` with ``model_kwargs``,
    which every worker loads again.

    Raises:
        ValueError: ``num_shards`` below 1
    """
    import fiftyone.operators as foo

    from fiftyone_videoprism.fo import loading
    from fiftyone_videoprism.fo.plugin import install_plugin

    if num_shards < 1:
        raise ValueError(f"the number of workers must be at least 1, got {num_shards}")
    install_plugin()  # this process queues by operator URI, so it must know the plugin
    ids = prepare(dataset, embeddings_field, model, recompute=recompute)
    run = uuid.uuid4().hex[:8]
    chunks = [c.tolist() for c in np.array_split(np.array(ids, dtype=object), num_shards) if len(c)]
    op_ids = []
    for i, chunk in enumerate(chunks):
        queued = foo.execute_operator(SHARD_OPERATOR, dataset=dataset, request_delegation=True,
                                      params={"model": model_name,
                                              "model_kwargs": loading.model_kwargs(**model_kwargs),
                                              "embeddings_field": embeddings_field,
                                              "sample_ids": chunk, "run": run, "shard": i,
                                              "num_shards": len(chunks),
                                              "heartbeat_s": timeout_s / 6})
        op_ids.append(str(queued.result["id"]))
    return op_ids


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


def wait(dataset, embeddings_field: str, op_ids: list[str], *,
         timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 1.0,
         report: Callable[[ShardProgress], None] | None = None) -> ShardProgress:
    """Waits until every shard has completed, queueing again each shard whose worker stopped
    beating for ``timeout_s`` seconds; ``report`` gets each change of progress.

    Raises:
        RuntimeError: a shard failed on its own (its error is in the message)
    """
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionResult, ExecutionRunState

    service = DelegatedOperationService()
    ids = list(op_ids)
    total = len(dataset)
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
        status = ShardProgress(states, dataset.exists(embeddings_field).count(), total, requeued)
        if status != last and report is not None:
            report(status)
        last = status
        if states.get(ExecutionRunState.COMPLETED, 0) == len(ids):
            return status
        time.sleep(poll_s)

