"""zeroshot.py: templates, prompt ensembling and the demo's softmax(S / 0.01)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fiftyone_videoprism.core import zeroshot

IO = Path(__file__).parent / "data" / "tiny_lvt" / "io.npz"


@pytest.mark.parametrize("case", ["case0", "case1", "case2"])
def test_probs_match_original_demo(case: str) -> None:
    # The oracle stored the original's softmax over texts of similarity / 0.01.
    io = np.load(IO)
    v, t = io[f"{case}/video_embeddings"], io[f"{case}/text_embeddings"]
    np.testing.assert_allclose(zeroshot.zero_shot_logits(v, t) * 0.01, io[f"{case}/similarity"],
                               atol=1e-6)
    np.testing.assert_allclose(zeroshot.zero_shot_probs(v, t),
                               io[f"{case}/zero_shot_probs_over_texts"], atol=1e-5)


def test_prompts_are_class_major() -> None:
    prompts = zeroshot.build_prompts(["cat", "dog"], ["a video of {}.", "{} on film"])
    assert prompts == ["a video of cat.", "cat on film", "a video of dog.", "dog on film"]


def test_ensemble_averages_templates_and_renormalises() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(6, 8)).astype(np.float32)  # 3 classes x 2 templates
    out = zeroshot.ensemble(e, num_templates=2)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    expected = unit.reshape(3, 2, 8).mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # One template is the identity on unit vectors.
    np.testing.assert_allclose(zeroshot.ensemble(unit, 1), unit, atol=1e-6)


def test_templates_are_checked() -> None:
    assert zeroshot.check_templates(None) == ("a video of {}.",)
    assert zeroshot.check_templates("clip of {}") == ("clip of {}",)
    with pytest.raises(ValueError, match="exactly one"):
        zeroshot.check_templates(["a video of a dog"])
    with pytest.raises(ValueError, match="empty"):
        zeroshot.check_templates([])


def test_bad_shapes_and_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        zeroshot.zero_shot_logits(np.ones((1, 4)), np.ones((2, 4)), temperature=0)
    with pytest.raises(ValueError, match="class embeddings"):
        zeroshot.zero_shot_logits(np.ones((1, 4)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="prompt embeddings"):
        zeroshot.ensemble(np.ones((5, 4)), num_templates=2)
