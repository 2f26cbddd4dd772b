"""examples/: each script runs end to end (tiny local model, real database, real videos)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fo_fixtures import ROOT, subprocess_env, unique_name

import fiftyone as fo

pytest_plugins = ["fo_fixtures"]


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture()
def folder(color_videos):
    return next(iter(color_videos.values())).parent


def test_quickstart(folder, tiny_models):
    name = unique_name("example")
    try:
        out = _run("quickstart.py", str(folder), "--dataset", name, "--classes",
                   "red,green,blue", "--query", "a video of red.",
                   "--model-kwargs", json.dumps(tiny_models.lvt))
        dataset = fo.load_dataset(name)
        assert dataset.count("videoprism") == len(dataset) == 3
        assert dataset.count("videoprism_zero_shot") == 3
        top = dataset.sort_by_similarity("a video of red.", k=3, brain_key="videoprism")
        assert out.split("Top matches for 'a video of red.':\n")[1].split() == [
            f"{rank}." if i % 2 == 0 else path
            for rank, path in enumerate(top.values("filepath"), start=1)
            for i in (0, 1)]
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_search_clips(folder, tiny_models):
    name = unique_name("example-clips")
    try:
        out = _run("search_clips.py", str(folder), "--dataset", name, "--window", "5",
                   "--query", "a video of red.", "--model-kwargs", json.dumps(tiny_models.lvt))
        # 3 videos of 12 frames in windows of 5: [1-5], [6-10], [11-12] each.
        assert "3 videos -> 9 clips of up to 5 frames" in out
        top = out.split("Top clips for 'a video of red.':\n")[1].splitlines()
        assert len(top) == 5
        assert all(line.split(" frames ")[1] in {"1-5", "6-10", "11-12"} for line in top)
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
