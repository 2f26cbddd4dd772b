"""fo_model.py and apply.py: the FiftyOne model on a real FiftyOne database and real video files,
with the tiny oracle checkpoints."""

from __future__ import annotations

import eta.core.frameutils as etaf
import eta.core.video as etav
import fiftyone as fo
import fiftyone.brain as fob
import numpy as np
import pytest
from fo_fixtures import COLORS, unique_name
from videogen import moving_shape_frames, write_audio_only, write_video

from fiftyone_videoprism.core import video, zeroshot
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]


def make_model(kwargs: dict, **extra) -> VideoPrismModel:
    return VideoPrismModel(VideoPrismModelConfig({**kwargs, **extra}))


@pytest.fixture(scope="module")
def lvt(tiny_models) -> VideoPrismModel:
    return make_model(tiny_models.lvt, batch_size=2)


def reference_embedding(model: VideoPrismModel, path: str, support=None) -> np.ndarray:
    """What the MLX model gives for the frames video.py decodes: the parity target."""
    frames = video.read_frames(path, model.num_frames, model.image_size, support=support)
    out = np.array(model.mlx_model.encode_video(video.to_float(frames)[None]))[0]
    if not model.is_lvt:
        out = out.mean(axis=0)
    return out / np.linalg.norm(out)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"resize": "crop"}, "Unsupported resize"),
        ({"temperature": 0}, "temperature"),
        ({"classes": "red,green"}, "list of class names"),
        ({"prompt_templates": ["a video"]}, "exactly one"),
        ({"num_frames": 0}, "positive"),
        ({"checkpoint": "/tmp/x.npz"}, "unknown VideoPrism model parameters"),
    ],
    ids=["resize", "temperature", "classes-str", "template", "num-frames", "misspelt-key"],
)
def test_config_rejects_bad_values(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoPrismModelConfig(bad)


def test_model_config_needs_a_checkpoint(tiny_models) -> None:
    with pytest.raises(ValueError, match="checkpoint_path"):
        make_model({"model_config": tiny_models.lvt["model_config"]})


def test_defaults_follow_the_architecture(lvt: VideoPrismModel) -> None:
    # The tiny model was trained at 4 frames of 32 px: those are its defaults.
    assert (lvt.num_frames, lvt.image_size, lvt.embedding_dim) == (4, 32, 64)
    assert lvt.media_type == "video" and lvt.can_embed_prompts and lvt.has_logits


def test_embed_accepts_reader_path_and_frames(lvt: VideoPrismModel, color_videos) -> None:
    path = str(color_videos["red"])
    by_path = lvt.embed(path)
    with etav.FFmpegVideoReader(path) as reader:
        by_reader = lvt.embed(reader)
    by_frames = lvt.embed(lvt.read_frames(path))
    np.testing.assert_allclose(by_path, reference_embedding(lvt, path), atol=1e-6)
    np.testing.assert_array_equal(by_path, by_reader)
    np.testing.assert_array_equal(by_path, by_frames)
    assert by_path.dtype == np.float32 and by_path.shape == (64,)
    with pytest.raises(TypeError, match="VideoReader"):
        lvt.embed(42)
    with pytest.raises(ValueError, match="shape"):
        lvt.embed(np.zeros((3, 32, 32, 3), np.uint8))


def test_compute_embeddings_equals_encode_video(lvt: VideoPrismModel, video_dataset) -> None:
    # FiftyOne's own per-sample path (FFmpegVideoReader) and the batched, prefetching one.
    video_dataset.compute_embeddings(lvt, embeddings_field="fo_path")
    stats = runs.compute_embeddings(video_dataset, lvt, "batched")
    assert stats == runs.RunStats(3, [])
    for sample in video_dataset:
        expected = reference_embedding(lvt, sample.filepath)
        np.testing.assert_allclose(sample["fo_path"], expected, atol=1e-5)
        np.testing.assert_allclose(sample["batched"], expected, atol=1e-5)
    # skip_existing leaves stored vectors alone and embeds only what is missing.
    first = video_dataset.first()
    first["batched"] = None
    first.save()
    assert runs.compute_embeddings(video_dataset, lvt, "batched", skip_existing=True).written == 1


def test_batched_run_calls_mlx_with_batch_size_videos(tiny_models, video_dataset,
                                                      monkeypatch) -> None:
    model = make_model(tiny_models.lvt, batch_size=2)
    sizes = []
    embed_frames = model.embed_frames

    def record(frames):
        sizes.append(len(frames))
        return embed_frames(frames)

    monkeypatch.setattr(model, "embed_frames", record)
    runs.compute_embeddings(video_dataset, model, "emb", cache=False)
    assert sizes == [2, 1]


def test_video_only_model_pools_tokens_and_refuses_text(tiny_models, color_videos) -> None:
    model = make_model(tiny_models.video)
    path = str(color_videos["green"])
    np.testing.assert_allclose(model.embed(path), reference_embedding(model, path), atol=1e-6)
    assert not model.can_embed_prompts and not model.has_logits
    with pytest.raises(ValueError, match="video-only"):
        model.embed_prompt("a video of green.")
    model.config.classes = ["red"]
    with pytest.raises(ValueError, match="video-only"):
        model.predict(path)
    with pytest.raises(ValueError, match="logits"):
        model.store_logits = True


def manual_class_embeddings(model: VideoPrismModel, classes, templates) -> np.ndarray:
    per_template = np.stack([model.embed_prompts([t.format(c) for c in classes])
                             for t in templates], axis=1)  # (C, K, D)
    per_template /= np.linalg.norm(per_template, axis=-1, keepdims=True)
    mean = per_template.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def test_apply_model_writes_classifications_with_logits(tiny_models, video_dataset) -> None:
    classes = list(COLORS)
    templates = ["a video of {}.", "a clip of a {} car."]
    model = make_model(tiny_models.lvt, classes=classes, prompt_templates=templates)
    video_dataset.apply_model(model, label_field="zero_shot", store_logits=True)

    text = manual_class_embeddings(model, classes, templates)
    for sample in video_dataset:
        label = sample["zero_shot"]
        logits = reference_embedding(model, sample.filepath) @ text.T / 0.01
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert isinstance(label, fo.Classification)
        assert label.label == classes[int(np.argmax(logits))]
        assert label.confidence == pytest.approx(probs.max(), abs=1e-4)
        np.testing.assert_allclose(label.logits, logits, atol=2e-3)


def test_class_embeddings_are_cached_per_classes_and_templates(lvt: VideoPrismModel) -> None:
    lvt.config.classes = ["red", "green"]
    first = lvt.class_embeddings()[1]
    assert lvt.class_embeddings()[1] is first
    lvt.config.prompt_templates = ["a clip of a {} car."]
    assert not np.allclose(lvt.class_embeddings()[1], first)
    lvt.config.classes = ["red", "green", "blue"]
    assert lvt.class_embeddings()[1].shape == (3, 64)
    lvt.config.classes = None
    with pytest.raises(ValueError, match="no classes"):
        lvt.class_embeddings()
    lvt.config.prompt_templates = list(zeroshot.DEFAULT_TEMPLATES)


def test_apply_zero_shot_reuses_stored_embeddings_and_tags(tiny_models, video_dataset) -> None:
    model = make_model(tiny_models.lvt, classes=list(COLORS))
    runs.compute_embeddings(video_dataset.limit(2), model, "emb")
    stats = runs.apply_zero_shot(video_dataset, model, "zs", embeddings_field="emb",
                                  tag_samples=True)
    assert stats == runs.RunStats(3, [])
    # The third video had no embedding: it was embedded, stored, then classified.
    assert len(video_dataset.exists("emb")) == 3
    expected = [model.predict(path).label for path in video_dataset.values("filepath")]
    assert video_dataset.values("zs.label") == expected
    assert video_dataset.values("tags") == [[label] for label in expected]


def test_undecodable_videos_are_skipped_or_raise(lvt, video_dataset, tmp_path) -> None:
    broken = write_audio_only(tmp_path / "tone.mp4")
    sample = fo.Sample(filepath=str(broken))
    video_dataset.add_sample(sample)
    stats = runs.compute_embeddings(video_dataset, lvt, "emb")
    assert stats == runs.RunStats(3, [sample.id])
    assert video_dataset.count("emb") == 3
    with pytest.raises(video.VideoDecodeError):
        runs.compute_embeddings(video_dataset, lvt, "emb2", skip_failures=False)


def test_clips_view_embeddings_use_only_the_clips_frames(lvt, real_clip, tmp_path) -> None:
    # A real camera clip (120 frames) and a synthetic one whose halves differ in colour.
    halves = write_video(tmp_path / "halves.mp4", [*moving_shape_frames(8, COLORS["red"]),
                                                   *moving_shape_frames(8, COLORS["blue"])])
    dataset = fo.Dataset(unique_name("clips"))
    supports = {str(real_clip): [(1, 60), (61, 120)], str(halves): [(1, 8), (9, 16)]}
    for path, ranges in supports.items():
        dataset.add_sample(fo.Sample(
            filepath=path,
            events=fo.TemporalDetections(detections=[
                fo.TemporalDetection(label=f"part{i}", support=list(r))
                for i, r in enumerate(ranges)
            ]),
        ))
    try:
        clips = dataset.to_clips("events")
        assert len(clips) == 4
        clips.compute_embeddings(lvt, embeddings_field="fo_path")
        runs.compute_embeddings(clips, lvt, "batched")
        for clip in clips:
            expected = reference_embedding(lvt, clip.filepath, support=tuple(clip.support))
            np.testing.assert_allclose(clip["fo_path"], expected, atol=1e-5)
            np.testing.assert_allclose(clip["batched"], expected, atol=1e-5)
        # Each clip sees different frames from its sibling and from the whole video.
        for path in supports:
            a, b = clips.match(fo.ViewField("filepath") == path).values("batched")
            assert not np.allclose(a, b, atol=1e-3)
            assert not np.allclose(a, lvt.embed(path), atol=1e-3)

        # Text search over clips: an index on the clips view ranks clips by text similarity.
        fob.compute_similarity(clips, model=lvt, embeddings="batched", brain_key="clips")
        query = "a blue square on a grey field."
        scores = np.stack(clips.values("batched")) @ lvt.embed_prompt(query)
        expected = [clips.values("id")[i] for i in np.argsort(-scores)]
        assert clips.sort_by_similarity(query, brain_key="clips").values("id") == expected
    finally:
        dataset.delete()


def test_reader_support_whole_video_and_clip(lvt, color_videos) -> None:
    path = str(color_videos["blue"])
    with etav.FFmpegVideoReader(path, frames=etaf.FrameRange(3, 10)) as reader:
        clip = lvt.embed(reader)
    np.testing.assert_allclose(clip, reference_embedding(lvt, path, support=(3, 10)), atol=1e-6)
