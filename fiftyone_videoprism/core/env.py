"""Every environment variable this package reads, and the cache folders they point to.

The one place that names them, so the docs, the error messages and the tests agree:

- ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR``: a folder holding released checkpoints under their
  released names (e.g. ``flax_lvt_base_f16r288_repeated.npz``).
- ``FIFTYONE_VIDEOPRISM_TOKENIZER``: path of the c4_en SentencePiece ``.model`` file.
- ``FIFTYONE_VIDEOPRISM_TOKENIZER_HUB``: Hub location of that file as ``owner/repo/filename``.
- ``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE``: folder of the on-disk embeddings cache.
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
BLAS = "FIFTYONE_VIDEOPRISM_BLAS"
BLAS_THREADS = "FIFTYONE_VIDEOPRISM_BLAS_THREADS"
KERNELS = "FIFTYONE_VIDEOPRISM_KERNELS"
# The variables that choose where files come from (the tests clear these).
FILE_VARS = (CHECKPOINT_DIR, TOKENIZER, TOKENIZER_HUB, EMBEDDINGS_CACHE)


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
