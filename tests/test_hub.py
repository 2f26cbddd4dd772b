"""hub: local paths win, env vars, the HF cache, and fast, explicit failures when offline."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import huggingface_hub
import pytest

from fiftyone_videoprism.core import env
from fiftyone_videoprism.core import hub
from fiftyone_videoprism.core.configs import list_models

REPO_ROOT = Path(__file__).absolute().parents[1]
LVT_BASE = hub.RELEASES["videoprism-lvt-base"]


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch):
    """Keeps the developer's own FIFTYONE_VIDEOPRISM_* settings out of these tests."""
    for name in env.FILE_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def offline_cache(monkeypatch, tmp_path) -> Path:
    """An empty HF cache in tmp, with huggingface_hub in offline mode."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if hub asks the Hub anything beyond the local cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(hub, "get_hf_file_metadata", refuse)
    monkeypatch.setattr(hub, "hf_hub_download", refuse)
    monkeypatch.setattr(hub, "_probe", refuse)


def _run_isolated(call: str, tmp_path: Path, **env: str) -> dict:
    """Runs ``call`` (e.g. ``hub.checkpoint_file('videoprism-lvt-base')``) in a fresh interpreter
    with an empty HF_HOME and the given environment; returns what it raised and how long it took."""
    script = f"""
import json, time
from fiftyone_videoprism.core import hub
start = time.monotonic()
try:
    result = {{"returned": str({call})}}
except Exception as err:
    result = {{"error": type(err).__name__, "is_file_not_found": isinstance(err, FileNotFoundError),
              "message": str(err),
              "cause": type(err.__cause__).__name__ if err.__cause__ else None}}
