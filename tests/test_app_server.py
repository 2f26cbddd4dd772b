"""The real FiftyOne App server (headless, loopback) answers text queries on a similarity index
built with the zoo name: it loads the VideoPrism model itself, in its own process."""

from __future__ import annotations

import uuid

import fiftyone as fo
import fiftyone.brain as fob
import pytest
import requests
from fo_fixtures import app_sort_ids, expected_ranking, unique_name

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

QUERIES = ["a video of red.", "a video of green.", "a video of blue.", "a blue square on grey."]


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


def test_text_query_through_the_app_server(indexed_dataset, tiny_models, app_url) -> None:
    dataset = indexed_dataset
    # A query whose ranking differs from insertion order, so a no-op sort cannot pass.
    insertion = dataset.values("id")
    query = next((q for q in QUERIES if expected_ranking(dataset, q, "vp", tiny_models) != insertion),
                 None)
    assert query is not None, "every query ranks the videos in insertion order"
    expected = expected_ranking(dataset, query, "vp", tiny_models)
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
    assert app_sort_ids(app_url, dataset, "vp", query, 3) == expected
