"""plugin.py and operators.py: the plugin folder install, the forms' validation messages, and
every operator run through ``foo.execute_operator`` on a real dataset with the tiny models,
immediately and delegated to a real ``fiftyone delegated launch`` worker process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import fiftyone_videoprism as fvp
from fo_fixtures import (PLUGIN_URI, ROOT, expected_ranking, lvt_params, subprocess_env,
                         unique_name)

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import (ExecutionContext, ExecutionRunState,
                                         ValidationContext)
from fiftyone_videoprism.fo import plugin

# The fixtures (database, zoo and plugins folders, tiny models, videos) live in fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

URI = PLUGIN_URI
FIFTYONE_CLI = str(Path(sys.executable).parent / "fiftyone")
DELEGATED_TIMEOUT = 240


@pytest.fixture()
def dataset(color_videos):
    """The three colour clips with their class as ground truth; persistent, so that another
    process (the delegated worker) can load it by name."""
    dataset = fo.Dataset(unique_name("ops"), persistent=True)
    dataset.add_samples(
        [fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=name))
         for name, path in color_videos.items()]
    )
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def worker(installed_plugin, tmp_path_factory: pytest.TempPathFactory):
    """A ``fiftyone delegated launch`` process for this module's delegated runs."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([FIFTYONE_CLI, "delegated", "launch"], env=subprocess_env(),
                                   stdout=out, stderr=subprocess.STDOUT)
    yield log
    process.terminate()
    process.wait(timeout=30)


def form_errors(name: str, dataset, params: dict) -> dict[str, str]:
    """Validation messages of an operator's form for ``params``, as the App computes them."""
    operator = foo.get_operator(URI.format(name))
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params},
                           operator_uri=operator.uri)
    inputs = operator.resolve_input(ctx)
    validation = ValidationContext(ctx, inputs, operator)
    return {error.path.lstrip("."): error.error_message or error.reason
            for error in validation.errors}


def run_delegated(name: str, dataset, params: dict) -> dict:
    """Queues an operator run and waits until the worker has finished it."""
    queued = foo.execute_operator(URI.format(name), dataset=dataset, params=params,
                                  request_delegation=True)
    assert queued.delegated
    service = DelegatedOperationService()
    doc = service.get(queued.result["id"])
    deadline = time.monotonic() + DELEGATED_TIMEOUT
    while doc.run_state in (ExecutionRunState.QUEUED, ExecutionRunState.RUNNING):
        assert time.monotonic() < deadline, f"{name} still {doc.run_state}"
        time.sleep(0.5)
        doc = service.get(doc.id)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result.error
    return doc


# ---------------------------------------------------------------------------------------------
# Install


def test_install_is_idempotent_and_fiftyone_lists_the_plugin(installed_plugin: Path) -> None:
    assert installed_plugin == Path(fo.config.plugins_dir) / plugin.PLUGIN_DIRNAME
    before = {p.name: p.stat().st_mtime_ns for p in installed_plugin.iterdir()}
    assert plugin.install_plugin() == installed_plugin
    assert {p.name: p.stat().st_mtime_ns for p in installed_plugin.iterdir()} == before

    # The repository's manifest is the installed one with the package-relative entry point,
    # less the version, which only fiftyone_videoprism/version.py writes.
    repo_manifest = yaml.safe_load((ROOT / "fiftyone.yml").read_text(encoding="utf-8"))
    installed = plugin.manifest(plugin.REPO_PY_ENTRY)
    assert installed.pop("version") == fvp.__version__
    assert repo_manifest == installed
    assert (ROOT / plugin.REPO_PY_ENTRY).is_file()

    listing = subprocess.run([FIFTYONE_CLI, "plugins", "list"], env=subprocess_env(),
                             capture_output=True, text=True, check=True).stdout
    assert plugin.PLUGIN_NAME in listing
    uris = {op.uri for op in foo.list_operators() if op.plugin_name == plugin.PLUGIN_NAME}
    assert uris == {URI.format(name) for name in plugin.OPERATORS}


