"""Moments: windows per second of ``encode_windows`` against one ``encode_video`` per window,
the theoretical FLOP ratio, frames decoded per window of a long video, and peak RSS over a
long video (flat in its length).

    .venv/bin/python -m bench.moments                 # full-size base + LvT-base, 2 windows
    .venv/bin/python -m bench.moments --windows 3 --models videoprism-base

Full-size models use random weights in the released layout (timings do not depend on the
values). Decoding and RSS rows use synthetic videos written here with PyAV (64x48 H.264) and
the tiny oracle model, since they measure the file -> frames -> windows pipeline, not the
network. Each RSS figure comes from its own child process (ru_maxrss is a high-water mark).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fiftyone_videoprism as fvp  # noqa: F401  (before mlx: MLX must bind the optimised BLAS)
import av
import mlx.core as mx
import numpy as np

from bench.common import CORES
from bench.flops import spatial_flops, video_flops
from bench.weights import mlx_model, random_flax_arrays
from fiftyone_videoprism.core import video, windows
from fiftyone_videoprism.core.configs import get_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_lvt"
WINDOW = 16
OVERLAPS = {"50%": 8, "75%": 4}


def flop_ratio(config, stride: int, count: int | None) -> float:
    """FLOPs of ``count`` windows one ``encode_video`` each over ``encode_windows``'s (None:
    a video long enough that the first window's extra frames do not count)."""
    size = config.image_size
    clip = video_flops(config, WINDOW, size)
    shared = clip - spatial_flops(config, WINDOW, size)  # temporal (+ LvT head) per window
    if count is None:
        return clip / (spatial_flops(config, stride, size) + shared)
    frames = WINDOW + stride * (count - 1)
    return count * clip / (spatial_flops(config, frames, size) + count * shared)


def speed_rows(name: str, count: int) -> list[dict]:
    config = get_config(name)
    net = mlx_model(config, random_flax_arrays(config))
    size = config.image_size
    rng = np.random.default_rng(0)
    mx.eval(net.encode_video(rng.random((1, WINDOW, size, size, 3), np.float32)))  # warm-up
    rows = []
    for overlap, stride in OVERLAPS.items():
        frames = rng.random((WINDOW + stride * (count - 1), size, size, 3), np.float32)
        shared, t_windows = _timed(lambda: np.array(net.encode_windows(frames, WINDOW, stride)))
        # Each window on its own: the spatial stack over its 16 frames, the temporal stack and
        # the pooling, i.e. the ops of embed_videos(net, clip) (tests/test_windows.py checks
        # that they give the same vector).
        alone, t_alone = _timed(lambda: np.concatenate([
            np.array(windows.encode_windows(net, frames[s:s + WINDOW], WINDOW, WINDOW))
            for s in windows.window_starts(len(frames), WINDOW, stride)]))
        rows.append({
            "model": name, "overlap": overlap, "windows": count,
            "windows_per_s": count / t_windows[0],
            "per_window_encode_video_per_s": count / t_alone[0],
            "speedup_wall": t_alone[0] / t_windows[0],
            "speedup_cpu": t_alone[1] / t_windows[1],
            "flop_ratio": flop_ratio(config, stride, count),
            "flop_ratio_long_video": flop_ratio(config, stride, None),
            "max_abs_diff": float(np.abs(shared - alone).max()),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _timed(run):
    """(result, (wall seconds, CPU seconds of this process)): CPU time counts the work done
    whatever else the machine runs, wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, (time.perf_counter() - wall, time.process_time() - cpu)


def write_long_video(path: Path, seconds: int, fps: int) -> Path:
    """A moving square over grey, 64x48 H.264 (keyframe every 250 frames, x264's default)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frame = np.full((48, 64, 3), 128, np.uint8)
        for i in range(seconds * fps):
            image = frame.copy()
            x = (i * 2) % 48
            image[16:32, x:x + 16] = (200, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_row(path: Path, fps: int) -> dict:
    plan = windows.read_plan(path, WINDOW)
    counts = video.DecodeCounts()
    for _ in video.stream_frames(path, plan.frames, 32, counts=counts):
        pass
    count = len(plan.starts)
    return {"video_s": plan.count / fps, "fps": fps, "windows": count,
            "decoded_per_window": counts.decoded / count,
            "converted_per_window": counts.converted / count,
            "window_span_frames": windows.DEFAULT_WINDOW_SECONDS * fps}


def rss_child(path: str) -> None:
    """Runs every window of ``path`` through the tiny LvT model; prints windows and peak RSS."""
    with tempfile.TemporaryDirectory() as folder:  # loading converts beside the checkpoint
        npz = shutil.copy(TINY / "flax_tiny_lvt_repeated.npz", folder)
        net = fvp.load_model(TINY / "config.json", checkpoint=npz)
    plan = windows.read_plan(path, WINDOW)
    start = time.perf_counter()
    embeddings = [w.embedding for w in windows.iter_file_windows(net, path, plan, 32)]
    print(json.dumps({"windows": len(embeddings), "seconds": time.perf_counter() - start,
                      "peak_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM): ru_maxrss would carry the parent's peak at
    fork time over the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_row(path: Path, seconds: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.moments", "--rss-child", str(path)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return {"video_s": seconds, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["videoprism-base", "videoprism-lvt-base"])
    parser.add_argument("--windows", type=int, default=2, help="windows per timing")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    print(f"# {CORES} cores", flush=True)
    results: dict[str, list] = {"speed": [], "decode": [], "rss": []}
    if not args.skip_speed:
        for name in args.models:
            results["speed"] += speed_rows(name, args.windows)
    with tempfile.TemporaryDirectory() as folder:
        ten = write_long_video(Path(folder) / "10min.mp4", 600, 30)
        results["decode"].append(decode_row(ten, 30))
        print(json.dumps(results["decode"][-1]), flush=True)
        for seconds in (600, 3600):
            path = write_long_video(Path(folder) / f"{seconds}s.mp4", seconds, 5)
            results["rss"].append(rss_row(path, seconds))
            print(json.dumps(results["rss"][-1]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
