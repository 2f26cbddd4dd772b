"""Never break what works: cheap checks before the expensive part, one model per field,
errors that name the fix once (issue #16), on a real database with the tiny models."""

from __future__ import annotations

import subprocess
import sys

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.core.labels as fol
import numpy as np
import pytest
from fo_fixtures import COLORS, subprocess_env, unique_name

from fiftyone_videoprism.core import video
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.cli import main
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]


@pytest.fixture()
def decodes(monkeypatch) -> list[str]:
    """Every video file opened for decoding, in order."""
    opened: list[str] = []
    real_open = video._open

    def counting(path: str):
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(video, "_open", counting)
    return opened


def _lvt_args(tiny_models) -> list[str]:
    lvt = tiny_models.lvt
    return ["--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
            "--tokenizer", lvt["tokenizer_path"]]


def _video_args(tiny_models) -> list[str]:
    video_only = tiny_models.video
    return ["--model", "videoprism-base", "--model-config", video_only["model_config"],
            "--checkpoint", video_only["checkpoint_path"]]


def test_a_field_never_mixes_two_models(capsys, tiny_models, video_dataset, decodes) -> None:
    name = video_dataset.name
    assert main(["embed", name, *_lvt_args(tiny_models)]) == 0
    before = dict(zip(*video_dataset.values(["id", "videoprism"])))
    provenance = runs.field_provenance(video_dataset, "videoprism")
    assert provenance["model"] == "videoprism-lvt-base" and provenance["num_frames"] == 4
    capsys.readouterr()
    decodes.clear()

    # Another model into the same field: refused before any video is decoded.
    assert main(["embed", name, *_video_args(tiny_models)]) == 1
    err = capsys.readouterr().err
    assert decodes == []
    assert err.count("error:") == 1 and len(err.strip().splitlines()) == 1
    assert "holds embeddings of videoprism-lvt-base" in err and "uses videoprism-base" in err
    assert "--recompute" in err and "--field NAME" in err
    video_dataset.reload()
    after = dict(zip(*video_dataset.values(["id", "videoprism"])))
    assert all(np.array_equal(before[k], after[k]) for k in before)

    # Into another field it works; --recompute replaces the whole field and its provenance.
    assert main(["embed", name, *_video_args(tiny_models), "--field", "vp_base",
                 "--brain-key", "vp_base"]) == 0
    assert main(["embed", name, *_video_args(tiny_models), "--recompute"]) == 0
    video_dataset.reload()
    assert runs.field_provenance(video_dataset, "videoprism")["model"] == "videoprism-base"
    replaced = dict(zip(*video_dataset.values(["id", "videoprism"])))
    base = dict(zip(*video_dataset.values(["id", "vp_base"])))
    assert all(np.allclose(replaced[k], base[k], atol=1e-6) for k in base)


def test_a_missing_tokenizer_fails_before_any_video_is_decoded(capsys, tiny_models,
                                                               video_dataset, decodes) -> None:
    lvt = tiny_models.lvt
    args = ["embed", video_dataset.name, "--model-config", lvt["model_config"],
            "--checkpoint", lvt["checkpoint_path"], "--classes", "a,b"]
    assert main([*args, "--tokenizer", "/nonexistent/nope.model"]) == 1
    err = capsys.readouterr().err
    assert "tokenizer file '/nonexistent/nope.model' does not exist" in err
    assert decodes == [] and not video_dataset.has_field("videoprism")


