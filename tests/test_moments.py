"""Moments on a real FiftyOne database: windows over synthetic long videos whose content
changes at known frames, the window store and the clips index, find_moments in a new process
against numpy, merging, zero-shot segments, failures and resuming."""

from __future__ import annotations

import json
import subprocess
import sys

import fiftyone as fo
import numpy as np
import pytest
from fo_fixtures import subprocess_env

from fiftyone_videoprism.core import windows, zeroshot
from fiftyone_videoprism.fo import moments, runs
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]

# 4 frames (the tiny model's trained count) per 2 s window: a grid point every 5 frames.
NO_OVERLAP = {"window_seconds": 2.0, "stride_seconds": 2.0}
HALF = {"window_seconds": 2.0, "stride_seconds": 1.0}


@pytest.fixture(scope="module")
def lvt(tiny_models):
    return VideoPrismModel(VideoPrismModelConfig(tiny_models.lvt))


@pytest.fixture()
def dataset(moments_dataset, long_videos):
    return moments_dataset([long_videos["rgb"], long_videos["bgr"]])


def _stored(dataset) -> tuple[list[str], np.ndarray]:
    store = moments.window_store(dataset)
    ids, vectors = store.values(["window_id", "embedding"])
    return ids, np.stack(vectors)


def test_windows_tile_each_video_and_match_the_core(dataset, lvt, long_videos):
    stats = moments.compute_moments(dataset, lvt, **NO_OVERLAP)
    assert stats.written == 2 and not stats.failed
    for sample in dataset:
        dets = sample["videoprism_windows"].detections
        # 120 frames, 20-frame windows, no overlap: supports tile frames 1..120 exactly
        assert [tuple(d.support) for d in dets] == [(1 + 20 * i, 20 + 20 * i) for i in range(6)]
        assert [d.index for d in dets] == list(range(6))
    # the stored embeddings are the core's windows of the same plan
    path = dataset.first().filepath
    plan = windows.read_plan(path, lvt.num_frames, **NO_OVERLAP)
    core = [w.embedding for w in windows.iter_file_windows(lvt.mlx_model, path, plan, 32)]
    vectors = moments._window_vectors(moments.window_store(dataset), dataset.first().id)
    got = [vectors[d.id] for d in dataset.first()["videoprism_windows"].detections]
    assert np.allclose(got, core, atol=1e-6)
    # the index covers the clips view, one entry per window
    clips = dataset.to_clips("videoprism_windows")
    results = dataset.load_brain_results("videoprism_windows")
    assert sorted(results.sample_ids) == sorted(clips.values("id")) and len(clips) == 12
    # and so does the embeddings map, for the App's Embeddings panel on that clips view
    layout = dataset.load_brain_results("videoprism_windows_map")
    assert layout.points.shape == (12, 2) and np.isfinite(layout.points).all()
    assert sorted(layout.sample_ids) == sorted(clips.values("id"))


def test_overlap_covers_every_frame(dataset, lvt):
    moments.compute_moments(dataset, lvt, **HALF)
    supports = [tuple(d.support) for d in dataset.first()["videoprism_windows"].detections]
    assert supports[0] == (1, 20) and supports[1] == (11, 30) and supports[-1] == (101, 120)
    assert all(b[0] == a[0] + 10 for a, b in zip(supports, supports[1:]))


FIND = r"""
import json, sys
import fiftyone as fo
import fiftyone_videoprism as fvp
fvp.register_zoo()
dataset = fo.load_dataset(sys.argv[1])
threshold = None if sys.argv[3] == "none" else float(sys.argv[3])
view = fvp.find_moments(dataset, sys.argv[2], k=int(sys.argv[4]), threshold=threshold)
print(json.dumps([[c.sample_id, list(c.support), c.videoprism_moments.confidence]
                  for c in view]))
"""


