"""Overlapping windows of a long video, each embedded as ``encode_video`` embeds a clip, with
every frame's spatial work done once (numpy/MLX in and out, no FiftyOne).

VideoPrism's encoder is factorised: the spatial stack sees each frame on its own and the
temporal position table is added only after it (``FactorizedEncoder.encode_frames`` /
``encode_time``). So windows laid on one frame grid can share each frame's spatial features;
only the temporal stack (and, for LvT, the auxiliary layers and the pooler) runs per window.

Two layers:

- frames -> windows (:func:`window_starts`, :func:`iter_windows`, :func:`encode_windows`):
  windows of ``window`` frames every ``stride`` frames, the last one aligned to the last frame
  so that every frame is covered; frames stream through, and a frame's features are dropped
  as soon as no later window contains it, so memory holds at most about one window of
  features whatever the video's length;
- a video file -> a grid of frames (:class:`WindowPlan`, :func:`plan_windows`,
  :func:`iter_file_windows`): ``num_frames`` frames per ``window_seconds`` on a fixed time
  grid, windows starting every ``stride_seconds`` (a whole number of grid steps, so that
  overlapping windows share frames exactly), decoded in one forward pass
  (:func:`fiftyone_videoprism.core.video.stream_frames`).

Defaults: 16 frames over 8 s, a new window every 4 s. 16 frames is what every released model
was evaluated with in the original demos (the base models' trained count). VideoPrism's
video-text training and evaluation clips (MSR-VTT, VATEX, Kinetics) last about 10 s and the
original samples 16 frames across a clip; 8 s at 2 frames per second stays within that span
and within the 2-10 s segments other video search systems use, and a 50 % overlap means an
event of 4 s or more lies whole inside some window. A video shorter than one window gives
one window of ``num_frames`` frames picked across the whole video as
:func:`fiftyone_videoprism.core.video.read_frames` picks them, i.e. the video's usual embedding.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from fiftyone_videoprism.core import video as vid
from fiftyone_videoprism.core.embedding import pool_tokens

DEFAULT_WINDOW_SECONDS = 8.0
DEFAULT_STRIDE_SECONDS = 4.0
# Slack when checking that a stride is a whole number of grid steps (seconds are floats).
_GRID_SLACK = 1e-6


@dataclass(frozen=True)
class Window:
    """One window's output.

    Attributes:
        index: position of the window in the video (0-based)
        start: index of its first frame in the frames given (0-based)
        length: frames in the window
        embedding: (D,) float32 unit-norm embedding
        tokens: (length*N, D) float32 tokens (vision tokens for LvT), when asked, else None
    """

    index: int
    start: int
    length: int
    embedding: np.ndarray
    tokens: np.ndarray | None = None


def window_starts(total: int, window: int, stride: int) -> np.ndarray:
    """First frame (0-based) of each window of ``window`` frames every ``stride`` frames over
    ``total`` frames; the last window ends at the last frame, so every frame is covered. With
    ``total <= window``, one window from frame 0 (over ``total`` frames)."""
    if total < 1 or window < 1 or stride < 1:
        raise ValueError(f"need total, window and stride >= 1, got {total}, {window}, {stride}")
    if total <= window:
        return np.zeros(1, np.int64)
    starts = np.arange(0, total - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < total:
        starts = np.append(starts, total - window)
    return starts


def iter_windows(net, frames: Iterable[np.ndarray], total: int, window: int, stride: int,
                 frame_paddings=None, *, tokens: bool = False) -> Iterator[Window]:
    """Yields each window of :func:`window_starts` as soon as its last frame has arrived.

    Args:
        net: a ``FactorizedEncoder`` or ``FactorizedVideoCLIP``
        frames: ``total`` frames (S, S, 3), uint8 or float in [0, 1], in order (an iterator
            is consumed lazily: a frame is read when the next window needs it)
        total: the number of frames ``frames`` yields
        frame_paddings: (total,) 1 = padded frame, or None
        tokens: also return each window's tokens

    Raises:
        ValueError: ``frames`` ends before ``total`` frames
    """
    pads = None if frame_paddings is None else np.asarray(frame_paddings, np.float32)
    if pads is not None and pads.shape != (total,):
        raise ValueError(f"frame_paddings must have shape ({total},), got {pads.shape}")
    return _iter_at(net, iter(frames), total, window_starts(total, window, stride),
                    min(window, total), pads, tokens)


def _iter_at(net, source: Iterator[np.ndarray], total: int, starts: np.ndarray, length: int,
             pads: np.ndarray | None, tokens: bool) -> Iterator[Window]:
    """Windows of ``length`` frames at increasing ``starts``: each frame's spatial features
    are computed when the first window containing it is due, and dropped once the next
    window starts after it."""
    encoder = net.vision_encoder if net.config.is_lvt else net
    read = 0  # frames taken from `source`
    first = 0  # index of features[0]
    features: list[mx.array] = []  # (N, D) per frame, from `first` on
    for index, start in enumerate(int(s) for s in starts):
        end = start + length
        del features[:min(start - first, len(features))]
        first = start
        while read < start:  # frames between windows that no window contains
            _next_frame(source, read, total)
            read += 1
        if read < end:
            chunk = np.stack([_next_frame(source, i, total) for i in range(read, end)])
            pad = None if pads is None else pads[None, read:end]
            x = encoder.encode_frames(_as_float(chunk)[None], pad)[0]  # (end - read, N, D)
            mx.eval(x)
            features.extend(x[i] for i in range(x.shape[0]))
            read = end
        x = mx.stack(features[:length])[None]  # (1, length, N, D)
        pad = None if pads is None else pads[None, start:end]
        out = encoder.encode_time(x, pad)
        emb = net.embed_tokens(out) if net.config.is_lvt else pool_tokens(out)
        mx.eval(emb, out) if tokens else mx.eval(emb)
        yield Window(index, start, length, np.array(emb[0], np.float32),
                     np.array(out[0], np.float32) if tokens else None)


def encode_windows(net, frames, window: int, stride: int, frame_paddings=None, *,
                   tokens: bool = False):
    """Embeddings of the windows of ``frames``: (T_total, S, S, 3) -> (W, D), or a batch
    (B, T_total, S, S, 3) -> (B, W, D), with frame_paddings (T_total,) or (B, T_total).
    Each window's embedding equals ``embed_videos(net, window frames)``. With ``tokens``,
    returns ``(embeddings, tokens)``, tokens shaped (W, length*N, D) or (B, W, length*N, D).
    mx.arrays, like ``encode_video``."""
    frames = frames if isinstance(frames, np.ndarray) else np.array(frames)
    if frames.ndim == 5:
        pads = [None] * len(frames) if frame_paddings is None else frame_paddings
        outs = [encode_windows(net, f, window, stride, p, tokens=tokens)
                for f, p in zip(frames, pads, strict=True)]
        if tokens:
            return mx.stack([e for e, _ in outs]), mx.stack([t for _, t in outs])
        return mx.stack(outs)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, 3) or (B, T, H, W, 3), got {frames.shape}")
    done = list(iter_windows(net, frames, len(frames), window, stride, frame_paddings,
                             tokens=tokens))
    embeddings = mx.array(np.stack([w.embedding for w in done]))
    if tokens:
        return embeddings, mx.array(np.stack([w.tokens for w in done]))
    return embeddings


def _next_frame(source: Iterator[np.ndarray], index: int, total: int) -> np.ndarray:
    try:
        return next(source)
    except StopIteration:
        raise ValueError(f"the frames ended after {index} of the {total} announced") from None


def _as_float(frames: np.ndarray) -> np.ndarray:
    return vid.to_float(frames) if frames.dtype == np.uint8 else frames.astype(np.float32)


# --------------------------------------------------------------------------------------------
# A video file on a time grid


@dataclass(frozen=True)
class WindowPlan:
    """Which frames of a video each window sees.

    Attributes:
        frames: (K,) 0-based index of the video frame at each grid point (non-decreasing;
            a frame repeats where the video has fewer frames per second than the grid)
        window: grid points per window (the model's ``num_frames``)
        stride: grid points between window starts
        count: frames in the video
    """

    frames: np.ndarray
    window: int
    stride: int
    count: int

    @property
    def starts(self) -> np.ndarray:
        """(W,) grid index of each window's first frame (:func:`window_starts`)."""
        return window_starts(len(self.frames), self.window, self.stride)

    def window_frames(self, index: int) -> np.ndarray:
        """0-based video frames that window ``index`` sees."""
        start = int(self.starts[index])
        return self.frames[start:start + self.window]

    def supports(self) -> list[tuple[int, int]]:
        """FiftyOne's 1-based inclusive [first, last] frames of each window: from its first
        grid frame to the frame before the next grid point after it (the video's last frame
        for the last window). Without overlap (stride == window) they tile frames
        1..count exactly; with overlap, consecutive supports overlap by the shared grid
        points, and together they still cover 1..count with no gap."""
        k = len(self.frames)
        out = []
        for start in (int(s) for s in self.starts):
            after = start + self.window
            last = int(self.frames[after]) if after < k else self.count
            out.append((int(self.frames[start]) + 1, max(last, int(self.frames[start]) + 1)))
        return out


def plan_windows(times: np.ndarray, num_frames: int, *,
                 window_seconds: float | None = None, stride_seconds: float | None = None,
                 window_frames: int | None = None, stride_frames: int | None = None
                 ) -> WindowPlan:
    """The window plan of a video whose frames are shown at ``times`` (seconds, display order).

    Either seconds (default ``DEFAULT_WINDOW_SECONDS`` / ``DEFAULT_STRIDE_SECONDS``): grid
    points every ``window_seconds / num_frames`` seconds, each taking the frame on screen at
    that time; or frame counts: a grid point every ``window_frames / num_frames`` frames (a
    whole number), windows every ``stride_frames`` frames. The stride must be a whole number
    of grid steps, so that overlapping windows share frames.
    """
    count = len(times)
    if count < 1:
        raise ValueError("the video has no frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if window_frames is not None or stride_frames is not None:
        if window_seconds is not None or stride_seconds is not None:
            raise ValueError("give window and stride in seconds or in frames, not both")
        window_frames = window_frames or num_frames
        step, rest = divmod(window_frames, num_frames)
        if step < 1 or rest:
            raise ValueError(f"window_frames ({window_frames}) must be a positive multiple of "
                             f"num_frames ({num_frames})")
        stride_frames = stride_frames or max(window_frames // 2, step)
        stride, rest = divmod(stride_frames, step)
        if stride < 1 or rest:
            raise ValueError(f"stride_frames ({stride_frames}) must be a positive multiple of "
                             f"the grid step window_frames / num_frames = {step}")
        grid = np.arange(0, count, step, dtype=np.int64)
    else:
        window_seconds = DEFAULT_WINDOW_SECONDS if window_seconds is None else window_seconds
        stride_seconds = DEFAULT_STRIDE_SECONDS if stride_seconds is None else stride_seconds
        if not window_seconds > 0 or not stride_seconds > 0:
            raise ValueError(f"window_seconds and stride_seconds must be > 0, got "
                             f"{window_seconds} and {stride_seconds}")
        step = window_seconds / num_frames
        stride = round(stride_seconds / step)
        if stride < 1 or abs(stride * step - stride_seconds) > _GRID_SLACK * max(1, stride_seconds):
            raise ValueError(
                f"stride_seconds ({stride_seconds}) must be a positive multiple of the grid "
                f"step window_seconds / num_frames = {step:g} s, so that windows share frames")
        times = np.asarray(times, np.float64) - float(times[0])
        points = math.floor(times[-1] / step + _GRID_SLACK) + 1
        at = np.arange(points, dtype=np.float64) * step
        grid = np.searchsorted(times, at + _GRID_SLACK, side="right").astype(np.int64) - 1
    if len(grid) < num_frames:
        # Shorter than one window: the video's usual frames, one window.
        return WindowPlan(vid.frame_indices(count, num_frames), num_frames, num_frames, count)
    return WindowPlan(grid, num_frames, stride, count)


def read_plan(path: str | os.PathLike, num_frames: int, **grid) -> WindowPlan:
    """:func:`plan_windows` for a video file (its frame times from a packet scan, no
    decoding); ``grid`` holds the seconds or frame-count arguments."""
    return plan_windows(vid.frame_times(path), num_frames, **grid)


def iter_file_windows(net, path: str | os.PathLike, plan: WindowPlan, size: int, *,
                      resize: str = "squash", skip: frozenset[int] = frozenset(),
                      counts: vid.DecodeCounts | None = None) -> Iterator[Window]:
    """The windows of ``plan`` over the video at ``path``, decoded in one pass at ``size``.

    ``skip``: indices of windows not wanted (e.g. found in a cache); frames only they need are
    not decoded, and they are not yielded. Raises VideoDecodeError as
    :func:`fiftyone_videoprism.core.video.stream_frames` does, after yielding the windows
    complete before the failure.
    """
    starts = plan.starts
    wanted = [w for w in range(len(starts)) if w not in skip]
    # Consecutive wanted windows that overlap or touch share one stretch of decoding; skipped
    # windows and gaps between windows cost nothing.
    runs: list[list[int]] = []
    for w in wanted:
        if runs and runs[-1][-1] == w - 1 and starts[w] - starts[w - 1] <= plan.window:
            runs[-1].append(w)
        else:
            runs.append([w])
    grid = [np.arange(starts[r[0]], starts[r[-1]] + plan.window) for r in runs]
    if not runs:
        return
    frames = vid.stream_frames(path, np.concatenate([plan.frames[g] for g in grid]), size,
                               resize=resize, counts=counts)
    for run, points in zip(runs, grid, strict=True):
        source = itertools.islice(frames, len(points))
        windows = _iter_at(net, source, len(points), starts[run] - points[0], plan.window,
                           None, False)
        for w, window in zip(run, windows, strict=True):
            yield Window(w, int(starts[w]), window.length, window.embedding)
