"""Parity with the ORIGINAL Flax implementation (tests/data/tiny_*, made by the oracle) through
the public loading path: released-format .npz -> fvp.load_model -> encode_*."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import model as M

DATA = Path(__file__).parent / "data"
# The oracle README's tolerances: (atol, rtol).
TOL = {
    "tokens": (5e-5, 1e-4),
    "spatial_features": (5e-5, 1e-4),
    "spatiotemporal_features": (5e-5, 1e-4),
    "video_embeddings_unnormalized": (5e-5, 1e-4),
    "text_embeddings_unnormalized": (5e-5, 1e-4),
    "video_embeddings": (5e-6, 0),
    "text_embeddings": (5e-6, 0),
    "frame_embeddings": (5e-6, 0),
    "similarity": (1e-5, 0),
    "zero_shot_probs_over_texts": (1e-4, 0),
    "spatial_pos_emb_used": (1e-5, 1e-5),
    "temporal_pos_emb_used": (1e-5, 1e-5),
    "text_pos_emb": (1e-5, 1e-5),
}


def _cases(fixture: str) -> list[str]:
    with np.load(DATA / fixture / "io.npz") as io:
        return sorted({k.split("/")[0] for k in io.files})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Both tiny models, loaded from copies of the released-format files (conversion writes a
    cache beside its source, which must not land in tests/data)."""
    out = {}
    for fixture in ("tiny_video", "tiny_lvt"):
        src = DATA / fixture
        dst = tmp_path_factory.mktemp(fixture)
        npz = shutil.copy(src / f"flax_{fixture}_repeated.npz", dst)
        out[fixture] = fvp.load_model(src / "config.json", checkpoint=npz)
    return out


def _io(fixture: str, case: str) -> dict[str, np.ndarray]:
    with np.load(DATA / fixture / "io.npz") as io:
        return {k.split("/", 1)[1]: io[k] for k in io.files if k.startswith(case + "/")}


def _check(name: str, got, expected: np.ndarray) -> None:
    got = np.array(got)
    atol, rtol = TOL[name]
    assert got.shape == expected.shape, name
    err = float(np.max(np.abs(got - expected)))
    assert np.allclose(got, expected, atol=atol, rtol=rtol), f"{name}: max|diff| {err:.2e}"


@pytest.mark.parametrize("case", _cases("tiny_video"))
def test_video_encoder_parity(models, case, kernels_mode):
    net = models["tiny_video"]
    io = _io("tiny_video", case)
    video = io["video"]
    t, s = video.shape[1], video.shape[2]
    grid = s // net.config.patch_size
    _check("spatial_pos_emb_used", M.resize_spatial_table(
        net.spatial_pos_emb, net.config.pos_emb_shape[1:], grid), io["spatial_pos_emb_used"])
    _check("temporal_pos_emb_used", M.resize_temporal_table(net.temporal_pos_emb, t),
           io["temporal_pos_emb_used"])
    out = net(video, io.get("frame_paddings"))
    _check("spatial_features", out.spatial_features, io["spatial_features"])
    _check("tokens", out.tokens, io["tokens"])
    if "frame_paddings" not in io:
        _check("tokens", net.encode_video(video), io["tokens"])


@pytest.mark.parametrize("case", _cases("tiny_lvt"))
def test_video_text_parity(models, case, kernels_mode):
    net = models["tiny_lvt"]
    io = _io("tiny_lvt", case)
    out = net(io["video"], frame_embeddings=True)
    _check("spatial_features", out.spatial_features, io["spatial_features"])
    _check("spatiotemporal_features", out.spatiotemporal_features, io["spatiotemporal_features"])
    _check("video_embeddings_unnormalized", out.video_embeddings,
           io["video_embeddings_unnormalized"])
    _check("frame_embeddings", M.l2_normalize(out.frame_embeddings), io["frame_embeddings"])

    video = net.encode_video(io["video"])
    text = net.encode_text(io["text_ids"], io["text_paddings"])
    _check("video_embeddings", video, io["video_embeddings"])
    _check("text_embeddings", text, io["text_embeddings"])
    _check("text_embeddings_unnormalized",
           net.encode_text(io["text_ids"], io["text_paddings"], normalize=False),
           io["text_embeddings_unnormalized"])
    sim = np.array(video) @ np.array(text).T
    _check("similarity", sim, io["similarity"])
    logits = sim / 0.01
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    _check("zero_shot_probs_over_texts", probs / probs.sum(axis=1, keepdims=True),
           io["zero_shot_probs_over_texts"])
    _check("text_pos_emb", M.sinusoid_table(io["text_ids"].shape[1], net.config.model_dim),
           io["text_pos_emb"])


