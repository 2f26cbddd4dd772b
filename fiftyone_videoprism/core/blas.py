"""Point MLX's CPU matrix products at an optimised BLAS (Linux), before ``mlx.core`` loads.

The mlx-cpu wheel links netlib's reference BLAS, whose fp32 GEMM is about 60x slower than
numpy's. libmlx.so leaves ``cblas_sgemm`` (and a few other CBLAS and LAPACK symbols) for the
dynamic linker to bind, at load time, to the first definition in the global scope. Loading
OpenBLAS with ``RTLD_GLOBAL`` before ``mlx.core`` is first imported therefore makes MLX call
OpenBLAS, with no rebuild. This module does so when imported; the package root imports it
before anything that imports mlx. On macOS MLX uses Accelerate and Metal: nothing is done there.

Environment:

- ``FIFTYONE_VIDEOPRISM_BLAS`` (``auto``): ``auto`` loads the OpenBLAS of the ngsolve-openblas
  wheel, else the system's ``libopenblas.so.0``; ``off`` leaves MLX's reference BLAS; any other
  value is a CBLAS library (a path, or a name the dynamic linker finds) to load instead.
- ``FIFTYONE_VIDEOPRISM_BLAS_THREADS`` (unset): BLAS threads. Unset means
  ``OPENBLAS_NUM_THREADS`` if that is set, else 1: the model spreads its work over one MLX CPU
  stream per core instead (``lanes.cpu_lanes``).

The OpenBLAS loaded is a cached copy whose batched-GEMM entry points are renamed: they share
MKL's names but not its arguments, and would otherwise capture PyTorch's batched matmul.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

# Both import nothing that loads mlx.
from fiftyone_videoprism.core import elf, env

SETTING_ENV = env.BLAS
THREADS_ENV = env.BLAS_THREADS

# Soname of a distribution's OpenBLAS (Debian/Ubuntu libopenblas0, Fedora openblas).
_SYSTEM_OPENBLAS = "libopenblas.so.0"

# (set, get) thread-count functions, tried in order, of the libraries one may point us at.
_THREAD_CONTROLS = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)


def _wheel_openblas() -> Path | None:
    """Path of the ngsolve-openblas wheel's library, or None when that wheel is absent."""
    # find_spec locates the package without running it: its __init__ would load the library
    # itself, and print to stderr if that fails.
    spec = importlib.util.find_spec("ngsolve_openblas")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        libraries = sorted(Path(folder).glob("libopenblas*.so*"))
        if libraries:
            return libraries[0]
    return None


def _mlx_runtime_folder() -> Path | None:
    """Folder holding the Fortran runtime that the mlx-cpu wheel bundles (``mlx_cpu.libs``)."""
    spec = importlib.util.find_spec("mlx")  # finds mlx without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for runtime in sorted(Path(folder).parent.glob("mlx*.libs")):
            if any(runtime.glob("libgfortran*.so*")):
                return runtime
    return None


def _load_with_mlx_gfortran(library: Path) -> ctypes.CDLL:
    """Load ``library`` globally, mlx-cpu's bundled libgfortran standing in for libgfortran.so.5.

    The OpenBLAS wheel needs libgfortran.so.5, which a machine without gfortran lacks; mlx-cpu
    bundles one under a hashed name. The wheel's RPATH is ``$ORIGIN``, and glibc takes
    ``$ORIGIN`` from the path as opened, symlinks unresolved, so symlinks gathered in one folder
    let the loader find the stand-in. Once loaded, libraries are matched by name and file
    identity, so the folder can go (mlx's own LAPACK then reuses the same libgfortran).
    """
    runtime = _mlx_runtime_folder()
    if runtime is None:
        raise OSError("mlx-cpu's bundled libgfortran was not found")
    gfortran = sorted(runtime.glob("libgfortran*.so*"))[0]
    with tempfile.TemporaryDirectory(prefix="fiftyone-videoprism-blas-") as tmp:
        folder = Path(tmp)
        # Every bundled file under its own name too: libgfortran needs libquadmath by hashed name.
        for bundled in runtime.iterdir():
            (folder / bundled.name).symlink_to(bundled)
        (folder / "libgfortran.so.5").symlink_to(gfortran)
        (folder / library.name).symlink_to(library)
        return ctypes.CDLL(str(folder / library.name), mode=os.RTLD_GLOBAL)


def _load_auto() -> tuple[ctypes.CDLL, str, bool]:
    """Load the first OpenBLAS that works: (handle, path or name, via mlx's libgfortran)."""
    failures = []
    wheel = _wheel_openblas()
    if wheel is None:
        failures.append("the ngsolve-openblas wheel is not installed")
    else:
        try:
            wheel = elf.private_copy(wheel, env.user_cache_dir() / "blas")
        except (OSError, ValueError, StopIteration) as err:
            failures.append(f"could not prepare a copy of {wheel}: {err}")
            wheel = None
    if wheel is not None:
        try:
            return ctypes.CDLL(str(wheel), mode=os.RTLD_GLOBAL), str(wheel), False
        except OSError as direct_err:
            # Usually a missing libgfortran.so.5 (a machine without gfortran).
            try:
                return _load_with_mlx_gfortran(wheel), str(wheel), True
            except OSError as err:
                failures.append(f"{wheel}: {direct_err}; with mlx-cpu's libgfortran: {err}")
    try:
        return ctypes.CDLL(_SYSTEM_OPENBLAS, mode=os.RTLD_GLOBAL), _SYSTEM_OPENBLAS, False
    except OSError as err:
        failures.append(str(err))
    raise OSError("; ".join(failures))


