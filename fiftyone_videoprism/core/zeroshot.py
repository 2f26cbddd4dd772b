"""Zero-shot classification with LvT embeddings: prompt templates, prompt ensembling and the
original demo's temperature softmax, on numpy arrays.

The video-text Colab of the original builds one prompt per class with ``"a video of {}."``,
scores ``S = V @ T.T`` (both unit-norm, so cosine similarity), divides by a fixed temperature
of 0.01 (the checkpoints hold no learned logit scale) and applies a softmax over the texts.
Several templates are combined as in CLIP's prompt ensembling: the unit-norm text embeddings
of one class are averaged over templates and re-normalised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fiftyone_videoprism.core.embedding import l2_normalize

DEFAULT_TEMPLATES: tuple[str, ...] = ("a video of {}.",)
DEFAULT_TEMPERATURE = 0.01


def check_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """The templates as a tuple; ``None`` gives the demo's; each must hold exactly one ``{}``."""
    if templates is None:
        return DEFAULT_TEMPLATES
    if isinstance(templates, str):
        templates = (templates,)
    templates = tuple(templates)
    if not templates:
        raise ValueError("prompt_templates is empty; give at least one, e.g. 'a video of {}.'")
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise ValueError(
            f"prompt templates must hold exactly one '{{}}' for the class name; got {bad}"
        )
    return templates


def parse_classes(classes: str | Iterable[str]) -> list[str]:
    """Class names from comma-separated text (``"cooking, swimming"``) or a sequence of names:
    stripped, blanks dropped, repeats dropped (first kept), then :func:`check_classes`."""
    names = classes.split(",") if isinstance(classes, str) else list(classes)
    stripped = (n.strip() if isinstance(n, str) else n for n in names)
    return check_classes(list(dict.fromkeys(n for n in stripped if n != "")))


def check_classes(classes: Any) -> list[str]:
    """``classes`` as a list, if it is a non-empty sequence of distinct, non-blank strings;
    otherwise a ValueError saying which entry is wrong."""
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise ValueError(f"classes must be a list of class names, got {classes!r}")
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty; give at least one class name, e.g. "
                         "['cooking', 'swimming']")
    for index, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class {index} is {name!r}; class names must be non-empty text")
    repeated = sorted(name for name, count in Counter(classes).items() if count > 1)
    if repeated:
        # Two equal names would split one class's probability between two labels.
        raise ValueError(f"classes must be distinct; repeated: {repeated}")
    return classes


def build_prompts(classes: Iterable[str], templates: Sequence[str]) -> list[str]:
    """One prompt per (class, template), class-major: ``[c0t0, c0t1, ..., c1t0, ...]``."""
    return [template.format(name) for name in classes for template in templates]


def ensemble(prompt_embeddings: np.ndarray, num_templates: int) -> np.ndarray:
    """(C*K, D) prompt embeddings in :func:`build_prompts` order -> (C, D) unit-norm class
    embeddings: the mean over the K templates, re-normalised."""
    prompt_embeddings = np.asarray(prompt_embeddings, dtype=np.float32)
    if prompt_embeddings.ndim != 2 or prompt_embeddings.shape[0] % num_templates:
        raise ValueError(
            f"expected ({num_templates}*num_classes, D) prompt embeddings, "
            f"got shape {prompt_embeddings.shape}"
        )
    d = prompt_embeddings.shape[1]
    # Normalise each prompt first so every template has the same weight in the mean.
    per_prompt = l2_normalize(prompt_embeddings).reshape(-1, num_templates, d)
    return l2_normalize(per_prompt.mean(axis=1))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def zero_shot_logits(video_embeddings: np.ndarray, class_embeddings: np.ndarray,
                     temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """(B, D) video and (C, D) class embeddings (unit-norm) -> (B, C) logits ``S / temperature``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    v = np.asarray(video_embeddings, dtype=np.float32)
    t = np.asarray(class_embeddings, dtype=np.float32)
    if v.ndim != 2 or t.ndim != 2 or v.shape[1] != t.shape[1]:
        raise ValueError(
            f"expected (B, D) video and (C, D) class embeddings, got {v.shape} and {t.shape}"
        )
    return (v @ t.T) / np.float32(temperature)


def zero_shot_probs(video_embeddings: np.ndarray, class_embeddings: np.ndarray,
                    temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """(B, C) class probabilities: softmax over the classes of ``S / temperature`` (the demo's
    ``apply_softmax='over_texts'``)."""
    return softmax(zero_shot_logits(video_embeddings, class_embeddings, temperature), axis=1)
