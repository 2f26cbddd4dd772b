"""zoo.py: the zoo source on disk, FiftyOne's download/load rules, loading by name in a fresh
process, the operator form hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fiftyone as fo
import fiftyone.zoo as foz
import huggingface_hub
import numpy as np
import pytest
from fo_fixtures import subprocess_env

from fiftyone_videoprism.core import env
from fiftyone_videoprism.core import hub
from fiftyone_videoprism.fo import zoo
from fiftyone_videoprism.fo.model import VideoPrismModel

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

NAMES = ["videoprism-base", "videoprism-large", "videoprism-lvt-base", "videoprism-lvt-large"]


def test_register_is_idempotent_and_lists_the_models(zoo_registered: Path) -> None:
    assert zoo_registered == Path(fo.config.model_zoo_dir) / "fiftyone-videoprism"
    before = {p.name: p.stat().st_mtime_ns for p in zoo_registered.iterdir()}
    assert zoo.register_zoo() == zoo_registered
    assert {p.name: p.stat().st_mtime_ns for p in zoo_registered.iterdir()} == before

    assert sorted(foz.list_zoo_models(tags="mlx")) == NAMES
    assert "https://pypi.org/project/fiftyone-videoprism/" in foz.list_zoo_model_sources()
    for name in NAMES:
        model = foz.get_zoo_model(name)
        assert {"embeddings", "video", "mlx"} <= set(model.tags)
        assert ("zero-shot" in model.tags) == ("lvt" in name)
        assert model.size_bytes > 4e8 and model.license and model.description


def test_download_writes_a_real_file_once(zoo_registered, tiny_models, monkeypatch) -> None:
    # Released file names in a local folder: the hook finds them without any network.
    monkeypatch.setenv(env.CHECKPOINT_DIR, str(tiny_models.checkpoint_dir))
    monkeypatch.setenv(env.TOKENIZER, str(tiny_models.tokenizer))
    name = "videoprism-lvt-base"
    foz.delete_zoo_model(name)
    assert not foz.is_zoo_model_downloaded(name)

    model = foz.load_zoo_model(name, cache=False, **tiny_models.lvt)
    path = Path(foz.find_zoo_model(name))
    assert path.is_file() and not path.is_symlink()
    record = json.loads(path.read_text())
    assert record["checkpoint"] == str(tiny_models.checkpoint_dir /
                                       "flax_lvt_base_f16r288_repeated.npz")
    assert record["tokenizer"] == str(tiny_models.tokenizer)
    assert isinstance(model, VideoPrismModel) and model.can_embed_prompts

    # A second load sees the file and does not run the download hook again.
    monkeypatch.setattr(zoo, "download_model", _fail_if_called)
    stamp = path.stat().st_mtime_ns
    foz.load_zoo_model(name, cache=False, **tiny_models.lvt)
    assert path.stat().st_mtime_ns == stamp
    foz.delete_zoo_model(name)


def _fail_if_called(*args) -> None:
    raise AssertionError("the model was downloaded again")


def test_offline_load_with_local_paths(zoo_registered, tiny_models, monkeypatch, caplog) -> None:
    monkeypatch.delenv(env.CHECKPOINT_DIR, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    name = "videoprism-base"
    foz.delete_zoo_model(name)
    with caplog.at_level("WARNING"):
        model = foz.load_zoo_model(name, cache=False, **tiny_models.video)
    assert isinstance(model, VideoPrismModel) and not model.can_embed_prompts
    # Not downloaded, and no warning about it: the local files loaded.
    assert not foz.is_zoo_model_downloaded(name)
    assert "was not downloaded" not in caplog.text and not caplog.records


def test_unknown_load_kwargs_are_refused(zoo_registered, tiny_models) -> None:
    with pytest.raises(ValueError, match="unknown VideoPrism model parameters.*checkpoint"):
        foz.load_zoo_model("videoprism-lvt-base", checkpoint=tiny_models.lvt["checkpoint_path"])


def test_load_by_name_in_a_fresh_process(zoo_registered, tiny_models, color_videos) -> None:
    script = (
        "import json, sys\n"
        "import fiftyone.zoo as foz\n"
        "kwargs = json.loads(sys.argv[1])\n"
        "model = foz.load_zoo_model('videoprism-lvt-base', **kwargs)\n"
        "print(json.dumps({'text': model.embed_prompt('a video of red.').tolist(),\n"
        "                  'video': model.embed(sys.argv[2]).tolist()}))\n"
    )
    path = str(color_videos["red"])
    done = subprocess.run([sys.executable, "-c", script, json.dumps(tiny_models.lvt), path],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    here = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    np.testing.assert_allclose(out["text"], here.embed_prompt("a video of red."), atol=1e-6)
    np.testing.assert_allclose(out["video"], here.embed(path), atol=1e-6)


def test_operator_form_hooks(zoo_registered) -> None:
    form = zoo.resolve_input("videoprism-lvt-base", None)
    fields = set(form.type.properties)
    assert {"classes", "prompt_templates", "num_frames", "resize", "batch_size"} <= fields
    assert "classes" not in zoo.resolve_input("videoprism-base", None).type.properties

    params = {"classes": " cooking, swimming ,,playing drums", "num_frames": None, "resize":
              "center_crop", "prompt_templates": []}
    zoo.parse_parameters("videoprism-lvt-base", None, params)
    assert params == {"classes": ["cooking", "swimming", "playing drums"],
                      "resize": "center_crop"}


def test_source_shim_imports_the_installed_package() -> None:
    shim = Path(zoo.__file__).parent / "zoo_source" / "__init__.py"
    code = shim.read_text()
    assert "from fiftyone_videoprism.fo.zoo import" in code and "from ." not in code
    # FiftyOne runs it from a path under a made-up module name: it must import standalone.
    done = subprocess.run([sys.executable, str(shim)], env=subprocess_env(), cwd=os.sep,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
