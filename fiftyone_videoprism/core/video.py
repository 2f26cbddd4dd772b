"""Video files -> uint8 RGB frames for VideoPrism, decoded with PyAV (no FiftyOne here).

Frame numbers are positions in display order, counted from 0 here and from 1 in FiftyOne supports;
they are what a decoder that outputs every frame would count (FiftyOne's `FFmpegVideoReader` too),
never fps x duration, so variable-frame-rate video is numbered correctly.

How `read_frames` avoids decoding what it does not need:

1. Scan: read the stream's packets without decoding them (cheap: no pixels) up to the last frame
   of the wanted range. Sorting packet timestamps gives every frame's timestamp in display
   order, the frame count where the container has none (or a wrong one), and the keyframes.
2. Pick the frames: `frame_indices` over the range (the demo's rule).
3. Decode: jump to the keyframe before each wanted frame when it lies ahead of the decoder,
   decode forward, identify each decoded frame by its timestamp, and convert only the wanted
   frames to RGB, then to the output size (see "Resizing" below).
4. If the decoded frames do not line up with the scan (missing or duplicate timestamps, a
   frame the decoder drops, no seek that lands at or before the frame), start again from the
   first frame and count frames as they come out of the decoder.

The scan reads the whole file for a whole-video request (I/O only; about 2 ms for a 10 s
640x360 H.264 clip, against ~0.4 ms per decoded frame).

Resizing. "squash" and "center_crop" give the original's frames: each wanted frame becomes
full-resolution 8-bit RGB (what the demo's `mediapy.read_video` gets from ffmpeg), is turned
upright, and is resized with PIL's Lanczos (the demo's `mediapy.resize_video`); "center_crop"
then keeps the centre as the classification colab does. The "_swscale" modes let FFmpeg's
converter resize in the colour-conversion pass instead: faster, but its Lanczos is not PIL's,
so their frames differ from the original's by about 1/255 on average.
"""

from __future__ import annotations

import bisect
import heapq
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from fiftyone_videoprism.core.settings import RESIZE_MODES

__all__ = [
    "RESIZE_MODES",
    "DecodeCounts",
    "VideoDecodeError",
    "frame_indices",
    "frame_times",
    "iter_frames",
    "read_frames",
    "stream_frames",
    "to_float",
]

_SWSCALE = "_swscale"  # the suffix of the modes that resize inside FFmpeg
# Lanczos like the demo's PIL resize; swscale widens the kernel when shrinking, so it antialiases.
_SWSCALE_INTERPOLATION = "LANCZOS"
# Counter-clockwise quarter turns, as np.rot90 counts them.
_QUARTER_TURNS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
                  3: Image.Transpose.ROTATE_270}

Key = TypeVar("Key")
Support = tuple[int, int]


class VideoDecodeError(ValueError):
    """A video (or a request for its frames) that cannot be turned into frames."""


def frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """The demo's frame choice: floor(k * num_available / num_frames) for k = 0..num_frames-1.

    Computed as the demo does (float `np.linspace`, then truncation), which for frame counts
    that are not powers of two can be one below the exact integer floor; kept for parity.
    With fewer frames available than wanted, indices repeat. Returns int64 (num_frames,).
    """
    if num_available < 1 or num_frames < 1:
        raise ValueError(
            f"need num_available >= 1 and num_frames >= 1, got {num_available} and {num_frames}"
        )
    return np.linspace(0, num_available, num_frames, endpoint=False).astype(np.int64)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1] (x / 255, as the demo), same shape."""
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames.astype(np.float32) / np.float32(255)


def read_frames(
    path: str | os.PathLike,
    num_frames: int,
    size: int = 288,
    *,
    support: Support | None = None,
    resize: str = "squash",
) -> np.ndarray:
    """Decode `num_frames` evenly spaced frames of a video as uint8 RGB (num_frames, size, size, 3).

    support: FiftyOne's 1-based inclusive [first, last] frame numbers of a clip; None takes the
        whole video. A range running past the end is cut to the frames that exist (FiftyOne's
        frame count can come from container metadata that overstates it); one starting after
        the last frame is an error.
    resize: "squash" resizes the whole frame to size x size, ignoring aspect ratio (the
        original video-text demo); "center_crop" scales the shorter side to `size` and keeps
        the centre (the original classification colab). Both resize full-resolution
        RGB with PIL's Lanczos, as the original does. "squash_swscale" and
        "center_crop_swscale" do the same in FFmpeg's colour conversion: faster, but about
        1/255 off the original's frames on average.

    Frames are turned upright by the container's display rotation (multiples of 90 degrees;
    mirroring is not applied), as ffmpeg's autorotate does. Like the original, which reads
    frames through ffmpeg, the stored pixels are used as they are: a sample aspect ratio
    (non-square pixels) is not applied. Any pixel format FFmpeg decodes
    (10-bit, 4:4:4, grey, ...) comes out as 8-bit RGB.

    Raises FileNotFoundError for a missing file and VideoDecodeError (naming the file, chained
    to the PyAV error) for anything else: bad arguments, unreadable or truncated files, no video
    stream, no frames, a support past the end, or a decoder error on a frame that is needed.
    """
    _check_args(num_frames, size, resize)
    path = os.fspath(path)
    first, last = _check_support(path, support)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream_index = stream.index
        scan = _scan(container, stream, path, stop_after=last)
    # An unfinished scan stopped after frame `last`, so the min only cuts at a real end.
    stop = scan.count if last is None else min(last + 1, scan.count)
    _check_range(path, support, first, stop, scan.count)

    # One reformatter for the whole call: it keeps its swscale context (and the Lanczos
    # filter tables) across frames; `frame.to_ndarray(width=...)` builds them anew each time.
    reformatter = VideoReformatter()

    def convert(frame: av.VideoFrame) -> np.ndarray:
        return _to_rgb(frame, reformatter, size, resize)

    wanted = first + frame_indices(stop - first, num_frames)
    images = None
    if scan.frames is not None:
        images = _decode_planned(path, stream_index, scan.frames, wanted, convert)
    if images is None:
        images, wanted = _decode_counting(
            path, stream_index, support, first, stop, num_frames, convert
        )
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for t, index in enumerate(wanted):
        out[t] = images[int(index)]
    return out


def iter_frames(
    items: Iterable[tuple[Key, str | os.PathLike, Support | None]],
    num_frames: int,
    size: int = 288,
    *,
    resize: str = "squash",
    prefetch: int = 2,
) -> Iterator[tuple[Key, np.ndarray | Exception]]:
    """Yield (key, frames) for each (key, path, support) item, decoding ahead in a thread.

    frames is `read_frames(path, num_frames, size, support=support, resize=resize)`, or the
    exception it raised (the run goes on). Order is kept. While the caller works on one item,
    a background thread decodes the next ones: FFmpeg decodes and MLX evaluates without
    holding the GIL, so the two overlap. At most `prefetch` decoded items wait in memory,
    plus one in the thread's hands. `items` is consumed by that thread. Closing the iterator
    early (break, `close()`, garbage collection) stops the thread and waits for it (at most
    the item being decoded). Errors raised by `items` itself are re-raised to the caller.
    prefetch=0 decodes in the caller's thread, one item at a time.
    """
    _check_args(num_frames, size, resize)
    if prefetch < 0:
        raise ValueError(f"prefetch must be >= 0, got {prefetch}")

    def read(path: str | os.PathLike, support: Support | None) -> np.ndarray | Exception:
        try:
            return read_frames(path, num_frames, size, support=support, resize=resize)
        except Exception as err:  # handed to the caller with its item, not raised
            return err

    if prefetch == 0:
        return ((key, read(path, support)) for key, path, support in items)
    return _prefetched(iter(items), read, prefetch)


# --------------------------------------------------------------------------------------------
# Long videos: one pass over many frames


@dataclass
class DecodeCounts:
    """What :func:`stream_frames` did: frames out of the decoder, and frames converted to RGB."""

    decoded: int = 0
    converted: int = 0


def frame_times(path: str | os.PathLike) -> np.ndarray:
    """Display time in seconds of every frame of a video, from a packet scan (no decoding);
    float64 (count,), first frame at its own timestamp. Where the packets carry no usable
    timestamps, frames are spaced by the stream's average rate.

    Raises FileNotFoundError or VideoDecodeError as :func:`read_frames` does.
    """
    path = os.fspath(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        scan = _scan(container, stream, path, stop_after=None)
        rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base
    _check_range(path, None, 0, scan.count, scan.count)
    if scan.frames is not None:
        return np.array([float(pts * time_base) for pts, _, _ in scan.frames], np.float64)
    if not rate:
        raise VideoDecodeError(f"{path}: the video has neither frame timestamps nor a frame "
                               "rate; give windows in frames instead of seconds")
    return np.arange(scan.count, dtype=np.float64) / float(rate)


def stream_frames(
    path: str | os.PathLike,
    indices: Iterable[int],
    size: int = 288,
    *,
    resize: str = "squash",
    counts: DecodeCounts | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames at non-decreasing 0-based ``indices`` as uint8 RGB (size, size, 3),
    in one forward pass over the file: the decoder jumps ahead (to the keyframe before the
    next wanted frame) only across gaps with a keyframe in them, and a repeated index repeats
    the frame. Memory holds one frame, whatever the number of indices.

    Frames are numbered and converted as :func:`read_frames` numbers and converts them.
    Raises FileNotFoundError, or VideoDecodeError naming the file (a bad argument, an index
    past the end, a decoder error, a file that ends early); frames yielded before the error
    stay valid.
    """
    _check_args(1, size, resize)
    path = os.fspath(path)
    wanted = [int(i) for i in indices]
    if not wanted:
        return
    if wanted[0] < 0 or any(a > b for a, b in zip(wanted, wanted[1:])):
        raise VideoDecodeError(f"{path}: frame indices must be >= 0 and non-decreasing")
    counts = counts if counts is not None else DecodeCounts()
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream_index = stream.index
        scan = _scan(container, stream, path, stop_after=wanted[-1])
    if wanted[-1] >= scan.count:
        raise VideoDecodeError(f"{path}: frame {wanted[-1] + 1} (1-based) is past the end "
                               f"(the video has {scan.count} frames)")
    reformatter = VideoReformatter()

    def convert(frame: av.VideoFrame) -> np.ndarray:
        counts.converted += 1
        return _to_rgb(frame, reformatter, size, resize)

    done = 0  # frames yielded so far
    if scan.frames is not None:
        try:
            for image in _stream_planned(path, stream_index, scan.frames, wanted, convert,
                                         counts):
                done += 1
                yield image
            return
        except _OffTable:
            pass  # count decoded frames from the start instead, past the frames yielded
    yield from _stream_counting(path, stream_index, wanted, done, convert, counts)