def _describe(handle: ctypes.CDLL, path: str) -> str:
    """OpenBLAS's build string (version, kernel, thread limit), else the file name."""
    if hasattr(handle, "openblas_get_config"):
        handle.openblas_get_config.restype = ctypes.c_char_p
        return handle.openblas_get_config().decode()
    return Path(path).name


def _set_threads(handle: ctypes.CDLL) -> int | None:
    """Apply the thread setting (see the module docstring); return the library's count."""
    text = os.environ.get(THREADS_ENV, "").strip()
    wanted = int(text) if text.isdigit() and int(text) > 0 else None
    if not text and "OPENBLAS_NUM_THREADS" not in os.environ:
        # One thread: the model runs independent slices on one MLX stream per core instead
        # (lanes.cpu_lanes), which beat two BLAS threads on 2 cores (7.6 s against 12.3 s a
        # videoprism-base clip), and small batched GEMMs collapse with several threads.
        wanted = 1
    if text and wanted is None:
        warnings.warn(
            f"fiftyone_videoprism: {THREADS_ENV}={text!r} is not a positive integer; "
            "keeping the BLAS library's default thread count.",
            RuntimeWarning,
            stacklevel=2,
        )
    for setter, getter in _THREAD_CONTROLS:
        if hasattr(handle, setter):
            if wanted is not None:
                getattr(handle, setter)(wanted)
            return int(getattr(handle, getter)())
    return None


def _setup() -> dict[str, Any]:
    """Load the configured BLAS globally; return what blas_info() reports."""
    setting = os.environ.get(SETTING_ENV, "").strip() or "auto"
    info: dict[str, Any] = {
        "setting": setting,
        "library": "MLX's reference BLAS (mlx-cpu)",
        "path": None,
        "threads": None,
        "via_mlx_gfortran": False,
        "mlx_imported_first": "mlx.core" in sys.modules,
        "problem": None,
    }
    if not sys.platform.startswith("linux"):
        info["library"] = "platform default (Accelerate on macOS)"
        return info
    if setting.lower() == "off":
        return info
    if info["mlx_imported_first"]:
        info["problem"] = (
            "mlx.core was imported before fiftyone_videoprism, so MLX keeps its reference BLAS "
            "(CPU fp32 matmuls about 60x slower). Import fiftyone_videoprism before mlx, "
            f"or set {SETTING_ENV}=off to accept the reference BLAS and silence this warning."
        )
        return info
    try:
        if setting.lower() == "auto":
            handle, path, via_gfortran = _load_auto()
        else:
            path, via_gfortran = os.path.expanduser(setting), False
            handle = ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
    except OSError as err:
        if setting.lower() == "auto":
            fix = (
                "pip install ngsolve-openblas (Linux x86-64), or apt-get install libopenblas0, "
                f"or set {SETTING_ENV} to a CBLAS library"
            )
        else:
            fix = f"set {SETTING_ENV} to 'auto', 'off', or a CBLAS library that loads"
        info["problem"] = (
            f"no optimised BLAS loaded for {SETTING_ENV}={setting!r} ({err}); MLX keeps its "
            f"reference BLAS (CPU fp32 matmuls about 60x slower). Fix: {fix}; "
            f"{SETTING_ENV}=off silences this warning."
        )
        return info
    if not hasattr(handle, "cblas_sgemm"):
        # e.g. scipy-openblas32, whose symbols all carry a scipy_ prefix.
        info["problem"] = (
            f"{SETTING_ENV}={setting!r}: {path} does not export cblas_sgemm, so MLX keeps its "
            "reference BLAS. Point it at a CBLAS library with unprefixed symbols "
            "(OpenBLAS, MKL's libmkl_rt), or use 'auto'."
        )
        return info
    info.update(
        library=_describe(handle, path),
        path=path,
        threads=_set_threads(handle),
        via_mlx_gfortran=via_gfortran,
    )
    return info


_INFO = _setup()
if _INFO["problem"]:
    warnings.warn(f"fiftyone_videoprism: {_INFO['problem']}", RuntimeWarning, stacklevel=2)


def blas_info() -> dict[str, Any]:
    """What MLX's CPU BLAS calls go to, as set up when this package was first imported.

    Keys: ``setting`` (FIFTYONE_VIDEOPRISM_BLAS), ``library`` (OpenBLAS's build string, or which
    default stays), ``path``, ``threads``, ``via_mlx_gfortran`` (mlx-cpu's libgfortran stood in
    for a missing system one), ``mlx_imported_first`` (too late to change anything) and
    ``problem`` (the warning given, if any).
    """
    return dict(_INFO)
