"""Where the released files come from: a local path, a local folder, or the Hugging Face Hub.

Lookup order, for checkpoints (:func:`checkpoint_file`) and the tokenizer (:func:`tokenizer_file`):

1. an explicit path argument: always wins, never touches the network;
2. an environment variable pointing at a local copy;
3. the Hugging Face Hub through ``huggingface_hub.hf_hub_download``, so the HF cache, ``HF_HOME``,
   ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and a saved token apply. A cached file is
   used without asking the Hub; otherwise one quick metadata request decides whether the Hub is
   reachable, so an offline machine gets :class:`WeightsUnavailableError` in seconds instead of
   huggingface_hub's retries (about 23 s when DNS fails, minutes when packets are dropped).

Environment variables:

- ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR``: a folder holding released checkpoint files under their
  released names (e.g. ``flax_lvt_base_f16r288_repeated.npz``); models missing from it come from
  the Hub.
- ``FIFTYONE_VIDEOPRISM_TOKENIZER``: path of the c4_en SentencePiece ``.model`` file.
- ``FIFTYONE_VIDEOPRISM_TOKENIZER_HUB``: Hub location of that file as ``owner/repo/filename``
  (default ``tom-moroney/videoprism-mlx/c4_en.model``).
- ``FIFTYONE_VIDEOPRISM_EMBEDDINGS_CACHE``: folder of the on-disk embeddings cache
  (:mod:`fiftyone_videoprism.core.cache`; default ``~/.cache/fiftyone-videoprism/embeddings``).
- ``HF_HUB_ETAG_TIMEOUT`` (huggingface_hub's own, whole seconds): how long to wait for the Hub's
  answer to the reachability request (default here 5).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import huggingface_hub
from huggingface_hub import (get_hf_file_metadata, hf_hub_download, hf_hub_url,
                             try_to_load_from_cache)

from fiftyone_videoprism.core import env
from fiftyone_videoprism.core.configs import RELEASES, Release, canonical_name


# Longer than a healthy HEAD request to the Hub takes, short enough that an offline user is not
# left waiting; HF_HUB_ETAG_TIMEOUT overrides it.
DEFAULT_PROBE_TIMEOUT_S = 5.0
# Extra time the probe may take beyond its request timeout: name resolution has no timeout of its
# own, and huggingface_hub 2.x may first fetch a registry for its user agent (3 s timeout).
_PROBE_GRACE_S = 1.0


# The Google repos hold only the Flax weights. The seed MLX port's Hub repo hosts the c4_en
# SentencePiece model (T5's cc_en.32000) as a plain .model file, the format Tokenizer reads
# (the transformers port's repos ship its tokenizer in transformers' format). Not verifiable here:
# Tokenizer.check_vocabulary warns when a 32,000-piece file does not give c4_en's ids.
DEFAULT_TOKENIZER = Release("tom-moroney/videoprism-mlx", "c4_en.model")


class WeightsUnavailableError(FileNotFoundError):
    """A released file is neither available locally nor downloadable now (offline, or refused).

    ``local_options`` lists the ways to point at a local copy; a caller with its own way of
    passing files (the FiftyOne zoo's ``checkpoint_path=``, the CLI's ``--checkpoint``) puts
    its own first with :meth:`pointing_to`, so the message names the fix where the user is.
    """

    def __init__(self, release: Release, what: str, reason: str, local_options: list[str]):
        self.release, self.what, self.reason = release, what, reason
        self.local_options = list(local_options)
        super().__init__(_unavailable_message(release, what, reason, self.local_options))

    def pointing_to(self, ways: list[str]) -> WeightsUnavailableError:
        """The same error with ``ways`` instead of this module's first option (the argument
        of the Python function that raised it)."""
        return WeightsUnavailableError(self.release, self.what, self.reason,
                                       [*ways, *self.local_options[1:]])


def checkpoint_file(name: str, checkpoint: str | os.PathLike | None = None,
                    force_download: bool = False) -> Path:
    """Local path of the released Flax checkpoint of model ``name``.

    Args:
        name: a model name or alias (see ``configs.list_models``); unused when ``checkpoint`` is
            a file.
        checkpoint: a local file (returned as is, whatever its format) or a folder holding the
            released file name. Given, it always wins and the network is never touched.
        force_download: fetch the file from the Hub again even if the Hugging Face cache has
            it (to replace a damaged download)

    Raises:
        FileNotFoundError: ``checkpoint`` or ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR`` names
            something that does not exist.
        ValueError: unknown model name (with a "did you mean").
        WeightsUnavailableError: nothing local and the Hub cannot be reached.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            model = canonical_name(name)
            candidate = path / RELEASES[model].filename
            if candidate.is_file():
                return candidate
            raise FileNotFoundError(
                f"checkpoint folder {str(path)!r} has no {candidate.name} (the released file of "
                f"{model})"
            )
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")

    model = canonical_name(name)
    release = RELEASES[model]
    folder = os.environ.get(env.CHECKPOINT_DIR)
    if folder:
        folder_path = Path(folder).expanduser()
        if not folder_path.is_dir():
            raise FileNotFoundError(f"{env.CHECKPOINT_DIR}={folder!r} is not a folder")
        if (folder_path / release.filename).is_file() and not force_download:
            return folder_path / release.filename
    return _download(
        release,
        force=force_download,
        what=f"the {model} checkpoint",
        local_options=[
            f"pass checkpoint='/path/to/{release.filename}'",
            f"set {env.CHECKPOINT_DIR} to a folder holding {release.filename}"
            + (f" (now {folder!r}, which lacks it)" if folder else ""),
        ],
    )