def _stream_planned(
    path: str,
    stream_index: int,
    table: list[tuple[int, int, bool]],
    wanted: list[int],
    convert: Callable[[av.VideoFrame], np.ndarray],
    counts: DecodeCounts,
) -> Iterator[np.ndarray]:
    """stream_frames by the packet table: frames named by pts; raises _OffTable if off it."""
    index_of = {pts: i for i, (pts, _, _) in enumerate(table)}
    keyframes = [i for i, (_, _, key) in enumerate(table) if key]
    with _open(path) as container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        frames = _decoded(container, stream)
        position = -1  # index of the last frame out of the decoder
        image = None
        try:
            for target in wanted:
                if target != position or image is None:
                    k = bisect.bisect_right(keyframes, target) - 1
                    if k >= 0 and keyframes[k] > position + 1:
                        frames.close()
                        frames, position = _seek(
                            container, stream, table, index_of, keyframes[: k + 1], target
                        )
                    for frame in frames:
                        counts.decoded += 1
                        index = index_of.get(frame.pts)
                        if index != position + 1:
                            raise _OffTable  # unknown pts, or a skipped or repeated frame
                        position = index
                        if index == target:
                            image = convert(frame)
                            break
                    else:
                        raise _OffTable  # the stream ended before the target
                yield image
        except av.FFmpegError as err:
            raise _decode_failed(path, position, err) from err
        finally:
            frames.close()


