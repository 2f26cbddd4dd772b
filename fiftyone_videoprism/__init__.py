"""VideoPrism video encoders on MLX, with FiftyOne zoo models and plugin operators.

The MLX core (configs, model, checkpoint, hub, tokenizer, video) never imports FiftyOne;
the FiftyOne-side names are loaded on first use.
"""

from fiftyone_videoprism import _blas  # noqa: F401  (must run before mlx.core is first imported)
from fiftyone_videoprism.configs import VideoPrismConfig, get_config, list_models
from fiftyone_videoprism.factory import load_model, load_tokenizer
from fiftyone_videoprism.tokenizer import tokenize

__all__ = [
    "VideoPrismConfig",
    "get_config",
    "list_models",
    "load_model",
    "load_tokenizer",
    "tokenize",
]
__version__ = "0.1.0"
