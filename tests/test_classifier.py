"""Classifier heads in the MLX core: parity of the original's FactorizedVideoClassifier
(tests/data/tiny_classifier, saved by the ORIGINAL Flax code) through fvp.load_classifier,
training (seeded, softmax CE / sigmoid BCE, early stopping), head files, the feature store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import features as feats
from fiftyone_videoprism.core import heads, training
from fiftyone_videoprism.core.checkpoint import CheckpointError

FIXTURE = Path(__file__).parent / "data" / "tiny_classifier"
# The oracle README's tolerances (absolute).
TOL = {"logits": 1e-5, "global_embeddings": 1e-5, "spatiotemporal_features": 5e-5}


def _encoder_kwargs() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())["constructor"]["encoder_params"]


@pytest.fixture(scope="module")
def original():
    return fvp.load_classifier(_encoder_kwargs(), checkpoint=FIXTURE / "flax_tiny_classifier.npz")


def _cases() -> list[str]:
    with np.load(FIXTURE / "io.npz") as io:
        return sorted({k.split("/")[0] for k in io.files})


@pytest.mark.parametrize("case", _cases())
def test_original_classifier_parity(original, case):
    with np.load(FIXTURE / "io.npz") as npz:
        io = {k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(case + "/")}
    logits, out = original(io["video"], frame_paddings=io.get("frame_paddings"),
                           return_intermediate=True)
    got = {"logits": logits, **out}
    for name, tol in TOL.items():
        value = np.array(got[name])
        assert value.shape == io[name].shape, name
        err = float(np.abs(value - io[name]).max())
        assert err <= tol, f"{case} {name}: max|diff| {err:.2e} > {tol}"
    # The plain call gives the same logits; num_classes came from the file.
    plain = np.array(original(io["video"], frame_paddings=io.get("frame_paddings")))
    np.testing.assert_array_equal(plain, np.array(logits))
    assert plain.shape[1] == 5


def test_frame_paddings_change_the_logits(original):
    """Case 2's paddings are not a no-op, so its parity checks the masked path."""
    with np.load(FIXTURE / "io.npz") as io:
        video, pads = io["case2/video"], io["case2/frame_paddings"]
    padded = np.array(original(video, frame_paddings=pads))
    unpadded = np.array(original(video))
    assert np.abs(padded[0] - unpadded[0]).max() > 1e-4  # row 0 has a padded frame
    np.testing.assert_allclose(padded[1], unpadded[1], atol=1e-6)  # row 1 has none


def test_load_classifier_refuses_files_that_do_not_fit(tmp_path):
    with np.load(FIXTURE / "flax_tiny_classifier.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    broken = dict(arrays)
    broken["params/atten_pooler/pooling_attention_query"] = np.zeros((1, 32), np.float32)
    np.savez(tmp_path / "bad_head.npz", **broken)
    with pytest.raises(CheckpointError, match="pooling_attention_query has shape"):
        fvp.load_classifier(_encoder_kwargs(), checkpoint=tmp_path / "bad_head.npz")
    # The encoder subtree is checked by the encoder's own validation.
    wrong = {**_encoder_kwargs(), "mlp_dim": 96}
    with pytest.raises(CheckpointError, match="ffn_layer1/linear/kernel has shape"):
        fvp.load_classifier(wrong, checkpoint=FIXTURE / "flax_tiny_classifier.npz")
    no_projection = {k: v for k, v in arrays.items() if "projection/linear" not in k
                     or "patch" in k}
    np.savez(tmp_path / "no_projection.npz", **no_projection)
    with pytest.raises(CheckpointError, match="not a FactorizedVideoClassifier"):
        fvp.load_classifier(_encoder_kwargs(), checkpoint=tmp_path / "no_projection.npz")


# --------------------------------------------------------------------------------------------
# Training


def _blobs(n_per_class: int, classes: int, dim: int, seed: int, tokens: int | None = None,
           draw: int = 0):
    """Features whose class is a mean shift (class centres from ``seed``, noise from
    ``draw``), (N, D) or (N, S, D) with the shift on every token."""
    centres = np.random.default_rng(seed).normal(size=(classes, dim)).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    shape = (len(y), dim) if tokens is None else (len(y), tokens, dim)
    x = np.random.default_rng([seed, draw]).normal(scale=1.0, size=shape).astype(np.float32)
    x += centres[y] if tokens is None else centres[y][:, None, :]
    return x, y


def _params(head) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(head.parameters())}


@pytest.mark.parametrize("kind", heads.HEAD_KINDS)
def test_training_is_seeded_and_learns(kind):
    tokens = 6 if kind == "attention" else None
    x, y = _blobs(20, 3, 16, seed=1, tokens=tokens)
    xv, yv = _blobs(10, 3, 16, seed=1, tokens=tokens, draw=1)
    settings = training.TrainSettings(epochs=30, learning_rate=1e-2, seed=3, patience=None)
    runs = []
    for _ in range(2):
        head = heads.new_head(kind, 16, 4, 3, seed=settings.seed)
        history = training.train_head(head, (x, y), (xv, yv), settings=settings)
        runs.append((head, history))
    a, b = (_params(h) for h, _ in runs)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    history = runs[0][1]
    assert len(history) == 30 and history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.9
    # Another seed gives another head.
    other = heads.new_head(kind, 16, 4, 3, seed=4)
    training.train_head(other, (x, y), settings=training.TrainSettings(epochs=2, seed=4))
    assert any(not np.array_equal(v, _params(other)[k]) for k, v in a.items())