def test_uninstall_removes_only_its_own_folder(tmp_path: Path) -> None:
    folder = plugin.install_plugin(tmp_path)
    assert plugin.uninstall_plugin(tmp_path) and not folder.exists()
    assert not plugin.uninstall_plugin(tmp_path)

    other = tmp_path / plugin.PLUGIN_DIRNAME
    other.mkdir()
    (other / "fiftyone.yml").write_text("name: someone-else\n")
    with pytest.raises(FileExistsError, match="someone-else"):
        plugin.uninstall_plugin(tmp_path)
    # A symlinked checkout in its place is never written into.
    (other / "fiftyone.yml").unlink()
    other.rmdir()
    other.symlink_to(tmp_path)
    with pytest.raises(FileExistsError, match="not a plugin folder"):
        plugin.install_plugin(tmp_path)


# ---------------------------------------------------------------------------------------------
# Forms


def test_forms_explain_bad_input(installed_plugin, dataset, tiny_models,
                                 tmp_path) -> None:
    params = lvt_params(tiny_models)

    # Zero-shot: empty class list, a video-only model, an existing field, a bad template.
    errors = form_errors("zero_shot_tag", dataset, {**params, "classes": " , ",
                                                    "label_field": "ground_truth"})
    assert errors["classes"] == "No class names in ' , '"
    assert errors["label_field"].startswith("Field 'ground_truth' already exists")
    errors = form_errors("zero_shot_tag", dataset, {**params, "model": "videoprism-base",
                                                    "classes": "red", "overwrite": True,
                                                    "prompt_templates": ["no slot"]})
    assert "has no text encoder" in errors["model"]
    assert "exactly one '{}'" in errors["prompt_templates"]
    empty = tmp_path / "classes.txt"
    empty.write_text("\n  \n")
    errors = form_errors("zero_shot_tag", dataset, {**params, "classes_from": "file",
                                                    "classes_file": str(empty)})
    assert errors == {"classes_file": f"No class names in '{empty}'"}
    assert form_errors("zero_shot_tag", dataset, {**params, "classes_from": "field",
                                                  "classes_field": "ground_truth"}) == {}

    # Embeddings into a field that holds something else; a missing local file.
    errors = form_errors("compute_embeddings", dataset,
                         {**params, "embeddings_field": "filepath",
                          "checkpoint_path": str(tmp_path / "missing.npz")})
    assert errors["embeddings_field"] == "Field 'filepath' exists and does not hold embeddings"
    assert errors["checkpoint_path"] == f"Nothing at '{tmp_path / 'missing.npz'}'"

    # Search with no text index; index under a taken or invalid brain key; bad backend params.
    errors = form_errors("search_by_text", dataset, {"brain_key": "videoprism", "query": " "})
    assert errors["brain_key"].startswith("This dataset has no similarity indexes that support")
    assert errors["query"] == "Enter a text query"
    fob.compute_similarity(dataset, embeddings=np.eye(3, 4), brain_key="taken")
    # A taken key is replaced (as the CLI does), once the new index works: not an error.
    assert form_errors("build_text_index", dataset, {**params, "brain_key": "taken"}) == {}
    assert form_errors("build_text_index", dataset, {**params, "backend_params": ["uri"]}) == {
        "backend_params": "backend parameter 'uri' is not NAME=VALUE, e.g. uri=/data/lancedb"}
    assert form_errors("build_text_index", dataset, {**params, "brain_key": "a b"}) == {
        "brain_key": "Brain keys must be valid variable names, e.g. videoprism_text"}
    # An index without a prompt model is not offered for text search.
    assert "brain_key" in form_errors("search_by_text", dataset,
                                      {"brain_key": "taken", "query": "red"})

    # Apply classifier: a head path with nothing there; a label field of another type.
    errors = form_errors("apply_classifier", dataset,
                         {**params, "head_path": str(tmp_path / "none.json"),
                          "label_field": "filepath"})
    assert errors["head_path"].startswith("head file not found")
    assert errors["label_field"].startswith("Field 'filepath' exists and holds other data")


# ---------------------------------------------------------------------------------------------
# Runs


