"""cache.py: content digests remembered per file, entries keyed by content, model and clip,
atomic and tolerant of damaged entries; and its use by apply.py (model calls counted)."""

from __future__ import annotations

import os
import shutil

import fiftyone as fo
import numpy as np
import pytest
from fo_fixtures import unique_name
from videogen import corrupted_copy, write_stamped

from fiftyone_videoprism.core import env
from fiftyone_videoprism.core import hub
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.core.cache import EmbeddingsCache
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]


def test_digest_follows_content_not_path(tmp_path) -> None:
    cache = EmbeddingsCache(tmp_path / "cache")
    video = write_stamped(tmp_path / "a.mp4", 8)
    digest = cache.digest(video)
    assert cache.known_digest(video) == digest
    copy = tmp_path / "b.mp4"
    shutil.copyfile(video, copy)
    assert cache.known_digest(copy) is None  # never seen: no memo, no read
    assert cache.digest(copy) == digest
    # One flipped block in the middle, same size, same mtime: a different video.
    stat = video.stat()
    corrupted_copy(copy, video, stat.st_size // 2, 16)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.known_digest(video) is None  # utime itself moved the ctime
    assert cache.digest(video) != digest
    with pytest.raises(FileNotFoundError):
        cache.digest(tmp_path / "missing.mp4")


def test_entries_are_keyed_atomic_and_damage_is_a_miss(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(env.EMBEDDINGS_CACHE, str(tmp_path / "env"))
    assert EmbeddingsCache().folder == tmp_path / "env"
    cache = EmbeddingsCache(tmp_path / "cache")
    keys = {cache.key("m1", "d", None), cache.key("m2", "d", None), cache.key("m1", "e", None),
            cache.key("m1", "d", (1, 8)), cache.key("m1", "d", (2, 8))}
    assert len(keys) == 5
    key = cache.key("m1", "d", None)
    assert cache.get(key) is None
    vector = np.arange(4, dtype=np.float32)
    cache.put(key, vector)
    np.testing.assert_array_equal(cache.get(key), vector)
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [f"{key}.npy"]
    entry = next((tmp_path / "cache").rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:20])  # damaged on disk
    assert cache.get(key) is None
    with pytest.raises(ValueError, match="shape"):
        cache.put(key, np.zeros((2, 2)))


def test_runs_take_embeddings_from_the_cache(tiny_models, video_dataset, tmp_path,
                                             monkeypatch) -> None:
    model = VideoPrismModel(VideoPrismModelConfig({**tiny_models.lvt, "batch_size": 2}))
    calls = []
    embed_frames = model.embed_frames
    monkeypatch.setattr(model, "embed_frames", lambda f: calls.append(len(f)) or embed_frames(f))
    cache = tmp_path / "cache"
    first = runs.compute_embeddings(video_dataset, model, "a", cache=cache)
    assert (first.written, first.computed, sum(calls)) == (3, 3, 3)

    # Same settings, another field and another dataset holding copies: no model call.
    copies = fo.Dataset(unique_name("copies"))
    for i, path in enumerate(video_dataset.values("filepath")):
        shutil.copyfile(path, tmp_path / f"copy{i}.mp4")
        copies.add_sample(fo.Sample(filepath=str(tmp_path / f"copy{i}.mp4")))
    try:
        again = runs.compute_embeddings(video_dataset, model, "b", cache=cache)
        copied = runs.compute_embeddings(copies, model, "a", cache=cache)
        assert (again.computed, copied.computed, sum(calls)) == (0, 0, 3)
        np.testing.assert_array_equal(np.stack(video_dataset.values("b")),
                                      np.stack(video_dataset.values("a")))
        np.testing.assert_array_equal(np.stack(copies.values("a")),
                                      np.stack(video_dataset.values("a")))
    finally:
        copies.delete()

    # Other frame settings are another embedding.
    key = model.embedding_key
    model.config.num_frames = 2
    assert model.embedding_key != key
    other = runs.compute_embeddings(video_dataset, model, "c", cache=cache)
    assert other.computed == 3 and sum(calls) == 6
