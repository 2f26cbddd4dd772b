"""The VideoPrism models as a FiftyOne zoo source.

FiftyOne 1.22 finds remote-style zoo sources as folders under ``fo.config.model_zoo_dir`` that
hold a ``manifest.json`` and an ``__init__.py`` with the hooks below, and it will not register
a local path through ``register_zoo_model_source``. :func:`register_zoo` therefore copies the
two files shipped in ``zoo_source/`` into ``<model_zoo_dir>/fiftyone-videoprism/``; every
process that uses the same FiftyOne config (the App server included) then knows the models by
name::

    import fiftyone.zoo as foz
    import fiftyone_videoprism as fvp

    fvp.register_zoo()
    model = foz.load_zoo_model("videoprism-lvt-base")

What "downloaded" means: FiftyOne calls :func:`download_model` when the model's file in the zoo
folder (``<name>.json``) does not exist. The hook fetches the weights (and, for LvT models, the
tokenizer) through :mod:`fiftyone_videoprism.core.hub` into the Hugging Face cache, or finds them
through ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR`` / ``FIFTYONE_VIDEOPRISM_TOKENIZER``, then writes
that file: a small JSON record of where they are. It is a real file, so later loads skip the
download step; the weights themselves are located again by hub.py on each load.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from fiftyone_videoprism.core import hub, zeroshot
from fiftyone_videoprism.version import __version__
from fiftyone_videoprism.core.configs import RELEASES, canonical_name, get_config
from fiftyone_videoprism.core.settings import RESIZE_MODES

logger = logging.getLogger(__name__)

SOURCE_NAME = "fiftyone-videoprism"
_SOURCE_DIR = Path(__file__).parent / "zoo_source"


def _manifest() -> dict[str, Any]:
    """The shipped manifest, with each model's Hub page filled in from its release."""
    manifest = json.loads((_SOURCE_DIR / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["models"]:
        entry["source"] = f"https://huggingface.co/{RELEASES[entry['base_name']].repo_id}"
    return manifest


def zoo_model_names() -> list[str]:
    """The zoo names this source provides."""
    return [entry["base_name"] for entry in _manifest()["models"]]


def register_zoo() -> Path:
    """Installs the VideoPrism zoo source into ``fo.config.model_zoo_dir``; returns its folder.

    Idempotent and offline: it writes two small files, rewriting them only when this package
    ships different ones (an upgrade). Download records of earlier loads are kept.
    """
    import fiftyone as fo

    target = Path(fo.config.model_zoo_dir) / SOURCE_NAME
    target.mkdir(parents=True, exist_ok=True)
    contents = {
        "manifest.json": (json.dumps(_manifest(), indent=2) + "\n").encode(),
        "__init__.py": (_SOURCE_DIR / "__init__.py").read_bytes(),
    }
    for name, data in contents.items():
        dest = target / name
        if dest.is_file() and dest.read_bytes() == data:
            continue
        # Write then rename, so a process listing the zoo never reads half a manifest.
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return target


# --------------------------------------------------------------------------------------------
# Hooks that FiftyOne calls with the zoo name (through zoo_source/__init__.py)


def download_model(model_name: str, model_path: str) -> None:
    """Zoo hook: makes the weights (and LvT tokenizer) local, then writes ``model_path``.

    Offline, with neither the Hugging Face cache nor the environment variables providing the
    files, it logs why and returns without writing: ``load_zoo_model`` runs this hook before it
    passes ``checkpoint_path`` / ``tokenizer_path`` on, so local weights given as arguments must
    still load. The model then stays "not downloaded".
    """
    name = canonical_name(model_name)
    try:
        checkpoint = hub.checkpoint_file(name)
        tokenizer = hub.tokenizer_file() if get_config(name).is_lvt else None
    except hub.WeightsUnavailableError as err:
        # Not a warning: local files given to load_zoo_model still load, and when none are,
        # loading the model reports this once, with the fix, where the user looks.
        logger.debug("%s was not downloaded: %s", name, err)
        return
    record = {
        "model": name,
        "checkpoint": str(checkpoint),
        "tokenizer": str(tokenizer) if tokenizer is not None else None,
        "written_by": f"fiftyone-videoprism {__version__}",
        "note": "Delete this file to make FiftyOne fetch the model again.",
    }
    path = Path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    logger.info("%s: checkpoint %s", name, checkpoint)


def load_model(model_name: str, model_path: str, **kwargs: Any):
    """Zoo hook: a :class:`~fiftyone_videoprism.fo.model.VideoPrismModel`.

    ``kwargs`` are :class:`~fiftyone_videoprism.fo.model.VideoPrismModelConfig` keys
    (:data:`~fiftyone_videoprism.fo.model.CONFIG_KEYS`). ``model_path`` is the download record; the weights are located again
    through hub.py, so explicit paths and environment variables always win over it.
    """
    from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

    config = VideoPrismModelConfig({**kwargs, "model_name": canonical_name(model_name)})
    return VideoPrismModel(config)


def resolve_input(model_name: str, ctx: Any):
    """Zoo hook: the App form for this model's parameters (a ``types.Property``)."""
    from fiftyone.operators import types

    from fiftyone_videoprism.fo.defaults import DEFAULT_BATCH_SIZE

    config = get_config(model_name)
    inputs = types.Object()
    if config.is_lvt:
        inputs.str(
            "classes",
            label="Classes",
            description="Comma-separated class names for zero-shot classification, "
                        "e.g. cooking, swimming, playing drums",
        )
        inputs.list(
            "prompt_templates",
            types.String(),
            label="Prompt templates",
            description="Each with one {} for the class name; several are averaged. "
                        "Default: 'a video of {}.'",
        )
    inputs.int(
        "num_frames",
        label="Frames per video",
        description=f"Sampled uniformly over each video or clip (default {config.num_frames})",
    )
    inputs.enum(
        "resize",
        list(RESIZE_MODES),
        default="squash",
        label="Resize",
        description="squash: whole frame to a square (the original demo); "
                    "center_crop: keep proportions, crop the centre (the original colab); "
                    "*_swscale: the same resized by FFmpeg (faster, not the original's "
                    "pixels)",
    )
    inputs.int("batch_size", default=DEFAULT_BATCH_SIZE, label="Batch size", description="Videos per MLX call")
    return types.Property(inputs)


def parse_parameters(model_name: str, ctx: Any, params: dict[str, Any]) -> None:
    """Zoo hook: turns the form's values into load kwargs, in place (comma-separated classes
    become a list; empty values are dropped so that defaults apply)."""
    classes = params.get("classes")
    if isinstance(classes, str) and classes.strip():
        params["classes"] = zeroshot.parse_classes(classes)
    for key in [k for k, v in params.items() if v in (None, "", [])]:
        del params[key]