def tokenizer_location() -> Release:
    """Hub repo and file of the c4_en tokenizer.

    ``FIFTYONE_VIDEOPRISM_TOKENIZER_HUB`` (``owner/repo/filename``) if set, else the default.
    """
    value = os.environ.get(env.TOKENIZER_HUB)
    if not value:
        return DEFAULT_TOKENIZER
    owner, _, rest = value.strip().strip("/").partition("/")
    repo, _, filename = rest.partition("/")
    if not (owner and repo and filename):
        raise ValueError(
            f"{env.TOKENIZER_HUB}={value!r} is not of the form owner/repo/filename "
            f"(e.g. {DEFAULT_TOKENIZER.repo_id}/{DEFAULT_TOKENIZER.filename})"
        )
    return Release(f"{owner}/{repo}", filename)


def tokenizer_file(path: str | os.PathLike | None = None) -> Path:
    """Local path of the c4_en SentencePiece model.

    ``path`` wins (never touching the network), then ``FIFTYONE_VIDEOPRISM_TOKENIZER``, then the
    Hub location of :func:`tokenizer_location`.

    Raises:
        FileNotFoundError: ``path`` or ``FIFTYONE_VIDEOPRISM_TOKENIZER`` names a missing file.
        WeightsUnavailableError: nothing local and the Hub cannot be reached.
    """
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"tokenizer file {str(local)!r} does not exist")
        return local
    from_env = os.environ.get(env.TOKENIZER)
    if from_env:
        local = Path(from_env).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"{env.TOKENIZER}={from_env!r} is not a file")
        return local
    release = tokenizer_location()
    return _download(
        release,
        what="the c4_en tokenizer",
        local_options=[
            f"pass path='/path/to/{release.filename}' (load_tokenizer / tokenizer_file)",
            f"set {env.TOKENIZER} to the path of {release.filename}",
        ],
    )


def _probe_timeout() -> float:
    value = os.environ.get("HF_HUB_ETAG_TIMEOUT")
    if not value:
        return DEFAULT_PROBE_TIMEOUT_S
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"HF_HUB_ETAG_TIMEOUT={value!r} is not a number of seconds") from None


def _probe(release: Release, timeout: float) -> BaseException | None:
    """None if the Hub answers a metadata request for the file in time, else the error.

    The request runs in a daemon thread so that the wait is bounded whatever blocks inside it.
    """
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            get_hf_file_metadata(hf_hub_url(release.repo_id, release.filename), timeout=timeout)
            outcome.append(None)
        # Whatever stops the request (DNS, refused connection, timeout, 401/404, offline mode)
        # means the file cannot be fetched now; the caller chains it.
        except Exception as err:
            outcome.append(err)

    worker = threading.Thread(target=request, name="videoprism-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + _PROBE_GRACE_S)
    if not outcome:
        return TimeoutError(f"no answer from {huggingface_hub.constants.ENDPOINT} within "
                            f"{timeout + _PROBE_GRACE_S:g} s")
    return outcome[0]


def in_hf_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in the Hugging Face cache (a download, not a user's own file)."""
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE).expanduser().absolute()
    return Path(path).expanduser().absolute().is_relative_to(cache)


def _download(release: Release, what: str, local_options: list[str],
              force: bool = False) -> Path:
    """The cached file (unless ``force``), else a download; WeightsUnavailableError when
    neither is possible."""
    # A pure file-system lookup: hf_hub_download(local_files_only=True) may still reach for the
    # network (user-agent registry) and would block an offline machine for seconds.
    cached = None if force else try_to_load_from_cache(release.repo_id, release.filename)
    if isinstance(cached, str):
        return Path(cached)
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise WeightsUnavailableError(release, what, "HF_HUB_OFFLINE is set", local_options)
    timeout = _probe_timeout()
    failure = _probe(release, timeout)
    if failure is not None:
        raise WeightsUnavailableError(release, what, _reason(failure), local_options) from failure
    try:
        return Path(hf_hub_download(release.repo_id, release.filename, force_download=force))
    # A download cut off midway (or refused after the probe) is reported the same way, chained.
    except Exception as err:
        raise WeightsUnavailableError(release, what, _reason(err), local_options) from err


def _reason(err: BaseException) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__


def _unavailable_message(release: Release, what: str, reason: str, local_options: list[str]) -> str:
    cache = huggingface_hub.constants.HF_HUB_CACHE
    options = [*local_options, (
        f"on a connected machine run `hf download {release.repo_id} {release.filename}`, then "
        f"copy its Hugging Face cache folder (HF_HUB_CACHE, by default ~/.cache/huggingface/hub) "
        f"to {cache} here, or point HF_HOME / HF_HUB_CACHE at the copy"
    )]
    return (
        f"Cannot get {what}: {release.filename} is not in the Hugging Face cache ({cache}) and "
        f"cannot be downloaded from the Hub repo {release.repo_id} ({reason}).\n"
        "Point to a local copy in one of these ways:\n"
        + "\n".join(f"  - {option}" for option in options)
    )
