"""Helpers shared by the benchmark's processes: inputs from fixed seeds, timing."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import numpy as np

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def clip_input(config) -> np.ndarray:
    """One clip (1, T, S, S, 3) in [0, 1] at the model's trained size, always the same."""
    t, s = config.num_frames, config.image_size
    return np.random.default_rng(1).random((1, t, s, s, 3), dtype=np.float32)


def text_input(config) -> tuple[np.ndarray, np.ndarray]:
    """One prompt: 8 real token ids right-padded to 64, as the tokenizer returns it."""
    ids = np.zeros((1, 64), np.int32)
    ids[0, :8] = np.random.default_rng(2).integers(3, config.vocabulary_size, 8)
    return ids, (ids == 0).astype(np.float32)


def median_seconds(run: Callable[[], object], repeats: int,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[float, list[float]]:
    """Median time of ``repeats`` runs after one warm-up run (JIT, allocator caches), and the
    times; wall time unless ``clock`` says otherwise (``time.process_time``: CPU time)."""
    run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times), times