result["elapsed"] = time.monotonic() - start
print(json.dumps(result))
"""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE_", "FIFTYONE_VIDEOPRISM_"))}
    clean.update(HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(REPO_ROOT), **env)
    done = subprocess.run([sys.executable, "-c", script], env=clean, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_explains_local_options(message: str, release: hub.Release, *options: str) -> None:
    for part in (release.filename, release.repo_id,
                 f"hf download {release.repo_id} {release.filename}", *options):
        assert part in message, f"{part!r} missing from:\n{message}"


@pytest.fixture
def fake_hub():
    """A local HTTP server answering like the Hub for the files in a dict (URL path -> bytes),
    at first tom-moroney/videoprism-mlx's c4_en.model; yields (endpoint URL, list of the
    requests it got, the dict, which a test may change)."""
    files = {"/tom-moroney/videoprism-mlx/resolve/main/c4_en.model": b"stand-in for c4_en.model"}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _headers(self) -> bytes | None:
            requests.append(f"{self.command} {self.path}")
            payload = files.get(self.path)
            if payload is None:
                self.send_response(404)
                self.end_headers()
                return None
            self.send_response(200)
            # What hf_hub_download needs from a HEAD: commit, etag, size.
            self.send_header("X-Repo-Commit", "89abcdef0123456789abcdef0123456789abcdef")
            self.send_header("ETag", f'"{hashlib.sha1(payload).hexdigest()}"')
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            return payload

        def do_HEAD(self):
            self._headers()

        def do_GET(self):
            payload = self._headers()
            if payload is not None:
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests, files
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hf_hub_offline_fails_fast(tmp_path):
    result = _run_isolated("hub.checkpoint_file('videoprism-lvt-base')", tmp_path,
                           HF_HUB_OFFLINE="1")
    assert result["error"] == "WeightsUnavailableError" and result["is_file_not_found"]
    assert "HF_HUB_OFFLINE is set" in result["message"]
    _assert_explains_local_options(result["message"], LVT_BASE, "checkpoint=",
                                   env.CHECKPOINT_DIR)
    assert result["elapsed"] < 3


@pytest.mark.parametrize(
    "endpoint",
    [
        # RFC 2606 reserves .invalid: the name never resolves.
        pytest.param("https://huggingface.invalid", id="dns_failure"),
        pytest.param(f"http://127.0.0.1:{_closed_port()}", id="connection_refused"),
    ],
)
def test_unreachable_hub_fails_fast(tmp_path, endpoint):
    # huggingface_hub alone retries for ~23 s here before giving up.
    result = _run_isolated("hub.checkpoint_file('videoprism-lvt-base')", tmp_path,
                           HF_ENDPOINT=endpoint)
    assert result["error"] == "WeightsUnavailableError" and result["is_file_not_found"]
    assert result["cause"] is not None
    _assert_explains_local_options(result["message"], LVT_BASE, "checkpoint=",
                                   env.CHECKPOINT_DIR)
    assert result["elapsed"] < hub.DEFAULT_PROBE_TIMEOUT_S + 2


def test_silent_hub_times_out(tmp_path):
    # Accepts connections (the kernel does) but never answers: a dropped-packets network.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        result = _run_isolated("hub.checkpoint_file('videoprism-lvt-base')", tmp_path,
                               HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_ETAG_TIMEOUT="1")
    assert result["error"] == "WeightsUnavailableError"
    assert "Timeout" in result["message"] or "TimeoutError" in result["message"]
    assert result["elapsed"] < 4


def test_tokenizer_offline_message(tmp_path):
    result = _run_isolated("hub.tokenizer_file()", tmp_path, HF_HUB_OFFLINE="1",
                           **{env.TOKENIZER_HUB: "someone/c4-copy/spm/c4_en.model"})
    assert result["error"] == "WeightsUnavailableError"
    _assert_explains_local_options(result["message"], hub.Release("someone/c4-copy",
                                                                  "spm/c4_en.model"),
                                   "path=", env.TOKENIZER)
    assert result["elapsed"] < 3


def test_download_lands_in_the_hf_cache_and_is_reused(tmp_path, fake_hub):
    endpoint, requests, _ = fake_hub
    first = _run_isolated("hub.tokenizer_file()", tmp_path, HF_ENDPOINT=endpoint)
    path = Path(first["returned"])
    assert path.read_bytes() == b"stand-in for c4_en.model"
    assert path.is_relative_to(tmp_path / "hf_home" / "hub")
    assert any(r.startswith("GET /tom-moroney/videoprism-mlx/resolve/main/c4_en.model")
               for r in requests)
    seen = len(requests)
    second = _run_isolated("hub.tokenizer_file()", tmp_path, HF_ENDPOINT=endpoint)
    assert second["returned"] == first["returned"]
    assert len(requests) == seen  # served from the cache, the Hub was not asked


def test_missing_hub_file_is_reported(tmp_path, fake_hub):
    endpoint, _, _ = fake_hub
    result = _run_isolated("hub.tokenizer_file()", tmp_path, HF_ENDPOINT=endpoint,
                           **{env.TOKENIZER_HUB: "tom-moroney/videoprism-mlx/nope.model"})
    assert result["error"] == "WeightsUnavailableError"
    assert "404" in result["message"] and "nope.model" in result["message"]


def test_releases_cover_every_model():
    assert sorted(hub.RELEASES) == sorted(list_models())
    assert hub.RELEASES["videoprism-lvt-base"] == (
        "google/videoprism-lvt-base-f16r288", "flax_lvt_base_f16r288_repeated.npz")
    assert hub.RELEASES["videoprism-large"].repo_id == "google/videoprism-large-f8r288"


def test_env_vars_are_documented():
    for name in env.FILE_VARS:
        assert name in hub.__doc__


def test_unknown_model_suggests_a_name(offline_cache):
    with pytest.raises(ValueError, match="Did you mean 'videoprism-lvt-base'"):
        hub.checkpoint_file("videoprism-lvt-bse")


def test_explicit_file_wins(tmp_path, monkeypatch, no_network):
    local = tmp_path / "my_weights.safetensors"
    local.write_bytes(b"x")
    other = tmp_path / "env_dir"
    other.mkdir()
    (other / LVT_BASE.filename).write_bytes(b"y")
    monkeypatch.setenv(env.CHECKPOINT_DIR, str(other))
    assert hub.checkpoint_file("videoprism-lvt-base", local) == local
    assert hub.checkpoint_file("videoprism-lvt-base", str(local)) == local


def test_explicit_folder_holds_the_released_name(tmp_path, no_network):
    (tmp_path / LVT_BASE.filename).write_bytes(b"x")
    assert hub.checkpoint_file("videoprism_lvt_public_v1_base", tmp_path) == (
        tmp_path / LVT_BASE.filename)
    with pytest.raises(FileNotFoundError, match="flax_base_f16r288_repeated.npz"):
        hub.checkpoint_file("videoprism-base", tmp_path)


def test_missing_explicit_path_is_named(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="nothing_here.npz") as info:
        hub.checkpoint_file("videoprism-lvt-base", tmp_path / "nothing_here.npz")
    assert not isinstance(info.value, hub.WeightsUnavailableError)


def test_checkpoint_dir_env(tmp_path, monkeypatch, no_network):
    (tmp_path / LVT_BASE.filename).write_bytes(b"x")
    monkeypatch.setenv(env.CHECKPOINT_DIR, str(tmp_path))
    assert hub.checkpoint_file("google/videoprism-lvt-base-f16r288") == tmp_path / LVT_BASE.filename


def test_checkpoint_dir_env_must_exist(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv(env.CHECKPOINT_DIR, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match=f"{env.CHECKPOINT_DIR}=.*typo"):
        hub.checkpoint_file("videoprism-lvt-base")


def test_checkpoint_dir_without_the_file_falls_back_to_the_hub(tmp_path, monkeypatch,
                                                               offline_cache):
    folder = tmp_path / "some_models"
    folder.mkdir()
    monkeypatch.setenv(env.CHECKPOINT_DIR, str(folder))
    with pytest.raises(hub.WeightsUnavailableError) as info:
        hub.checkpoint_file("videoprism-lvt-base")
    assert f"now {str(folder)!r}, which lacks it" in str(info.value)


def _fake_cached(cache: Path, release: hub.Release) -> Path:
    """Lays a file out as huggingface_hub's cache does after a download of ``main``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{release.repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    path = repo_dir / "snapshots" / commit / release.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"cached")
    return path


