"""The VideoPrism networks in MLX: arrays in, arrays out, no I/O.

Class and attribute names follow the original Flax modules (``FactorizedEncoder``,
``FactorizedVideoCLIP``, ``spatial_encoder``, ``temporal_ln``, ...) so this file reads side by
side with VIDEOPRISM.md. Letters in shape comments: B batch, T frames, H=W image side,
P patch side, G patches per side, N = G*G, D width, L text length, S sequence length.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from fiftyone_videoprism.core import kernels, windows
from fiftyone_videoprism.core.configs import VideoPrismConfig
from fiftyone_videoprism.core.embedding import l2_normalize
from fiftyone_videoprism.core.lanes import bounds, cpu_lanes, on_streams, thread_streams

LN_EPS = 1e-6
# The original replaces masked logits by this value (not -inf), so a fully masked row is uniform.
_MASKED_LOGIT = -0.7 * float(np.finfo(np.float32).max)
# 1 / softplus(0): PerDimScale is the identity at initialisation.
_R_SOFTPLUS_0 = 1.442695041


def _as_array(x, dtype=None) -> mx.array:
    arr = x if isinstance(x, mx.array) else mx.array(np.asarray(x))
    return arr if dtype is None else arr.astype(dtype)


# --------------------------------------------------------------------------------------------
# Positional tables


@lru_cache(maxsize=64)
def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of JAX's anti-aliased bilinear resize along one axis.

    Half-pixel centres; the triangle kernel is widened by n_in/n_out when shrinking (the
    anti-aliasing), and each row is renormalised, which also clamps at the edges.
    """
    scale = n_in / n_out
    width = max(scale, 1.0)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    dist = np.abs(centres[:, None] - np.arange(n_in, dtype=np.float64)[None, :]) / width
    w = np.maximum(0.0, 1.0 - dist)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_temporal_table(table: mx.array, num_frames: int) -> mx.array:
    """(T0, D) -> (T, D)."""
    if table.shape[0] == num_frames:
        return table
    return mx.array(resize_weights(table.shape[0], num_frames)) @ table


def resize_spatial_table(table: mx.array, grid: tuple[int, int], new_grid: int) -> mx.array:
    """(Gh*Gw, D) row-major table -> (G*G, D), resized separably (rows, then columns)."""
    gh, gw = grid
    if (gh, gw) == (new_grid, new_grid):
        return table
    d = table.shape[-1]
    rows = mx.array(resize_weights(gh, new_grid))  # (G, Gh)
    cols = mx.array(resize_weights(gw, new_grid))  # (G, Gw)
    t = table.reshape(gh, gw * d)
    t = (rows @ t).reshape(new_grid, gw, d)  # (G, Gw, D)
    t = mx.einsum("jb,ibd->ijd", cols, t)  # (G, G, D)
    return t.reshape(new_grid * new_grid, d)


@lru_cache(maxsize=16)
def sinusoid_table(length: int, dim: int) -> np.ndarray:
    """Fixed text position table: [sin(p*r_k) | cos(p*r_k)], r_k geometric from 1 to 1e-4."""
    half = dim // 2
    inv_timescales = np.exp(-np.arange(half, dtype=np.float64) * math.log(1e4) / max(half - 1, 1))
    angles = np.arange(length, dtype=np.float64)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Blocks


# Budget for one chunk of attention logits (B*h*queries*S float32): the 4096-token auxiliary
# attention would otherwise hold 12*4096*4096*4 bytes = 805 MB per clip at once. 32 MB chunks
# cost no time against 128 MB ones and cut videoprism-lvt-base's peak from 1.97 to 1.75 GB.
_LOGITS_BYTES = 32 << 20
# Largest logit cap for which the softmax may skip its max subtraction (see _capped_attention).
_MAX_UNSHIFTED_CAP = 50.0


def _unshifted(cap: float, mask: mx.array | None, dtype: mx.Dtype) -> bool:
    """Whether attention takes _capped_attention's unshifted-exp path (float32 only: in half
    precision the original runs its softmax in float32, and e^50 overflows float16)."""
    return mask is None and 0 < cap <= _MAX_UNSHIFTED_CAP and dtype == mx.float32


