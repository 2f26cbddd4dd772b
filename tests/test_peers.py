"""The benchmark's peers (bench/peers.py) load released-layout weights correctly: on the tiny
fixtures each reproduces the ORIGINAL Flax outputs, so the bench's agreement column measures
the implementations, not a conversion slip. Skipped where the bench extra is not installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fiftyone_videoprism.core.configs import from_original_kwargs

DATA = Path(__file__).parent / "data"


def _fixture(name: str):
    config = from_original_kwargs(json.loads((DATA / name / "config.json").read_text())["config"])
    arrays = dict(np.load(DATA / name / f"flax_{name}_repeated.npz"))
    with np.load(DATA / name / "io.npz") as io:
        case = {k.split("/", 1)[1]: io[k] for k in io.files if k.startswith("case0/")}
    return config, arrays, case


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"bench extra not installed ({', '.join(missing)})")


# transformers ties the pooler's width to intermediate_size (4 D at the released sizes), which
# the tiny LvT fixture does not follow; its video-only model is checked.
@pytest.mark.slow  # keras-hub imports TensorFlow: minutes on a loaded 2-core machine
@pytest.mark.parametrize(("peer", "fixture", "modules"), [
    ("keras-jax", "tiny_video", ("keras_hub", "jax")),
    ("keras-jax", "tiny_lvt", ("keras_hub", "jax")),
    ("transformers", "tiny_video", ("transformers", "torch")),
])
def test_peer_reproduces_the_original(peer, fixture, modules, monkeypatch):
    _needs(*modules)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    from bench.peers import PEERS

    config, arrays, case = _fixture(fixture)
    run, _ = PEERS[peer](config, arrays)
    got = run(case["video"])
    want = case["video_embeddings"] if config.is_lvt else case["tokens"]
    # The oracle's tolerance for tokens and unit embeddings (tests/test_model.py).
    np.testing.assert_allclose(got, want, atol=5e-5 if not config.is_lvt else 5e-6, rtol=1e-4)
