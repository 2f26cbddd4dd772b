"""The classifier feature store: each training video's encoder tokens, computed once and read
back in every later epoch and training run.

A linear probe needs no store of its own: its features are the unit-norm video embeddings,
which the embeddings cache (:mod:`fiftyone_videoprism.core.cache`) already keeps. An
attention head reads the ``T * N`` space-time tokens instead, 16 x 256 x 768 float32 = 12.6 MB
per ``videoprism-base`` clip, so this store keeps them at a chosen precision (see
:data:`DEFAULT_PRECISION`) and, beyond a size bound, deletes the least recently used entries.
Entries are keyed and written as the embeddings cache's (file content digest, model key,
clip range; atomic writes), in the same folder, so the two share the file digests::

    <folder>/tokens/<ab>/<key>.npz   "tokens" (S, D) at the precision; "scale" (S,) for int8
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from fiftyone_videoprism.core import env
from fiftyone_videoprism.core.cache import EmbeddingsCache

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "float16", "bfloat16", "int8")
# Measured on a synthetic task (bench/classifier.py; README "Classifiers"): the held-out
# accuracy of every precision lies within the seed-to-seed spread of float32's; float16 halves
# the disk at a relative error of 4e-4 (bfloat16 and int8: 3-4e-3, int8 at a quarter of the
# disk), and numpy reads it back without a decoding step.
DEFAULT_PRECISION = "float16"
_INT8_MAX = 127.0


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError listing them."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unsupported feature precision {precision!r}. Supported values are "
                         f"{PRECISIONS}")
    return precision


def encode_tokens(tokens: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    """(S, D) float tokens -> the arrays stored for them at ``precision``."""
    x = np.ascontiguousarray(tokens, dtype=np.float32)
    if check_precision(precision) == "float32":
        return {"tokens": x}
    if precision == "float16":
        return {"tokens": x.astype(np.float16)}
    if precision == "bfloat16":
        # The top 16 bits of each float32, rounded to nearest even (numpy has no bfloat16).
        bits = x.view(np.uint32)
        rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
        return {"tokens": (rounded >> np.uint32(16)).astype(np.uint16)}
    # int8: one absmax scale per token, so a token's large channels cannot crush another's.
    scale = np.abs(x).max(axis=-1) / _INT8_MAX
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(x / scale[..., None]), -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return {"tokens": q, "scale": scale}


def decode_tokens(stored: dict[str, np.ndarray], precision: str) -> np.ndarray:
    """The arrays of :func:`encode_tokens` -> (S, D) tokens (float16 stays float16, the other
    precisions come back float32)."""
    x = stored["tokens"]
    if check_precision(precision) in ("float32", "float16"):
        return x
    if precision == "bfloat16":
        return (x.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return x.astype(np.float32) * stored["scale"][..., None]


def quantize_tokens(tokens: np.ndarray, precision: str) -> np.ndarray:
    """Tokens as they come back from the store: a first run trains on exactly what a later
    run reads."""
    return decode_tokens(encode_tokens(tokens, precision), precision)


def token_bytes(num_tokens: int, dim: int, precision: str) -> int:
    """Bytes of one clip's stored tokens (without the file header)."""
    per_value = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[check_precision(precision)]
    return num_tokens * dim * per_value + (4 * num_tokens if precision == "int8" else 0)


class FeatureStore(EmbeddingsCache):
    """Encoder tokens of video files on disk, bounded in size, safe to share between processes.

    It has the embeddings cache's interface (``known_digest``, ``digest``, ``key``, ``get``,
    ``put``), so a dataset run fills either one the same way.

    Args:
        folder (None): as for :class:`~fiftyone_videoprism.core.cache.EmbeddingsCache` (the
            default is the embeddings cache's folder; entries go under ``tokens/``)
        precision: how tokens are stored, one of :data:`PRECISIONS`
        max_bytes (None): size bound of the stored tokens; default
            ``FIFTYONE_VIDEOPRISM_FEATURES_MAX_GB`` or 20 GB. Beyond it the least recently
            read or written entries are deleted
    """

    def __init__(self, folder: str | os.PathLike | None = None, *,
                 precision: str = DEFAULT_PRECISION, max_bytes: int | None = None) -> None:
        super().__init__(folder)
        self.precision = check_precision(precision)
        self.max_bytes = env.features_max_bytes() if max_bytes is None else int(max_bytes)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.folder)!r}, precision={self.precision!r})"

    def key(self, model_key: str, digest: str, support: tuple[int, int] | None) -> str:
        """Entry key of one video's or clip's tokens at this store's precision."""
        return super().key(f"{model_key}:tokens:{self.precision}", digest, support)

    def get(self, key: str) -> np.ndarray | None:
        """The stored (S, D) tokens, or None (absent or unreadable: recomputed)."""
        path = self._entry_path(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                stored = {name: npz[name] for name in npz.files}
            tokens = decode_tokens(stored, self.precision)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as err:
            logger.warning("Ignoring unreadable feature store entry %s (%s)", path, err)
            return None
        if tokens.ndim != 2:
            logger.warning("Ignoring feature store entry %s of shape %s", path, tokens.shape)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return tokens

    def put(self, key: str, tokens: np.ndarray) -> None:
        """Stores (S, D) tokens under ``key`` (atomically), then deletes the least recently
        used other entries while the store is over its bound."""
        if np.ndim(tokens) != 2:
            raise ValueError(f"expected (S, D) tokens, got shape {np.shape(tokens)}")
        stored = encode_tokens(tokens, self.precision)
        path = self._entry_path(key)
        self._write(path, lambda tmp: np.savez(tmp, **stored))
        self._evict(keep=path)

    def size(self) -> int:
        """Bytes of stored tokens."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[int, int, Path]]:
        out = []
        for path in (self.folder / "tokens").glob("*/*.npz"):
            try:
                st = path.stat()
            except OSError:  # deleted by another process meanwhile
                continue
            out.append((st.st_mtime_ns, st.st_size, path))
        return out

    def _evict(self, keep: Path) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size

    def _entry_path(self, key: str) -> Path:
        return self.folder / "tokens" / key[:2] / f"{key}.npz"
