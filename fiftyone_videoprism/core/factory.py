"""Building models and tokenizers: name -> config -> file -> arrays -> model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import mlx.core as mx
import mlx.nn as nn

from fiftyone_videoprism.core import hub
from fiftyone_videoprism.core.checkpoint import CorruptCheckpointError, load_checkpoint
from fiftyone_videoprism.core.configs import (VideoPrismConfig, canonical_name, from_original_kwargs,
                                         get_config)
from fiftyone_videoprism.core.settings import DEFAULT_DTYPE, DTYPES
from fiftyone_videoprism.core.model import FactorizedEncoder, FactorizedVideoCLIP, build_model
from fiftyone_videoprism.core.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

ModelSpec = str | VideoPrismConfig | Mapping[str, Any]

# Precision modes of load_model: half-precision types the weights (and so the activations)
# are cast to, and bits per weight of the quantized Linear layers.
HALF_DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16}
QUANT_BITS = {"q8": 8, "q4": 4}
assert set(DTYPES) == {"float32", *HALF_DTYPES, *QUANT_BITS}
# Quantization groups run along a Linear layer's input dimension, which must divide into them.
QUANT_GROUP_SIZE = 64


def resolve_config(model: ModelSpec) -> tuple[str | None, VideoPrismConfig]:
    """(canonical name or None, config) for a model name/alias, a config, a dict of original
    constructor kwargs, or a path to a JSON file holding such kwargs (optionally under a
    ``"config"`` key, as in the oracle fixtures)."""
    if isinstance(model, VideoPrismConfig):
        return None, model
    if isinstance(model, Mapping):
        return None, from_original_kwargs(model.get("config", model))
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".json"):
        with open(model) as f:
            data = json.load(f)
        return None, from_original_kwargs(data.get("config", data))
    if isinstance(model, str):
        name = canonical_name(model)
        return name, get_config(name)
    raise TypeError(f"model must be a model name, a VideoPrismConfig, a dict of the original "
                    f"constructor kwargs or a .json path; got {type(model).__name__}")


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else a ValueError listing them."""
    if dtype not in DTYPES:
        raise ValueError(f"Unsupported dtype {dtype!r}. Supported values are {DTYPES}")
    return dtype


def set_precision(net: nn.Module, dtype: str) -> None:
    """Casts ``net``'s float weights to a half type, or quantizes its Linear layers, in place.

    Quantized modes replace each ``nn.Linear`` whose input dimension is a multiple of
    :data:`QUANT_GROUP_SIZE` by an ``nn.QuantizedLinear``; the rest (the patch projection of
    the released models, whose 972 inputs are not), embeddings, positional tables and
    LayerNorms keep float32, and so do the activations.
    """
    if check_dtype(dtype) in HALF_DTYPES:
        net.set_dtype(HALF_DTYPES[dtype])
    elif dtype in QUANT_BITS:
        nn.quantize(net, group_size=QUANT_GROUP_SIZE, bits=QUANT_BITS[dtype],
                    class_predicate=lambda _, m: (isinstance(m, nn.Linear)
                                                  and m.weight.shape[1] % QUANT_GROUP_SIZE == 0))


def load_model(model: ModelSpec, checkpoint: str | os.PathLike | None = None,
               dtype: str = DEFAULT_DTYPE) -> FactorizedEncoder | FactorizedVideoCLIP:
    """A VideoPrism model with its weights loaded.

    Args:
        model: a name (``videoprism-lvt-base``, or an original name such as
            ``videoprism_lvt_public_v1_base``), a :class:`VideoPrismConfig`, a dict of the
            original constructor kwargs, or a ``.json`` file holding them.
        checkpoint: a released-format ``flax_*_repeated.npz`` (converted once and cached beside
            it) or a converted ``*.mlx.safetensors``. Optional for named models: then the
            released file is found through ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR`` or
            downloaded from the Hugging Face Hub.
        dtype: precision: ``"float32"`` (the reference), ``"bfloat16"`` or ``"float16"``
            (weights and activations; attention softmax and the final L2 normalisation stay
            float32, as in the original), or ``"q8"`` / ``"q4"`` (8- or 4-bit weights of the
            Linear layers, group size 64; float32 activations). On a CPU without half-precision
            BLAS (Linux x86) float32 is also the fastest; see ``bench/precision.py``.
    """
    check_dtype(dtype)
    name, config = resolve_config(model)
    if checkpoint is None and name is None:
        raise ValueError("a checkpoint path is required when the model is given as a config")
    path = hub.checkpoint_file(name, checkpoint) if name else Path(checkpoint)
    try:
        weights = load_checkpoint(path, config)
    except CorruptCheckpointError as err:
        # A damaged download is fetched once more; a user's own file is only reported.
        if checkpoint is not None or not hub.in_hf_cache(path):
            raise
        logger.warning("%s; downloading it again", err)
        weights = load_checkpoint(hub.checkpoint_file(name, force_download=True), config)
    net = build_model(config)
    net.load_weights(list(weights.items()), strict=True)
    set_precision(net, dtype)
    mx.eval(net.parameters())
    net.eval()
    return net


def load_tokenizer(path: str | os.PathLike | None = None,
                   vocabulary_size: int | None = None) -> Tokenizer:
    """The c4_en SentencePiece tokenizer from ``path``, ``FIFTYONE_VIDEOPRISM_TOKENIZER`` or the
    Hub; with ``vocabulary_size`` it is checked against a model's vocabulary."""
    tokenizer = Tokenizer.from_file(hub.tokenizer_file(path))
    if vocabulary_size is not None:
        tokenizer.check_vocabulary(vocabulary_size)
    return tokenizer
