"""cli.py: the one-command jobs on a real database, with the tiny models as local weights."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import fiftyone as fo
import fiftyone.zoo as foz
import numpy as np
import pytest
from fo_fixtures import COLORS, subprocess_env, unique_name

from fiftyone_videoprism.fo.cli import main

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]


def _model_args(tiny_models) -> list[str]:
    lvt = tiny_models.lvt
    return ["--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
            "--tokenizer", lvt["tokenizer_path"]]


def _printed_matches(text: str) -> list[tuple[float, str]]:
    return [(float(score), path)
            for score, path in re.findall(r"^\s*\d+\. ([+-]\d\.\d+)  (\S+)$", text, re.M)]


@pytest.fixture()
def video_folder(color_videos, tmp_path):
    folder = tmp_path / "videos"
    (folder / "more").mkdir(parents=True)
    for i, path in enumerate(color_videos.values()):
        # One in a subfolder: folders are searched recursively.
        shutil.copy(path, folder / ("more" if i == 0 else "") / path.name)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_register_prints_the_folder_and_models(capsys, zoo_registered) -> None:
    assert main(["register"]) == 0
    out = capsys.readouterr().out
    assert str(zoo_registered) in out and "videoprism-lvt-large" in out


def test_embed_folder_then_search_and_tag(capsys, tiny_models, video_folder) -> None:
    name = unique_name("cli")
    query = "a video of blue."
    try:
        code = main(["embed", str(video_folder), "--dataset", name, *_model_args(tiny_models),
                     "--classes", ",".join(COLORS), "--sample-tags", "--store-logits",
                     "--query", query, "-k", "2"])
        out = capsys.readouterr().out
        assert code == 0
        dataset = fo.load_dataset(name)
        assert dataset.persistent and len(dataset) == 3
        assert dataset.count("videoprism") == 3
        assert dataset.count("videoprism_zero_shot") == 3
        assert set(dataset.distinct("videoprism_zero_shot.label")) <= set(COLORS)
        assert dataset.values("tags") == [[c] for c in dataset.values("videoprism_zero_shot.label")]
        info = dataset.get_brain_info("videoprism")
        assert info.config.model == "videoprism-lvt-base"
        assert info.config.model_kwargs == tiny_models.lvt  # what the App server reloads

        # The printed top 2 is the ranking computed here with numpy.
        model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
        vectors = np.stack(dataset.values("videoprism"))
        scores = vectors @ model.embed_prompt(query)
        order = np.argsort(-scores)[:2]
        expected = [(round(float(scores[i]), 4), dataset.values("filepath")[i]) for i in order]
        assert _printed_matches(out) == expected

        # Running again only embeds new videos; search and tag reuse the dataset.
        assert main(["embed", str(video_folder), "--dataset", name,
                     *_model_args(tiny_models)]) == 0
        assert "Embedded 0 videos" in capsys.readouterr().out
        assert main(["search", name, query, "-k", "3"]) == 0
        assert [p for _, p in _printed_matches(capsys.readouterr().out)][:2] == \
            [p for _, p in expected]
        assert main(["tag", name, "--classes", "red,blue", "--label-field", "two",
                     *_model_args(tiny_models)]) == 0
        assert "Zero-shot labels in 'two'" in capsys.readouterr().out
        assert set(dataset.distinct("two.label")) <= {"red", "blue"}
        assert main(["tag", name, "--classes", "red,green,blue", "--label-field", "top2",
                     "--top-k", "2", *_model_args(tiny_models)]) == 0
        assert all(len(label.classifications) == 2 for label in dataset.values("top2"))
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_demo_runs_the_main_job_on_its_sample_clips(capsys, tiny_models, tmp_path) -> None:
    from fiftyone_videoprism.fo import demo

    name = unique_name("demo")
    try:
        code = main(["demo", "--folder", str(tmp_path / "clips"), "--dataset", name,
                     *_model_args(tiny_models)])
        out = capsys.readouterr().out
        assert code == 0
        dataset = fo.load_dataset(name)
        assert len(dataset) == len(demo.SCENES) == dataset.count("videoprism")
        assert dataset.count("videoprism_zero_shot") == len(demo.SCENES)
        assert set(dataset.distinct("videoprism_zero_shot.label")) <= set(demo.CLASSES)
        matches = _printed_matches(out)
        assert f"Top 3 for {demo.QUERY!r}" in out and len(matches) == 3
        assert {p for _, p in matches} <= set(dataset.values("filepath"))
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_demo_without_weights_says_how_to_point_at_local_files(capsys, tmp_path,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR", raising=False)
    assert main(["demo", "--folder", str(tmp_path / "clips"), "--dataset",
                 unique_name("demo-offline")]) == 1
    err = capsys.readouterr().err
    assert "flax_lvt_base_f16r288_repeated.npz" in err
    assert "FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR" in err


def test_user_errors_exit_1_with_a_message(capsys, tiny_models) -> None:
    assert main(["demo", "--model", "videoprism-lvt-bsae"]) == 1
    assert "Did you mean 'videoprism-lvt-base'?" in capsys.readouterr().err
    assert main(["search", unique_name("missing"), "a dog"]) == 1
    assert "neither a folder nor a FiftyOne dataset" in capsys.readouterr().err
    dataset = fo.Dataset(unique_name("cli-empty"))
    try:
        assert main(["tag", dataset.name, *_model_args(tiny_models)]) == 1
        assert "--classes is required" in capsys.readouterr().err
    finally:
        dataset.delete()


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "fiftyone_videoprism.fo.cli", "--help"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("register", "embed", "search", "tag"):
        assert command in done.stdout


def test_install_and_uninstall_plugin(capsys, tmp_path) -> None:
    plugins = tmp_path / "plugins"
    assert main(["install-plugin", "--plugins-dir", str(plugins)]) == 0
    assert (plugins / "fiftyone-videoprism" / "fiftyone.yml").is_file()
    assert str(plugins / "fiftyone-videoprism") in capsys.readouterr().out
    assert main(["uninstall-plugin", "--plugins-dir", str(plugins)]) == 0
    assert not (plugins / "fiftyone-videoprism").exists()
    assert main(["uninstall-plugin", "--plugins-dir", str(plugins)]) == 0
    assert "Nothing to remove" in capsys.readouterr().out
