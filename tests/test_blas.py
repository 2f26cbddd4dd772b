"""Tests for core/blas.py: once fiftyone_videoprism is imported, MLX's CPU GEMM runs on OpenBLAS.

The setup happens once per process, before mlx.core loads, so every case runs in a fresh
interpreter. Speed is judged as a ratio to numpy's GEMM in the same process, never as an
absolute time: MLX's reference BLAS is about 60x slower than numpy, optimised ones about as fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="only Linux needs a BLAS set up: MLX uses Accelerate on macOS",
)

ROOT = Path(__file__).resolve().parents[1]

# Optimised MLX stays near numpy (0.5x-1.5x measured, 1 or 2 threads); reference BLAS ~0.02x.
FAST_RATIO = 0.3
SLOW_RATIO = 0.15

# Prints blas_info(), the package's warnings, an MLX GEMM measured against numpy, and MLX's
# LAPACK-backed inverse checked against numpy's float64 one (the LAPACK symbols move too).
_REPORT = """
    import json
    import mlx.core as mx
    import numpy as np
    a = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    a += 16 * np.eye(64, dtype=np.float32)  # well conditioned, so float32 agrees closely
    inverse = np.array(mx.linalg.inv(mx.array(a), stream=mx.cpu))
    exact = np.linalg.inv(a.astype(np.float64))
    print(json.dumps({
        "info": info,
        "warnings": [str(w.message) for w in caught if "fiftyone_videoprism:" in str(w.message)],
        "gemm": gemm_gflops(n=GEMM_N, repeats=5) if GEMM_N else None,
        "inv_rel_err": float(np.abs(inverse - exact).max() / np.abs(exact).max()),
    }))
"""

# The package as a user imports it, optionally after mlx.core.
_VIA_PACKAGE = """
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        {pre_import}
        import fiftyone_videoprism
    from bench.gemm import gemm_gflops
    from fiftyone_videoprism.core.blas import blas_info
    info = blas_info()
"""

# The BLAS module imported with the setup off (importing the package loads no mlx), then made to
# take the route of a machine without libgfortran.so.5.
_VIA_MLX_GFORTRAN = """
    import os, pathlib, sys, warnings
    os.environ["FIFTYONE_VIDEOPRISM_BLAS"] = "off"
    from fiftyone_videoprism.core import blas
    assert "mlx.core" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        blas._load_with_mlx_gfortran(pathlib.Path({library!r}))
    from bench.gemm import gemm_gflops
    info = {{"gfortran_maps": sorted({{
        line.split()[-1] for line in open("/proc/self/maps") if "libgfortran" in line
    }})}}
"""


def _wheel_library() -> str:
    """Path of the ngsolve-openblas wheel's OpenBLAS: a dependency on Linux x86-64 only."""
    spec = importlib.util.find_spec("ngsolve_openblas")
    if spec is None:
        if platform.machine() != "x86_64":
            pytest.skip("ngsolve-openblas has Linux x86-64 wheels only")
        pytest.fail("ngsolve-openblas, a dependency on Linux x86-64, is not installed")
    return str(next(Path(spec.submodule_search_locations[0]).glob("libopenblas*.so*")))


