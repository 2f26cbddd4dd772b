"""fo/classify.py: few-shot heads trained from a dataset's labels on the frozen tiny models,
evaluated with FiftyOne, saved, loaded and applied; on a real FiftyOne database and real
video files whose class (the colour of a moving square) is visible."""

from __future__ import annotations

import re
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from fo_fixtures import COLORS, unique_name
from mlx.utils import tree_flatten
from sklearn.linear_model import LogisticRegression
from videogen import moving_shape_frames, write_audio_only, write_video

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import features as feats
from fiftyone_videoprism.core import heads
from fiftyone_videoprism.fo import classify
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]

PER_CLASS = 6
# Of each class's 6 videos, 2 are held out (val_fraction 1/3): 6 held-out videos.
VAL_FRACTION = 1 / 3


def make_model(kwargs: dict, **extra) -> VideoPrismModel:
    return VideoPrismModel(VideoPrismModelConfig({**kwargs, **extra}))


@pytest.fixture(scope="module")
def video_model(tiny_models) -> VideoPrismModel:
    return make_model(tiny_models.video, batch_size=4)


@pytest.fixture(scope="module")
def class_videos(tmp_path_factory) -> list[tuple[Path, str]]:
    """Six clips per colour class; backgrounds and square sizes vary within a class."""
    folder = tmp_path_factory.mktemp("class_videos")
    out = []
    for name, color in COLORS.items():
        for k in range(PER_CLASS):
            grey = 70 + 25 * k
            frames = moving_shape_frames(8, color, 40 + 4 * k, 40, background=(grey,) * 3)
            out.append((write_video(folder / f"{name}_{k}.mp4", frames), name))
    return out


@pytest.fixture()
def dataset(class_videos):
    ds = fo.Dataset(unique_name("fvp-clf"))
    ds.add_samples([fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=name),
                              tags=[name]) for path, name in class_videos])
    yield ds
    ds.delete()


def _params(classifier) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(classifier.head.parameters())}


def _train(dataset, model, head, tmp_path, **kwargs):
    kwargs = {"val_fraction": VAL_FRACTION, "epochs": 150, "learning_rate": 1e-2,
              "patience": 30, "seed": 0, "store": tmp_path / "store", **kwargs}
    return fvp.train_classifier(dataset, model, "ground_truth", head, **kwargs)