def test_multi_label_training_uses_sigmoid_bce():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    # Two independent labels: sign of feature 0, sign of feature 1; both may hold at once.
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)
    head = heads.new_head("linear", 8, 1, 2, seed=0)
    history = training.train_head(head, (x[:90], y[:90]), (x[90:], y[90:]), multi_label=True,
                                  settings=training.TrainSettings(epochs=60,
                                                                  learning_rate=5e-2))
    assert history[-1]["val_accuracy"] >= 0.9
    logits = training.predict_logits(head, x[:4])
    expected = float(training.loss_fn(mx.array(logits), mx.array(y[:4]), True))
    p = 1 / (1 + np.exp(-logits))
    bce = -np.mean(y[:4] * np.log(p) + (1 - y[:4]) * np.log(1 - p))
    assert abs(expected - bce) < 1e-5


def test_early_stopping_keeps_the_best_epoch():
    x, y = _blobs(10, 2, 8, seed=2)
    # Validation labels flipped: validation loss rises as the head learns the training data.
    head = heads.new_head("linear", 8, 1, 2, seed=0)
    history = training.train_head(head, (x, y), (x, 1 - y),
                                  settings=training.TrainSettings(epochs=200, patience=3,
                                                                  learning_rate=1e-2))
    assert len(history) < 200
    best = min(h["val_loss"] for h in history)
    kept = float(training.loss_fn(mx.array(training.predict_logits(head, x)),
                                  mx.array((1 - y).astype(np.int32)), False))
    assert abs(kept - best) < 1e-5
    assert history[-1]["val_loss"] > best


# --------------------------------------------------------------------------------------------
# Head files


def _spec(kind: str = "linear", digest: str = "a" * 64) -> heads.HeadSpec:
    return heads.HeadSpec(head=kind, classes=["red", "green", "blue"], multi_label=False,
                          backbone={"name": "videoprism-base", "weights_digest": digest,
                                    "architecture": {}},
                          num_frames=4, image_size=32, resize="squash", dim=16, num_heads=4,
                          precision="float16")


@pytest.mark.parametrize("kind", heads.HEAD_KINDS)
def test_head_files_round_trip(tmp_path, kind):
    head = heads.new_head(kind, 16, 4, 3, seed=5)
    path = heads.save_head(tmp_path / "my_head", head, _spec(kind))
    assert path.name == "my_head.safetensors" and (tmp_path / "my_head.json").is_file()
    for name in ("my_head", "my_head.json", "my_head.safetensors"):
        loaded, spec = heads.load_head(tmp_path / name)
        assert spec == _spec(kind)
        for k, v in _params(head).items():
            np.testing.assert_array_equal(_params(loaded)[k], v)


def test_head_refuses_another_backbone(tmp_path):
    spec = _spec()
    with pytest.raises(heads.HeadMismatchError, match="trained on backbone 'videoprism-base'"):
        spec.check_backbone("b" * 64, 4, 32, "squash", "my_head.json")
    with pytest.raises(heads.HeadMismatchError, match=r"\(4, 32, 'squash'\)"):
        spec.check_backbone("a" * 64, 8, 32, "squash")
    spec.check_backbone("a" * 64, 4, 32, "squash")
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    shutil.copy(heads.save_head(tmp_path / "y", heads.new_head("linear", 16, 4, 3), spec),
                tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="not a fiftyone-videoprism-head/1 head config"):
        heads.load_head(tmp_path / "x")


# --------------------------------------------------------------------------------------------
# The feature store


@pytest.mark.parametrize("precision,rel", [("float32", 0), ("float16", 1e-3),
                                           ("bfloat16", 8e-3), ("int8", 1e-2)])
def test_token_precisions(precision, rel):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 32)) * rng.uniform(0.1, 10, size=(64, 1))).astype(np.float32)
    back = feats.quantize_tokens(x, precision)
    err = np.abs(back.astype(np.float32) - x).max(axis=1) / np.abs(x).max(axis=1)
    assert err.max() <= rel
    if precision != "float32":
        assert err.max() > 0  # the precision really changed the values
    # Idempotent: what the store gives back is stored unchanged.
    np.testing.assert_array_equal(feats.quantize_tokens(back, precision), back)
    size = sum(a.nbytes for a in feats.encode_tokens(x, precision).values())
    assert size == feats.token_bytes(64, 32, precision)


def test_feature_store_round_trip_and_bound(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    store = feats.FeatureStore(tmp_path, precision="float16")
    assert store.key("m", "d", None) != feats.FeatureStore(tmp_path, precision="int8").key(
        "m", "d", None)
    assert store.get(store.key("m", "d", None)) is None
    keys = [store.key("m", f"d{i}", None) for i in range(5)]
    for i, key in enumerate(keys[:3]):
        store.put(key, x + i)
    store.max_bytes = int(3.5 * store._entry_path(keys[0]).stat().st_size)  # room for three
    np.testing.assert_array_equal(store.get(keys[0]), feats.quantize_tokens(x, "float16"))
    store.put(keys[3], x + 3)  # over the bound: the least recently used (keys[1]) goes
    assert store.get(keys[1]) is None
    assert all(store.get(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert store.size() <= store.max_bytes
    with pytest.raises(ValueError, match=r"\(S, D\)"):
        store.put(keys[4], x[0])
    # A damaged entry reads as absent (and is recomputed), never as data.
    store._entry_path(keys[0]).write_bytes(b"not an npz")
    assert store.get(keys[0]) is None