def _capped_attention(q: mx.array, k: mx.array, v: mx.array, cap: float,
                      mask: mx.array | None) -> mx.array:
    """softmax(cap * tanh(q.k^T / cap) masked) @ v for q (B, h, Q, dh), k and v (B, h, S, dh).

    q must already carry 1/sqrt(dh), and also 1/cap on the unmasked capped path. There the
    capped logits lie in [-cap, cap], so for cap <= 50 exp() of them is finite and normal in
    float32 (e^50 = 5e21; times 4096 keys, 2e25, is far below the float32 maximum): the softmax
    needs no max subtraction, and its normalisation is applied to the (Q, dh) output instead
    of the (Q, S) probabilities. Masked (or uncapped, or half-precision) attention keeps the
    plain softmax, whose fully masked rows must come out uniform as in the original; like the
    original, it caps, masks and normalises the logits in float32.
    """
    if _unshifted(cap, mask, q.dtype):
        return kernels.capped_softmax_matmul(q @ k.swapaxes(-1, -2), v, cap)
    logits = (q @ k.swapaxes(-1, -2)).astype(mx.float32)
    if cap > 0:
        logits = cap * mx.tanh(logits / cap)
    if mask is not None:
        logits = mx.where(mask, logits, _MASKED_LOGIT)
    return mx.softmax(logits, axis=-1, precise=True).astype(v.dtype) @ v


class Attention(nn.Module):
    """Multi-head self-attention with the original's 1/sqrt(d_h) query scaling and logit cap.

    ``qkv`` fuses the original's separate query/key/value projections (one GEMM instead of
    three); ``post`` is the output projection. The block calls the three parts itself, so
    that it can split the position-wise ones over streams.
    """

    def __init__(self, dim: int, num_heads: int, logit_cap: float):
        super().__init__()
        self.num_heads = num_heads
        self.logit_cap = logit_cap
        self.qkv = nn.Linear(dim, 3 * dim)
        self.post = nn.Linear(dim, dim)

    def attend(self, qkv: mx.array, mask: mx.array | None = None,
               streams: tuple[mx.Stream, ...] = ()) -> mx.array:
        """(B, S, 3D) projections -> (B, S, D) attention output, before ``post``.

        Query rows go in chunks that bound the logits' memory, spread over ``streams``.
        """
        b, s, d3 = qkv.shape
        h, dh = self.num_heads, d3 // (3 * self.num_heads)
        qkv = qkv.reshape(b, s, 3, h, dh).transpose(2, 0, 3, 1, 4)  # (3, B, h, S, dh)
        cap = self.logit_cap
        fast = _unshifted(cap, mask, qkv.dtype)
        q = qkv[0] * (1.0 / (math.sqrt(dh) * (cap if fast else 1.0)))
        k, v = qkv[1], qkv[2]
        chunks = max(len(streams), math.ceil(b * h * s * s * 4 / _LOGITS_BYTES))
        outs = []
        for i, (lo, hi) in enumerate(bounds(s, chunks)):
            rows = None if mask is None or mask.shape[2] == 1 else mask[:, :, lo:hi]
            with mx.stream(streams[i % len(streams)]) if streams else contextlib.nullcontext():
                outs.append(_capped_attention(q[:, :, lo:hi], k, v, cap,
                                              mask if rows is None else rows))
        out = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=2)  # (B, h, S, dh)
        return out.transpose(0, 2, 1, 3).reshape(b, s, h * dh)


class TransformerBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + FFN(LN(x)); padded positions get no FFN update."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int, logit_cap: float,
                 activation: Callable[[mx.array], mx.array]):
        super().__init__()
        self.layer_norm = kernels.LayerNorm(dim, eps=LN_EPS)
        self.self_attention = Attention(dim, num_heads, logit_cap)
        self.ff_layer_norm = kernels.LayerNorm(dim, eps=LN_EPS)
        self.ffn_layer1 = nn.Linear(dim, mlp_dim)
        self.ffn_layer2 = nn.Linear(mlp_dim, dim)
        self.activation = activation

    def _ffn(self, x: mx.array, keep: mx.array | None) -> mx.array:
        update = self.ffn_layer2(self.activation(self.ffn_layer1(self.ff_layer_norm(x))))
        return x + (update if keep is None else update * keep)

    def __call__(self, x: mx.array, mask: mx.array | None = None,
                 keep: mx.array | None = None,
                 streams: tuple[mx.Stream, ...] = ()) -> mx.array:
        """x (B, S, D). With ``streams``, the position-wise parts run on slices of S, one per
        stream, and attention on chunks of query rows (for long single sequences)."""
        att = self.self_attention
        qkv = on_streams(lambda r: att.qkv(self.layer_norm(r)), (x,), streams, axis=1)
        o = att.attend(qkv, mask, streams)
        x = on_streams(lambda r, o_: r + att.post(o_), (x, o), streams, axis=1)
        return on_streams(self._ffn, (x, keep), streams, axis=1)


