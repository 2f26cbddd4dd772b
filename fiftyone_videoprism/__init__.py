"""VideoPrism video encoders on MLX, with FiftyOne zoo models and plugin operators.

Two layers (see ARCHITECTURE.md): :mod:`fiftyone_videoprism.core`, the MLX port, which never
imports FiftyOne, and :mod:`fiftyone_videoprism.fo`, the FiftyOne side. Importing the package
only sets up the BLAS (before anything loads mlx) and reads the version; every public name
below is imported on first use, so ``import fiftyone_videoprism`` loads neither mlx nor FiftyOne.
"""

from importlib import import_module
from typing import Any

from fiftyone_videoprism.core import blas  # noqa: F401  (must run before mlx.core is first imported)
from fiftyone_videoprism.version import __version__

# public name -> module that defines it
_LAZY = {
    "blas_info": "fiftyone_videoprism.core.blas",
    "VideoPrismConfig": "fiftyone_videoprism.core.configs",
    "get_config": "fiftyone_videoprism.core.configs",
    "list_models": "fiftyone_videoprism.core.configs",
    "load_model": "fiftyone_videoprism.core.factory",
    "load_tokenizer": "fiftyone_videoprism.core.factory",
    "tokenize": "fiftyone_videoprism.core.tokenizer",
    "embed_videos": "fiftyone_videoprism.core.embedding",
    "embed_texts": "fiftyone_videoprism.core.embedding",
    "encode_windows": "fiftyone_videoprism.core.windows",
    "plan_windows": "fiftyone_videoprism.core.windows",
    "register_zoo": "fiftyone_videoprism.fo.zoo",
    "install_plugin": "fiftyone_videoprism.fo.plugin",
    "uninstall_plugin": "fiftyone_videoprism.fo.plugin",
    "VideoPrismModel": "fiftyone_videoprism.fo.model",
    "VideoPrismModelConfig": "fiftyone_videoprism.fo.model",
    "compute_embeddings": "fiftyone_videoprism.fo.runs",
    "apply_zero_shot": "fiftyone_videoprism.fo.runs",
    "RunStats": "fiftyone_videoprism.fo.runs",
    "compute_moments": "fiftyone_videoprism.fo.moments",
    "find_moments": "fiftyone_videoprism.fo.moments",
    "tag_moments": "fiftyone_videoprism.fo.moments",
    "index_moments": "fiftyone_videoprism.fo.moments",
    "embed_on_workers": "fiftyone_videoprism.fo.shards",
    "moments_on_workers": "fiftyone_videoprism.fo.shards",
    "build_index": "fiftyone_videoprism.fo.index",
    "field_provenance": "fiftyone_videoprism.fo.runs",
    "build_map": "fiftyone_videoprism.fo.maps",
    "load_classifier": "fiftyone_videoprism.core.heads",
    "FeatureStore": "fiftyone_videoprism.core.features",
    "train_classifier": "fiftyone_videoprism.fo.classify",
    "apply_classifier": "fiftyone_videoprism.fo.classify",
    "load_head": "fiftyone_videoprism.fo.classify",
    "save_confusion_matrix": "fiftyone_videoprism.fo.classify",
    "VideoPrismClassifier": "fiftyone_videoprism.fo.classify",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fiftyone_videoprism' has no attribute {name!r}")