def test_no_tokenizer_at_all_fails_before_any_video_is_decoded(capsys, tiny_models,
                                                               video_dataset, decodes,
                                                               monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("FIFTYONE_VIDEOPRISM_TOKENIZER", raising=False)
    lvt = tiny_models.lvt
    assert main(["embed", video_dataset.name, "--model-config", lvt["model_config"],
                 "--checkpoint", lvt["checkpoint_path"]]) == 1
    err = capsys.readouterr().err
    assert decodes == []
    assert "Cannot get the c4_en tokenizer" in err and "--tokenizer /path/to/" in err
    assert err.count("Cannot get") == 1


@pytest.mark.parametrize("bad, expected", [
    (["--classes", " , "], "classes is empty"),
    (["--classes", "a,b", "--template", "no placeholder"], "exactly one '{}'"),
], ids=["classes", "template"])
def test_bad_zero_shot_options_fail_before_loading(capsys, tiny_models, video_dataset, decodes,
                                                   monkeypatch, bad, expected) -> None:
    loaded = []
    monkeypatch.setattr("fiftyone_videoprism.fo.loading.zoo_model",
                        lambda *a, **k: loaded.append(a))
    assert main(["embed", video_dataset.name, *_lvt_args(tiny_models), *bad]) == 1
    assert expected in capsys.readouterr().err and loaded == [] and decodes == []


def test_retagging_a_field_of_another_label_type_names_the_fix(capsys, tiny_models,
                                                               video_dataset) -> None:
    classes = ",".join(COLORS)
    assert main(["tag", video_dataset.name, *_lvt_args(tiny_models), "--classes", classes,
                 "--label-field", "scene"]) == 0
    capsys.readouterr()
    assert main(["tag", video_dataset.name, *_lvt_args(tiny_models), "--classes", classes,
                 "--label-field", "scene", "--top-k", "2"]) == 1
    err = capsys.readouterr().err
    assert "field 'scene' holds Classification labels and this run writes Classifications" in err
    assert "--label-field NAME" in err and "Expected" not in err


def test_sample_tags_of_an_earlier_run_are_replaced(capsys, tiny_models, video_dataset) -> None:
    name = video_dataset.name
    assert main(["tag", name, *_lvt_args(tiny_models), "--classes", "red,green,blue",
                 "--sample-tags"]) == 0
    assert set(video_dataset.distinct("tags")) <= {"red", "green", "blue"}
    assert main(["tag", name, *_lvt_args(tiny_models), "--classes", "warm,cold",
                 "--sample-tags"]) == 0
    video_dataset.reload()
    tags = video_dataset.values("tags")
    assert all(len(t) == 1 and t[0] in {"warm", "cold"} for t in tags), tags
    out = capsys.readouterr().out
    assert "Tagged 3 videos" in out


def test_top_k_summary_counts_videos_by_their_best_label(capsys, tiny_models,
                                                          video_dataset) -> None:
    assert main(["tag", video_dataset.name, *_lvt_args(tiny_models), "--classes",
                 "red,green,blue", "--top-k", "2", "--label-field", "top2"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("Zero-shot labels in 'top2'"))
    counts = [int(part.rsplit(" ", 1)[1]) for part in line.split(": ", 1)[1].split(", ")]
    assert sum(counts) == len(video_dataset) == 3  # one per video, not k per video
    best = [labels.classifications[0].label for labels in video_dataset.values("top2")]
    assert line.endswith(", ".join(f"{c} {best.count(c)}" for c in ("red", "green", "blue")))


def test_zero_shot_reuses_only_embeddings_of_the_same_model(tiny_models, video_dataset) -> None:
    lvt = VideoPrismModel(VideoPrismModelConfig({**tiny_models.lvt, "classes": list(COLORS)}))
    runs.compute_embeddings(video_dataset, lvt, "emb")
    stats = runs.apply_zero_shot(video_dataset, lvt, "zs", embeddings_field="emb")
    assert stats.written == 3 and stats.computed == 0  # all three reused
    # Vectors of unknown origin in the field: refused instead of trusted.
    video_dataset.set_values("other", [np.ones(64, np.float32)] * 3)
    with pytest.raises(runs.ProvenanceError, match="holds embeddings of an unknown model"):
        runs.apply_zero_shot(video_dataset, lvt, "zs", embeddings_field="other")


def test_label_field_type_is_checked_in_python_too(tiny_models, video_dataset) -> None:
    lvt = VideoPrismModel(VideoPrismModelConfig({**tiny_models.lvt, "classes": list(COLORS)}))
    runs.apply_zero_shot(video_dataset, lvt, "zs", top_k=2)
    assert isinstance(video_dataset.first()["zs"], fol.Classifications)
    with pytest.raises(runs.ProvenanceError, match="holds Classifications labels"):
        runs.apply_zero_shot(video_dataset, lvt, "zs")


def test_offline_compute_similarity_names_model_kwargs_once(tiny_models, video_dataset,
                                                            tmp_path) -> None:
    # The README's Python path, offline and without model_kwargs: one error, one line of cause,
    # and the fix for this very call.
    script = (
        "import fiftyone as fo, fiftyone.brain as fob, fiftyone_videoprism as fvp\n"
        "fvp.register_zoo()\n"
        "dataset = fo.load_dataset(%r)\n"
        "fob.compute_similarity(dataset, model='videoprism-lvt-base', brain_key='offline')\n"
    ) % video_dataset.name
    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR", None)
    video_dataset.persistent = True
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert output.count("Cannot get the videoprism-lvt-base checkpoint") == 1, output
    assert "model_kwargs={'checkpoint_path': '/path/to/flax_lvt_base_f16r288_repeated.npz'}" \
        in output
    assert "During handling of the above exception" not in output
    assert "was not downloaded" not in output


def test_offline_demo_reports_the_missing_weights_once(tmp_path) -> None:
    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "fiftyone_videoprism.fo.cli", "demo", "--folder",
         str(tmp_path / "clips"), "--dataset", unique_name("offline-demo")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert output.count("flax_lvt_base_f16r288_repeated.npz is not in the Hugging Face cache") == 1
    assert "--checkpoint /path/to/flax_lvt_base_f16r288_repeated.npz" in output
    assert "Traceback" not in output and "was not downloaded" not in output
