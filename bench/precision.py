"""Precision modes of ``load_model(dtype=...)``: fidelity to float32, and matmul speed.

    .venv/bin/python -m bench.precision      # under a minute on 2 cores

Per mode, prints a markdown table of
- 1 - the cosine of video and text embeddings to float32 on the tiny oracle fixtures
  (tests/data/tiny_lvt, every case; the oracle's outputs are the float32 reference), and the
  largest difference of those unit embeddings against the parity tolerance;
- the same on random full-size videoprism-lvt-base weights, for a small input (2 frames
  at 36 px, 2 prompts) so that the slow half-precision CPU matmuls finish quickly;
- the throughput of one Linear-shaped matmul (4096 x 768 by 768 x 3072, plus bias) in that mode
  on each MLX device present. Slow modes run fewer rows (shown) to keep each timing short.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import fiftyone_videoprism as fvp  # noqa: I001  (before mlx: MLX must bind the optimised BLAS)
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from bench.weights import random_flax_arrays
from fiftyone_videoprism.core import checkpoint, factory, model

FIXTURE = Path(__file__).parent.parent / "tests" / "data" / "tiny_lvt"
FULL_MODEL = "videoprism-lvt-base"
# tests/test_model.py's tolerance (atol) on unit video and text embeddings.
PARITY_ATOL = 5e-6
# The Linear layer timed: (rows, input dim, output dim), as an FFN layer of the base models.
MATMUL_SHAPE = (4096, 768, 3072)
# Rows double from 64 until one matmul takes this long (or reaches MATMUL_SHAPE's rows).
MATMUL_SECONDS = 0.25


def _min_cosine(got: mx.array | np.ndarray, ref: mx.array | np.ndarray) -> float:
    """Smallest row-wise cosine between two (B, D) arrays, in float64."""
    a = np.asarray(got, np.float64)
    b = np.asarray(ref, np.float64)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return float(cos.min())


def _gaps(row: dict[str, float]) -> str:
    """"video / text" 1 - cosine (clamped at 0: float64 rounding can overshoot 1)."""
    return f"{max(0.0, 1 - row['video_cos']):.1e} / {max(0.0, 1 - row['text_cos']):.1e}"


def fixture_fidelity(dtype: str, npz: Path) -> dict[str, float]:
    """Min video/text cosine to the oracle's float32 embeddings over the tiny LvT cases, and the
    largest absolute difference of those unit embeddings."""
    net = fvp.load_model(FIXTURE / "config.json", checkpoint=npz, dtype=dtype)
    out = {"video_cos": 1.0, "text_cos": 1.0, "max_abs": 0.0}
    with np.load(FIXTURE / "io.npz") as io:
        cases = sorted({k.split("/")[0] for k in io.files})
        for case in cases:
            video = np.array(net.encode_video(io[f"{case}/video"]))
            text = np.array(net.encode_text(io[f"{case}/text_ids"], io[f"{case}/text_paddings"]))
            for key, got in (("video", video), ("text", text)):
                ref = io[f"{case}/{key}_embeddings"]
                out[f"{key}_cos"] = min(out[f"{key}_cos"], _min_cosine(got, ref))
                out["max_abs"] = max(out["max_abs"], float(np.abs(got - ref).max()))
    return out


def full_size_fidelity() -> dict[str, dict[str, float]]:
    """Per mode: min video/text cosine to float32 with random full-size weights, the weights'
    size, and the seconds of one small forward (after a warm-up)."""
    config = fvp.get_config(FULL_MODEL)
    weights = {k: mx.array(v) for k, v in
               checkpoint.convert(random_flax_arrays(config), config).items()}
    rng = np.random.default_rng(1)
    video = rng.random((1, 2, 36, 36, 3), dtype=np.float32)  # 2 frames of 2x2 patches
    ids = np.zeros((2, 16), np.int32)
    ids[0, :8] = rng.integers(3, config.vocabulary_size, 8)
    ids[1, :5] = rng.integers(3, config.vocabulary_size, 5)
    paddings = (ids == 0).astype(np.float32)

    def embed(net: model.FactorizedVideoCLIP) -> tuple[np.ndarray, np.ndarray]:
        return np.array(net.encode_video(video)), np.array(net.encode_text(ids, paddings))

    rows, ref = {}, None
    for dtype in factory.DTYPES:  # float32, the reference, comes first
        net = model.build_model(config)
        net.load_weights(list(weights.items()), strict=True)
        factory.set_precision(net, dtype)
        mx.eval(net.parameters())
        embed(net)
        start = time.perf_counter()
        out = embed(net)
        seconds = time.perf_counter() - start
        ref = out if dtype == "float32" else ref
        rows[dtype] = {"video_cos": _min_cosine(out[0], ref[0]),
                       "text_cos": _min_cosine(out[1], ref[1]),
                       "weights_mb": sum(v.nbytes for _, v in tree_flatten(net.parameters())) / 1e6,
                       "seconds": seconds}
        del net
    return rows


def matmul_gflops(dtype: str, device: mx.Device) -> tuple[float, int]:
    """(GFLOP/s, rows) of one Linear-shaped matmul in mode ``dtype`` on ``device``."""
    full_rows, d_in, d_out = MATMUL_SHAPE
    layer = nn.Sequential(nn.Linear(d_in, d_out))
    factory.set_precision(layer, dtype)
    mx.eval(layer.parameters())
    # Half modes compute in their own type; quantized ones keep float32 activations.
    x_dtype = factory.HALF_DTYPES.get(dtype, mx.float32)
    x_full = mx.random.normal((full_rows, d_in), key=mx.random.key(0)).astype(x_dtype)

    def seconds(rows: int) -> float:
        x = x_full[:rows]
        mx.eval(x)
        start = time.perf_counter()
        with mx.stream(device):
            mx.eval(layer(x))
        return time.perf_counter() - start

    rows = 64
    seconds(rows)  # warm-up
    while rows < full_rows and seconds(rows) < MATMUL_SECONDS:
        rows *= 2
    best = statistics.median(seconds(rows) for _ in range(3))
    return 2 * rows * d_in * d_out / best / 1e9, rows


def devices() -> dict[str, mx.Device]:
    """The MLX devices present: the CPU, and the GPU when Metal or CUDA is available."""
    found = {"cpu": mx.cpu}
    cuda = getattr(mx, "cuda", None)
    if mx.metal.is_available():
        found["metal"] = mx.gpu
    elif cuda is not None and cuda.is_available():
        found["cuda"] = mx.gpu
    return found


def main() -> None:
    """Measures every mode and prints the markdown table."""
    found = devices()
    with tempfile.TemporaryDirectory() as tmp:
        # Conversion caches beside its source, which must not land in tests/data.
        npz = Path(shutil.copy(FIXTURE / "flax_tiny_lvt_repeated.npz", tmp))
        fixtures = {dtype: fixture_fidelity(dtype, npz) for dtype in factory.DTYPES}
    full = full_size_fidelity()
    speed = {dtype: {name: matmul_gflops(dtype, device) for name, device in found.items()}
             for dtype in factory.DTYPES}

    rows, d_in, d_out = MATMUL_SHAPE
    # 1 - cosine reads better than cosines that all start with 0.9999.
    head = ["mode", "fixtures 1-cos video / text", f"fixtures max abs (parity {PARITY_ATOL:g})",
            f"{FULL_MODEL} 1-cos video / text", "weights MB", "small forward s",
            *(f"{name} GFLOP/s ({d_in}x{d_out} matmul, rows)" for name in found)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for dtype in factory.DTYPES:
        f, g = fixtures[dtype], full[dtype]
        cells = [dtype, _gaps(f),
                 f"{f['max_abs']:.1e} " + ("ok" if f["max_abs"] <= PARITY_ATOL else "over"),
                 _gaps(g), f"{g['weights_mb']:.0f}",
                 f"{g['seconds']:.2f}",
                 *(f"{gflops:.1f} ({n})" for gflops, n in speed[dtype].values())]
        print("| " + " | ".join(cells) + " |")
    within = [d for d in factory.DTYPES if fixtures[d]["max_abs"] <= PARITY_ATOL]
    fastest = max(within, key=lambda d: speed[d]["cpu"][0])
    print(f"\nFastest mode within the parity tolerance on this CPU: {fastest} "
          f"(load_model's default: {factory.DEFAULT_DTYPE}). Full-size inputs: 2 frames at 36 px, 2 prompts; "
          f"matmul rows up to {rows}.")
    if len(found) == 1:
        print("No GPU backend here (neither Metal nor CUDA): half precision and quantized "
              "weights, expected to be faster there, could not be timed on one.")


if __name__ == "__main__":
    main()