def _stream_counting(
    path: str,
    stream_index: int,
    wanted: list[int],
    done: int,
    convert: Callable[[av.VideoFrame], np.ndarray],
    counts: DecodeCounts,
) -> Iterator[np.ndarray]:
    """stream_frames numbering frames as the decoder outputs them from the first; the first
    ``done`` wanted frames were already yielded."""
    rest = wanted[done:]
    if not rest:
        return
    index = -1
    frames = _from_start(path, stream_index)
    try:
        position = 0
        for index, frame in enumerate(frames):
            counts.decoded += 1
            if index < rest[position]:
                continue
            image = convert(frame)
            while position < len(rest) and rest[position] == index:
                yield image
                position += 1
            if position == len(rest):
                return
    except av.FFmpegError as err:
        raise _decode_failed(path, index, err) from err
    finally:
        frames.close()
    raise VideoDecodeError(f"{path}: the video ended after frame {index + 1} (1-based), before "
                           f"frame {rest[position] + 1}; the file may be truncated")


# --------------------------------------------------------------------------------------------
# Arguments and opening


def _check_args(num_frames: int, size: int, resize: str) -> None:
    if num_frames < 1:
        raise VideoDecodeError(f"num_frames must be >= 1, got {num_frames}")
    if size < 1:
        raise VideoDecodeError(f"size must be >= 1, got {size}")
    if resize not in RESIZE_MODES:
        raise VideoDecodeError(
            f"Unsupported resize {resize!r}. Supported values are {RESIZE_MODES}"
        )


def _check_support(path: str, support: Support | None) -> tuple[int, int | None]:
    """0-based first frame and inclusive last frame (None: to the end) of the requested range."""
    if support is None:
        return 0, None
    try:
        first, last = (int(v) for v in support)
    except (TypeError, ValueError) as err:
        raise VideoDecodeError(f"{path}: support must be [first, last], got {support!r}") from err
    if not 1 <= first <= last:
        raise VideoDecodeError(
            f"{path}: support [{first}, {last}] must satisfy 1 <= first <= last "
            "(1-based frame numbers)"
        )
    return first - 1, last - 1


def _check_range(path: str, support: Support | None, first: int, stop: int, count: int) -> None:
    if count == 0:
        raise VideoDecodeError(f"{path}: the video stream has no decodable frames")
    if first >= stop:
        raise VideoDecodeError(
            f"{path}: support [{support[0]}, {support[1]}] starts after the last frame "
            f"(the video has {count} frames)"
        )


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such video file")
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: not a file")
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot be read as a video ({err})") from err


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    # Cover art in audio files is a one-picture "video" stream; it is not a video.
    streams = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoDecodeError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    # ffmpeg's own choice among several video streams: the largest picture.
    return max(streams, key=lambda s: (s.width or 0) * (s.height or 0))


# --------------------------------------------------------------------------------------------
# Scanning packets


@dataclass(frozen=True)
class _Scan:
    count: int  # frames seen (all of them when `complete`, else more than `stop_after`)
    complete: bool  # the scan reached the end of the stream
    # (pts, dts, keyframe) per frame in display order; None when timestamps are unusable
    frames: list[tuple[int, int, bool]] | None


def _scan(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str,
    stop_after: int | None,
) -> _Scan:
    """Read packets (no decoding) until frame `stop_after` is known, or to the end if None.

    Packets arrive in decoding order with dts <= pts, and dts never decreases, so once a packet
    with dts d has been read no later packet can show before d: every pts below d is final and
    leaves the heap in display order. Each packet is taken for one frame (edit-list packets the
    decoder drops are flagged discard and skipped); where that is wrong, decoded timestamps
    disagree with the table and `read_frames` counts decoded frames instead.
    """
    pending: list[tuple[int, int, bool]] = []
    ordered: list[tuple[int, int, bool]] = []
    count = 0
    usable = True
    complete = False
    packets = container.demux(stream)
    try:
        for packet in packets:
            if packet.size == 0 or packet.is_discard:
                continue
            count += 1
            if usable and packet.pts is None:
                usable = False
            if usable:
                dts = packet.dts if packet.dts is not None else packet.pts
                while pending and pending[0][0] < dts:
                    ordered.append(heapq.heappop(pending))
                heapq.heappush(pending, (packet.pts, dts, packet.is_keyframe))
            known = len(ordered) if usable else count
            if stop_after is not None and known > stop_after:
                break
        else:
            complete = True
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot read packet {count} ({err})") from err
    finally:
        packets.close()
    if complete:
        ordered.extend(sorted(pending))
    # A pts arriving after a larger one was final (or a repeated pts) breaks the order.
    if usable and any(a[0] >= b[0] for a, b in zip(ordered, ordered[1:])):
        usable = False
    return _Scan(count, complete, ordered if usable else None)


