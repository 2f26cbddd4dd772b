"""The vectors a dataset holds, computed from an MLX model: numpy in, numpy out, no FiftyOne.

One definition for every caller (the FiftyOne model, moment windows, classifier features, a
pure-MLX user):

- **video embedding** (:func:`embed_videos`): the LvT models' pooled output, L2-normalised once
  (the model's own ``normalize=True``); the video-only models have no pooler, so their
  embedding is the mean of the ``T * N`` space-time tokens, L2-normalised;
- **video tokens** (:func:`video_tokens`): the video encoder's ``T * N`` space-time tokens,
  what an attention-pooling classifier head reads;
- **text embedding** (:func:`embed_texts`): unit-norm LvT text embeddings of prompts, tokenised
  as the original does, in batches that bound the text encoder's attention buffers, with a
  warning for each prompt the 64-token limit cuts;
- **identity** (:func:`weights_digest`): a SHA-256 over the weights, so two models can be told
  to compute the same vectors or not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from fiftyone_videoprism.core.tokenizer import Tokenizer, canonicalize_text, tokenize
from fiftyone_videoprism.core.video import to_float

logger = logging.getLogger(__name__)

# The original's epsilon, under the square root.
NORM_EPS = 1e-12
MAX_TEXT_LENGTH = 64
# Prompts per text-encoder call: bounds the (prompts, heads, 65, 65) attention buffers when a
# long class list is multiplied by several templates.
TEXT_BATCH = 256
# How much of a truncated prompt a warning quotes: a pasted document would flood the log.
_QUOTE_CHARS = 200


def l2_normalize(x):
    """``x / ||x||`` over the last axis in float32. An ``mx.array`` gives an ``mx.array``;
    anything else (numpy, lists) gives a numpy array."""
    if not isinstance(x, mx.array):
        return np.array(l2_normalize(mx.array(np.asarray(x, np.float32))), dtype=np.float32)
    x = x.astype(mx.float32)
    return x * mx.rsqrt(mx.sum(x * x, axis=-1, keepdims=True) + NORM_EPS)


def pool_tokens(tokens: mx.array) -> mx.array:
    """(B, T*N, D) video-only tokens -> (B, D) unit-norm: the token mean, in float32 (half
    precision would lose digits summing thousands of tokens)."""
    return l2_normalize(mx.mean(tokens.astype(mx.float32), axis=1))


def embed_videos(net, video, *, frame_paddings=None) -> np.ndarray:
    """(B, T, S, S, 3) frames (uint8, or float in [0, 1]) -> (B, D) float32 unit-norm video
    embeddings of ``net`` (a ``FactorizedEncoder`` or ``FactorizedVideoCLIP``)."""
    x = _as_float(video)
    if net.config.is_lvt:
        out = net.encode_video(x, frame_paddings=frame_paddings, normalize=True)
    else:
        out = pool_tokens(net.encode_video(x, frame_paddings=frame_paddings))
    return np.array(out, dtype=np.float32)


def video_tokens(net, video, *, frame_paddings=None) -> np.ndarray:
    """(B, T, S, S, 3) frames -> (B, T*N, D) float32 space-time tokens of ``net``'s video
    encoder (an LvT model's vision encoder): what an attention-pooling head reads."""
    encoder = net.vision_encoder if net.config.is_lvt else net
    return np.array(encoder.encode_video(_as_float(video), frame_paddings=frame_paddings),
                    dtype=np.float32)


def _as_float(video) -> np.ndarray:
    video = np.asarray(video)
    return to_float(video) if video.dtype == np.uint8 else video.astype(np.float32)


def embed_texts(net, tokenizer: Tokenizer, prompts: str | Iterable[str]) -> np.ndarray:
    """(N, D) float32 unit-norm text embeddings of ``prompts`` (LvT ``net`` only).

    Raises:
        ValueError: a prompt is empty or not text (its embedding would be all padding)
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {index} is {prompt!r}; prompts must be non-empty text")
    if not prompts:
        return np.empty((0, net.config.model_dim), np.float32)
    ids, paddings = tokenize(prompts, tokenizer, max_length=MAX_TEXT_LENGTH)
    _warn_truncated(prompts, paddings, tokenizer)
    return np.concatenate([
        np.array(net.encode_text(ids[i:i + TEXT_BATCH], paddings[i:i + TEXT_BATCH]),
                 dtype=np.float32)
        for i in range(0, len(prompts), TEXT_BATCH)
    ])


def weights_digest(net) -> str:
    """SHA-256 over every parameter's name, dtype, shape and bytes."""
    hasher = hashlib.sha256()
    for name, array in sorted(tree_flatten(net.parameters())):
        hasher.update(f"{name}:{array.dtype}:{array.shape}".encode())
        hasher.update(memoryview(array))
    return hasher.hexdigest()


def _warn_truncated(prompts: Sequence[str], paddings: np.ndarray, tokenizer: Tokenizer) -> None:
    # Only rows that fill every position can have been cut.
    for row in np.flatnonzero(paddings[:, -1] == 0):
        length = len(tokenizer.encode([canonicalize_text(prompts[row])])[0])
        if length > MAX_TEXT_LENGTH:
            prompt = prompts[row]
            quoted = prompt if len(prompt) <= _QUOTE_CHARS else prompt[:_QUOTE_CHARS] + "..."
            logger.warning("Truncating prompt %r: %d tokens, the text encoder reads %d",
                           quoted, length, MAX_TEXT_LENGTH)