def test_text_embedding_ignores_trailing_padding(models):
    net = models["tiny_lvt"]
    io = _io("tiny_lvt", "case0")
    ids, pads = io["text_ids"], io["text_paddings"]
    longer_ids = np.pad(ids, ((0, 0), (0, 20)))
    longer_pads = np.pad(pads, ((0, 0), (0, 20)), constant_values=1.0)
    a = np.array(net.encode_text(ids, pads))
    b = np.array(net.encode_text(longer_ids, longer_pads))
    np.testing.assert_allclose(a, b, atol=1e-6)
    # ... while a real token in that tail does change it (the check above is not vacuous).
    longer_pads[0, -1] = 0.0
    longer_ids[0, -1] = 5
    c = np.array(net.encode_text(longer_ids, longer_pads))
    assert np.abs(c[0] - a[0]).max() > 1e-3


def test_encode_video_rejects_bad_shapes(models):
    net = models["tiny_lvt"]
    for shape in [(1, 4, 32, 24, 3), (1, 4, 30, 30, 3), (4, 32, 32, 3), (1, 0, 32, 32, 3),
                  (1, 4, 32, 32, 1)]:
        with pytest.raises(ValueError, match="shape"):
            net.encode_video(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        net.encode_text(np.zeros((2, 4), np.int32), np.zeros((2, 5), np.float32))


def test_single_frame_uses_the_resized_temporal_table(models):
    """T=1: the original resizes the whole T0 table to one row (a triangle-weighted average
    centred at (T0-1)/2), it does not take row 0."""
    net = models["tiny_video"]
    table = np.array(net.temporal_pos_emb)
    t0 = table.shape[0]
    w = np.maximum(0, 1 - np.abs((t0 - 1) / 2 - np.arange(t0)) / t0)
    expected = (w / w.sum()) @ table
    got = np.array(M.resize_temporal_table(net.temporal_pos_emb, 1))[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(expected - table[0]).max() > 1e-3
    tokens = net.encode_video(np.random.default_rng(0).random((1, 1, 32, 32, 3), np.float32))
    assert tokens.shape == (1, 16, 64)


def test_resize_weights_are_antialiased():
    # 16 -> 8: output 0 takes (3/7, 3/7, 1/7) of inputs 0..2, not plain bilinear (1/2, 1/2).
    w = M.resize_weights(16, 8)
    np.testing.assert_allclose(w[0, :3], [3 / 7, 3 / 7, 1 / 7], atol=1e-7)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    # Upsampling is half-pixel bilinear with edge clamping.
    up = M.resize_weights(8, 16)
    np.testing.assert_allclose(up[0, :2], [1.0, 0.0])
    np.testing.assert_allclose(up[1, :2], [0.75, 0.25])


def test_full_size_configs_build_and_load(tmp_path):
    """Every key of the four released layouts loads (strict) into the MLX model, and the
    smallest input runs (T=1, 36 px: both tables are down-sized)."""
    from fiftyone_videoprism.core import checkpoint as C

    rng = np.random.default_rng(0)
    for name in fvp.list_models():
        config = fvp.get_config(name)
        shapes = C.flax_shapes(config)
        arrays = {k: rng.standard_normal(s, dtype=np.float32) * 0.02 for k, s in shapes.items()}
        net = M.build_model(config)
        net.load_weights([(k, mx.array(v)) for k, v in C.convert(arrays, config).items()],
                         strict=True)
        out = net.encode_video(rng.random((1, 1, 36, 36, 3), dtype=np.float32))
        mx.eval(out)
        expected = (1, config.model_dim) if config.is_lvt else (1, 4, config.model_dim)
        assert out.shape == expected
        assert np.isfinite(np.array(out)).all()
        del net, arrays


def test_streams_and_query_chunks_keep_outputs(models, monkeypatch):
    """Splitting work over CPU streams and attention over query chunks changes no output."""
    net = models["tiny_lvt"]
    video = _io("tiny_lvt", "case0")["video"][:1]
    monkeypatch.setattr(net, "lanes", 1)
    ref = net(video, frame_embeddings=True)
    monkeypatch.setattr(net, "lanes", 2)
    monkeypatch.setattr(M, "_LOGITS_BYTES", 4096)  # forces many query chunks
    out = net(video, frame_embeddings=True)
    for name in ("spatiotemporal_features", "video_embeddings", "frame_embeddings"):
        np.testing.assert_allclose(np.array(getattr(out, name)), np.array(getattr(ref, name)),
                                   atol=1e-5)


def test_runs_in_worker_threads(models, monkeypatch):
    """MLX streams belong to their thread: a model used from worker threads (the App server,
    the operators) must still run with several lanes."""
    from concurrent.futures import ThreadPoolExecutor

    net = models["tiny_lvt"]
    monkeypatch.setattr(net, "lanes", 2)
    video = _io("tiny_lvt", "case0")["video"][:1]
    ref = np.array(net.encode_video(video))
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: np.array(net.encode_video(video)), range(3)))
    for out in outs:
        np.testing.assert_allclose(out, ref, atol=1e-6)
