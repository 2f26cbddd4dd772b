"""outputs.py and the end of every operator run: the results panel the App shows (counts, the
label distribution, buttons that open the views), and one message per failure or
degradation, counted where the user reads them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from bson import json_util
from fiftyone.core.view import DatasetView
from fiftyone.operators.executor import ExecutionContext
from fo_fixtures import PLUGIN_URI, expected_ranking, lvt_params, subprocess_env, unique_name

from fiftyone_videoprism.fo import outputs

pytest_plugins = ["fo_fixtures"]


@pytest.fixture()
def dataset(color_videos, tmp_path):
    """The colour clips and one file that is not a video."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 64)
    dataset = fo.Dataset(unique_name("out"))
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in [*color_videos.values(), broken]])
    yield dataset
    dataset.delete()


def panel(result) -> tuple[dict, dict]:
    """The (schema properties, values) of the results panel an operator run asked the App to
    show; it asks exactly once."""
    shown = [r.params for r in result.executor._requests if r.operator_uri == "show_output"]
    assert result.error is None and len(shown) == 1, result.error
    return shown[0]["outputs"]["type"]["properties"], shown[0]["results"]


def buttons(properties: dict) -> list[dict]:
    return [p["view"] for p in properties.values() if p["view"]["name"] == "Button"]


def opened(dataset, button: dict) -> list[str]:
    """Sample IDs of the view a set_view button loads, rebuilt from its parameters as the App
    server reads them (extended JSON)."""
    assert button["operator"] == "set_view"
    stages = json_util.loads(json.dumps(button["params"]["view"]))
    return DatasetView._build(dataset, stages).values("id")


def test_operators_end_on_counts_a_distribution_and_the_views(installed_plugin, dataset,
                                                             tiny_models) -> None:
    params = lvt_params(tiny_models)
    broken = dataset.match(fo.ViewField("filepath").ends_with("broken.mp4")).values("id")

    props, values = panel(foo.execute_operator(PLUGIN_URI.format("compute_embeddings"),
                                               dataset=dataset, params=params))
    assert (values["written"], values["failed"]) == (3, 1)
    assert "embeddings map 'videoprism_map'" in values["message"]
    assert dataset.has_brain_run("videoprism_map")
    failures, embeddings_panel = buttons(props)
    assert failures["label"] == "Show the 1 failure ('videoprism_error')"
    assert opened(dataset, failures) == broken
    assert embeddings_panel["operator"] == "open_panel"
    assert embeddings_panel["params"]["name"] == "Embeddings"

    # The zero-shot form offers the embeddings field just written; its run shows the
    # distribution of the labels it stored and opens them, most confident first.
    operator = foo.get_operator(PLUGIN_URI.format("zero_shot_tag"))
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params})
    form = operator.resolve_input(ctx).type.properties
    assert form["embeddings_field"].default == "videoprism"
    props, values = panel(foo.execute_operator(PLUGIN_URI.format("zero_shot_tag"),
                                               dataset=dataset, params={
        **params, "classes": "red,green,blue", "embeddings_field": "videoprism"}))
    assert props["distribution"]["view"]["name"] == "TableView"
    counts = dataset.count_values("videoprism_zero_shot.label")
    counts.pop(None, None)
    assert {row["label"]: row["count"] for row in values["distribution"]} == counts
    assert sum(row["count"] for row in values["distribution"]) == 3
    assert [row["count"] for row in values["distribution"]] == sorted(counts.values(),
                                                                      reverse=True)
    failures, labelled = buttons(props)
    assert opened(dataset, failures) == broken
    confidences = [dataset[i].videoprism_zero_shot.confidence for i in opened(dataset, labelled)]
    assert len(confidences) == 3 and confidences == sorted(confidences, reverse=True)

    # The index's panel opens the search form on it; the search's panel opens the matches.
    props, values = panel(foo.execute_operator(PLUGIN_URI.format("build_text_index"),
                                               dataset=dataset,
                                               params={**params, "brain_key": "vp"}))
    search = buttons(props)[-1]
    assert search["operator"] == PLUGIN_URI.format("search_by_text") and search["prompt"]
    assert search["params"] == {"brain_key": "vp"}
    query = "a video of red."
    props, values = panel(foo.execute_operator(PLUGIN_URI.format("search_by_text"),
                                               dataset=dataset,
                                               params={"brain_key": "vp", "query": query,
                                                       "k": 2}))
    assert values["message"] == f"2 matches for {query!r}"
    assert opened(dataset, buttons(props)[0]) == expected_ranking(dataset, query, "vp",
                                                                  tiny_models)[:2]


def test_distribution_table_rows() -> None:
    rows = outputs.distribution_rows({"b": 1, "a": 3, "c": 1})
    assert rows == [{"label": "a", "count": 3, "share": "60%"},
                    {"label": "b", "count": 1, "share": "20%"},
                    {"label": "c", "count": 1, "share": "20%"}]
    many = outputs.distribution_rows({f"class{i:02d}": 100 - i for i in range(30)})
    assert len(many) == 20 and many[-1]["label"] == "(11 other labels)"
    assert sum(row["count"] for row in many) == sum(100 - i for i in range(30))


# ---------------------------------------------------------------------------------------------
# One message each, counted in a real terminal's output (a child process)


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "fiftyone_videoprism.fo.cli", *args],
                          env=env or subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    return done.stdout + done.stderr


def test_offline_demo_names_the_missing_weights_once(tmp_path) -> None:
    env = subprocess_env()
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR", None)
    text = _cli("demo", "--folder", str(tmp_path / "clips"), "--dataset",
                unique_name("offline"), env=env)
    assert text.count("flax_lvt_base_f16r288_repeated.npz is not in") == 1, text
    assert text.count("FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR") == 1, text
    assert "Traceback" not in text


def test_a_bad_video_is_reported_once_by_the_cli(color_videos, tiny_models, tmp_path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in color_videos.values():
        shutil.copy(path, folder / path.name)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 64)
    lvt = tiny_models.lvt
    name = unique_name("once")
    try:
        text = _cli("embed", str(folder), "--dataset", name, "--classes", "red,green,blue",
                    "--model-config", lvt["model_config"], "--checkpoint",
                    lvt["checkpoint_path"], "--tokenizer", lvt["tokenizer_path"])
        mentions = [line for line in text.splitlines()
                    if "failed" in line.lower() or "broken.mp4" in line]
        assert mentions == ["Embedded 3 videos (1 failed: their errors are in the field "
                            "'videoprism_error')"], text
        assert "Embeddings map 'videoprism_map'" in text
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_no_fast_blas_is_said_once(tmp_path) -> None:
    env = subprocess_env()
    env["FIFTYONE_VIDEOPRISM_BLAS"] = str(tmp_path / "no-such-blas.so")
    text = _cli("register", env=env)
    assert text.count("no optimised BLAS loaded") == 1, text