@pytest.mark.parametrize("head", heads.HEAD_KINDS)
def test_both_heads_learn_the_visible_class(dataset, video_model, tmp_path, head):
    epochs = []
    clf = _train(dataset, video_model, head, tmp_path, on_epoch=epochs.append)
    assert clf.classes == ["blue", "green", "red"] and not clf.multi_label
    assert clf.spec.training["train_samples"] == 12 and clf.spec.training["val_samples"] == 6
    assert epochs == clf.history and "val_accuracy" in epochs[-1]
    # Held-out quality through FiftyOne's own evaluation, stored under the eval key.
    results = clf.evaluation
    assert results.metrics()["accuracy"] >= 5 / 6
    assert "ground_truth_videoprism" in dataset.list_evaluations()
    held_out = dataset.exists("ground_truth_videoprism_predictions")
    assert len(held_out) == 6
    assert set(held_out.distinct("ground_truth.label")) == set(COLORS)  # stratified
    png = classify.save_confusion_matrix(results, tmp_path / "confusion.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_linear_probe_agrees_with_sklearn(dataset, video_model, tmp_path):
    clf = _train(dataset, video_model, "linear", tmp_path)
    fvp.compute_embeddings(dataset, video_model, "emb")
    x = np.stack(dataset.values("emb"))
    y = np.array(dataset.values("ground_truth.label"))
    held = np.array([s is not None for s in dataset.values("ground_truth_videoprism_predictions")])
    # The same embeddings: the probe reads exactly the vectors the dataset field holds.
    found, _ = classify._compute_features(dataset, clf.features, video_model, None, True, False)
    np.testing.assert_allclose(np.stack([found[i] for i in dataset.values("id")]), x, atol=1e-6)
    sk = LogisticRegression(C=100.0, max_iter=5000).fit(x[~held], y[~held])
    ours = np.array(clf.classes)[np.argmax(clf.logits(x), axis=1)]
    theirs = sk.predict(x)
    # Stated margin: the two agree on at least 90% of all videos, and their held-out
    # accuracies differ by at most one video in six.
    assert np.mean(ours == theirs) >= 0.9
    assert abs(np.mean(ours[held] == y[held]) - np.mean(theirs[held] == y[held])) <= 1 / 6 + 1e-9


@pytest.mark.parametrize("head", heads.HEAD_KINDS)
def test_same_seed_same_head_and_the_second_run_reuses_features(dataset, tiny_models, tmp_path,
                                                                monkeypatch, head):
    model = make_model(tiny_models.video, batch_size=4)
    calls = []
    name = "encode_frames" if head == "attention" else "embed_frames"
    encode = getattr(model, name)
    monkeypatch.setattr(model, name, lambda frames: calls.append(len(frames)) or encode(frames))
    first = _train(dataset, model, head, tmp_path, epochs=20)
    assert sum(calls) == 18 and first.feature_stats.computed == 18
    calls.clear()
    second = _train(dataset, model, head, tmp_path, epochs=20)
    assert calls == [] and second.feature_stats.computed == 0
    assert second.feature_stats.written == 18
    a, b = _params(first), _params(second)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert first.history == second.history
    other = _train(dataset, model, head, tmp_path, epochs=20, seed=1)
    assert any(not np.array_equal(v, _params(other)[k]) for k, v in a.items())
    # Another seed holds out other videos; only this run's are marked.
    assert len(dataset.exists("ground_truth_videoprism_predictions")) == 6
    if head == "attention":
        store = feats.FeatureStore(tmp_path / "store")
        assert store.size() > 0 and store.precision == feats.DEFAULT_PRECISION


def test_apply_save_load_and_apply_model(dataset, video_model, tiny_models, tmp_path):
    clf = _train(dataset, video_model, "attention", tmp_path)
    stats = fvp.apply_classifier(dataset, clf, "predicted", store_logits=True)
    assert stats.written == 18 and not stats.failed
    labels = dataset.values("predicted")
    assert all(isinstance(label, fo.Classification) for label in labels)
    assert all(0 < label.confidence <= 1 and len(label.logits) == 3 for label in labels)
    # The held-out predictions written at training time are the same labels.
    for label, held in zip(labels, dataset.values("ground_truth_videoprism_predictions"), strict=True):
        if held is not None:
            assert held.label == label.label
            assert abs(held.confidence - label.confidence) < 1e-5
    accuracy = np.mean([p.label == g for p, g in
                        zip(labels, dataset.values("ground_truth.label"), strict=True)])
    assert accuracy >= 16 / 18

    path = clf.save(tmp_path / "heads" / "colours")
    loaded = fvp.load_head(path, video_model)
    assert loaded.spec == clf.spec
    # FiftyOne's own apply_model, one video at a time, gives the same labels.
    dataset.apply_model(loaded, "via_apply_model")
    assert dataset.values("via_apply_model.label") == dataset.values("predicted.label")
    # A head refuses another backbone, or other frame settings.
    other = make_model(tiny_models.lvt)
    with pytest.raises(heads.HeadMismatchError, match="weights"):
        fvp.load_head(path, other)
    with pytest.raises(heads.HeadMismatchError, match="num_frames"):
        fvp.load_head(path, make_model(tiny_models.video, num_frames=6))


def test_tags_multi_label_and_a_broken_video(dataset, video_model, tmp_path):
    broken = write_audio_only(tmp_path / "no_video.mp4")
    dataset.add_sample(fo.Sample(filepath=str(broken), tags=["red"],
                                 ground_truth=fo.Classification(label="red")))
    # Labels from sample tags; the unreadable video is left out, the run goes on.
    clf = fvp.train_classifier(dataset, video_model, "tags", "linear",
                               classes=["red", "green", "blue"], val_fraction=VAL_FRACTION,
                               epochs=150, learning_rate=1e-2, store=None)
    assert clf.classes == ["red", "green", "blue"]
    assert clf.feature_stats.failed == [dataset.last().id]
    assert clf.evaluation.metrics()["accuracy"] >= 5 / 6
    stats = fvp.apply_classifier(dataset, clf, "from_tags")
    assert stats.written == 18 and len(stats.failed) == 1
    assert "from_tags_error" in dataset.get_field_schema()

    # Multi-label: a Classifications field; both colours of a video can be present.
    multi = dataset.match(fo.ViewField("ground_truth").exists()).limit(18)
    for sample in multi.iter_samples(autosave=True):
        names = [sample.ground_truth.label] + (["dark"] if "_0" in sample.filepath
                                               or "_1" in sample.filepath else [])
        sample["multi"] = fo.Classifications(
            classifications=[fo.Classification(label=n) for n in names])
    mclf = fvp.train_classifier(multi, video_model, "multi", "linear", val_fraction=0.25,
                                epochs=200, learning_rate=2e-2, store=None)
    assert mclf.multi_label and mclf.classes == ["blue", "dark", "green", "red"]
    assert mclf.evaluation is None  # FiftyOne evaluates single-label fields only
    assert mclf.history[-1]["val_accuracy"] >= 0.75
    fvp.apply_classifier(multi, mclf, "multi_pred")
    predicted = multi.values("multi_pred")
    assert all(isinstance(p, fo.Classifications) for p in predicted)
    with pytest.raises(ValueError, match="multi-label"):
        fvp.train_classifier(multi, video_model, "multi", "linear", multi_label=False)


def test_bad_label_fields_are_refused(dataset, video_model):
    with pytest.raises(ValueError, match="classes"):
        fvp.train_classifier(dataset, video_model, "tags")
    with pytest.raises(ValueError, match="no field"):
        fvp.train_classifier(dataset, video_model, "nope")
    dataset.set_values("one", [fo.Classification(label="x")] * len(dataset))
    with pytest.raises(ValueError, match="at least two"):
        fvp.train_classifier(dataset, video_model, "one")
    with pytest.raises(ValueError, match="Unsupported head"):
        fvp.train_classifier(dataset, video_model, "ground_truth", "mlp")
    with pytest.raises(ValueError, match="val_fraction"):
        fvp.train_classifier(dataset, video_model, "ground_truth", val_fraction=1.0)
    with pytest.raises(ValueError, match="distinct"):
        fvp.train_classifier(dataset, video_model, "ground_truth", classes=["red", "red"])
    with pytest.raises(ValueError, match="precision='int8'"):
        fvp.train_classifier(dataset, video_model, "ground_truth",
                             store=feats.FeatureStore(precision="int8"))


def test_operators_train_and_apply(installed_plugin, class_videos, tiny_models, tmp_path):
    import fiftyone.operators as foo
    from fo_fixtures import PLUGIN_URI

    # Persistent, as the App's datasets are (the operators load it by name).
    ds = fo.Dataset(unique_name("fvp-clf-ops"), persistent=True)
    try:
        ds.add_samples([fo.Sample(filepath=str(p), ground_truth=fo.Classification(label=n))
                        for p, n in class_videos])
        params = {"model": "videoprism-base", "local_files": True, **tiny_models.video,
                  "batch_size": 4}
        head_path = tmp_path / "heads" / "colours"
        result = foo.execute_operator(PLUGIN_URI.format("train_classifier"), dataset=ds, params={
            **params, "label_field": "ground_truth", "head": "linear", "epochs": 150,
            "learning_rate": 1e-2, "val_fraction": VAL_FRACTION, "head_path": str(head_path)})
        assert result.error is None, result.error
        assert (tmp_path / "heads" / "colours.safetensors").is_file()
        assert (tmp_path / "heads" / "colours_confusion.png").read_bytes()[:4] == b"\x89PNG"
        ds.reload()
        assert "ground_truth_videoprism" in ds.list_evaluations()

        result = foo.execute_operator(PLUGIN_URI.format("apply_classifier"), dataset=ds, params={
            **params, "head_path": str(head_path) + ".json", "store_logits": True})
        assert result.error is None, result.error
        ds.reload()
        predicted = ds.values("videoprism_classifier")
        assert len(predicted) == 18 and all(len(p.logits) == 3 for p in predicted)
        assert np.mean([p.label == g for p, g in zip(
            predicted, ds.values("ground_truth.label"), strict=True)]) >= 16 / 18
    finally:
        ds.delete()


def test_cli_train_then_classify(capsys, class_videos, tiny_models, tmp_path):
    from fiftyone_videoprism.fo.cli import main

    ds = fo.Dataset(unique_name("fvp-clf-cli"), persistent=True)
    try:
        ds.add_samples([fo.Sample(filepath=str(p), ground_truth=fo.Classification(label=n))
                        for p, n in class_videos])
        video = ["--model", "videoprism-base", "--model-config",
                 tiny_models.video["model_config"], "--checkpoint",
                 tiny_models.video["checkpoint_path"], "--batch-size", "4"]
        out = tmp_path / "cli_head"
        assert main(["train", ds.name, "--labels", "ground_truth", "--head", "linear",
                     "--epochs", "150", "--lr", "0.01", "--val-fraction", str(VAL_FRACTION),
                     "--out", str(out), *video]) == 0
        printed = capsys.readouterr().out
        # (Computed now or by an earlier test: the embeddings cache is shared.)
        assert re.search(r"Features of 18 videos \(\d+ computed", printed)
        assert "Held-out accuracy" in printed and "precision" in printed  # FiftyOne's report
        assert (tmp_path / "cli_head_confusion.png").is_file()
        assert main(["classify", ds.name, "--head", f"{out}.safetensors", *video]) == 0
        printed = capsys.readouterr().out
        assert "Classified 18 videos" in printed
        assert len(ds.exists("videoprism_classifier")) == 18
        lvt = tiny_models.lvt
        assert main(["classify", ds.name, "--head", f"{out}.json", "--model",
                     "videoprism-lvt-base", "--model-config", lvt["model_config"],
                     "--checkpoint", lvt["checkpoint_path"]]) == 1
        assert "was trained on backbone" in capsys.readouterr().err
    finally:
        ds.delete()


def test_clip_labels_from_temporal_detections(tmp_path, video_model):
    """Moments: train on dataset.to_clips(field), where each clip's label is its detection's."""
    ds = fo.Dataset(unique_name("fvp-clf-clips"))
    try:
        for k in range(6):
            grey = (80 + 20 * k,) * 3
            frames = [*moving_shape_frames(8, COLORS["red"], 48, 40, background=grey),
                      *moving_shape_frames(8, COLORS["blue"], 48, 40, background=grey)]
            path = write_video(tmp_path / f"two_{k}.mp4", frames)
            ds.add_sample(fo.Sample(filepath=str(path), events=fo.TemporalDetections(detections=[
                fo.TemporalDetection(label="red", support=[1, 8]),
                fo.TemporalDetection(label="blue", support=[9, 16])])))
        ds.compute_metadata()
        clips = ds.to_clips("events")
        clf = fvp.train_classifier(clips, video_model, "events", "linear", val_fraction=1 / 3,
                                   epochs=150, learning_rate=1e-2, store=None)
        assert clf.classes == ["blue", "red"] and clf.feature_stats.computed == 12
        assert clf.evaluation.metrics()["accuracy"] == 1.0
        fvp.apply_classifier(clips, clf, "clip_pred")
        assert clips.values("clip_pred.label") == clips.values("events.label")
    finally:
        ds.delete()