def _find_in_new_process(dataset, query, threshold, k):
    out = subprocess.run([sys.executable, "-c", FIND, dataset.name, query, str(threshold).lower(),
                          str(k)], env=subprocess_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_find_moments_in_a_new_process_ranks_as_numpy(dataset, lvt, zoo_registered):
    moments.compute_moments(dataset, lvt, **HALF)
    query = "a video of red."
    text = lvt.embed_prompt(query)
    ids, vectors = _stored(dataset)
    scores = vectors @ text
    support_of = {d.id: (s.id, tuple(d.support)) for s in dataset
                  for d in s["videoprism_windows"].detections}
    order = np.argsort(-scores, kind="stable")
    expected = [(*support_of[ids[i]], float(scores[i])) for i in order[:7]]
    got = _find_in_new_process(dataset, query, None, 7)
    assert [(g[0], tuple(g[1])) for g in got] == [e[:2] for e in expected]
    assert np.allclose([g[2] for g in got], [e[2] for e in expected], atol=1e-5)
    # merging: runs of consecutive windows at or above the threshold become one moment
    # halfway between two distinct scores near the median (windows of one static segment
    # score the same), so float noise cannot flip a window
    ranked = np.unique(scores.round(5))
    threshold = float(ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2
    merged = _find_in_new_process(dataset, query, threshold, 20)
    oracle = []
    for sample in dataset:
        rows = [(tuple(d.support), float(scores[ids.index(d.id)]))
                for d in sample["videoprism_windows"].detections]
        run = []
        for support, score in rows + [((0, 0), -np.inf)]:
            if score >= threshold:
                run.append((support, score))
            elif run:
                oracle.append((sample.id, (run[0][0][0], run[-1][0][1]),
                               max(s for _, s in run)))
                run = []
    oracle.sort(key=lambda m: -m[2])
    assert [(g[0], tuple(g[1])) for g in merged] == [o[:2] for o in oracle]
    assert len(merged) < len(ids) // 2  # something merged
    assert any(m[1][1] - m[1][0] >= 29 for m in oracle)  # a moment over several windows


def test_tag_moments_segments_where_the_content_changes(dataset, lvt):
    # Static segments, windows aligned to them: every window of a segment sees the same
    # frames, so each segment has one top class; pick prompts whose top classes differ.
    pool = ["a video of red.", "a video of green.", "a video of blue.",
            "a red car and a green car.", "a blue ball and a red ball.",
            "a cat sleeping on a sofa.", "a dog and a cat are running."]
    moments.compute_moments(dataset, lvt, **NO_OVERLAP)
    ids, vectors = _stored(dataset)
    prompts = lvt.embed_prompts(pool)
    probs = zeroshot.softmax(zeroshot.zero_shot_logits(vectors, prompts, 0.01), axis=1)
    top = probs.argmax(axis=1)
    vector_of = dict(zip(ids, vectors))
    first = dataset.first()["videoprism_windows"].detections
    tops = [int(top[ids.index(d.id)]) for d in first]
    assert tops[0:2] == [tops[0]] * 2 and tops[2:4] == [tops[2]] * 2
    stats = moments.tag_moments(dataset, lvt, classes=pool, prompt_templates=["{}"],
                                threshold=0.0)
    assert stats.written == 2
    for sample in dataset:
        dets = sample["videoprism_windows"].detections
        rows = []
        for d in dets:
            p = probs[ids.index(d.id)]
            rows.append((tuple(d.support), pool[int(p.argmax())], float(p.max())))
        expected = moments.segment_windows(rows, 0.0)
        got = [(t.label, tuple(t.support), t.confidence)
               for t in sample["videoprism_moment_labels"].detections]
        assert [g[:2] for g in got] == [e[:2] for e in expected]
        assert np.allclose([g[2] for g in got], [e[2] for e in expected], atol=1e-5)
        # segment boundaries only where the colour changes (frames 41 and 81, 1-based)
        starts = {g[1][0] for g in got}
        assert starts <= {1, 41, 81} and 1 in starts
    if len(set(tops[0::2])) == 3:  # three distinct classes: exactly the three colours
        assert [tuple(t.support) for t in dataset.first()["videoprism_moment_labels"].detections
                ] == [(1, 40), (41, 80), (81, 120)]
    assert vector_of  # the oracle read the stored vectors


def test_segment_windows_rule():
    rows = [((1, 10), "a", 0.9), ((6, 15), "a", 0.7), ((11, 20), "b", 0.8),
            ((16, 25), "b", 0.3), ((21, 30), "b", 0.9)]
    assert moments.segment_windows(rows, 0.5) == [("a", (1, 15), 0.8), ("b", (11, 20), 0.8),
                                                  ("b", (21, 30), 0.9)]
    assert moments.merge_windows([((1, 10), 0.1), ((6, 15), 0.5), ((11, 20), 0.6),
                                  ((16, 25), 0.2)], 0.4) == [((6, 20), 0.6)]


def test_truncated_video_fails_alone_and_keeps_its_windows(dataset, lvt, long_videos, tmp_path):
    dataset.add_sample(fo.Sample(filepath=str(long_videos["truncated"])))
    missing = dataset.add_sample(fo.Sample(filepath=str(tmp_path / "gone.mp4")))
    cache = tmp_path / "cache"
    stats = moments.compute_moments(dataset, lvt, **NO_OVERLAP, cache=cache)
    assert stats.written == 2 and len(stats.failed) == 2
    bad = dataset.match(fo.ViewField("filepath") == str(long_videos["truncated"])).first()
    assert "truncated" in bad["videoprism_windows_error"]
    assert str(long_videos["truncated"]) in bad["videoprism_windows_error"]
    kept = bad["videoprism_windows"].detections
    assert 0 < len(kept) < 6 and [tuple(d.support) for d in kept] == [
        (1 + 20 * i, 20 + 20 * i) for i in range(len(kept))]
    assert "no such video file" in dataset[missing]["videoprism_windows_error"]
    for name in ("rgb", "bgr"):
        good = dataset.match(fo.ViewField("filepath") == str(long_videos[name])).first()
        assert len(good["videoprism_windows"].detections) == 6
        assert good["videoprism_windows_error"] is None
    # kept windows are searchable; resuming redoes only the failed videos, from the cache
    assert len(dataset.to_clips("videoprism_windows")) == 12 + len(kept)
    again = moments.compute_moments(dataset, lvt, **NO_OVERLAP, cache=cache, skip_existing=True)
    assert again.skipped == 2 and len(again.failed) == 2 and again.computed == 0
    # a different grid over part of the dataset would mix windows: refused
    with pytest.raises(ValueError, match="another model or grid"):
        moments.compute_moments(dataset.limit(1), lvt, **HALF)


KILLED = r"""
import json, os, signal, sys
import fiftyone as fo
from fiftyone_videoprism.fo import moments
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

def die_after_first(pb):
    if pb.progress > 0:  # called after the first video is stored
        os.kill(os.getpid(), signal.SIGKILL)

dataset = fo.load_dataset(sys.argv[1])
model = VideoPrismModel(VideoPrismModelConfig(json.loads(sys.argv[2])))
moments.compute_moments(dataset, model, window_seconds=2.0, stride_seconds=2.0,
                        progress=die_after_first, cache=False)
"""


def test_killed_run_resumes_without_recomputing(dataset, lvt, tiny_models):
    out = subprocess.run([sys.executable, "-c", KILLED, dataset.name, json.dumps(tiny_models.lvt)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == -9, out.stderr[-2000:]
    dataset.reload()
    done = dataset.exists("videoprism_windows")
    assert len(done) == 1  # the first video was stored before the kill
    kept = [d.id for d in done.first()["videoprism_windows"].detections]
    stats = moments.compute_moments(dataset, lvt, **NO_OVERLAP, skip_existing=True, cache=False)
    assert stats.skipped == 1 and stats.written == 1 and stats.computed == 1
    assert [d.id for d in dataset[done.first().id]["videoprism_windows"].detections] == kept
    ids, _ = _stored(dataset)
    assert sorted(ids) == sorted(dataset.to_clips("videoprism_windows").values("id"))
