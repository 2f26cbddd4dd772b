"""Vectorised CPU kernels for the model's element-wise work: exact-erf GELU, the capped
softmax, LayerNorm (float32).

MLX builds its CPU element-wise kernels without vector instructions on x86, so there they
cost more than the GEMMs around them (GELU ~15x torch's time, the capped softmax ~4x,
LayerNorm ~4.5x). ``csrc/vpkernels.cpp`` holds them as MLX primitives, vectorised for
AVX-512, AVX2+FMA and the baseline, the set picked at run time by the CPU.

The extension links against the C++ ABI of the installed mlx, which pip may upgrade on its
own, so it is built here on first use, not at install time: once per (source, mlx,
nanobind, Python, compiler) into ``<user cache>/kernels/<key>/``, in a child process with its
own environment (no ``-march=native``: one build runs on any CPU of its architecture). With
no compiler, or off Linux, or when ``FIFTYONE_VIDEOPRISM_KERNELS=off``, every function here
falls back to MLX's own ops (slower, said once). Metal and CUDA always run MLX's own kernels.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Callable

import mlx.core as mx
import mlx.nn as nn

from fiftyone_videoprism.core.env import KERNELS, user_cache_dir

SOURCES = Path(__file__).parent / "csrc"
_MODULE = "_vpkernels"
# nanobind's ABI (and MLX's domain) must match the one the mlx wheel was built with, or the
# extension loads but refuses every mx.array: mlx 0.29-0.32 use nanobind 3.0.x ABI v22.
_FLAGS = ["-std=c++20", "-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-DNDEBUG",
          "-DNB_DOMAIN=mlx"]

_lock = threading.Lock()
_loaded: list[ModuleType | None] = []


def _say_once(reason: str) -> None:
    warnings.warn(f"fiftyone_videoprism: {reason}; the CPU element-wise work (GELU, softmax, "
                  f"LayerNorm) runs on MLX's own kernels, which are slower", RuntimeWarning,
                  stacklevel=3)


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _build_inputs(cxx: str) -> tuple[list[str], str]:
    """The compile command and the cache key of everything that changes its output."""
    import mlx
    import nanobind

    mlx_dir = Path(mlx.__path__[0])
    sources = sorted(p for p in SOURCES.iterdir() if p.suffix in (".cpp", ".inc"))
    nb_source = Path(nanobind.source_dir()) / "nb_combined.cpp"
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()[:1]
    digest = hashlib.sha256()
    for part in [*(p.read_bytes() for p in sources),
                 *(s.encode() for s in (mx.__version__, nanobind.__version__,
                                        sysconfig.get_config_var("EXT_SUFFIX") or "",
                                        platform.machine(), *version, *_FLAGS))]:
        digest.update(hashlib.sha256(part).digest())
    cmd = [cxx, *_FLAGS,
           f"-I{sysconfig.get_paths()['include']}", f"-I{nanobind.include_dir()}",
           f"-I{Path(nanobind.include_dir()).parent / 'ext' / 'robin_map' / 'include'}",
           f"-I{mlx_dir / 'include'}",
           str(SOURCES / "vpkernels.cpp"), str(nb_source),
           f"-L{mlx_dir / 'lib'}", "-lmlx", f"-Wl,-rpath,{mlx_dir / 'lib'}"]
    return cmd, digest.hexdigest()[:20]


def library_path() -> Path | None:
    """Where the built extension for this environment lives (None: no compiler here)."""
    cxx = _compiler()
    if cxx is None or importlib.util.find_spec("nanobind") is None:
        return None
    _, key = _build_inputs(cxx)
    return user_cache_dir() / "kernels" / key / (_MODULE + sysconfig.get_config_var("EXT_SUFFIX"))


def _build(path: Path) -> None:
    cmd, _ = _build_inputs(_compiler())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: concurrent first runs never load half a file.
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".build-"))
    try:
        out = tmp / path.name
        started = time.perf_counter()
        done = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True,
                              timeout=900)
        if done.returncode:
            raise RuntimeError((done.stderr or done.stdout).strip()[-1500:])
        os.replace(out, path)
        warnings.warn(f"fiftyone_videoprism: built the vectorised CPU kernels once, in "
                      f"{time.perf_counter() - started:.0f} s ({path})", RuntimeWarning,
                      stacklevel=4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load() -> ModuleType | None:
    if not sys.platform.startswith("linux"):
        return None  # macOS runs Metal; its CPU path keeps MLX's kernels
    try:
        path = library_path()
        if path is None:
            _say_once("no C++ compiler (c++/g++, or $CXX) or no nanobind found")
            return None
        if not path.is_file():
            _build(path)
        loader = importlib.machinery.ExtensionFileLoader(_MODULE, str(path))
        spec = importlib.util.spec_from_file_location(_MODULE, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        # A nanobind ABI that differs from mlx's loads fine but rejects arrays: try one.
        got = module.gelu(mx.array([0.0, 1.0], dtype=mx.float32)).tolist()
        if abs(got[0]) > 1e-7 or abs(got[1] - 0.8413447) > 1e-6:
            raise RuntimeError(f"the built kernels compute GELU(0, 1) = {got}")
        return module
    except Exception as err:  # noqa: BLE001  (any failure means: run MLX's own kernels)
        _say_once(f"the vectorised CPU kernels could not be built or loaded ({err})")
        return None


def extension() -> ModuleType | None:
    """The loaded extension (building it on first use), or None where it cannot run."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _loaded.append(_load())
    return _loaded[0]