def check_results(dataset, tiny_models, *, brain_key: str, query: str) -> None:
    """What every mode must leave behind, read back from the database."""
    dataset.reload()
    for vector in dataset.values("videoprism"):
        # 64: model_dim of the tiny LvT fixture.
        assert vector.shape == (64,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)
    labels = dataset.values("videoprism_zero_shot")
    assert all(label.label in {"red", "green", "blue"} for label in labels)
    assert all(len(label.logits) == 3 for label in labels)
    assert set(dataset.distinct("tags")) <= {"red", "green", "blue"}
    assert dataset.count("tags") == len(dataset)

    info = dataset.get_brain_info(brain_key)
    assert info.config.supports_prompts
    assert info.config.model == "videoprism-lvt-base"
    assert info.config.model_kwargs["checkpoint_path"] == tiny_models.lvt["checkpoint_path"]

    saved = dataset.load_saved_view("matches")
    expected = expected_ranking(dataset, query, brain_key, tiny_models)
    assert saved.values("id") == expected[:2]
    assert all(isinstance(d, float) for d in saved.values("videoprism_similarity"))


def test_operators_run_immediately(installed_plugin, dataset, tiny_models) -> None:
    params = lvt_params(tiny_models)
    # One video already embedded: "skip" must leave it, the others get computed.
    foo.execute_operator(URI.format("compute_embeddings"), view=dataset.limit(1),
                         params=params)
    first = dataset.first().videoprism.copy()
    foo.execute_operator(URI.format("compute_embeddings"), dataset=dataset,
                         params={**params, "existing": "skip"})
    assert np.array_equal(dataset.first().videoprism, first)

    foo.execute_operator(URI.format("zero_shot_tag"), dataset=dataset, params={
        **params, "classes_from": "field", "classes_field": "ground_truth",
        "prompt_templates": ["a video of {}.", "a {} square on a grey field."],
        "store_logits": True, "tag_samples": True, "embeddings_field": "videoprism",
    })
    # Top-k: the k best classes, best first; the first is the single-label run's answer.
    foo.execute_operator(URI.format("zero_shot_tag"), dataset=dataset, params={
        **params, "classes_from": "field", "classes_field": "ground_truth",
        "prompt_templates": ["a video of {}.", "a {} square on a grey field."],
        "top_k": 2, "label_field": "top2", "embeddings_field": "videoprism",
    })
    dataset.reload()
    for top2, single in zip(dataset.values("top2"), dataset.values("videoprism_zero_shot")):
        first, second = top2.classifications
        assert (first.label, first.confidence) == (single.label, single.confidence)
        assert second.label != first.label and second.confidence <= first.confidence
    foo.execute_operator(URI.format("build_text_index"), dataset=dataset,
                         params={**params, "brain_key": "vp_now"})
    query = "a video of blue."
    result = foo.execute_operator(URI.format("search_by_text"), dataset=dataset, params={
        "brain_key": "vp_now", "query": query, "k": 2, "saved_view": "matches"})
    assert result.error is None
    check_results(dataset, tiny_models, brain_key="vp_now", query=query)


def test_operators_run_delegated(installed_plugin, worker, dataset, tiny_models,
                                 tmp_path) -> None:
    params = lvt_params(tiny_models)
    classes = tmp_path / "classes.txt"
    classes.write_text("red\ngreen\nblue\n", encoding="utf-8")

    embed = run_delegated("compute_embeddings", dataset, params)
    # Progress reached the run document, as the App's runs list shows it.
    assert embed.status.progress == 1.0
    run_delegated("zero_shot_tag", dataset, {
        **params, "classes_from": "file", "classes_file": str(classes),
        "store_logits": True, "tag_samples": True, "embeddings_field": "videoprism"})
    run_delegated("build_text_index", dataset, {**params, "brain_key": "vp_later"})
    query = "a video of red."
    run_delegated("search_by_text", dataset, {"brain_key": "vp_later", "query": query, "k": 2,
                                              "saved_view": "matches"})
    check_results(dataset, tiny_models, brain_key="vp_later", query=query)

    # A classifier head trained by the worker (one video per class: no held-out share).
    train = run_delegated("train_classifier", dataset, {
        **params, "label_field": "ground_truth", "head": "linear", "epochs": 3,
        "val_fraction": 0.0, "head_path": str(tmp_path / "head")})
    assert train.status.progress is not None
    assert (tmp_path / "head.safetensors").is_file() and (tmp_path / "head.json").is_file()
