"""Every environment variable this package reads, and the cache folders they point to.

The one place that names them, so the docs, the error messages and the tests agree:

- ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR``: a folder holding released checkpoints under their
  released names (e.g. ``flax_lvt_base_f16r288_repeated.npz``).
- ``FIFTYONE_VIDEOPRISM_TOKENIZER``: path of the c4_en SentencePiece ``.model`` file.
- ``FIFTYONE_VIDEOPRISM_TOKENIZER_HUB``: Hub location of that file as ``owner/repo/filename``.
- ``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE``: folder of the on-disk embeddings cache (and of
  the classifier feature store's tokens).
- ``FIFTYONE_VIDEOPRISM_FEATURES_MAX_GB``: size bound of the feature store's tokens.
- ``FIFTYONE_VIDEOPRISM_BLAS``: which CBLAS MLX's CPU matmuls use (``auto``, ``off`` or a
  library), see :mod:`fiftyone_videoprism.core.blas`.
- ``FIFTYONE_VIDEOPRISM_BLAS_THREADS``: BLAS threads (default 1; see ``lanes.cpu_lanes``).
- ``FIFTYONE_VIDEOPRISM_KERNELS``: ``auto`` (default) runs float32 CPU element-wise work on the
  vectorised kernels of :mod:`fiftyone_videoprism.core.kernels`, ``off`` on MLX's own.

This module imports nothing of the package, so the BLAS loader can use it before mlx loads.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_DIR = "FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR"
TOKENIZER = "FIFTYONE_VIDEOPRISM_TOKENIZER"
TOKENIZER_HUB = "FIFTYONE_VIDEOPRISM_TOKENIZER_HUB"
EMBEDDINGS_CACHE = "FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE"
FEATURES_MAX_GB = "FIFTYONE_VIDEOPRISM_FEATURES_MAX_GB"
BLAS = "FIFTYONE_VIDEOPRISM_BLAS"
BLAS_THREADS = "FIFTYONE_VIDEOPRISM_BLAS_THREADS"
KERNELS = "FIFTYONE_VIDEOPRISM_KERNELS"
# The variables that choose where files come from (the tests clear these).
FILE_VARS = (CHECKPOINT_DIR, TOKENIZER, TOKENIZER_HUB, EMBEDDINGS_CACHE)
# Default bound of the feature store: about 3,200 clips of videoprism-base tokens at float16.
DEFAULT_FEATURES_MAX_GB = 20.0


def user_cache_dir() -> Path:
    """This package's folder in the user cache (``$XDG_CACHE_HOME``, else ``~/.cache``):
    converted checkpoints of read-only sources, the embeddings cache, the BLAS copy, the
    built CPU kernels."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "fiftyone-videoprism"


def embeddings_cache_dir() -> Path:
    """Folder of the embeddings cache: ``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE``, else
    ``<user_cache_dir>/embeddings``."""
    folder = os.environ.get(EMBEDDINGS_CACHE)
    return Path(folder).expanduser() if folder else user_cache_dir() / "embeddings"


def features_max_bytes() -> int:
    """Size bound of the feature store: ``FIFTYONE_VIDEOPRISM_FEATURES_MAX_GB`` (GB), else
    :data:`DEFAULT_FEATURES_MAX_GB`."""
    value = os.environ.get(FEATURES_MAX_GB)
    try:
        gb = float(value) if value else DEFAULT_FEATURES_MAX_GB
    except ValueError:
        raise ValueError(f"{FEATURES_MAX_GB} must be a number of GB, got {value!r}") from None
    return int(gb * 1e9)
