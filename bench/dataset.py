"""Child process of ``python -m bench``: one model over a small synthetic video dataset.

    python -m bench.dataset MODEL CHECKPOINT.npz --videos 6 --batch-size 2 --workdir DIR

Prints one JSON line: pure-model and end-to-end (decode + embed + write to FiftyOne)
throughput on the same videos, decode-only time, and this process's peak RSS against the
model's weight bytes. Runs in its own process because peak RSS is a process high-water mark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av
import numpy as np

# 10 s of 640x360 at 30 fps, as in the decoding figure.
_SECONDS, _WIDTH, _HEIGHT, _FPS = 10, 640, 360, 30


def write_video(path: Path, seed: int) -> None:
    """A textured background with a moving square: real motion, so P-frames carry work."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (_HEIGHT, _WIDTH, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=_FPS)
        stream.width, stream.height, stream.pix_fmt = _WIDTH, _HEIGHT, "yuv420p"
        for i in range(_SECONDS * _FPS):
            img = np.roll(background, 3 * i, axis=1)
            x = (7 * i) % (_WIDTH - 80)
            img[140:220, x:x + 80] = (40 * (seed + 1)) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _peak_rss_gb() -> float:
    """This process's resident-set high-water mark (VmHWM), resettable unlike ru_maxrss."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / 1e9


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset")
    parser.add_argument("model")
    parser.add_argument("checkpoint")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()

    # A throwaway FiftyOne database, set before fiftyone is imported (it reads these then).
    os.environ["FIFTYONE_DATABASE_DIR"] = str(args.workdir / "db")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
    import fiftyone_videoprism  # noqa: F401  (before mlx: MLX must bind the optimised BLAS)
    import fiftyone as fo
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from fiftyone_videoprism.core import video
    from fiftyone_videoprism.fo import runs
    from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

    paths = []
    for i in range(args.videos):
        path = args.workdir / f"video{i}.mp4"
        if not path.exists():
            write_video(path, i)
        paths.append(str(path))

    model = VideoPrismModel(VideoPrismModelConfig(
        {"model_name": args.model, "checkpoint_path": args.checkpoint,
         "batch_size": args.batch_size}))
    weight_bytes = sum(v.nbytes for _, v in tree_flatten(model.mlx_model.parameters()))
    t, s = model.num_frames, model.image_size
    model.embed_frames(np.zeros((args.batch_size, t, s, s, 3), np.uint8))  # warm-up
    # The peak so far includes a first-time checkpoint conversion; from here on it is the
    # dataset run's own (weights + activations + FiftyOne + decoding).
    load_peak_gb = _peak_rss_gb()
    _reset_peak_rss()

    start = time.perf_counter()
    frames = [video.read_frames(p, t, s) for p in paths]
    decode_s = time.perf_counter() - start

    def pure_seconds() -> float:
        start = time.perf_counter()
        for i in range(0, len(frames), args.batch_size):
            model.embed_frames(np.stack(frames[i:i + args.batch_size]))
        return time.perf_counter() - start

    # Pure model before and after the end-to-end run, averaged: the load on a shared machine
    # drifts, and this keeps the ratio fair to both.
    pure_s = pure_seconds()
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    start = time.perf_counter()
    runs.compute_embeddings(dataset, model, "videoprism", progress=False)
    e2e_s = time.perf_counter() - start
    pure_s = (pure_s + pure_seconds()) / 2
    stored = len(dataset.exists("videoprism"))
    dataset.delete()

    print(json.dumps({
        "videos": args.videos, "batch_size": args.batch_size, "stored": stored,
        "decode_s_per_video": decode_s / args.videos,
        "pure_clips_per_s": args.videos / pure_s, "e2e_clips_per_s": args.videos / e2e_s,
        "peak_rss_gb": _peak_rss_gb(), "load_peak_rss_gb": load_peak_gb,
        "weight_gb": weight_bytes / 1e9,
        # What MLX itself held at its peak, and what its allocator keeps cached for reuse.
        "mlx_peak_gb": mx.get_peak_memory() / 1e9, "mlx_cache_gb": mx.get_cache_memory() / 1e9,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
