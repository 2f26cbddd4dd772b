"""On-disk cache of video embeddings, keyed by file content and by what the model computes.

An entry's key hashes the video file's full content (SHA-256), the model's
``embedding_key`` (weights, architecture, frame settings) and the clip's frame range, so a
renamed or copied file hits, and a file edited in place, another checkpoint or another
``num_frames`` misses. Hashing a whole file costs one read of it; each file's digest is
remembered with its size, inode, mtime and ctime (which no tool can set back), so a re-run
over unchanged files reads no video, and a file rewritten in place is hashed again.

Layout (every file is written under a temporary name and renamed, so a killed process leaves
whole entries or none, and two processes writing one entry write the same bytes)::

    <folder>/files/<ab>/<sha256 of the absolute path>.json   {"stat": [...], "digest"}
    <folder>/embeddings/<ab>/<key>.npy                        float32 (D,)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fiftyone_videoprism.core import env

logger = logging.getLogger(__name__)

# Part of every key: bump when the decoded frames for the same settings change (frame choice,
# resize, colour conversion), so older entries stop matching.
FORMAT = "fiftyone-videoprism-embeddings/2"  # 2: PIL Lanczos, as the original
_CHUNK = 4 << 20


class EmbeddingsCache:
    """Embeddings of video files on disk, safe to share between processes.

    Args:
        folder (None): where entries live; default ``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE`` or
            ``~/.cache/fiftyone-videoprism/embeddings``
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else \
            env.embeddings_cache_dir()

    def __repr__(self) -> str:
        return f"EmbeddingsCache({str(self.folder)!r})"

    # -- file content ------------------------------------------------------------------------

    def known_digest(self, path: str | os.PathLike) -> str | None:
        """The content digest remembered for ``path`` if the file is unchanged since (same size,
        inode, mtime and ctime), else None. Reads no video data."""
        try:
            st = os.stat(path)
            memo = json.loads(self._memo_path(path).read_text())
        except (OSError, ValueError):  # no file, no memo, or a memo from a crashed writer
            return None
        if not isinstance(memo, dict) or memo.get("stat") != _stat_id(st):
            return None
        return memo.get("digest")

    def digest(self, path: str | os.PathLike) -> str:
        """SHA-256 of the file's content (remembered for the unchanged file). Raises OSError
        when the file cannot be read."""
        known = self.known_digest(path)
        if known is not None:
            return known
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            hasher = hashlib.sha256()
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                hasher.update(chunk)
            digest = hasher.hexdigest()
            after = os.fstat(f.fileno())
        # A file still being written while it was hashed gets no memo; the next run hashes it again.
        if _stat_id(before) == _stat_id(after):
            memo = {"stat": _stat_id(after), "digest": digest}
            self._write(self._memo_path(path), lambda tmp: Path(tmp).write_text(json.dumps(memo)))
        return digest

    # -- embeddings --------------------------------------------------------------------------

    @staticmethod
    def key(model_key: str, digest: str, support: tuple[int, int] | None) -> str:
        """Entry key of one video (content ``digest``) or clip (1-based inclusive ``support``)
        embedded by a model whose ``embedding_key`` is ``model_key``."""
        spec = {"format": FORMAT, "model": model_key, "content": digest,
                "support": list(support) if support is not None else None}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        """The stored (D,) float32 embedding, or None (absent or unreadable: recomputed)."""
        path = self._entry_path(key)
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("Ignoring unreadable embeddings cache entry %s (%s)", path, err)
            return None
        if vector.dtype != np.float32 or vector.ndim != 1:
            logger.warning("Ignoring embeddings cache entry %s of dtype %s, shape %s", path,
                           vector.dtype, vector.shape)
            return None
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        """Stores a (D,) embedding under ``key`` (atomically; an existing entry is replaced)."""
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        if vector.ndim != 1:
            raise ValueError(f"expected a (D,) embedding, got shape {vector.shape}")
        self._write(self._entry_path(key), lambda tmp: np.save(tmp, vector, allow_pickle=False))

    # -- files -------------------------------------------------------------------------------

    def _memo_path(self, path: str | os.PathLike) -> Path:
        name = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()
        return self.folder / "files" / name[:2] / f"{name}.json"

    def _entry_path(self, key: str) -> Path:
        return self.folder / "embeddings" / key[:2] / f"{key}.npy"

    @staticmethod
    def _write(path: Path, write: Callable[[str], object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same suffix as the target: np.save appends ".npy" to names lacking it.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _stat_id(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
