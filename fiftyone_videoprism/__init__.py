"""VideoPrism video encoders on MLX, with FiftyOne zoo models and plugin operators.

The MLX core (configs, model, checkpoint, hub, tokenizer, video) never imports FiftyOne; the
FiftyOne-side names below are imported on first use.
"""

from importlib import import_module
from typing import Any

from fiftyone_videoprism import _blas  # noqa: F401  (must run before mlx.core is first imported)
from fiftyone_videoprism._blas import blas_info
from fiftyone_videoprism.configs import VideoPrismConfig, get_config, list_models
from fiftyone_videoprism.factory import load_model, load_tokenizer
from fiftyone_videoprism.tokenizer import tokenize

# name -> module, for the names that need FiftyOne
_LAZY = {
    "register_zoo": "fiftyone_videoprism.zoo",
    "install_plugin": "fiftyone_videoprism.plugin",
    "uninstall_plugin": "fiftyone_videoprism.plugin",
    "VideoPrismModel": "fiftyone_videoprism.fo_model",
    "VideoPrismModelConfig": "fiftyone_videoprism.fo_model",
    "compute_embeddings": "fiftyone_videoprism.apply",
    "apply_zero_shot": "fiftyone_videoprism.apply",
    "RunStats": "fiftyone_videoprism.apply",
}

__all__ = [
    "VideoPrismConfig",
    "blas_info",
    "get_config",
    "list_models",
    "load_model",
    "load_tokenizer",
    "tokenize",
    *_LAZY,
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fiftyone_videoprism' has no attribute {name!r}")
