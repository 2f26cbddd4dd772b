"""Sharded embedding on a Ray cluster (optional extra ``[ray]``): Ray Data actors, each loading
the model once, write the embeddings of their batches straight into the shared FiftyOne
database.

    import ray
    import fiftyone_videoprism.ray as fvp_ray

    ray.init(address="auto")  # a running cluster; ray.init() alone starts a local one
    fvp_ray.compute_embeddings("videos", "videoprism-lvt-base",
                               {"checkpoint_path": "/models/...npz", "tokenizer_path": ...},
                               "videoprism", num_actors=8)

Every node must reach the database (``FIFTYONE_DATABASE_URI``, or the driver's
``fo.config.database_uri``, which is passed on to the actors), the videos at their stored paths,
and the weights at the paths in ``model_kwargs``. The rules are those of
:mod:`fiftyone_videoprism.fo.shards`: fields declared before any actor writes, disjoint
batches of sample IDs, and only samples still lacking an embedding are embedded, so running
again after a failure finishes what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Sample IDs per Ray Data batch: one database round trip per batch, and small enough that a
# failed batch costs little to redo.
DEFAULT_BATCH_SIZE = 16


class _Embedder:
    """A Ray Data actor: loads the dataset and the model once, embeds the batches it is given."""

    def __init__(self, dataset_name: str, model: str, model_kwargs: dict[str, Any],
                 embeddings_field: str, database_uri: str | None) -> None:
        import fiftyone as fo

        from fiftyone_videoprism.fo import loading

        if database_uri:
            fo.config.database_uri = database_uri  # before this process first connects
        self._dataset = fo.load_dataset(dataset_name)
        self._model = loading.zoo_model(model, model_kwargs)
        self._field = embeddings_field

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from fiftyone_videoprism.fo import runs

        ids = [str(i) for i in batch["id"]]
        view = self._dataset.select(ids)
        done = set(view.exists(self._field).values("id"))
        stats = runs.compute_embeddings(view, self._model, self._field, skip_existing=True,
                                        cache=True, progress=False)
        failed = set(stats.failed)
        # Per sample: whether this actor saved its embedding (neither failed nor done before).
        return {"id": ids, "saved": [i not in done and i not in failed for i in ids],
                "failed": [i in failed for i in ids]}


def compute_embeddings(dataset_name: str, model: str, model_kwargs: Mapping[str, Any] | None,
                       embeddings_field: str, *, num_actors: int = 2,
                       batch_size: int = DEFAULT_BATCH_SIZE, recompute: bool = False,
                       num_cpus_per_actor: float = 1) -> dict[str, Any]:
    """Embeds the samples of the dataset ``dataset_name`` that lack ``embeddings_field`` on
    ``num_actors`` Ray actors (Ray must be initialised). ``model`` is a zoo name and
    ``model_kwargs`` its load kwargs (local paths are made absolute).

    Returns:
        ``{"saved": n, "failed": n, "saved_twice": [ids]}``: embeddings saved by the actors,
        samples that failed (their errors are in ``<embeddings_field>_error``), and samples
        saved by more than one actor (none, unless Ray retried a batch whose first attempt
        had saved part of it)
    """
    import collections

    import fiftyone as fo
    import ray

    from fiftyone_videoprism.fo import loading, shards

    dataset = fo.load_dataset(dataset_name)
    kwargs = loading.model_kwargs(**(model_kwargs or {}))
    # Loaded here too: the field is declared with this model's provenance before any actor.
    ids = shards.prepare(dataset, embeddings_field, loading.zoo_model(model, kwargs),
                         recompute=recompute)
    if not ids:
        return {"saved": 0, "failed": 0, "saved_twice": []}
    rows = ray.data.from_items([{"id": i} for i in ids]).map_batches(
        _Embedder, batch_size=batch_size, concurrency=num_actors, num_cpus=num_cpus_per_actor,
        fn_constructor_kwargs={"dataset_name": dataset_name, "model": model,
                               "model_kwargs": kwargs,
                               "embeddings_field": embeddings_field,
                               "database_uri": fo.config.database_uri},
    ).take_all()
    saves = collections.Counter(row["id"] for row in rows if row["saved"])
    return {"saved": sum(saves.values()), "failed": sum(bool(row["failed"]) for row in rows),
            "saved_twice": sorted(i for i, n in saves.items() if n > 1)}
