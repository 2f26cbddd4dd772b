"""The real FiftyOne App server (headless, loopback) answers text queries on a similarity index
built with the zoo name: it loads the VideoPrism model itself, in its own process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.server.main as server_main
import fiftyone.zoo as foz
import numpy as np
import pytest
import requests
from fo_fixtures import subprocess_env, unique_name

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

QUERIES = ["a video of red.", "a video of green.", "a video of blue.", "a blue square on grey."]
_SAMPLES_QUERY = """
query Samples($dataset: String!, $view: BSONArray!) {
  samples(dataset: $dataset, view: $view, first: 10) {
    ... on SampleItemStrConnection { edges { node { ... on VideoSample { id } } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def indexed_dataset(zoo_registered, tiny_models, color_videos):
    # Persistent: the server process loads it by name from the shared database.
    dataset = fo.Dataset(unique_name("app"), persistent=True)
    # Blue first: the tiny random model happens to rank the red clip first for most texts, and
    # the test needs a ranking that differs from insertion order.
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in reversed(color_videos.values())])
    fob.compute_similarity(dataset, model="videoprism-lvt-base", model_kwargs=tiny_models.lvt,
                           brain_key="vp")
    yield dataset
    dataset.delete()


@pytest.fixture()
def app_url(tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    # Started as fo.launch_app's server service starts it; the child inherits the database
    # port, the zoo folder and PYTHONPATH through the environment. Its log goes to a file: a
    # full pipe would block the server.
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            [sys.executable, server_main.__file__, "--port", str(port), "--address",
             "127.0.0.1"],
            env=subprocess_env(), stdout=sink, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{url}/fiftyone", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"App server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _expected_order(dataset, tiny_models, query: str) -> list[str]:
    """The ranking computed here, independently: stored index vectors . text embedding."""
    results = dataset.load_brain_results("vp")
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    scores = results.embeddings @ model.embed_prompt(query)
    return [results.sample_ids[i] for i in np.argsort(-scores)]


def test_text_query_through_the_app_server(indexed_dataset, tiny_models, app_url) -> None:
    dataset = indexed_dataset
    # A query whose ranking differs from insertion order, so a no-op sort cannot pass.
    insertion = dataset.values("id")
    query = next((q for q in QUERIES if _expected_order(dataset, tiny_models, q) != insertion),
                 None)
    assert query is not None, "every query ranks the videos in insertion order"
    expected = _expected_order(dataset, tiny_models, query)
    assert dataset.sort_by_similarity(query, brain_key="vp").values("id") == expected

    # 1. The App's similarity search panel (the search box of FiftyOne 1.22) runs an operator.
    response = requests.post(f"{app_url}/operators/execute", timeout=300, json={
        "dataset_name": dataset.name,
        "operator_uri": "@voxel51/panels/similarity_search",
        "params": {"brain_key": "vp", "query_type": "text", "query": query, "k": 3,
                   "reverse": False, "run_name": f"test-{uuid.uuid4().hex[:6]}",
                   "view_target": "CURRENT_VIEW"},
        "view": [], "filters": {}, "selected": [], "selected_labels": [],
    })
    response.raise_for_status()
    body = response.json()
    assert body["error"] is None, body.get("error_message")
    run_id = body["result"]["run_id"]
    from fiftyone.operators.store import ExecutionStore

    store = ExecutionStore.create("similarity_search_panel", dataset._doc.id)
    run = store.get(f"run:{run_id}")
    assert run["status"] == "completed"
    assert run["result_ids"] == expected

    # 2. The sort-by-similarity route, then the samples query the grid makes.
    stage = requests.post(f"{app_url}/sort", timeout=300, json={
        "dataset": dataset.name, "view": [], "filters": {}, "subscription": "test",
        "extended": {"brain_key": "vp", "query": query, "k": 3, "reverse": False},
    })
    stage.raise_for_status()
    samples = requests.post(f"{app_url}/graphql", timeout=300, json={
        "query": _SAMPLES_QUERY,
        "variables": {"dataset": dataset.name, "view": [stage.json()]},
    })
    samples.raise_for_status()
    edges = samples.json()["data"]["samples"]["edges"]
    assert [edge["node"]["id"] for edge in edges] == expected
