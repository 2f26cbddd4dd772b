"""fo/index.py: one build-and-replace policy for similarity indexes, on any brain backend. A
failed rebuild leaves the working index answering text queries, in this process, in a new one
and through the App server."""

from __future__ import annotations

import os

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.operators as foo
import fiftyone.zoo as foz
from fiftyone.operators.executor import ExecutionError
import numpy as np
import pytest
from fo_fixtures import (PLUGIN_URI, app_sort_ids, build_text_index, expected_ranking,
                         lvt_params, ranking_in_new_process, unique_name)

from fiftyone_videoprism.fo import index
from fiftyone_videoprism.fo.cli import main

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

QUERIES = ["a video of red.", "a video of green.", "a video of blue.", "a blue square on grey."]


def _model_args(tiny_models, tokenizer=None) -> list[str]:
    lvt = tiny_models.lvt
    return ["--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
            "--tokenizer", str(tokenizer or lvt["tokenizer_path"])]


def _telling_query(dataset, brain_key: str, tiny_models) -> str:
    """A query whose ranking differs from insertion order, so a no-op sort cannot pass."""
    insertion = dataset.values("id")
    query = next((q for q in QUERIES
                  if expected_ranking(dataset, q, brain_key, tiny_models) != insertion), None)
    assert query is not None, "every query ranks the videos in insertion order"
    return query


@pytest.fixture()
def cli_dataset(zoo_registered, tiny_models, color_videos, capsys):
    """A persistent dataset that the CLI embedded and indexed as 'videoprism'."""
    name = unique_name("index")
    folder = next(iter(color_videos.values())).parent
    assert main(["embed", str(folder), "--dataset", name, *_model_args(tiny_models)]) == 0
    capsys.readouterr()
    dataset = fo.load_dataset(name)
    yield dataset
    dataset.delete()


