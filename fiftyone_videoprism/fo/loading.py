"""Load kwargs and model loading for the CLI, the operators and Python callers: one home, so
they all store the same kwargs in an index and load the same model from them."""

from __future__ import annotations

import os
from typing import Any

# Load kwargs that name local files: stored absolute, so that another process (the App
# server answering text queries, a delegated worker) finds the same files.
PATH_KEYS = ("checkpoint_path", "tokenizer_path", "model_config")


def model_kwargs(**options: Any) -> dict[str, Any]:
    """Zoo load kwargs from options that may be None (left to the model's defaults); file
    paths are made absolute. Unknown keys are refused by the model's config."""
    kwargs = {key: value for key, value in options.items() if value not in (None, "")}
    for key in PATH_KEYS:
        if isinstance(kwargs.get(key), (str, os.PathLike)):
            kwargs[key] = os.path.abspath(os.path.expanduser(kwargs[key]))
    return kwargs


def zoo_model(name: str, kwargs: dict[str, Any], *, text: bool | None = False):
    """The zoo model ``name`` (original names and aliases accepted; a typo gets a "did you
    mean") loaded with ``kwargs``. With ``text``, its tokenizer is loaded too (``None``: when
    the model has a text encoder), so that a run that will embed prompts fails now rather
    than after its videos are done."""
    import fiftyone.zoo as foz

    from fiftyone_videoprism.core.configs import canonical_name
    from fiftyone_videoprism.fo.zoo import register_zoo

    register_zoo()  # this process may be a fresh worker or a new machine
    model = foz.load_zoo_model(canonical_name(name), **kwargs)
    if text or (text is None and model.can_embed_prompts):
        model.require_text()
    return model