class StackedTransformer(nn.Module):
    def __init__(self, num_layers: int, dim: int, mlp_dim: int, num_heads: int,
                 logit_cap: float, activation: Callable[[mx.array], mx.array]):
        super().__init__()
        self.layers = [TransformerBlock(dim, mlp_dim, num_heads, logit_cap, activation)
                       for _ in range(num_layers)]

    def __call__(self, x: mx.array, paddings: mx.array | None = None,
                 causal: bool = False, lanes: int = 1) -> mx.array:
        """x (B, S, D); paddings (B, S) with 1 = padded (keys masked, no FFN update).

        ``lanes`` > 1 splits the work over that many CPU streams: whole sequences when B is
        large enough, else positions and query rows within each layer.
        """
        streams = thread_streams(lanes)
        if x.shape[0] >= len(streams):
            return on_streams(lambda x_, p_: self._run(x_, p_, causal), (x, paddings),
                               streams, axis=0)
        return self._run(x, paddings, causal, streams)

    def _run(self, x: mx.array, paddings: mx.array | None, causal: bool,
             streams: tuple[mx.Stream, ...] = ()) -> mx.array:
        mask, keep = _attention_mask(x.shape[1], paddings, causal, x.dtype)
        for layer in self.layers:
            x = layer(x, mask, keep, streams)
        return x


def _attention_mask(s: int, paddings: mx.array | None, causal: bool,
                    dtype: mx.Dtype = mx.float32) -> tuple[mx.array | None, mx.array | None]:
    """Boolean (B|1, 1, S, S) mask (True = attend) and the (B, S, 1) FFN keep factor in
    ``dtype`` (the activations', so that it does not promote them to float32)."""
    mask = mx.tril(mx.ones((s, s), dtype=mx.bool_))[None, None] if causal else None
    if paddings is None:
        return mask, None
    valid = paddings < 0.5  # (B, S)
    key_mask = valid[:, None, None, :]
    if causal:
        # The original masks padded query rows too in the causal case (they become uniform).
        mask = mask & key_mask & valid[:, None, :, None]
    else:
        mask = key_mask
    return mask, (1.0 - paddings)[..., None].astype(dtype)


# --------------------------------------------------------------------------------------------
# Video encoder


@dataclass
class EncoderOutput:
    tokens: mx.array  # (B, T*N, D): the model output
    spatial_features: mx.array  # (B, T*N, D): after spatial_ln, frame-major