def _run(code: str, gemm_n: int = 0, **env: str) -> dict[str, Any]:
    """Run ``code`` then the report in a fresh interpreter at the repo root; return its JSON."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_VIDEOPRISM_BLAS")}
    # One thread for both numpy's and MLX's OpenBLAS: on a loaded machine a two-thread GEMM can
    # drop 20x, and the ratio would then measure the load instead of the library.
    environ["OPENBLAS_NUM_THREADS"] = "1"
    environ.update(env)
    script = textwrap.dedent(code) + textwrap.dedent(_REPORT).replace("GEMM_N", str(gemm_n))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _package(pre_import: str = "pass") -> str:
    """Code importing the package as a user does, after ``pre_import``."""
    return _VIA_PACKAGE.format(pre_import=pre_import)


def test_auto_makes_mlx_gemm_fast_and_right() -> None:
    report = _run(_package(), gemm_n=512)
    info, gemm = report["info"], report["gemm"]
    assert info["problem"] is None and report["warnings"] == []
    assert info["library"].startswith("OpenBLAS"), info
    assert info["threads"] >= 1 and not info["mlx_imported_first"]
    assert gemm["ratio"] >= FAST_RATIO, gemm
    assert gemm["max_rel_err"] < 1e-5, gemm
    assert report["inv_rel_err"] < 1e-5, report


def test_mlx_gfortran_stands_in_for_a_missing_system_one() -> None:
    code = _VIA_MLX_GFORTRAN.format(library=_wheel_library())
    report = _run(code, gemm_n=512)
    maps = report["info"]["gfortran_maps"]
    # Only bundled (hashed) runtimes are mapped: numpy's, and mlx-cpu's standing in.
    assert maps and all(Path(m).parent.name.endswith(".libs") for m in maps), maps
    assert any("mlx" in Path(m).parent.name for m in maps), maps
    assert report["gemm"]["ratio"] >= FAST_RATIO, report["gemm"]
    assert report["gemm"]["max_rel_err"] < 1e-5
    assert report["inv_rel_err"] < 1e-5


def test_off_keeps_the_reference_blas() -> None:
    report = _run(_package(), gemm_n=512, FIFTYONE_VIDEOPRISM_BLAS="off")
    assert report["info"]["path"] is None and report["warnings"] == []
    assert report["gemm"]["ratio"] < SLOW_RATIO, report["gemm"]
    assert report["gemm"]["max_rel_err"] < 1e-5


def test_holds_in_the_app_server_process() -> None:
    # The App server imports FiftyOne's server, zoo and operators before it loads our zoo hooks
    # or plugin: none of them may have loaded mlx by then.
    pre = "import fiftyone.server.main, fiftyone.zoo, fiftyone.operators, fiftyone.brain"
    report = _run(_package(pre_import=pre), gemm_n=512)
    assert not report["info"]["mlx_imported_first"] and report["info"]["path"], report["info"]
    assert report["gemm"]["ratio"] >= FAST_RATIO, report["gemm"]


def test_mlx_imported_first_warns() -> None:
    report = _run(_package(pre_import="import mlx.core"))
    assert report["info"]["mlx_imported_first"] and report["info"]["path"] is None
    (message,) = report["warnings"]
    assert "Import fiftyone_videoprism before mlx" in message
    assert "FIFTYONE_VIDEOPRISM_BLAS=off" in message


def test_explicit_library_and_thread_count() -> None:
    path = _wheel_library()
    report = _run(_package(), FIFTYONE_VIDEOPRISM_BLAS=path, FIFTYONE_VIDEOPRISM_BLAS_THREADS="1")
    assert report["info"]["path"] == path and report["info"]["threads"] == 1
    assert report["warnings"] == [] and report["inv_rel_err"] < 1e-5


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("/nonexistent/libcblas.so", "set FIFTYONE_VIDEOPRISM_BLAS to 'auto', 'off'"),
        ("libm.so.6", "does not export cblas_sgemm"),
    ],
    ids=["missing-file", "not-a-cblas"],
)
def test_unusable_setting_warns_and_keeps_reference(setting: str, expected: str) -> None:
    report = _run(_package(), FIFTYONE_VIDEOPRISM_BLAS=setting)
    assert report["info"]["path"] is None
    (message,) = report["warnings"]
    assert expected in message and setting in message


def test_mkl_named_batch_gemms_stay_out_of_the_global_scope() -> None:
    """The loaded OpenBLAS provides cblas_sgemm to every library, but not its batched GEMMs,
    whose MKL namesakes (inside PyTorch) take other arguments."""
    code = _package() + """
    import ctypes
    scope = ctypes.CDLL(None)
    info["global"] = {name: hasattr(scope, name) for name in
                      ("cblas_sgemm", "cblas_sgemm_batch", "sgemm_batch_", "cblas_dgemm_batch")}
"""
    report = _run(code)
    assert report["info"]["global"] == {"cblas_sgemm": True, "cblas_sgemm_batch": False,
                                        "sgemm_batch_": False, "cblas_dgemm_batch": False}


def test_torch_batched_matmul_still_works_beside_it() -> None:
    pytest.importorskip("torch", reason="PyTorch (the bench extra) is not installed")
    code = _package() + """
    import numpy as np
    import torch
    a = torch.randn(256, 12, 16, 64)
    got = (a @ a.transpose(-1, -2)).numpy()
    want = np.einsum("bhqd,bhkd->bhqk", a.numpy().astype(np.float64), a.numpy())
    info["torch_bmm_err"] = float(np.abs(got - want).max())
"""
    report = _run(code)
    assert report["info"]["torch_bmm_err"] < 1e-3


def test_private_copy_renames_only_the_batch_gemms(tmp_path) -> None:
    from fiftyone_videoprism.core import elf

    source = Path(_wheel_library())
    copy = elf.private_copy(source, tmp_path)
    assert copy.is_relative_to(tmp_path) and elf.private_copy(source, tmp_path) == copy
    before, _ = elf.dynamic_names(source.read_bytes())
    after, _ = elf.dynamic_names(copy.read_bytes())
    renamed = {old for (old, *_), (new, *_) in zip(before, after, strict=True) if old != new}
    assert renamed and renamed <= elf.MKL_CLASHES
    assert b"cblas_sgemm" in {name for name, *_ in after}