# --------------------------------------------------------------------------------------------
# Decoding


class _OffTable(Exception):
    """Decoded frames do not line up with the scanned packet table."""


def _decode_planned(
    path: str,
    stream_index: int,
    table: list[tuple[int, int, bool]],
    wanted: np.ndarray,
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> dict[int, np.ndarray] | None:
    """Wanted frames by index, seeking to keyframes and naming frames by pts; None if off table."""
    order = sorted({int(i) for i in wanted})
    try:
        return dict(zip(order, _stream_planned(path, stream_index, table, order, convert,
                                               DecodeCounts()), strict=True))
    except _OffTable:
        return None


def _seek(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    table: list[tuple[int, int, bool]],
    index_of: dict[int, int],
    keyframes: list[int],
    target: int,
) -> tuple[Iterator[av.VideoFrame], int]:
    """Decoded frames from a keyframe at or before `target`, and the index just before them.

    Demuxers disagree on what a seek timestamp means (MP4: pts; MPEG-TS and AVI can land a
    keyframe late for a pts), so try the last keyframe's pts, then its dts, then the dts of the
    keyframe before, and check where each seek lands by the first decoded frame's pts. An open
    GOP may first hand back leading frames from before the keyframe: fine, they come in order.
    """
    tries = [table[keyframes[-1]][0], table[keyframes[-1]][1]]
    if len(keyframes) > 1:
        tries.append(table[keyframes[-2]][1])
    for timestamp in tries:
        try:
            container.seek(timestamp, stream=stream)
        except av.FFmpegError as err:
            raise _OffTable from err  # not seekable after all: count from the start instead
        frames = _decoded(container, stream)
        first = next(frames, None)
        landed = index_of.get(first.pts) if first is not None else None
        if landed is not None and landed <= target:
            return _prepend(first, frames), landed - 1
        frames.close()
    raise _OffTable


def _prepend(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest


def _decode_counting(
    path: str,
    stream_index: int,
    support: Support | None,
    first: int,
    stop: int,
    num_frames: int,
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Wanted frames by index, numbering frames as the decoder outputs them from the start.

    `stop` comes from the packet count, which overstates when the decoder drops frames, so
    decoding goes on to the end of the range (not just to the last wanted frame) to prove it
    exists. If the decoder runs out sooner, the range is cut to the frames it produced and the
    frames are picked again, with a second pass for the ones not kept the first time.
    Returns the images and the indices finally picked.
    """
    wanted = first + frame_indices(stop - first, num_frames)
    wanted_set = {int(i) for i in wanted}
    images, count = _decode_from_start(path, stream_index, wanted_set, stop - 1, convert)
    if count is None:
        return images, wanted
    _check_range(path, support, first, min(stop, count), count)
    wanted = first + frame_indices(min(stop, count) - first, num_frames)
    missing = {int(i) for i in wanted} - images.keys()
    if missing:
        more, _ = _decode_from_start(path, stream_index, missing, max(missing), convert)
        images.update(more)
        if missing - more.keys():
            raise VideoDecodeError(
                f"{path}: the decoder returned different frames on a second pass"
            )
    return images, wanted


def _decode_from_start(
    path: str,
    stream_index: int,
    wanted: set[int],
    last: int,
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> tuple[dict[int, np.ndarray], int | None]:
    """Decode frames 0..last, keeping the wanted ones; the frame count if the stream ends first."""
    images: dict[int, np.ndarray] = {}
    index = -1
    frames = _from_start(path, stream_index)
    try:
        for index, frame in enumerate(frames):
            if index in wanted:
                images[index] = convert(frame)
            if index == last:
                return images, None
    except av.FFmpegError as err:
        raise _decode_failed(path, index, err) from err
    finally:
        frames.close()
    return images, index + 1


def _decode_failed(path: str, index: int, err: av.FFmpegError) -> VideoDecodeError:
    where = "at the first frame" if index < 0 else f"after frame {index + 1} (1-based)"
    return VideoDecodeError(f"{path}: decoding failed {where} ({err})")


def _from_start(path: str, stream_index: int) -> Iterator[av.VideoFrame]:
    """Every frame of one stream from the first, decoded on FFmpeg's threads; closing the
    iterator closes the file."""
    with _open(path) as container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        yield from _decoded(container, stream)


def _decoded(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.VideoFrame]:
    """Frames in display order from the current position; the decoder is flushed at the end."""
    for packet in container.demux(stream):
        yield from packet.decode()


def _to_rgb(
    frame: av.VideoFrame, reformatter: VideoReformatter, size: int, resize: str
) -> np.ndarray:
    """One decoded frame -> upright uint8 RGB (size, size, 3), resized as `resize` says."""
    # `rotation` is the counter-clockwise turn that shows the picture upright; so is np.rot90.
    quarter_turns = round(frame.rotation / 90) % 4
    crop = resize.startswith("center_crop")
    if resize.endswith(_SWSCALE):
        # Which side is shorter does not change under a 90-degree turn, so crop before turning.
        height, width = _cover(frame.height, frame.width, size) if crop else (size, size)
        image = reformatter.reformat(
            frame, width, height, format="rgb24", interpolation=_SWSCALE_INTERPOLATION
        ).to_ndarray()
        image = _center(image, size)
        return np.rot90(image, quarter_turns) if quarter_turns else image
    # The original's order: full-size RGB, upright as ffmpeg gives it, then PIL's resize.
    image = reformatter.reformat(frame, format="rgb24").to_image()  # shares the RGB buffer
    if quarter_turns:
        image = image.transpose(_QUARTER_TURNS[quarter_turns])
    height, width = _cover(image.height, image.width, size) if crop else (size, size)
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    return _center(np.asarray(image), size)


def _cover(height: int, width: int, size: int) -> tuple[int, int]:
    """The classification colab's resize target: the (h, w) of the same aspect ratio whose
    shorter side is `size`, each side rounded."""
    scale = max(size / height, size / width)
    return round(height * scale), round(width * scale)


def _center(image: np.ndarray, size: int) -> np.ndarray:
    """The colab's crop: size x size at ((h - size) // 2, (w - size) // 2)."""
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


# --------------------------------------------------------------------------------------------
# Prefetching


_DONE = object()


@dataclass(frozen=True)
class _ItemsFailed:
    error: BaseException  # raised while iterating the caller's items


def _prefetched(
    items: Iterator[tuple[Key, str | os.PathLike, Support | None]],
    read: Callable[[str | os.PathLike, Support | None], np.ndarray | Exception],
    prefetch: int,
) -> Iterator[tuple[Key, np.ndarray | Exception]]:
    results: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def work() -> None:
        # A put may block on a full queue after the caller has gone: the caller empties the
        # queue until this thread ends, and `stop` keeps it from taking another item.
        try:
            for key, path, support in items:
                results.put((key, read(path, support)))
                if stop.is_set():
                    return
            results.put(_DONE)
        except BaseException as err:  # the caller's iterable failed: re-raised on the caller's side
            results.put(_ItemsFailed(err))

    worker = threading.Thread(target=work, name="videoprism-decode", daemon=True)
    worker.start()
    try:
        while True:
            entry = results.get()
            if entry is _DONE:
                return
            if isinstance(entry, _ItemsFailed):
                raise entry.error
            yield entry
    finally:
        stop.set()
        while worker.is_alive():
            try:
                while True:
                    results.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)
