"""CPU lanes: independent slices of a computation run on separate MLX CPU streams.

MLX's element-wise CPU kernels use one core, and on few cores a multi-threaded BLAS makes the
small batched attention GEMMs collapse (20x slower with 2 threads on 2 cores). So the cores the
BLAS leaves to itself are used by running independent slices (frames, sequences, query rows) on
separate MLX streams instead; :mod:`fiftyone_videoprism.core.model` decides what to split.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

import mlx.core as mx
import numpy as np

from fiftyone_videoprism.core.blas import blas_info


def cpu_lanes() -> int:
    """How many CPU streams a model splits independent work over by default: the cores the
    BLAS threads leave free, and 1 off the CPU (Metal and CUDA run their own kernels)."""
    if mx.default_device() != mx.cpu:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // (blas_info()["threads"] or 1))


_THREAD_STREAMS = threading.local()


def thread_streams(lanes: int) -> tuple[mx.Stream, ...]:
    """``lanes`` CPU streams of the calling thread: MLX streams belong to the thread that made
    them (the App server and the operators run models in worker threads), and cannot be freed,
    so each thread makes its own once."""
    if lanes < 2:
        return ()
    made = getattr(_THREAD_STREAMS, "by_lanes", None)
    if made is None:
        made = _THREAD_STREAMS.by_lanes = {}
    if lanes not in made:
        made[lanes] = tuple(mx.new_stream(mx.cpu) for _ in range(lanes))
    return made[lanes]


def bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal (start, stop) ranges covering 0..n (none empty)."""
    cuts = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def on_streams(fn: Callable[..., mx.array], arrays: tuple[mx.array | None, ...],
               streams: tuple[mx.Stream, ...], axis: int) -> mx.array:
    """fn over slices of ``arrays`` along ``axis`` (None passes through), one slice per stream."""
    n = next(a for a in arrays if a is not None).shape[axis]
    if len(streams) < 2 or n < 2:
        return fn(*arrays)
    index = [slice(None)] * (axis + 1)
    outs = []
    for stream, (lo, hi) in zip(streams, bounds(n, len(streams))):
        index[axis] = slice(lo, hi)
        with mx.stream(stream):
            outs.append(fn(*(None if a is None else a[tuple(index)] for a in arrays)))
    return mx.concatenate(outs, axis=axis)