class FactorizedEncoder(nn.Module):
    """Factorised space-then-time ViT video encoder (the video-only VideoPrism models)."""

    def __init__(self, config: VideoPrismConfig):
        super().__init__()
        c = config
        self.config = c
        d = c.model_dim
        self.patch_projection = nn.Linear(c.patch_size * c.patch_size * 3, d)
        self.spatial_pos_emb = mx.zeros((c.pos_emb_shape[1] * c.pos_emb_shape[2], d))
        self.temporal_pos_emb = mx.zeros((c.pos_emb_shape[0], d))
        gelu = kernels.gelu  # exact (erf) GELU, as in the original
        self.spatial_encoder = StackedTransformer(c.num_spatial_layers, d, c.mlp_dim, c.num_heads,
                                                  c.atten_logit_cap, gelu)
        self.spatial_ln = kernels.LayerNorm(d, eps=LN_EPS)
        self.temporal_encoder = StackedTransformer(c.num_temporal_layers, d, c.mlp_dim,
                                                   c.num_heads, c.atten_logit_cap, gelu)
        self.temporal_ln = kernels.LayerNorm(d, eps=LN_EPS)
        # CPU streams to split frames and sequences over; set it to 1 to run on one stream.
        self.lanes = cpu_lanes()

    @property
    def dtype(self) -> mx.Dtype:
        """Activation dtype: float32, or the half type factory.load_model cast the weights to
        (quantized models keep float32 activations and positional tables)."""
        return self.spatial_pos_emb.dtype

    def check_video(self, video: mx.array) -> None:
        """Raises ValueError unless video is (B, T, S, S, 3) with S a multiple of the patch size."""
        p = self.config.patch_size
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(f"video must have shape (B, T, H, W, 3), got {tuple(video.shape)}")
        _, t, hh, ww, _ = video.shape
        if t < 1 or hh != ww or hh < p or hh % p:
            raise ValueError(
                f"video frames must be square with a side that is a positive multiple of "
                f"{p} (e.g. {self.config.image_size}), and T >= 1; got shape {tuple(video.shape)}"
            )

    def __call__(self, video, frame_paddings=None, lanes: int | None = None) -> EncoderOutput:
        """video (B, T, H, W, 3) float in [0, 1]; frame_paddings (B, T), 1 = padded frame;
        lanes: CPU streams to use (None: ``self.lanes``)."""
        x = self.encode_frames(video, frame_paddings, lanes)  # (B, T, N, D)
        b, t, n, d = x.shape
        return EncoderOutput(tokens=self.encode_time(x, frame_paddings, lanes),
                             spatial_features=x.reshape(b, t * n, d))

    def encode_frames(self, video, frame_paddings=None, lanes: int | None = None) -> mx.array:
        """The spatial half: (B, T, H, W, 3) -> (B, T, N, D) features after ``spatial_ln``.

        Each frame goes through it on its own (with its own padding flag), so a frame's
        features do not depend on the frames around it: windows that share a frame can share
        its features (:mod:`fiftyone_videoprism.core.windows`).
        """
        lanes = self.lanes if lanes is None else lanes
        video = _as_array(video, self.dtype)
        self.check_video(video)
        b, t, s, _, _ = video.shape
        p = self.config.patch_size
        g = s // p
        n = g * g

        # Patches are row-major over the grid, each flattened as (row in patch, col, channel).
        x = video.reshape(b * t, g, p, g, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b * t, n, -1)
        x = self.patch_projection(x)
        # Resized tables come out float32 (the resize weights are); cast so x keeps its dtype.
        x = x + resize_spatial_table(self.spatial_pos_emb, self.config.pos_emb_shape[1:],
                                     g).astype(x.dtype)
        spatial_pad = None
        if frame_paddings is not None:
            frame_pad = _as_array(frame_paddings, mx.float32)
            spatial_pad = mx.broadcast_to(frame_pad.reshape(b * t, 1), (b * t, n))
        x = self.spatial_ln(self.spatial_encoder(x, spatial_pad, lanes=lanes))  # (B*T, N, D)
        return x.reshape(b, t, n, -1)

    def encode_time(self, features: mx.array, frame_paddings=None,
                    lanes: int | None = None) -> mx.array:
        """The temporal half: (B, T, N, D) spatial features -> tokens (B, T*N, D); the
        temporal position table is resized to T here."""
        lanes = self.lanes if lanes is None else lanes
        b, t, n, d = features.shape
        x = features.transpose(0, 2, 1, 3).reshape(b * n, t, d)
        x = x + resize_temporal_table(self.temporal_pos_emb, t).astype(x.dtype)
        temporal_pad = None
        if frame_paddings is not None:
            frame_pad = _as_array(frame_paddings, mx.float32)
            temporal_pad = mx.broadcast_to(frame_pad[:, None, :], (b, n, t)).reshape(b * n, t)
        x = self.temporal_ln(self.temporal_encoder(x, temporal_pad, lanes=lanes))  # (B*N, T, D)
        return x.reshape(b, n, t, d).transpose(0, 2, 1, 3).reshape(b, t * n, d)

    def encode_video(self, video, *, frame_paddings=None) -> mx.array:
        """Tokens (B, T*N, D), frame-major (index t*N + row*G + col); the pooled embedding is
        :func:`fiftyone_videoprism.core.embedding.embed_videos`."""
        return self(video, frame_paddings).tokens

    def encode_windows(self, frames, window: int, stride: int, frame_paddings=None, *,
                       tokens: bool = False):
        """Pooled unit-norm embeddings (W, D) of the windows of ``window`` frames every
        ``stride`` frames (the last one ends at the last frame), each equal to
        ``pool_tokens(encode_video(window frames))``; with ``tokens`` also their tokens
        (W, window*N, D). Every frame's spatial stack runs once. See
        :func:`fiftyone_videoprism.core.windows.encode_windows`."""
        return windows.encode_windows(self, frames, window, stride, frame_paddings,
                                      tokens=tokens)