def test_failed_rebuild_keeps_the_working_index(cli_dataset, tiny_models, tmp_path, capsys,
                                                app_url) -> None:
    """Issue #16 (1): a run with a tokenizer that does not exist used to replace the index;
    neither it nor a run whose new index fails its check touches the working one."""
    dataset = cli_dataset
    query = _telling_query(dataset, "videoprism", tiny_models)
    expected = expected_ranking(dataset, query, "videoprism", tiny_models)
    stored = dataset.get_brain_info("videoprism").config.model_kwargs
    assert stored == tiny_models.lvt

    missing = tmp_path / "nope.model"
    code = main(["embed", dataset.name, "--recompute",
                 *_model_args(tiny_models, tokenizer=missing), "--classes", "red,green"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("error:") == 1 and str(missing) in err

    # A run that gets as far as the new index, which then fails its check (sklearn takes any
    # metric name until its first query): the index is not replaced.
    code = main(["embed", dataset.name, *_model_args(tiny_models),
                 "--backend-param", "metric=nonsense"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1
    assert err.startswith("error: index 'videoprism' was not replaced (the previous index "
                          "'videoprism' is unchanged): ")

    # Nothing of the failed run is left: no pending index, the old kwargs, the old ranking.
    dataset.reload()
    assert dataset.list_brain_runs(type=fob.Similarity) == ["videoprism"]
    assert dataset.get_brain_info("videoprism").config.model_kwargs == stored
    assert dataset.sort_by_similarity(query, brain_key="videoprism").values("id") == expected
    assert ranking_in_new_process(dataset, query, "videoprism", 3) == expected
    assert app_sort_ids(app_url, dataset, "videoprism", query, 3) == expected


@pytest.fixture()
def blue_first(color_videos):
    """The colour clips, blue first: the tiny random model ranks red first for most texts, so
    this order lets a query's ranking differ from insertion order."""
    dataset = fo.Dataset(unique_name("index"))
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in reversed(color_videos.values())])
    yield dataset
    dataset.delete()


def test_build_index_checks_the_stored_model_before_replacing(blue_first, tiny_models,
                                                              zoo_registered, tmp_path) -> None:
    dataset = blue_first
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    dataset.compute_embeddings(model, embeddings_field="emb")
    index.build_index(dataset, "videoprism-lvt-base", tiny_models.lvt, "emb", "vp")
    query = _telling_query(dataset, "vp", tiny_models)
    expected = expected_ranking(dataset, query, "vp", tiny_models)

    # The new index embeds its check query with the stored kwargs: a missing tokenizer fails
    # it, the message names the file and says the old index is kept.
    bad = {**tiny_models.lvt, "tokenizer_path": str(tmp_path / "nope.model")}
    with pytest.raises(index.IndexBuildError) as caught:
        index.build_index(dataset, "videoprism-lvt-base", bad, "emb", "vp")
    message = str(caught.value)
    assert message.startswith("index 'vp' was not replaced (the previous index 'vp' is "
                              "unchanged): ")
    assert str(tmp_path / "nope.model") in message
    assert dataset.list_brain_runs() == ["vp"]
    assert dataset.get_brain_info("vp").config.model_kwargs == tiny_models.lvt
    assert dataset.sort_by_similarity(query, brain_key="vp").values("id") == expected

    # No index yet under the key: the message says none was stored.
    with pytest.raises(index.IndexBuildError, match=r"\(no index was stored\)"):
        index.build_index(dataset, "videoprism-lvt-base", bad, "emb", "other")
    assert dataset.list_brain_runs() == ["vp"]

    # A working rebuild replaces it; relative paths are stored absolute.
    relative = {**tiny_models.lvt, "num_frames": 2,
                "tokenizer_path": os.path.relpath(tiny_models.lvt["tokenizer_path"])}
    results = index.build_index(dataset, "videoprism-lvt-base", relative, "emb", "vp")
    assert dataset.list_brain_runs() == ["vp"]
    assert dataset.get_brain_info("vp").config.model_kwargs == {**tiny_models.lvt,
                                                                "num_frames": 2}
    assert results.total_index_size == 3


def test_operator_replaces_an_index_as_the_cli_does(video_dataset, tiny_models, zoo_registered,
                                                    installed_plugin, tmp_path) -> None:
    dataset = video_dataset
    fob.compute_similarity(dataset, embeddings=np.eye(3, 4), brain_key="vp")
    build_text_index(dataset, tiny_models, "vp")
    info = dataset.get_brain_info("vp").config
    assert dataset.list_brain_runs() == ["vp"]
    assert info.supports_prompts and info.model == "videoprism-lvt-base"
    assert info.embeddings_field == "videoprism"

    # A tokenizer file that exists (the form accepts it) but is no SentencePiece model: the
    # run fails (before any video, since it loads the tokenizer first) and the index stays.
    broken = tmp_path / "broken.model"
    broken.write_text("not a tokenizer")
    with pytest.raises(ExecutionError, match=r"broken.model: not a SentencePiece model"):
        foo.execute_operator(PLUGIN_URI.format("build_text_index"), dataset=dataset,
                             params=lvt_params(tiny_models, brain_key="vp",
                                               tokenizer_path=str(broken)))
    dataset.reload()
    assert dataset.list_brain_runs() == ["vp"]
    assert dataset.get_brain_info("vp").config.model_kwargs["tokenizer_path"] == str(
        tiny_models.tokenizer)

    with pytest.raises(ExecutionError, match="backend parameter 'uri' is not NAME=VALUE"):
        foo.execute_operator(PLUGIN_URI.format("build_text_index"), dataset=dataset,
                             params=lvt_params(tiny_models, brain_key="vp",
                                               backend_params=["uri"]))


def test_search_with_an_unknown_key_lists_the_indexes(cli_dataset, capsys) -> None:
    assert main(["search", cli_dataset.name, "a video of red.", "--brain-key", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"error: dataset {cli_dataset.name!r} has no similarity index 'nope'; "
                           "its indexes: videoprism")


def test_backend_params_parse_and_name_the_bad_item() -> None:
    assert index.parse_backend_params(["uri=/data/x", "ef_search=200", "exact=true"]) == {
        "uri": "/data/x", "ef_search": 200, "exact": True}
    with pytest.raises(ValueError, match="backend parameter 'metric' is not NAME=VALUE"):
        index.parse_backend_params(["metric"])
    with pytest.raises(ValueError, match="unknown similarity backend 'nosuch'; FiftyOne has: "):
        index.build_index(fo.Dataset(), "videoprism-lvt-base", {}, "emb", "vp", backend="nosuch")
