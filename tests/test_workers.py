"""fo/shards.py: ``embed --workers N`` and the moments operator's *Workers* on a standalone
MongoDB, with real ``fiftyone delegated launch`` worker processes; each sample is embedded
exactly once, also when a worker is killed mid-shard."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fiftyone as fo
import fiftyone.zoo as foz
import numpy as np
import pytest
from fo_fixtures import PLUGIN_URI, ROOT, lvt_params, subprocess_env, unique_name
from videogen import moving_shape_frames, write_video

from fiftyone_videoprism.fo import moments, runs

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

FIFTYONE_CLI = str(Path(sys.executable).parent / "fiftyone")
NUM_VIDEOS = 24
NUM_SHARDS = 12
# Short, so a dead worker is found in seconds; beats come every TIMEOUT / 6 s.
TIMEOUT_S = 6

# Loaded by every worker (through PYTHONPATH): logs "<pid> <sample id>" for each sample saved,
# after the save, and waits before each save so that a worker can be killed mid-shard. It only
# observes and slows; the code under test is unchanged.
_OBSERVER = '''
import os, time
if os.environ.get("FVP_TEST_WRITE_LOG"):
    from fiftyone_videoprism.fo import runs
    _flush = runs.PendingWrites.flush
    _delay = float(os.environ.get("FVP_TEST_WRITE_DELAY", "0"))

    def flush(self):
        ids = list(self._ids)
        if ids:
            time.sleep(_delay)
        _flush(self)
        if ids:
            with open(os.environ["FVP_TEST_WRITE_LOG"], "a") as log:
                log.write("".join(f"{os.getpid()} {i}\\n" for i in ids))

    runs.PendingWrites.flush = flush

    from fiftyone_videoprism.fo import moments
    _save = moments._save

    def save(dataset, store, windows_field, error_field, sample_id, *args):
        _save(dataset, store, windows_field, error_field, sample_id, *args)
        with open(os.environ["FVP_TEST_WRITE_LOG"], "a") as log:
            log.write(f"{os.getpid()} {sample_id}\\n")

    moments._save = save
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mongod_uri(tmp_path_factory: pytest.TempPathFactory):
    """A standalone mongod on loopback (FiftyOne's own binary), stopped at the end."""
    from fiftyone.core.service import DatabaseService

    folder = tmp_path_factory.mktemp("mongod")
    (folder / "db").mkdir()
    port = _free_port()
    server = subprocess.Popen([DatabaseService.find_mongod(), "--dbpath", str(folder / "db"),
                               "--port", str(port), "--bind_ip", "127.0.0.1",
                               "--logpath", str(folder / "mongod.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert server.poll() is None and time.monotonic() < deadline, "mongod did not start"
            time.sleep(0.2)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many_videos")
    rng = np.random.default_rng(3)
    for i in range(NUM_VIDEOS):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        write_video(folder / f"clip_{i:02d}.mp4", moving_shape_frames(6, color, 48, 32))
    return folder


@pytest.fixture(scope="module")
def expected_vectors(many_videos, tiny_models, zoo_registered) -> dict[str, np.ndarray]:
    """Embeddings computed here in one process (the session database), by file path."""
    dataset = fo.Dataset(unique_name("expected"))
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in sorted(many_videos.glob("*.mp4"))])
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    runs.compute_embeddings(dataset, model, "emb")
    vectors = dict(zip(dataset.values("filepath"), map(np.asarray, dataset.values("emb"))))
    dataset.delete()
    return vectors


def _env(uri: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = subprocess_env()
    env["FIFTYONE_DATABASE_URI"] = uri
    env["FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE"] = str(tmp_path / "cache")  # no hits from others
    env.update(extra)
    return env


@contextlib.contextmanager
def _workers(count: int, env: dict[str, str], tmp_path: Path):
    """``count`` ``fiftyone delegated launch`` processes, loading the observer."""
    observer = tmp_path / "observer"
    observer.mkdir(exist_ok=True)
    (observer / "sitecustomize.py").write_text(_OBSERVER)
    env = {**env, "PYTHONPATH": os.pathsep.join([str(observer), env["PYTHONPATH"]])}
    processes = []
    try:
        for i in range(count):
            with (tmp_path / f"worker{i}.log").open("wb") as sink:
                processes.append(subprocess.Popen([FIFTYONE_CLI, "delegated", "launch"], env=env,
                                                  stdout=sink, stderr=subprocess.STDOUT))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)


def _embed(folder: Path, name: str, env: dict[str, str], tiny_models) -> subprocess.Popen:
    lvt = tiny_models.lvt
    return subprocess.Popen(
        [sys.executable, "-m", "fiftyone_videoprism.fo.cli", "embed", str(folder), "--dataset",
         name, "--workers", str(NUM_SHARDS), "--worker-timeout", str(TIMEOUT_S),
         "--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
         "--tokenizer", lvt["tokenizer_path"]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


_READ_BACK = """
import json, sys, fiftyone as fo, fiftyone.brain as fob
d = fo.load_dataset(sys.argv[1])
r = d.load_brain_results("videoprism")
print(json.dumps({"ids": d.values("id"), "paths": d.values("filepath"),
                  "vectors": [list(map(float, v)) for v in d.values("videoprism")],
                  "runs": d.list_brain_runs(type=fob.Similarity), "index_size": r.total_index_size,
                  "schema": sorted(d.get_field_schema())}))
d.delete()
"""


def _read_back(name: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", _READ_BACK, name], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_exactly_once(state: dict, log: Path, expected_vectors) -> Counter:
    """Every sample saved once, with the right vector; returns the saves per worker pid."""
    saves = [line.split() for line in log.read_text().splitlines()]
    assert Counter(sample_id for _, sample_id in saves) == Counter(state["ids"])
    for path, vector in zip(state["paths"], state["vectors"], strict=True):
        np.testing.assert_allclose(vector, expected_vectors[path], atol=1e-5)
    assert state["runs"] == ["videoprism"] and state["index_size"] == NUM_VIDEOS
    assert {"videoprism", "videoprism_error"} <= set(state["schema"])
    return Counter(int(pid) for pid, _ in saves)


def test_two_workers_share_twelve_shards_and_a_killed_one_s_shard_is_redone(
        mongod_uri, many_videos, expected_vectors, tiny_models, installed_plugin,
        tmp_path) -> None:
    """Twelve shards on two workers, one killed with SIGKILL mid-shard: its shard is queued
    again after the heartbeat timeout and finished by the other, every sample saved once."""
    log = tmp_path / "saves.log"
    env = _env(mongod_uri, tmp_path)
    name = unique_name("shards")
    with _workers(2, {**env, "FVP_TEST_WRITE_LOG": str(log), "FVP_TEST_WRITE_DELAY": "0.7"},
                  tmp_path) as workers:
        embed = _embed(many_videos, name, env, tiny_models)
        # A shard is two videos, saved one by one: kill the first worker that saves one,
        # while it waits to save its shard's second.
        deadline = time.monotonic() + 300
        while not (log.exists() and log.read_text().strip()):
            assert time.monotonic() < deadline and embed.poll() is None, "no sample was saved"
            time.sleep(0.05)
        victim = int(log.read_text().split()[0])
        assert victim in {w.pid for w in workers}
        os.kill(victim, signal.SIGKILL)
        out, _ = embed.communicate(timeout=600)
    assert embed.returncode == 0, out[-3000:]
    assert (f"shards: {NUM_SHARDS} completed, 1 re-queued; {NUM_VIDEOS}/{NUM_VIDEOS} videos "
            "embedded") in out
    per_worker = _check_exactly_once(_read_back(name, env), log, expected_vectors)
    # Both took shards; the dead worker's saved sample was not redone (an odd count: whole
    # two-video shards plus one) and its shard's other video was done by the survivor.
    assert set(per_worker) == {w.pid for w in workers}
    assert per_worker[victim] % 2 == 1


# Run with FIFTYONE_DATABASE_URI on the standalone mongod: the text-index and moments operators,
# as the App runs them, each with 3 workers' shards; then what the test checks.
_MOMENTS_DRIVER = """
import json, sys, fiftyone as fo, fiftyone.operators as foo
from fiftyone_videoprism.fo import moments
name, uri, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
d = fo.Dataset(name)
d.add_samples([fo.Sample(filepath=p) for p in json.loads(sys.argv[4])])
for op in ("build_text_index", "compute_moments"):
    result = foo.execute_operator(uri.format(op), dataset=d, params=params)
    assert result.error is None, (op, result.error)
d.reload()
store = moments.window_store(d)
by_window = dict(zip(*store.values(["window_id", "embedding"])))
clips = d.to_clips("videoprism_windows")
index = d.load_brain_results("videoprism_windows")
print(json.dumps({
    "windows": [[p, list(w.support), list(map(float, by_window[w.id]))]
                for p, dets in zip(d.values("filepath"), d.values("videoprism_windows"))
                for w in dets.detections],
    "clips": len(clips), "index_size": index.total_index_size,
    "top": clips.sort_by_similarity("a red square", k=3, brain_key="videoprism_windows")
                .values("id"),
    "ids": d.values("id"),
    "embeddings": dict(zip(d.values("filepath"), [list(map(float, v)) for v in d.values("emb")])),
    "text_top": d.sort_by_similarity("a red square", k=2, brain_key="vp").values("filepath")}))
d.delete()
"""


def test_operators_shard_embeddings_and_windows_over_two_workers(
        mongod_uri, long_videos, tiny_models, installed_plugin, tmp_path) -> None:
    """The Build text index and Compute moments operators with 3 workers each: each video's
    embedding and windows saved once, by the workers, equal to one process's, and both
    indexes built over all of them."""
    paths = [str(long_videos[k]) for k in ("rgb", "bgr", "moving_rgb", "moving_bgr")]
    grid = {"window_seconds": 2.0, "stride_seconds": 1.0}
    reference = fo.Dataset(unique_name("moments_ref"))
    reference.add_samples([fo.Sample(filepath=p) for p in paths])
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    moments.compute_moments(reference, model, cache=False, **grid)
    runs.compute_embeddings(reference, model, "emb", cache=False)
    embeddings = dict(zip(reference.values("filepath"), reference.values("emb")))
    expected = {}
    store = moments.window_store(reference)
    for sample in reference:
        vectors = moments._window_vectors(store, sample.id)
        for window in sample["videoprism_windows"].detections:
            expected[(sample.filepath, tuple(window.support))] = vectors[window.id]
    store.delete()
    reference.delete()

    log = tmp_path / "saves.log"
    env = _env(mongod_uri, tmp_path)
    params = lvt_params(tiny_models, workers=3, skip_existing=True, embeddings_field="emb",
                        brain_key="vp", **grid)
    with _workers(2, {**env, "FVP_TEST_WRITE_LOG": str(log)}, tmp_path) as workers:
        done = subprocess.run(
            [sys.executable, "-c", _MOMENTS_DRIVER, unique_name("moments_shards"),
             PLUGIN_URI, json.dumps(params), json.dumps(paths)],
            env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    saves = [line.split() for line in log.read_text().splitlines()]
    # Each video saved twice: its embedding, then its windows.
    assert Counter(sample_id for _, sample_id in saves) == Counter(state["ids"] * 2)
    assert {int(pid) for pid, _ in saves} <= {w.pid for w in workers}
    for path, vector in state["embeddings"].items():
        np.testing.assert_allclose(vector, embeddings[path], atol=1e-5)
    assert len(state["text_top"]) == 2
    got = {(p, tuple(support)): vector for p, support, vector in state["windows"]}
    assert got.keys() == expected.keys() and len(got) == state["clips"] == state["index_size"]
    for key, vector in got.items():
        np.testing.assert_allclose(vector, expected[key], atol=1e-5)
    assert len(state["top"]) == 3


def test_moments_cli_runs_on_workers_and_recomputes(mongod_uri, long_videos, tiny_models,
                                                    installed_plugin, tmp_path) -> None:
    """``moments --workers 2``: the windows of both videos on the workers, then the index and
    a text query from the command; ``--recompute`` on workers embeds both videos again."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("moving_rgb", "moving_bgr"):
        (folder / f"{name}.mp4").write_bytes(long_videos[name].read_bytes())
    env = _env(mongod_uri, tmp_path)
    log = tmp_path / "saves.log"
    lvt = tiny_models.lvt
    command = [sys.executable, "-m", "fiftyone_videoprism.fo.cli", "moments", str(folder),
               "--dataset", unique_name("moments_cli"), "--workers", "2", "--window-seconds",
               "2", "--stride-seconds", "1", "--query", "a red square", "-k", "2",
               "--model-config", lvt["model_config"], "--checkpoint", lvt["checkpoint_path"],
               "--tokenizer", lvt["tokenizer_path"]]
    with _workers(2, {**env, "FVP_TEST_WRITE_LOG": str(log)}, tmp_path):
        outputs = []
        for extra in ([], ["--recompute"]):
            done = subprocess.run(command + extra, env=env, capture_output=True, text=True,
                                  timeout=600, cwd=ROOT)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            outputs.append(done.stdout)
            # Both videos saved by the workers, once per run.
            assert len(log.read_text().splitlines()) == 2 * len(outputs)
    for out in outputs:
        assert "shards: 2 completed; 2/2 videos embedded" in out
        assert "Windowed: 2 of 2 videos" in out
        assert "22 windows" in out and "Top 2 moments for 'a red square':" in out
