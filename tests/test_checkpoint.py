"""Released-format checkpoints: layout, validation, refusal of bad files, the converted cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import checkpoint as C
from fiftyone_videoprism.core.configs import from_original_kwargs

DATA = Path(__file__).parent / "data"
FULL = {
    "videoprism-base": "videoprism_public_v1_base",
    "videoprism-large": "videoprism_public_v1_large",
    "videoprism-lvt-base": "videoprism_lvt_public_v1_base",
    "videoprism-lvt-large": "videoprism_lvt_public_v1_large",
}


def _fixture_config(name: str):
    return from_original_kwargs(json.loads((DATA / name / "config.json").read_text())["config"])


@pytest.mark.parametrize("name", list(FULL))
def test_layout_matches_released_files(name):
    released = json.loads((DATA / "full_shapes" / f"{FULL[name]}.json").read_text())
    expected = {k: tuple(v) for k, v in released["keys"].items()}
    assert len(expected) == released["num_keys"]
    assert C.flax_shapes(fvp.get_config(name)) == expected


@pytest.mark.parametrize("fixture", ["tiny_video", "tiny_lvt"])
def test_layout_matches_fixture_files(fixture):
    cfg = json.loads((DATA / fixture / "config.json").read_text())
    expected = {k: tuple(v) for k, v in cfg["checkpoint_keys"].items()}
    assert C.flax_shapes(_fixture_config(fixture)) == expected
    with np.load(DATA / fixture / f"flax_{fixture}_repeated.npz") as npz:
        assert {k: npz[k].shape for k in npz.files} == expected


@pytest.fixture
def tiny_video_arrays():
    return C.read_flax_npz(DATA / "tiny_video" / "flax_tiny_video_repeated.npz")


def test_validation_names_missing_unexpected_and_misshaped_keys(tiny_video_arrays):
    config = _fixture_config("tiny_video")
    arrays = dict(tiny_video_arrays)
    del arrays["params/temporal_ln/bias"]
    arrays["params/extra/thing"] = np.zeros(3, np.float32)
    arrays["params/spatial_pos_emb/emb_var"] = np.zeros((9, 64), np.float32)
    with pytest.raises(C.CheckpointError) as info:
        C.convert(arrays, config, source="x.npz")
    msg = str(info.value)
    assert "1 missing keys (params/temporal_ln/bias)" in msg
    assert "1 unexpected keys (params/extra/thing)" in msg
    assert "params/spatial_pos_emb/emb_var has shape (9, 64), expected (16, 64)" in msg
    # no released model has this layout: the hint is the architecture override
    assert "model_config= / --model-config" in msg


def test_wrong_model_is_refused_with_the_differing_key(tmp_path):
    npz = shutil.copy(DATA / "tiny_video" / "flax_tiny_video_repeated.npz", tmp_path)
    with pytest.raises(C.CheckpointError) as info:
        fvp.load_model("videoprism-base", checkpoint=npz)
    msg = str(info.value)
    assert "pass its architecture too (model_config= / --model-config" in msg
    assert "params/patch_projection/linear/kernel has shape (192, 64), expected (972, 768)" in msg
    assert len(msg) < 1500  # a summary, not every key
    # an LvT checkpoint for a video-only config: named as such
    lvt = shutil.copy(DATA / "tiny_lvt" / "flax_tiny_lvt_repeated.npz", tmp_path)
    with pytest.raises(C.CheckpointError, match="this is a video-text \\(LvT\\) checkpoint and the "
                                                "model is video-only"):
        fvp.load_model(DATA / "tiny_video" / "config.json", checkpoint=lvt)


def test_a_released_checkpoint_is_recognised_by_its_keys(tmp_path):
    # Random full-size-layout arrays (zeros: only keys and shapes matter) of videoprism-base,
    # given to videoprism-lvt-base: the message names the model the file is for.
    shapes = C.flax_shapes(fvp.get_config("videoprism-base"))
    arrays = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}
    assert C.identify(arrays) == "videoprism-base"
    with pytest.raises(C.CheckpointError, match="this looks like a videoprism-base checkpoint: "
                                                "load it as videoprism-base"):
        C.validate(arrays, fvp.get_config("videoprism-lvt-base"), "base.npz")


@pytest.mark.parametrize("content, kind", [
    (b"hello, this is not a checkpoint\n", "a text file"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "an MP4/MOV video"),
    (b"\x80\x04\x95\x10\x00\x00", "a Python pickle"),
    (b"", "an empty file"),
], ids=["text", "mp4", "pickle", "empty"])
def test_files_that_are_not_checkpoints_are_named(tmp_path, content, kind):
    path = tmp_path / "weights.npz"
    path.write_bytes(content)
    with pytest.raises(C.CheckpointError) as info:
        fvp.load_model("videoprism-base", checkpoint=path)
    assert f"this is {kind}" in str(info.value) and "pickled objects" not in str(info.value)
    assert "flax_*_repeated.npz" in str(info.value)


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"params/x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(C.CheckpointError, match="pickled"):
        C.read_flax_npz(path)


def test_truncated_file_is_reported(tmp_path):
    data = (DATA / "tiny_video" / "flax_tiny_video_repeated.npz").read_bytes()
    path = tmp_path / "flax_tiny_video_repeated.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CheckpointError, match="truncated"):
        fvp.load_model(DATA / "tiny_video" / "config.json", checkpoint=path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        fvp.load_model(DATA / "tiny_video" / "config.json", checkpoint=tmp_path / "nope.npz")


def test_conversion_is_cached_and_refreshed(tmp_path, monkeypatch):
    src = Path(shutil.copy(DATA / "tiny_video" / "flax_tiny_video_repeated.npz", tmp_path))
    config = _fixture_config("tiny_video")
    cache = tmp_path / "flax_tiny_video_repeated.mlx.safetensors"
    reads = []
    real_read = C.read_flax_npz
    monkeypatch.setattr(C, "read_flax_npz", lambda p: reads.append(p) or real_read(p))

    first = C.load_checkpoint(src, config)
    assert cache.is_file() and len(reads) == 1
    second = C.load_checkpoint(src, config)
    assert len(reads) == 1, "the cached conversion was not reused"
    assert set(first) == set(second)
    for k in first:
        np.testing.assert_array_equal(np.array(first[k]), np.array(second[k]))

    # A changed source is converted again.
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    C.load_checkpoint(src, config)
    assert len(reads) == 2

    # A corrupt cache entry is rebuilt, not trusted.
    cache.write_bytes(cache.read_bytes()[:100])
    C.load_checkpoint(src, config)
    assert len(reads) == 3
    assert C.load_converted(cache)[1] == config


def test_converted_file_loads_directly(tmp_path):
    src = shutil.copy(DATA / "tiny_lvt" / "flax_tiny_lvt_repeated.npz", tmp_path)
    a = fvp.load_model(DATA / "tiny_lvt" / "config.json", checkpoint=src)
    converted = tmp_path / "flax_tiny_lvt_repeated.mlx.safetensors"
    b = fvp.load_model(DATA / "tiny_lvt" / "config.json", checkpoint=converted)
    video = np.random.default_rng(0).random((1, 4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.array(a.encode_video(video)), np.array(b.encode_video(video)))
    with pytest.raises(C.CheckpointError, match="was converted for config"):
        fvp.load_model(DATA / "tiny_video" / "config.json", checkpoint=converted)


def test_read_only_source_folder_caches_in_user_dir(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    src = Path(shutil.copy(DATA / "tiny_video" / "flax_tiny_video_repeated.npz", ro))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write into read-only folders (root)")
        C.load_checkpoint(src, _fixture_config("tiny_video"))
        assert list((tmp_path / "cache" / "fiftyone-videoprism").rglob("*.mlx.safetensors"))
    finally:
        ro.chmod(0o755)