def enabled() -> bool:
    """Whether ``FIFTYONE_VIDEOPRISM_KERNELS`` allows the vectorised kernels (``auto``, the
    default) or turns them off (``off``)."""
    return os.environ.get(KERNELS, "auto").strip().lower() not in ("off", "0", "false", "no")


def _fast(x: mx.array) -> ModuleType | None:
    """The extension when it should compute on ``x``: float32, on the CPU, enabled, built."""
    if x.dtype != mx.float32 or mx.default_device() != mx.cpu or not enabled():
        return None
    return extension()


def active() -> bool:
    """Whether float32 CPU work runs on the vectorised kernels here."""
    return _fast(mx.zeros((1,))) is not None


def isa() -> str | None:
    """The instruction set the kernels picked for this CPU (None when they are not active)."""
    return extension().isa() if active() else None


def _with_reference_vjp(fast_fn: Callable[..., mx.array],
                        reference: Callable[..., mx.array]) -> Callable[..., mx.array]:
    """``fast_fn`` forward, differentiated through ``reference`` (the same maths in MLX ops):
    the custom primitives have no gradient of their own, and heads are trained through them."""
    fn = mx.custom_function(fast_fn)

    @fn.vjp
    def _vjp(primals, cotangent, output):
        single = isinstance(primals, mx.array)
        grads = mx.vjp(reference, [primals] if single else list(primals), [cotangent])[1]
        return grads[0] if single else tuple(grads)

    return fn


@lru_cache(maxsize=1)
def _gelu(fast: ModuleType) -> Callable[[mx.array], mx.array]:
    return _with_reference_vjp(fast.gelu, nn.gelu)


@lru_cache(maxsize=8)
def _layer_norm(fast: ModuleType, eps: float) -> Callable[..., mx.array]:
    return _with_reference_vjp(lambda x, w, b: fast.layer_norm(x, w, b, eps),
                               lambda x, w, b: mx.fast.layer_norm(x, w, b, eps))


@lru_cache(maxsize=8)
def _capped_softmax(fast: ModuleType, cap: float) -> Callable[[mx.array], mx.array]:
    return _with_reference_vjp(lambda u: fast.capped_softmax(u, cap),
                               lambda u: mx.softmax(cap * mx.tanh(u), axis=-1))


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as in the original."""
    fast = _fast(x)
    return _gelu(fast)(x) if fast is not None else nn.gelu(x)


@lru_cache(maxsize=8)
def capped_exp(cap: float) -> Callable[[mx.array], mx.array]:
    """MLX's fused exp(cap * tanh(u)): one pass over the logits instead of four."""
    return mx.compile(lambda u: mx.exp(cap * mx.tanh(u)), shapeless=True)


def capped_softmax_matmul(u: mx.array, v: mx.array, cap: float) -> mx.array:
    """softmax(cap * tanh(u)) @ v, softmax over the last axis of u, for 0 < cap <= 50 and
    unmasked logits (so the exp needs no max subtraction)."""
    fast = _fast(u)
    if fast is not None:
        return _capped_softmax(fast, cap)(u) @ v
    # MLX: normalise the (Q, dh) output instead of the (Q, S) probabilities.
    weights = capped_exp(cap)(u)
    return (weights @ v) / weights.sum(axis=-1, keepdims=True)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters) that runs on the vectorised kernel when it can."""

    def __call__(self, x: mx.array) -> mx.array:
        fast = _fast(x) if "weight" in self and "bias" in self else None
        if fast is None or self.weight.dtype != mx.float32:
            return super().__call__(x)
        return _layer_norm(fast, self.eps)(x, self.weight, self.bias)
