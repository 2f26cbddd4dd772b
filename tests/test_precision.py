"""Precision modes of load_model(dtype=...) on the tiny LvT fixture: each really changes the
weights (half types, quantized Linear layers) and stays close to the float32 embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import factory

DATA = Path(__file__).parent / "data"
# Lower bounds on the cosine to float32 of unit video and text embeddings, each 5-10x
# below the measured 1 - cos (bf16 2.4e-5, fp16 4e-7, q8 2.7e-5, q4 9.1e-3 on these cases).
MIN_COSINE = {"bfloat16": 0.9997, "float16": 0.999995, "q8": 0.9997, "q4": 0.95}
# Each mode must move the embeddings by at least this much (a mode left as a no-op would not).
MIN_CHANGE = 1e-9


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """A copy of the released-format checkpoint (conversion caches beside its source)."""
    dst = tmp_path_factory.mktemp("tiny_lvt")
    return Path(shutil.copy(DATA / "tiny_lvt" / "flax_tiny_lvt_repeated.npz", dst))


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(DATA / "tiny_lvt" / "io.npz") as f:
        return {k: f[k] for k in f.files}


def _load(npz: Path, dtype: str):
    return fvp.load_model(DATA / "tiny_lvt" / "config.json", checkpoint=npz, dtype=dtype)


def _embeddings(net, io: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unit video and text embeddings of every fixture case, as float32 numpy."""
    cases = sorted({k.split("/")[0] for k in io})
    out = {}
    for case in cases:
        out[f"{case}/video"] = np.array(net.encode_video(io[f"{case}/video"]))
        out[f"{case}/text"] = np.array(net.encode_text(io[f"{case}/text_ids"],
                                                       io[f"{case}/text_paddings"]))
    return out


@pytest.fixture(scope="module")
def reference(npz, io) -> dict[str, np.ndarray]:
    return _embeddings(_load(npz, "float32"), io)


def _param_dtypes(net) -> set[mx.Dtype]:
    return {v.dtype for _, v in tree_flatten(net.parameters())}


@pytest.mark.parametrize("dtype", list(MIN_COSINE))
def test_mode_stays_close_to_float32(npz, io, reference, dtype, kernels_mode):
    got = _embeddings(_load(npz, dtype), io)
    for key, ref in reference.items():
        assert got[key].dtype == np.float32, key
        a, b = got[key].astype(np.float64), ref.astype(np.float64)
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() > MIN_COSINE[dtype], f"{key}: cosine {cos.min():.7f}"
        assert 1 - cos.min() > MIN_CHANGE, f"{key}: {dtype} left the embeddings unchanged"


@pytest.mark.parametrize("dtype", list(factory.HALF_DTYPES))
def test_half_modes_cast_weights_and_activations(npz, io, dtype):
    net = _load(npz, dtype)
    half = factory.HALF_DTYPES[dtype]
    assert _param_dtypes(net) == {half}
    out = net(io["case0/video"])
    # Activations follow the weights (no silent promotion back to float32)...
    assert out.spatial_features.dtype == half
    assert out.video_embeddings.dtype == half
    assert net.encode_text(io["case0/text_ids"], io["case0/text_paddings"],
                           normalize=False).dtype == half
    # ...and the L2 normalisation is done in float32.
    assert net.encode_video(io["case0/video"]).dtype == mx.float32


@pytest.mark.parametrize("dtype", list(factory.QUANT_BITS))
def test_quantized_modes_replace_linear_layers(npz, io, dtype):
    net = _load(npz, dtype)
    modules = [m for _, m in net.named_modules()]
    quantized = [m for m in modules if isinstance(m, nn.QuantizedLinear)]
    # Every Linear of the tiny model has an input width divisible by the group size (64).
    assert quantized and not [m for m in modules if type(m) is nn.Linear]
    assert {(m.bits, m.group_size) for m in quantized} == {(factory.QUANT_BITS[dtype], 64)}
    # Embeddings and positional tables keep float32, and so do the activations.
    assert net.text_encoder.token_emb.weight.dtype == mx.float32
    assert net.vision_encoder.spatial_pos_emb.dtype == mx.float32
    assert net(io["case0/video"]).spatial_features.dtype == mx.float32


def test_quantized_mode_skips_linear_layers_off_the_group_size():
    # The released models' patch projection has 18*18*3 = 972 inputs, not a multiple of 64.
    net = nn.Sequential(nn.Linear(972, 64), nn.Linear(64, 64))
    factory.set_precision(net, "q8")
    assert type(net.layers[0]) is nn.Linear
    assert isinstance(net.layers[1], nn.QuantizedLinear)


def test_float32_is_the_default(npz, io, reference):
    net = _load(npz, factory.DEFAULT_DTYPE)
    assert factory.DEFAULT_DTYPE == "float32" and _param_dtypes(net) == {mx.float32}
    np.testing.assert_array_equal(np.array(net.encode_video(io["case0/video"])),
                                  reference["case0/video"])


@pytest.mark.parametrize("bad", ["fp32", "int8", "Float16", None])
def test_bad_dtype_is_rejected(npz, bad):
    with pytest.raises(ValueError, match="Supported values are .*'float32'.*'q4'"):
        _load(npz, bad)
