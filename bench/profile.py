"""Where one spatial layer's time goes (16 frames of 256 tokens, base width): the same ops
in MLX (one stream, 1 BLAS thread, as each lane runs them) and PyTorch (1 thread). The
element-wise ops run twice in MLX: on MLX's own kernels and on the package's vectorised ones
(:mod:`fiftyone_videoprism.core.kernels`; rows marked "vp kernel", absent where it cannot run)."""

from __future__ import annotations

import fiftyone_videoprism  # noqa: F401  (before mlx: MLX must bind the optimised BLAS)
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from bench.common import median_seconds
from fiftyone_videoprism.core import kernels
from fiftyone_videoprism.core import model as M

FRAMES, TOKENS, D, HEADS, MLP = 16, 256, 768, 12, 3072


def _mlx_ops() -> dict:
    rng = np.random.default_rng(0)
    a = lambda *s: mx.array(rng.standard_normal(s, dtype=np.float32) * 0.5)  # noqa: E731
    x, w_qkv, w_mlp = a(FRAMES * TOKENS, D), a(3 * D, D), a(MLP, D)
    h = a(FRAMES * TOKENS, MLP)
    q, k = a(FRAMES, HEADS, TOKENS, 64), a(FRAMES, HEADS, TOKENS, 64)
    logits = a(FRAMES, HEADS, TOKENS, TOKENS) * 0.02
    ln = nn.LayerNorm(D, eps=M.LN_EPS)
    capped = kernels.capped_exp(50.0)
    mx.eval(x, w_qkv, w_mlp, h, q, k, logits, ln.parameters())
    fast = kernels.extension() if kernels.enabled() else None
    ours = {} if fast is None else {
        "exact-erf GELU, vp kernel (12.6M)": (lambda: fast.gelu(h), 0),
        "capped softmax, vp kernel (12.6M)": (lambda: fast.capped_softmax(logits, 50.0), 0),
        "LayerNorm, vp kernel (4096x768)": (
            lambda: fast.layer_norm(x, ln.weight, ln.bias, M.LN_EPS), 0),
    }
    return {
        "GEMM x W_qkv (4096x768x2304)": (lambda: x @ w_qkv.T, 2 * 4096 * 768 * 2304),
        "GEMM x W_mlp1 (4096x768x3072)": (lambda: x @ w_mlp.T, 2 * 4096 * 768 * 3072),
        "attention q.k^T (192 x 256x64x256)": (lambda: q @ k.swapaxes(-1, -2),
                                                 2 * 192 * 256 * 64 * 256),
        "soft-cap + softmax, unfused (12.6M)": (
            lambda: mx.softmax(50 * mx.tanh(logits / 50), axis=-1, precise=True), 0),
        "exp(50 tanh(u)) fused by mx.compile (12.6M)": (lambda: capped(logits), 0),
        "exact-erf GELU (12.6M)": (lambda: nn.gelu(h), 0),
        "LayerNorm (4096x768)": (lambda: ln(x), 0),
        **ours,
    }


def _torch_ops() -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, w_qkv, w_mlp = (torch.randn(FRAMES * TOKENS, D), torch.randn(3 * D, D),
                       torch.randn(MLP, D))
    h = torch.randn(FRAMES * TOKENS, MLP)
    q, k = torch.randn(FRAMES, HEADS, TOKENS, 64), torch.randn(FRAMES, HEADS, TOKENS, 64)
    logits = torch.randn(FRAMES, HEADS, TOKENS, TOKENS) * 0.01
    lw, lb = torch.ones(D), torch.zeros(D)
    ops = {
        "GEMM x W_qkv (4096x768x2304)": lambda: x @ w_qkv.T,
        "GEMM x W_mlp1 (4096x768x3072)": lambda: x @ w_mlp.T,
        "attention q.k^T (192 x 256x64x256)": lambda: q @ k.transpose(-1, -2),
        "soft-cap + softmax, unfused (12.6M)": lambda: torch.softmax(
            50 * torch.tanh(logits / 50), dim=-1),
        "exp(50 tanh(u)) fused by mx.compile (12.6M)": lambda: torch.exp(50 * torch.tanh(logits)),
        "exact-erf GELU (12.6M)": lambda: F.gelu(h),
        "LayerNorm (4096x768)": lambda: F.layer_norm(x, (D,), lw, lb, eps=1e-6),
    }
    # The vectorised kernels' rows are timed against the same torch ops.
    ops["exact-erf GELU, vp kernel (12.6M)"] = ops["exact-erf GELU (12.6M)"]
    ops["capped softmax, vp kernel (12.6M)"] = ops["soft-cap + softmax, unfused (12.6M)"]
    ops["LayerNorm, vp kernel (4096x768)"] = ops["LayerNorm (4096x768)"]
    return ops


def mlx_profile(repeats: int) -> list[dict]:
    """Median ms per op in MLX on one stream (set BLAS threads to 1 first, as each lane runs)."""
    return [{"op": name, "mlx_ms": 1e3 * median_seconds(lambda: mx.eval(fn()), repeats)[0],
             "flops": flops} for name, (fn, flops) in _mlx_ops().items()]


def torch_profile(repeats: int) -> dict[str, float]:
    """Median ms per op in PyTorch on one thread."""
    import torch

    torch.set_num_threads(1)
    with torch.inference_mode():
        return {name: 1e3 * median_seconds(fn, repeats)[0] for name, fn in _torch_ops().items()}
