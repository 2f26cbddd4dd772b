"""Issue #6, end to end on a real FiftyOne database: a corpus of broken and unusual videos run
through apply.py, FiftyOne's own apply_model / compute_embeddings and the compute_embeddings
operator; runs killed with SIGKILL and resumed; two processes filling one field; input checks
at the public entry points."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from fo_fixtures import subprocess_env, unique_name
from videogen import corrupted_copy, truncated_copy, write_audio_only, write_stamped

from fiftyone_videoprism.core import video
from fiftyone_videoprism.fo import runs, plugin
from fiftyone_videoprism.core.cache import EmbeddingsCache
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]

# Corpus kind -> what the user must see: None for an embedding, else words of the stored error.
EXPECTED = {
    "h264 640x360 (good)": None,
    "zero-byte file": "cannot be read as a video",
    "truncated (index at the end)": "cannot be read as a video",
    "truncated (faststart, data cut)": "decoding failed",
    "corrupt header bytes": "cannot be read as a video",
    "corrupt bitstream": "decoding failed",
    "audio only": "no video stream (streams: audio)",
    "text file named .mp4": "cannot be read as a video",
    "missing file": "no such video file",
    "folder named .mp4": "not a file",
    "1 frame": None,
    "4K 3840x2160": None,
    "variable frame rate": None,
    "rotation 90": None,
    "10-bit yuv420p10le": None,
    "yuv444p": None,
    "grayscale": None,
    "odd size 65x49": None,
}
# Clips of a 24-frame video: kind -> (support, expected as in EXPECTED)
CLIPS = {
    "clip [5, 500] of 24 frames": ((5, 500), None),
    "clip [100, 200] of 24 frames": ((100, 200), "starts after the last frame"),
}


def write_corpus(folder: Path) -> dict[str, Path]:
    """One file per kind in EXPECTED, made with PyAV and byte-level damage to good files."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_stamped(folder / "good.mp4", 24)
    fast = write_stamped(folder / "fast.mp4", 24, faststart=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("meeting notes, not a video\n")
    (folder / "dir.mp4").mkdir(exist_ok=True)
    vfr = [0, 0.01, 0.05, 0.06, 0.2, 0.21, 0.5, 0.52, 0.9, 1.0, 1.4, 1.41]
    return {
        "h264 640x360 (good)": write_stamped(folder / "640x360.mp4", 12, 640, 360),
        "zero-byte file": empty,
        "truncated (index at the end)": truncated_copy(good, folder / "trunc.mp4",
                                                       good.stat().st_size // 2),
        "truncated (faststart, data cut)": truncated_copy(fast, folder / "trunc_fs.mp4",
                                                          fast.stat().st_size // 2),
        "corrupt header bytes": corrupted_copy(good, folder / "bad_head.mp4", 0, 64),
        "corrupt bitstream": corrupted_copy(fast, folder / "bad_data.mp4",
                                            fast.stat().st_size // 2, 512),
        "audio only": write_audio_only(folder / "tone.mp4"),
        "text file named .mp4": text,
        "missing file": folder / "gone.mp4",
        "folder named .mp4": folder / "dir.mp4",
        "1 frame": write_stamped(folder / "one.mp4", 1),
        "4K 3840x2160": write_stamped(folder / "uhd.mp4", 2, 3840, 2160,
                                      options={"preset": "ultrafast"}),
        "variable frame rate": write_stamped(folder / "vfr.mp4", len(vfr), timestamps=vfr),
        "rotation 90": write_stamped(folder / "rot.mp4", 8, rotation=90),
        "10-bit yuv420p10le": write_stamped(folder / "ten.mp4", 8, pix_fmt="yuv420p10le"),
        "yuv444p": write_stamped(folder / "444.mp4", 8, pix_fmt="yuv444p"),
        "grayscale": write_stamped(folder / "gray.mp4", 8, pix_fmt="gray", gray=True),
        "odd size 65x49": write_stamped(folder / "odd.mp4", 8, 65, 49, pix_fmt="yuv444p"),
    }


def make_model(kwargs: dict, **extra) -> VideoPrismModel:
    return VideoPrismModel(VideoPrismModelConfig({**kwargs, **extra}))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def lvt(tiny_models) -> VideoPrismModel:
    return make_model(tiny_models.lvt, batch_size=2)


@pytest.fixture()
def corpus_dataset(corpus):
    dataset = fo.Dataset(unique_name("corpus"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(path), kind=kind)
                         for kind, path in corpus.items()])
    yield dataset
    dataset.delete()


def reference(model: VideoPrismModel, path: str, support=None) -> np.ndarray:
    """One video's embedding, decoded and embedded on its own."""
    frames = video.read_frames(path, model.num_frames, model.image_size, support=support)
    return model.embed_frames(frames[None])[0]


def check_outcomes(dataset, model: VideoPrismModel, field: str, expected: dict[str, str | None],
                   error_field: str | None) -> dict[str, str]:
    """Asserts each sample's embedding or error; returns kind -> what the user sees."""
    seen = {}
    for sample in dataset:
        words = expected[sample.kind]
        error = sample[error_field] if error_field and sample.has_field(error_field) else None
        if words is None:
            assert error is None, (sample.kind, error)
            support = tuple(sample.support) if sample.has_field("support") else None
            np.testing.assert_allclose(sample[field], reference(model, sample.filepath, support),
                                       atol=1e-5)
            seen[sample.kind] = "embedding"
        else:
            assert sample[field] is None, sample.kind
            if error_field:
                assert sample.filepath in error and words in error, (sample.kind, error)
            seen[sample.kind] = error or "no embedding, warning in the log"
    return seen


def test_corpus_gives_an_embedding_or_a_named_error(lvt, corpus_dataset, tmp_path,
                                                    caplog) -> None:
    cache = EmbeddingsCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="fiftyone_videoprism.fo.runs"):
        stats = runs.compute_embeddings(corpus_dataset, lvt, "emb", cache=cache)
    bad = [kind for kind, words in EXPECTED.items() if words is not None]
    assert (stats.written, len(stats.failed), stats.computed) == (len(EXPECTED) - len(bad),
                                                                 len(bad), len(EXPECTED) - len(bad))
    seen = check_outcomes(corpus_dataset, lvt, "emb", EXPECTED, "emb_error")
    # Failures are filterable and summarised once.
    assert sorted(corpus_dataset.exists("emb_error").values("kind")) == sorted(bad)
    summary = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(summary) == 1 and f"{len(bad)} failed" in summary[0] and "emb_error" in summary[0]
    print("\ninput kind -> what the user sees")
    for kind, outcome in seen.items():
        print(f"| {kind} | {outcome} |")

    # Re-running resumes: nothing left to do; a recompute takes every embedding from the cache.
    again = runs.compute_embeddings(corpus_dataset, lvt, "emb", skip_existing=True, cache=cache)
    assert (again.written, again.computed, again.skipped) == (0, 0, stats.written)
    assert len(again.failed) == len(bad)  # failed videos are retried: the file may be fixed
    recompute = runs.compute_embeddings(corpus_dataset, lvt, "emb", cache=cache)
    assert (recompute.written, recompute.computed) == (stats.written, 0)


def test_corpus_through_fiftyone_and_the_operator(lvt, tiny_models, corpus_dataset,
                                                  tmp_path_factory, monkeypatch) -> None:
    # FiftyOne's own per-sample loops: a None result and a logged warning per bad video.
    corpus_dataset.compute_embeddings(lvt, embeddings_field="fo_emb")
    check_outcomes(corpus_dataset, lvt, "fo_emb", EXPECTED, None)
    lvt.config.classes = ["red", "green"]
    try:
        corpus_dataset.apply_model(lvt, label_field="fo_label")
    finally:
        lvt.config.classes = None
    labelled = corpus_dataset.exists("fo_label").values("kind")
    assert sorted(labelled) == sorted(k for k, words in EXPECTED.items() if words is None)

    # The App's operator: the same run as runs.compute_embeddings, errors in a field.
    plugins_dir = tmp_path_factory.mktemp("plugins")
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", str(plugins_dir))
    monkeypatch.setattr(fo.config, "plugins_dir", str(plugins_dir))
    plugin.install_plugin()
    params = {"model": "videoprism-lvt-base", "local_files": True, **tiny_models.lvt,
              "batch_size": 2, "embeddings_field": "op_emb"}
    result = foo.execute_operator(f"{plugin.PLUGIN_NAME}/compute_embeddings",
                                  dataset=corpus_dataset, params=params)
    assert result.error is None
    check_outcomes(corpus_dataset, lvt, "op_emb", EXPECTED, "op_emb_error")


def test_clip_ranges_past_the_end(lvt, corpus) -> None:
    good = corpus["zero-byte file"].parent / "good.mp4"  # 24 frames
    dataset = fo.Dataset(unique_name("clips"))
    dataset.add_sample(fo.Sample(filepath=str(good), events=fo.TemporalDetections(detections=[
        fo.TemporalDetection(label=kind, support=list(support))
        for kind, (support, _) in CLIPS.items()
    ])))
    try:
        clips = dataset.to_clips("events")
        clips.set_values("kind", clips.values("events.label"))
        stats = runs.compute_embeddings(clips, lvt, "emb")
        assert (stats.written, len(stats.failed)) == (1, 1)
        seen = check_outcomes(clips, lvt, "emb", {k: v for k, (_, v) in CLIPS.items()},
                              "emb_error")
        for kind, outcome in seen.items():
            print(f"| {kind} | {outcome} |")
        # A range running past the end is cut to the frames that exist.
        cut = clips.match(fo.ViewField("kind") == "clip [5, 500] of 24 frames").first()
        np.testing.assert_allclose(cut.emb, reference(lvt, str(good), (5, 24)), atol=1e-5)
    finally:
        dataset.delete()


# ---------------------------------------------------------------------------------------------
# Killed and resumed runs; two processes on one field

# A child embedding run. The model is slowed down (a sleep per batch) so that a kill lands
# mid-run, and every embedding the model returns is appended to a log: the parent counts
# model calls per sample from it.
CHILD = """
import json, sys, time
import fiftyone as fo
import numpy as np
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

args = json.loads(sys.argv[1])
model = VideoPrismModel(VideoPrismModelConfig(args["model"]))
embed_frames = model.embed_frames

def logged(frames):
    time.sleep(args["sleep"])
    out = embed_frames(frames)
    with open(args["log"], "a") as log:
        log.writelines(json.dumps(v.tolist()) + "\\n" for v in out)
    return out

model.embed_frames = logged
dataset = fo.load_dataset(args["dataset"])
view = dataset.select(args["ids"]) if args["ids"] is not None else dataset
stats = runs.compute_embeddings(view, model, "emb", skip_existing=True, cache=args["cache"])
print(json.dumps({"written": stats.written, "computed": stats.computed,
                  "failed": len(stats.failed)}))
"""


@pytest.fixture()
def run_dataset(tmp_path):
    """16 distinct good videos and 2 broken ones, in a persistent dataset (seen by children)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    paths = [write_stamped(folder / f"v{i:02d}.mp4", 6 + i) for i in range(16)]
    paths.append(folder / "missing.mp4")
    paths.append(write_audio_only(folder / "tone.mp4"))
    dataset = fo.Dataset(unique_name("resume"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])
    yield dataset
    dataset.delete()


def start_child(tmp_path: Path, dataset, tiny_models, log: Path, *, ids=None,
                sleep: float = 0.0) -> subprocess.Popen:
    args = {"model": {**tiny_models.lvt, "batch_size": 2}, "dataset": dataset.name,
            "ids": ids, "cache": str(tmp_path / "cache"), "log": str(log), "sleep": sleep}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)],
                            env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def logged_vectors(log: Path) -> np.ndarray:
    lines = log.read_text().splitlines() if log.exists() else []
    return np.array([json.loads(line) for line in lines if line.endswith("]")], np.float32)


def owners(vectors: np.ndarray, ids: list[str], truth: np.ndarray) -> list[str]:
    """The sample each vector is the embedding of (all 16 videos embed far apart)."""
    if not len(vectors):
        return []
    distance = np.abs(vectors[:, None, :] - truth[None]).max(axis=-1)
    assert (distance.min(axis=1) < 1e-4).all()
    return [ids[i] for i in distance.argmin(axis=1)]


def cached_owners(cache: Path, ids: list[str], truth: np.ndarray) -> set[str]:
    files = [p for p in cache.glob("embeddings/*/*.npy") if not p.name.startswith(".tmp-")]
    return set(owners(np.array([np.load(p) for p in files]), ids, truth)) if files else set()


def test_killed_runs_resume_without_recomputing(lvt, tiny_models, run_dataset,
                                                tmp_path) -> None:
    good = run_dataset.match(~fo.ViewField("filepath").ends_with(("missing.mp4", "tone.mp4")))
    ids = good.values("id")
    truth = np.stack([reference(lvt, p) for p in good.values("filepath")])
    rng = np.random.default_rng(6)
    figures = []
    persisted: set[str] = set()
    for attempt in range(3):
        log = tmp_path / f"log{attempt}.jsonl"
        child = start_child(tmp_path, run_dataset, tiny_models, log, sleep=0.15)
        kill_after = rng.uniform(0.0, 0.6) if attempt < 2 else None
        if kill_after is not None:
            while not log.exists() and child.poll() is None:  # the model has started
                time.sleep(0.02)
            time.sleep(kill_after)
            child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=120)
        computed = owners(logged_vectors(log), ids, truth)
        # Nothing saved before (database or cache) is computed again.
        assert not set(computed) & persisted, (attempt, err)
        run_dataset.reload()  # the child added fields
        in_db = set(run_dataset.exists("emb").values("id")) if run_dataset.has_field("emb") \
            else set()
        persisted_now = in_db | cached_owners(tmp_path / "cache", ids, truth)
        lost = set(computed) - persisted_now  # returned by the model, killed before saving
        assert len(lost) <= 2 and len(computed) == len(set(computed))
        figures.append((attempt, kill_after, len(computed), len(in_db), len(persisted_now), lost))
        persisted = persisted_now
        if kill_after is None:
            assert child.returncode == 0, err
            assert json.loads(out.splitlines()[-1])["failed"] == 2
        else:
            assert child.returncode == -signal.SIGKILL, "the run ended before the kill"
    print("\nattempt, kill after first batch (s), computed, in db, persisted, lost")
    for row in figures:
        print(row)
    # Every good video has exactly one correct embedding; the broken ones have errors.
    assert run_dataset.count("emb") == len(ids)
    np.testing.assert_allclose(np.stack(good.values("emb")), truth, atol=1e-5)
    assert len(run_dataset.exists("emb_error")) == 2
    total = sum(row[2] for row in figures)
    assert total == len(ids) + sum(len(row[5]) for row in figures)


@pytest.mark.parametrize("overlap", [False, True], ids=["disjoint", "overlapping"])
def test_two_processes_fill_one_field(lvt, tiny_models, run_dataset, tmp_path,
                                      overlap: bool) -> None:
    ids = run_dataset.values("id")
    half = len(ids) // 2
    parts = [ids, ids] if overlap else [ids[:half], ids[half:]]
    logs = [tmp_path / "log_a.jsonl", tmp_path / "log_b.jsonl"]
    children = [start_child(tmp_path, run_dataset, tiny_models, log, ids=part)
                for log, part in zip(logs, parts)]
    for child in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    run_dataset.reload()  # the children added fields
    good = run_dataset.exists("emb")
    truth = np.stack([reference(lvt, p) for p in good.values("filepath")])
    assert len(good) == 16 and len(run_dataset.exists("emb_error")) == 2
    np.testing.assert_allclose(np.stack(good.values("emb")), truth, atol=1e-5)
    schema = list(fo.load_dataset(run_dataset.name).get_field_schema())
    assert schema.count("emb") == 1 and schema.count("emb_error") == 1
    computed = sum(len(logged_vectors(log)) for log in logs)
    if overlap:
        # Both may embed a video the other has not saved yet; never more than twice.
        assert 16 <= computed <= 32
    else:
        assert computed == 16


# ---------------------------------------------------------------------------------------------
# Input checks at the public entry points


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_frames": 0}, "num_frames must be a positive integer"),
        ({"image_size": 30}, "multiple of the patch size"),
        ({"image_size": -8}, "image_size must be a positive integer"),
        ({"classes": []}, "classes is empty"),
        ({"classes": ["red", " "]}, "class 1 is ' '"),
        ({"classes": ["red", "red"]}, "repeated: \\['red'\\]"),
    ],
    ids=["num-frames", "image-size-not-patch-multiple", "image-size-negative", "no-classes",
         "blank-class", "repeated-class"],
)
def test_bad_model_settings_are_refused(tiny_models, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_model(tiny_models.lvt, **params)


def test_bad_prompts_classes_and_names_are_refused(lvt, caplog) -> None:
    for prompt in ["", "   "]:
        with pytest.raises(ValueError, match="prompts must be non-empty text"):
            lvt.embed_prompts(["a video of red.", prompt])
    with caplog.at_level(logging.WARNING, logger="fiftyone_videoprism.fo.model"):
        long_prompt = "a dog running in the park " * 200
        assert lvt.embed_prompt(long_prompt).shape == (64,)
    assert "Truncating prompt 'a dog running" in caplog.text and len(caplog.text) < 400
    lvt.config.classes = ["red", ""]
    try:
        with pytest.raises(ValueError, match="class 1 is ''"):
            lvt.class_embeddings()
    finally:
        lvt.config.classes = None
    with pytest.raises(ValueError, match="Did you mean 'videoprism-lvt-base'"):
        VideoPrismModel(VideoPrismModelConfig({"model_name": "videoprism-lvt-bsae"}))
    with pytest.raises(ValueError, match="error field must differ"):
        runs.compute_embeddings(fo.Dataset(), lvt, "emb", error_field="emb")
    with pytest.raises(TypeError, match="cache must be"):
        runs.compute_embeddings(fo.Dataset(), lvt, "emb", cache=3)


def test_fixed_file_clears_its_error_and_strict_runs_keep_their_work(lvt, tmp_path) -> None:
    path = tmp_path / "late.mp4"
    path.write_bytes(b"")
    fine = write_stamped(tmp_path / "fine.mp4", 8)
    dataset = fo.Dataset(unique_name("fix"))
    dataset.add_samples([fo.Sample(filepath=str(fine)), fo.Sample(filepath=str(path))])
    try:
        assert len(runs.compute_embeddings(dataset, lvt, "emb").failed) == 1
        write_stamped(path, 10)  # the file is repaired
        stats = runs.compute_embeddings(dataset, lvt, "emb", skip_existing=True)
        assert (stats.written, stats.failed, stats.skipped) == (1, [], 1)
        assert dataset.count("emb") == 2 and dataset.count("emb_error") == 0

        # skip_failures=False raises at the first bad video, after saving what came before.
        path.write_bytes(b"")
        with pytest.raises(video.VideoDecodeError, match="late.mp4"):
            runs.compute_embeddings(dataset, lvt, "strict", skip_failures=False)
        assert dataset.count("strict") == 1
    finally:
        dataset.delete()
