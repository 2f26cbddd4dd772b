"""Moments from the outside: the plugin operators, the ``moments`` CLI command, and the real
App server's text search on the clips view of the windows."""

from __future__ import annotations

import re
import uuid

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
import requests
from fo_fixtures import PLUGIN_URI, lvt_params, unique_name

from fiftyone_videoprism.fo import moments
from fiftyone_videoprism.fo.cli import main
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]

GRID = {"window_seconds": 2.0, "stride_seconds": 1.0}
QUERY = "a video of red."


@pytest.fixture()
def dataset(moments_dataset, long_videos):
    return moments_dataset([long_videos["moving_rgb"], long_videos["moving_bgr"]])


def _ranking(dataset, tiny_models, query: str) -> list[str]:
    """Window (clip) IDs by decreasing cosine similarity, from the stored embeddings."""
    ids, vectors = moments.window_store(dataset).values(["window_id", "embedding"])
    text = VideoPrismModel(VideoPrismModelConfig(tiny_models.lvt)).embed_prompt(query)
    return [ids[i] for i in np.argsort(-(np.stack(vectors) @ text), kind="stable")]


def test_operators_compute_find_and_tag(installed_plugin, dataset, tiny_models) -> None:
    result = foo.execute_operator(PLUGIN_URI.format("compute_moments"), dataset=dataset,
                                  params=lvt_params(tiny_models, **GRID))
    assert result.error is None, result.error
    assert len(dataset.to_clips("videoprism_windows")) == 2 * 11
    result = foo.execute_operator(PLUGIN_URI.format("find_moments"), dataset=dataset,
                                  params={"query": QUERY, "k": 3})
    assert result.error is None, result.error
    assert result.result == {"moments": 3}
    clips = dataset.to_clips("videoprism_windows")
    window_of = dict(zip(clips.values("id"), zip(clips.values("sample_id"),
                                                 clips.values("support"))))
    expected = [window_of[i] for i in _ranking(dataset, tiny_models, QUERY)[:3]]
    found = dataset.to_clips("videoprism_moments").sort_by("videoprism_moments.confidence",
                                                           reverse=True)
    assert list(zip(found.values("sample_id"), found.values("support"))) == expected
    result = foo.execute_operator(PLUGIN_URI.format("tag_moments"), dataset=dataset,
                                  params=lvt_params(tiny_models, classes="red, green, blue"))
    assert result.error is None, result.error
    labels = dataset.values("videoprism_moment_labels.detections.label", unwind=True)
    assert labels and set(labels) <= {"red", "green", "blue"}


def test_cli_moments_prints_the_best_windows(capsys, long_videos, tiny_models, tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    for name in ("moving_rgb", "moving_bgr"):
        (folder / f"{name}.mp4").write_bytes(long_videos[name].read_bytes())
    name = unique_name("cli-moments")
    lvt = tiny_models.lvt
    argv = ["moments", str(folder), "--dataset", name, "--model-config", lvt["model_config"],
            "--checkpoint", lvt["checkpoint_path"], "--tokenizer", lvt["tokenizer_path"],
            "--window-seconds", "2", "--stride-seconds", "1", "--query", QUERY, "-k", "4"]
    try:
        assert main(argv) == 0
        out = capsys.readouterr().out
        dataset = fo.load_dataset(name)
        assert "Windowed 2 videos" in out and "22 windows" in out
        printed = re.findall(r"^\s*\d+\. ([+-]\d\.\d+)  (\S+)  frames (\d+)-(\d+)$", out, re.M)
        clips = dataset.to_clips("videoprism_windows")
        window_of = dict(zip(clips.values("id"), zip(clips.values("filepath"),
                                                     clips.values("support"))))
        expected = [window_of[i] for i in _ranking(dataset, tiny_models, QUERY)[:4]]
        assert [(p, [int(a), int(b)]) for _, p, a, b in printed] == expected
        # again: nothing recomputed, same answer
        assert main(argv) == 0
        assert "Windowed 0 videos" in capsys.readouterr().out
    finally:
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()
        if fo.dataset_exists(f"{name}.videoprism_windows"):
            fo.load_dataset(f"{name}.videoprism_windows").delete()


def test_app_text_search_on_the_clips_view(dataset, tiny_models, zoo_registered, app_url):
    lvt = VideoPrismModel(VideoPrismModelConfig(tiny_models.lvt))
    moments.compute_moments(dataset, lvt, **GRID)
    clips = dataset.to_clips("videoprism_windows")
    expected = _ranking(dataset, tiny_models, QUERY)[:5]
    assert clips.sort_by_similarity(QUERY, k=5, brain_key="videoprism_windows"
                                    ).values("id") == expected
    response = requests.post(f"{app_url}/operators/execute", timeout=300, json={
        "dataset_name": dataset.name,
        "operator_uri": "@voxel51/panels/similarity_search",
        "params": {"brain_key": "videoprism_windows", "query_type": "text", "query": QUERY,
                   "k": 5, "reverse": False, "run_name": f"test-{uuid.uuid4().hex[:6]}",
                   "view_target": "CURRENT_VIEW"},
        "view": clips._serialize(), "filters": {}, "selected": [], "selected_labels": [],
    })
    response.raise_for_status()
    body = response.json()
    assert body["error"] is None, body.get("error_message")
    from fiftyone.operators.store import ExecutionStore

    store = ExecutionStore.create("similarity_search_panel", dataset._doc.id)
    run = store.get(f"run:{body['result']['run_id']}")
    assert run["status"] == "completed", run
    assert run["result_ids"] == expected