# --------------------------------------------------------------------------------------------
# Video-text (LvT) model


class AttentionPooler(nn.Module):
    """One learned query attending over all tokens (the original's AttenTokenPoolingLayer with
    num_queries=1): PerDimScale, no cap, LN. Inner width ``hidden_dim``: 4*D in the LvT models,
    D in the original classifier's head."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int | None = None):
        super().__init__()
        inner = 4 * dim if hidden_dim is None else hidden_dim
        self.num_heads = num_heads
        self.pooling_attention_query = mx.zeros((1, dim))
        self.query = nn.Linear(dim, inner)
        self.key = nn.Linear(dim, inner)
        self.value = nn.Linear(dim, inner)
        self.per_dim_scale = mx.zeros((inner // num_heads,))
        self.post = nn.Linear(inner, dim)
        self.layer_norm = kernels.LayerNorm(dim, eps=LN_EPS)

    def __call__(self, x: mx.array, lanes: int = 1) -> mx.array:
        """x (B, S, D) -> (B, D); the key/value projections split S over ``lanes`` streams."""
        b, s, _ = x.shape
        h = self.num_heads
        dh = self.per_dim_scale.shape[0]
        scale = (_R_SOFTPLUS_0 / math.sqrt(dh)) * nn.softplus(self.per_dim_scale)
        q = self.query(self.pooling_attention_query).reshape(1, h, 1, dh) * scale
        streams = thread_streams(lanes)
        k = on_streams(self.key, (x,), streams, axis=1).reshape(b, s, h, dh).transpose(0, 2, 1, 3)
        v = on_streams(self.value, (x,), streams, axis=1).reshape(b, s, h, dh).transpose(0, 2, 1, 3)
        probs = mx.softmax(q @ k.swapaxes(-1, -2), axis=-1, precise=True)  # (B, h, 1, S)
        out = (probs @ v).transpose(0, 2, 1, 3).reshape(b, h * dh)
        return self.layer_norm(self.post(out))


class TextEncoder(nn.Module):
    """Causal CoCa-style text tower: sqrt(D)-scaled tokens + sinusoids, CLS appended last."""

    def __init__(self, config: VideoPrismConfig):
        super().__init__()
        d = config.model_dim
        self.dim = d
        self.token_emb = nn.Embedding(config.vocabulary_size, d)
        self.cls_emb = mx.zeros((1, 1, d))
        self.unimodal_transformer = StackedTransformer(
            config.num_unimodal_layers, d, 4 * d, config.num_heads, config.atten_logit_cap, nn.relu)
        self.unimodal_ln = kernels.LayerNorm(d, eps=LN_EPS)
        self.causal = config.enable_causal_atten

    def __call__(self, ids: mx.array, paddings: mx.array, lanes: int = 1) -> mx.array:
        """ids (B, L) int, paddings (B, L) 1 = pad -> CLS features (B, D), not normalised."""
        b, length = ids.shape
        scale = math.sqrt(self.dim)
        x = self.token_emb(ids) * scale
        x = x + mx.array(sinusoid_table(length, self.dim)).astype(x.dtype)
        cls = mx.broadcast_to(self.cls_emb * scale, (b, 1, self.dim))
        x = mx.concatenate([x, cls], axis=1)
        paddings = mx.concatenate([paddings, mx.zeros((b, 1), dtype=paddings.dtype)], axis=1)
        x = self.unimodal_transformer(x, paddings, causal=self.causal, lanes=lanes)
        return self.unimodal_ln(x)[:, -1]


@dataclass
class VideoCLIPOutput:
    spatial_features: mx.array  # (B, T*N, D)
    spatiotemporal_features: mx.array  # (B, T*N, D): vision encoder output
    video_embeddings: mx.array  # (B, D), not normalised
    frame_embeddings: mx.array | None  # (B, T, D), not normalised


class FactorizedVideoCLIP(nn.Module):
    """VideoPrism video-text (LvT) model: video encoder + auxiliary layers + pooler, text tower."""

    def __init__(self, config: VideoPrismConfig):
        super().__init__()
        if not config.is_lvt:
            raise ValueError("FactorizedVideoCLIP needs an LvT config (vocabulary_size etc.)")
        c = config
        self.config = c
        self.vision_encoder = FactorizedEncoder(c)
        self.auxiliary_encoder = StackedTransformer(c.num_auxiliary_layers, c.model_dim, c.mlp_dim,
                                                    c.num_heads, c.atten_logit_cap, kernels.gelu)
        self.contrastive_vision_pooler = AttentionPooler(c.model_dim, c.num_heads)
        self.text_encoder = TextEncoder(c)
        # CPU streams to split work over; set it to 1 to run on one stream.
        self.lanes = cpu_lanes()

    def __call__(self, video, frame_paddings=None, frame_embeddings: bool = False
                 ) -> VideoCLIPOutput:
        enc = self.vision_encoder(video, frame_paddings, lanes=self.lanes)
        # As in the original, frame paddings do not reach the auxiliary layers or the pooler.
        x = self.auxiliary_encoder(enc.tokens, lanes=self.lanes)
        per_frame = None
        if frame_embeddings:
            b, tn, d = x.shape
            t = _as_array(video).shape[1]
            per_frame = self.contrastive_vision_pooler(x.reshape(b * t, tn // t, d), self.lanes)
            per_frame = per_frame.reshape(b, t, d)
        return VideoCLIPOutput(
            spatial_features=enc.spatial_features,
            spatiotemporal_features=enc.tokens,
            video_embeddings=self.contrastive_vision_pooler(x, self.lanes),
            frame_embeddings=per_frame,
        )

    def encode_video(self, video, *, frame_paddings=None, normalize: bool = True) -> mx.array:
        """Video embeddings (B, D), unit-norm when normalize."""
        emb = self(video, frame_paddings).video_embeddings
        return l2_normalize(emb) if normalize else emb

    def embed_tokens(self, tokens: mx.array, normalize: bool = True) -> mx.array:
        """Vision tokens (B, T*N, D) -> video embeddings (B, D): the auxiliary layers and the
        pooler, as in :meth:`__call__`."""
        x = self.auxiliary_encoder(tokens, lanes=self.lanes)
        emb = self.contrastive_vision_pooler(x, self.lanes)
        return l2_normalize(emb) if normalize else emb

    def encode_windows(self, frames, window: int, stride: int, frame_paddings=None, *,
                       tokens: bool = False):
        """Unit-norm embeddings (W, D) of the windows of ``window`` frames every ``stride``
        frames (the last one ends at the last frame), each equal to ``encode_video`` of that
        window's frames; with ``tokens`` also their vision tokens. Every frame's spatial stack
        runs once. See :func:`fiftyone_videoprism.core.windows.encode_windows`."""
        return windows.encode_windows(self, frames, window, stride, frame_paddings,
                                      tokens=tokens)

    def encode_text(self, ids, paddings, normalize: bool = True) -> mx.array:
        """Text embeddings (B, D) from ids (B, L) and paddings (B, L) (1 = pad)."""
        ids = _as_array(ids, mx.int32)
        paddings = _as_array(paddings, mx.float32)
        if ids.ndim != 2 or ids.shape != paddings.shape:
            raise ValueError(f"ids and paddings must both be (B, L); got {tuple(ids.shape)} "
                             f"and {tuple(paddings.shape)}")
        # Trailing columns that are padding in every row cannot change the CLS output
        # (padded keys are masked and the CLS has no position): skip computing them.
        real = np.asarray(paddings < 0.5)
        length = int(real.any(axis=0).nonzero()[0].max()) + 1 if real.any() else 1
        emb = self.text_encoder(ids[:, :length], paddings[:, :length], self.lanes)
        return l2_normalize(emb) if normalize else emb


def build_model(config: VideoPrismConfig) -> FactorizedEncoder | FactorizedVideoCLIP:
    """An uninitialised model of the config's class (weights come from checkpoint.py)."""
    return FactorizedVideoCLIP(config) if config.is_lvt else FactorizedEncoder(config)
