"""Windows over long videos (core, no FiftyOne): encode_windows equals encode_video per window
on the tiny oracle models, and the time-grid plan decodes each file in one pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from videogen import stamped_frames, write_video, read_stamp

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import video, windows
from fiftyone_videoprism.core.embedding import embed_videos, pool_tokens

DATA = Path(__file__).parent / "data"
TOL = 1e-5


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    out = {}
    for fixture in ("tiny_video", "tiny_lvt"):
        dst = tmp_path_factory.mktemp(fixture)
        npz = shutil.copy(DATA / fixture / f"flax_{fixture}_repeated.npz", dst)
        out[fixture] = fvp.load_model(DATA / fixture / "config.json", checkpoint=npz)
    return out


def _frames(total: int, side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((total, side, side, 3), np.float32)


@pytest.mark.parametrize("total,window,stride", [
    (10, 4, 2),   # 50 % overlap, last window aligned to the end (starts 0, 2, 4, 6)
    (11, 4, 3),   # T_total not a multiple of the stride: last start 7, not 6
    (13, 6, 2),   # 67 % overlap, temporal table resized 4 -> 6
    (9, 3, 3),    # no overlap, table resized down 4 -> 3
    (12, 4, 5),   # gaps between windows, plus the end-aligned one
    (3, 4, 2),    # shorter than one window: one window over the whole video
])
@pytest.mark.parametrize("fixture", ["tiny_video", "tiny_lvt"])
def test_encode_windows_equals_encode_video_per_window(nets, fixture, total, window, stride):
    net = nets[fixture]
    frames = _frames(total, seed=total * 7 + window)
    starts = windows.window_starts(total, window, stride)
    length = min(window, total)
    assert starts[-1] + length == total  # every frame covered, last window at the end
    got = np.array(net.encode_windows(frames, window, stride))
    expected = np.concatenate([embed_videos(net, frames[None, s:s + length]) for s in starts])
    assert got.shape == expected.shape == (len(starts), net.config.model_dim)
    assert np.max(np.abs(got - expected)) < TOL
    # Windows differ from one another, so a copy of one window cannot pass.
    assert len(starts) == 1 or np.min(np.abs(got[0] - got[-1]).max()) > 1e-3


def test_video_encoder_tokens_and_paddings(nets):
    net = nets["tiny_video"]
    frames = _frames(11, seed=3)
    pads = np.zeros(11, np.float32)
    pads[[2, 9]] = 1.0
    emb, tokens = net.encode_windows(frames, 4, 3, pads, tokens=True)
    for w, s in enumerate(windows.window_starts(11, 4, 3)):
        ref = net.encode_video(frames[None, s:s + 4], frame_paddings=pads[None, s:s + 4])
        assert np.max(np.abs(np.array(tokens[w]) - np.array(ref[0]))) < TOL
        assert np.max(np.abs(np.array(emb[w]) - np.array(pool_tokens(ref)[0]))) < TOL


def test_batch_of_videos(nets):
    net = nets["tiny_lvt"]
    frames = np.stack([_frames(7, seed=1), _frames(7, seed=2)])
    got = np.array(net.encode_windows(frames, 4, 2))
    assert got.shape == (2, 3, net.config.model_dim)
    for b in range(2):
        assert np.allclose(got[b], np.array(net.encode_windows(frames[b], 4, 2)), atol=TOL)


def test_frames_stream_through_and_are_dropped(nets):
    """An iterator is read lazily: each window is out before frames past it are read."""
    net = nets["tiny_video"]
    frames = _frames(10)
    taken = []

    def source():
        for i, f in enumerate(frames):
            taken.append(i)
            yield f

    out = windows.iter_windows(net, source(), 10, 4, 2)
    first = next(out)
    assert first.start == 0 and max(taken) == 3
    assert [w.start for w in out] == [2, 4, 6]
    with pytest.raises(ValueError, match="ended after 5 of the 10"):
        list(windows.iter_windows(net, iter(frames[:5]), 10, 4, 2))


def test_plan_on_a_time_grid():
    times = np.arange(100) / 10.0  # 10 fps, 10 s
    plan = windows.plan_windows(times, 4, window_seconds=2.0, stride_seconds=1.0)
    # grid step 0.5 s = 5 frames; windows of 4 points every 2 points
    assert plan.frames.tolist() == list(range(0, 100, 5))
    assert plan.starts.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    supports = plan.supports()
    assert supports[0] == (1, 20) and supports[1] == (11, 30) and supports[-1] == (81, 100)
    # frame counts: the same grid
    same = windows.plan_windows(times, 4, window_frames=20, stride_frames=10)
    assert same.frames.tolist() == plan.frames.tolist() and same.stride == plan.stride
    with pytest.raises(ValueError, match="multiple of the grid step"):
        windows.plan_windows(times, 4, window_seconds=2.0, stride_seconds=0.7)
    with pytest.raises(ValueError, match="multiple of num_frames"):
        windows.plan_windows(times, 4, window_frames=10)
    # shorter than one window: the video's usual frames, one window over all of it
    short = windows.plan_windows(times[:12], 4, window_seconds=2.0, stride_seconds=1.0)
    assert short.frames.tolist() == video.frame_indices(12, 4).tolist()
    assert short.supports() == [(1, 12)]
    # no overlap: supports tile the frames exactly
    tiles = windows.plan_windows(times, 4, window_seconds=2.0, stride_seconds=2.0).supports()
    covered = np.concatenate([np.arange(a, b + 1) for a, b in tiles])
    assert covered.tolist() == list(range(1, 101))


def test_file_windows_decode_once_and_match_read_frames(nets, tmp_path):
    net = nets["tiny_lvt"]
    path = write_video(tmp_path / "long.mp4", stamped_frames(90, 64, 48), fps=10, gop_size=30)
    assert np.allclose(video.frame_times(path), np.arange(90) / 10)
    plan = windows.read_plan(path, 4, window_seconds=2.0, stride_seconds=1.0)
    counts = video.DecodeCounts()
    got = list(windows.iter_file_windows(net, path, plan, 32, counts=counts))
    assert [w.index for w in got] == list(range(len(plan.starts)))
    assert counts.converted == len(plan.frames) and counts.decoded <= 90
    for w in got:
        frames = np.stack([_read_one(path, int(i)) for i in plan.window_frames(w.index)])
        assert np.max(np.abs(w.embedding - embed_videos(net, frames[None])[0])) < TOL
    # skipped windows are neither decoded nor yielded
    some = list(windows.iter_file_windows(net, path, plan, 32, skip=frozenset({0, 1, 2})))
    assert [w.index for w in some] == list(range(3, len(plan.starts)))
    assert np.allclose(some[0].embedding, got[3].embedding, atol=TOL)


def test_stream_frames_in_order_with_repeats(tmp_path):
    path = write_video(tmp_path / "s.mp4", stamped_frames(60, 64, 48), fps=10, gop_size=10)
    wanted = [0, 0, 5, 31, 32, 32, 59]
    counts = video.DecodeCounts()
    stamps = [read_stamp(f) for f in video.stream_frames(path, wanted, 32, counts=counts)]
    assert stamps == wanted
    assert counts.converted == 5 and counts.decoded < 60  # seeks across the 5 -> 31 gap
    with pytest.raises(video.VideoDecodeError, match="past the end"):
        list(video.stream_frames(path, [3, 60], 32))


def _read_one(path, index: int) -> np.ndarray:
    return video.read_frames(path, 1, 32, support=(index + 1, index + 1))[0]
