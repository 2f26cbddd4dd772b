"""fp32 GEMM throughput of MLX (CPU) against numpy in one process: the BLAS check that the
benchmark prints and that tests/test_blas.py asserts as a ratio."""

from __future__ import annotations

import time
from typing import Any


def gemm_gflops(n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` throughput of an fp32 n x n GEMM in MLX (CPU) and numpy, this process.

    Returns ``n``, ``mlx_gflops``, ``numpy_gflops``, ``ratio`` (MLX / numpy) and ``max_rel_err``
    (MLX's product against a float64 one, relative to its largest entry). Imports mlx.core.
    """
    # Imported here, not at the top: this module has to run before mlx.core is loaded.
    import mlx.core as mx
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a_mx, b_mx = mx.array(a), mx.array(b)

    def mlx_product() -> mx.array:
        product = mx.matmul(a_mx, b_mx, stream=mx.cpu)
        mx.eval(product)
        return product

    def best_seconds(run: Any) -> float:
        # OpenBLAS workers poll for about 2^28 cycles (~0.1 s) after a call; on few cores those
        # of the library timed before (or of the caller's last BLAS call) would steal the cores.
        time.sleep(0.3)
        run()  # warm-up: thread pools, first-call allocations
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        return best

    # One library after the other, not interleaved, for the same reason.
    mlx_seconds = best_seconds(mlx_product)
    numpy_seconds = best_seconds(lambda: a @ b)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    error = np.abs(np.array(mlx_product()) - exact).max() / np.abs(exact).max()
    flops = 2.0 * n**3
    return {
        "n": n,
        "mlx_gflops": flops / mlx_seconds / 1e9,
        "numpy_gflops": flops / numpy_seconds / 1e9,
        "ratio": numpy_seconds / mlx_seconds,
        "max_rel_err": float(error),
    }
