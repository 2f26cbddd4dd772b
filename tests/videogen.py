"""Small synthetic videos for tests, written with PyAV.

Any test may import this module (`from videogen import ...`; pytest puts tests/ on sys.path).

* `write_video` writes RGB frames with a chosen codec, pixel format, timestamps (VFR), display
  rotation and sample aspect ratio.
* Stamped videos: frame i shows a centred square whose colour encodes i (`stamp_color`), on a
  static textured background so the encoder makes real P/B frames instead of cutting a scene
  every frame. The square covers the middle half of the frame, so the stamp survives squash,
  centre crop and rotation; `read_stamp` recovers i from the middle of any decoded frame.
* `moving_shape_frames`: one coloured square crossing a grey field, e.g. one clip per class colour.
* Broken inputs: `write_audio_only`, `truncated_copy`, `corrupted_copy`, and `remux_packets`
  (a stream copy keeping only some packets: a cut GOP, no keyframes, no timestamps).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Stamp levels: 8 per channel, 32 apart, so lossy coding (a few units of error) cannot move a
# channel to the next level; 16..240 keeps them clear of clipping in limited-range YUV.
_LEVELS = 8
_STEP = 32
_OFFSET = 16
STAMP_LIMIT = _LEVELS**3  # stamps 0..511 are distinct in colour
GRAY_STAMP_LIMIT = 28  # grey stamps 16 + 8*i stay below 240; only for lossless gray video


def stamp_color(index: int, *, gray: bool = False) -> tuple[int, int, int]:
    """RGB colour that stamps frame `index` (base-8 digits in R, G, B; or one grey level)."""
    limit = GRAY_STAMP_LIMIT if gray else STAMP_LIMIT
    if not 0 <= index < limit:
        raise ValueError(f"stamp index {index} outside 0..{limit - 1}")
    if gray:
        level = _OFFSET + 8 * index
        return (level, level, level)
    digits = (index // _LEVELS**2, (index // _LEVELS) % _LEVELS, index % _LEVELS)
    return tuple(_OFFSET + _STEP * d for d in digits)


def read_stamp(image: np.ndarray, *, gray: bool = False) -> int:
    """Index stamped on a decoded (H, W, 3) uint8 frame, read from its central fifth."""
    h, w = image.shape[:2]
    centre = image[2 * h // 5 : 3 * h // 5 + 1, 2 * w // 5 : 3 * w // 5 + 1].reshape(-1, 3)
    mean = centre.astype(np.float64).mean(axis=0)
    if gray:
        return int(round((mean.mean() - _OFFSET) / 8))
    digits = np.clip(np.round((mean - _OFFSET) / _STEP), 0, _LEVELS - 1).astype(int)
    return int(digits[0] * _LEVELS**2 + digits[1] * _LEVELS + digits[2])


def _background(width: int, height: int) -> np.ndarray:
    """Static diagonal gradient with a coarse checker: texture that stays the same every frame."""
    y, x = np.mgrid[0:height, 0:width]
    base = (x * 200 // max(width - 1, 1) + y * 55 // max(height - 1, 1)).astype(np.uint8)
    checker = (((x // 8) + (y // 8)) % 2 * 20).astype(np.uint8)
    grey = base // 2 + checker + 40
    return np.stack([grey, grey[:, ::-1], 255 - grey], axis=-1)


def stamped_frames(
    count: int, width: int = 64, height: int = 48, *, gray: bool = False
) -> Iterator[np.ndarray]:
    """Frames 0..count-1, each with its index stamped in a centred square (half the frame)."""
    background = _background(width, height)
    if gray:
        grey = background.mean(axis=-1, keepdims=True).astype(np.uint8)
        background = np.repeat(grey, 3, axis=-1)
    y0, y1 = height // 4, height - height // 4
    x0, x1 = width // 4, width - width // 4
    for index in range(count):
        frame = background.copy()
        frame[y0:y1, x0:x1] = stamp_color(index, gray=gray)
        yield frame


def moving_shape_frames(
    count: int,
    color: Sequence[int],
    width: int = 64,
    height: int = 48,
    *,
    background: Sequence[int] = (128, 128, 128),
) -> Iterator[np.ndarray]:
    """A `color` square (a third of the shorter side) moving left to right across `background`."""
    side = max(min(width, height) // 3, 1)
    top = (height - side) // 2
    travel = width - side
    for index in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = background
        left = travel * index // max(count - 1, 1)
        frame[top : top + side, left : left + side] = color
        yield frame


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    timestamps: Sequence[float] | None = None,
    rotation: int | None = None,
    sample_aspect_ratio: Fraction | None = None,
    gop_size: int | None = None,
    options: dict[str, str] | None = None,
    faststart: bool = False,
) -> Path:
    """Encode (H, W, 3) uint8 RGB `frames` to `path` (container from the extension).

    timestamps: presentation time of each frame in seconds, kept to the millisecond (variable
        frame rate); default i / fps.
    rotation: display-matrix rotation in degrees counter-clockwise (what `VideoFrame.rotation`
        reads back); a player turns the picture by this much to show it upright.
    gop_size: keyframe interval; scene-cut keyframes are then switched off so it is exact.
    options: encoder options, e.g. {"bf": "0"} for no B-frames.
    faststart: MP4 index (frame count, sample table) before the data, so a truncated copy still
        opens and claims every frame.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    options = dict(options or {})
    if gop_size is not None:
        options.update(g=str(gop_size), sc_threshold="0")
    # Constant rate: one tick per frame. Variable rate: millisecond ticks (the muxer rescales).
    time_base = Fraction(1, fps) if timestamps is None else Fraction(1, 1000)
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", container_options=container_options) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index if timestamps is None else round(timestamps[index] * 1000)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_stamped(
    path: str | Path,
    count: int,
    width: int = 64,
    height: int = 48,
    *,
    gray: bool = False,
    **kwargs,
) -> Path:
    """`write_video` of `stamped_frames(count, width, height)`; kwargs go to `write_video`."""
    return write_video(path, stamped_frames(count, width, height, gray=gray), **kwargs)


def write_audio_only(path: str | Path, seconds: float = 0.2, rate: int = 16000) -> Path:
    """A file with one audio stream (a 440 Hz tone) and no video, e.g. `tone.mp4`."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        samples = int(seconds * rate)
        t = np.arange(samples) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def truncated_copy(source: str | Path, target: str | Path, size: int) -> Path:
    """Copy of the first `size` bytes of `source`."""
    target = Path(target)
    target.write_bytes(Path(source).read_bytes()[:size])
    return target


def corrupted_copy(
    source: str | Path, target: str | Path, start: int = 0, length: int = 64
) -> Path:
    """Copy of `source` with `length` bytes from `start` overwritten by fixed noise."""
    target = Path(target)
    shutil.copyfile(source, target)
    noise = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    with open(target, "r+b") as handle:
        handle.seek(start)
        handle.write(noise)
    return target


def remux_packets(
    source: str | Path, target: str | Path, keep: Callable[[int, av.Packet], bool]
) -> Path:
    """Stream copy (no re-encoding) of the video packets `keep(n, packet)` accepts; n counts
    packets in decoding order. The container comes from `target`'s extension (.h264: a raw
    stream without timestamps)."""
    target = Path(target)
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = (packet for packet in src.demux(in_stream) if packet.size)
        for n, packet in enumerate(packets):
            if keep(n, packet):
                packet.stream = out_stream
                dst.mux(packet)
    return target