def test_cached_file_is_used_offline(offline_cache):
    cached = _fake_cached(offline_cache, LVT_BASE)
    assert hub.checkpoint_file("videoprism-lvt-base") == cached


def test_cached_file_is_used_without_asking_the_hub(offline_cache, monkeypatch, no_network):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    cached = _fake_cached(offline_cache, hub.DEFAULT_TOKENIZER)
    assert hub.tokenizer_file() == cached


def test_tokenizer_explicit_path_wins(tmp_path, monkeypatch, no_network):
    mine, theirs = tmp_path / "mine.model", tmp_path / "theirs.model"
    mine.write_bytes(b"x")
    theirs.write_bytes(b"y")
    monkeypatch.setenv(env.TOKENIZER, str(theirs))
    assert hub.tokenizer_file(mine) == mine
    assert hub.tokenizer_file() == theirs


def test_tokenizer_missing_paths_are_named(tmp_path, monkeypatch, no_network):
    with pytest.raises(FileNotFoundError, match="gone.model"):
        hub.tokenizer_file(tmp_path / "gone.model")
    monkeypatch.setenv(env.TOKENIZER, str(tmp_path / "also_gone.model"))
    with pytest.raises(FileNotFoundError, match=f"{env.TOKENIZER}=.*also_gone.model"):
        hub.tokenizer_file()


def test_tokenizer_location(monkeypatch):
    assert hub.tokenizer_location() == hub.DEFAULT_TOKENIZER
    monkeypatch.setenv(env.TOKENIZER_HUB, "me/my-repo/sub/dir/c4.model")
    assert hub.tokenizer_location() == hub.Release("me/my-repo", "sub/dir/c4.model")
    monkeypatch.setenv(env.TOKENIZER_HUB, "me/just-a-repo")
    with pytest.raises(ValueError, match="owner/repo/filename"):
        hub.tokenizer_location()


def test_damaged_download_is_fetched_again(tmp_path, fake_hub):
    """A checkpoint damaged in the HF cache is detected on load and downloaded once more."""
    endpoint, requests, files = fake_hub
    release = hub.RELEASES["videoprism-lvt-base"]
    url = f"/{release.repo_id}/resolve/main/{release.filename}"
    good = (REPO_ROOT / "tests" / "data" / "tiny_lvt" / "flax_tiny_lvt_repeated.npz").read_bytes()
    files[url] = good
    first = _run_isolated("hub.checkpoint_file('videoprism-lvt-base')", tmp_path,
                          HF_ENDPOINT=endpoint)
    cached = Path(first["returned"])
    blob = cached.resolve()
    blob.write_bytes(good[: len(good) // 3])  # a cut-off copy in the cache
    # The served file is the tiny model, so after the new download the load stops at the
    # architecture check: proof that the damaged copy was replaced and read again.
    second = _run_isolated("__import__('fiftyone_videoprism').load_model('videoprism-lvt-base')",
                           tmp_path, HF_ENDPOINT=endpoint)
    assert second["error"] == "CheckpointError", second
    assert "does not fit FactorizedVideoCLIP" in second["message"]
    assert "mis-shaped" in second["message"]
    assert cached.read_bytes() == good
    assert sum(r.startswith(f"GET {url}") for r in requests) == 2


def test_damaged_user_file_is_reported_not_replaced(tmp_path):
    good = (REPO_ROOT / "tests" / "data" / "tiny_lvt" / "flax_tiny_lvt_repeated.npz").read_bytes()
    damaged = tmp_path / "flax_lvt_base_f16r288_repeated.npz"
    damaged.write_bytes(good[:1000])
    result = _run_isolated(
        f"__import__('fiftyone_videoprism').load_model('videoprism-lvt-base', {str(damaged)!r})",
        tmp_path)
    assert result["error"] == "CorruptCheckpointError" and "truncated" in result["message"]
    assert damaged.stat().st_size == 1000
