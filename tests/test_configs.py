from __future__ import annotations

import json
from pathlib import Path

import pytest

from fiftyone_videoprism.core import configs

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("alias,name", [
    ("videoprism_public_v1_base", "videoprism-base"),
    ("videoprism_lvt_public_v1_large", "videoprism-lvt-large"),
    ("google/videoprism-lvt-base-f16r288", "videoprism-lvt-base"),
    ("VideoPrism_LvT_Base", "videoprism-lvt-base"),
])
def test_aliases(alias, name):
    assert configs.canonical_name(alias) == name
    assert configs.get_config(alias) is configs.MODEL_CONFIGS[name]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'videoprism-lvt-base'"):
        configs.get_config("videoprism-lvt-bse")
    with pytest.raises(ValueError, match="Available: videoprism-base"):
        configs.get_config("resnet50")


def test_released_configs_match_the_released_layout():
    for name, released in [("videoprism-base", "videoprism_public_v1_base"),
                           ("videoprism-lvt-large", "videoprism_lvt_public_v1_large")]:
        original = json.loads((DATA / "full_shapes" / f"{released}.json").read_text())["config"]
        assert configs.from_original_kwargs(original) == configs.get_config(name)


@pytest.mark.parametrize("fixture", ["tiny_video", "tiny_lvt"])
def test_original_kwargs_roundtrip(fixture):
    kwargs = json.loads((DATA / fixture / "config.json").read_text())["config"]
    config = configs.from_original_kwargs(kwargs)
    assert config.is_lvt == (fixture == "tiny_lvt")
    assert configs.from_original_kwargs(config.to_dict()) == config
    assert config.num_frames == 4 and config.image_size == 32 and config.head_dim == 16


def test_bad_kwargs_are_rejected():
    with pytest.raises(ValueError, match=r"unknown VideoPrism config keys \['modle_dim'\]"):
        configs.from_original_kwargs({"modle_dim": 64})
    with pytest.raises(ValueError, match="not divisible"):
        configs.VideoPrismConfig(model_dim=65, num_heads=4)
    with pytest.raises(ValueError, match="norm_policy"):
        configs.VideoPrismConfig(norm_policy="primer_hybrid")
    with pytest.raises(ValueError, match="needs all of"):
        configs.VideoPrismConfig(vocabulary_size=100)
