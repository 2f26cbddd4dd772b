"""A plain PyTorch eager VideoPrism (video encoder, LvT video and text towers), the peer the
MLX port is timed against. Written from VIDEOPRISM.md §3-5; it reads the released Flax-layout
arrays directly, so both implementations run the very same weights. Native input size only
(16x288 for the base models): positional tables are used as stored, never resized.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LN_EPS = 1e-6


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class _Stack:
    """One scanned x_layers stack: per-layer weights as (out, in) Linear matrices."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str, heads: int):
        get = lambda leaf: arrays[f"{prefix}/x_layers/{leaf}"]  # noqa: E731
        self.heads = heads
        self.layers = []
        for i in range(get("layer_norm/scale").shape[0]):
            w = {p: get(f"self_attention/{p}/w")[i] for p in ("query", "key", "value", "post")}
            d = w["query"].shape[0]
            self.layers.append({
                "ln1": (_t(get("layer_norm/scale")[i] + 1), _t(get("layer_norm/bias")[i])),
                # (D, h, dh) -> (h*dh, D) for q/k/v, stacked as one (3*D, D) projection.
                "qkv_w": _t(np.concatenate([w[p].reshape(d, -1).T for p in ("query", "key", "value")])),
                "qkv_b": _t(np.concatenate([get(f"self_attention/{p}/b")[i].reshape(-1)
                                            for p in ("query", "key", "value")])),
                "post_w": _t(w["post"].reshape(d, -1)),  # indexed output-dim first already
                "post_b": _t(get("self_attention/post/b")[i]),
                "ln2": (_t(get("ff_layer/layer_norm/scale")[i] + 1),
                        _t(get("ff_layer/layer_norm/bias")[i])),
                "w1": _t(get("ff_layer/ffn_layer1/linear/kernel")[i].T),
                "b1": _t(get("ff_layer/ffn_layer1/linear/bias")[i]),
                "w2": _t(get("ff_layer/ffn_layer2/linear/kernel")[i].T),
                "b2": _t(get("ff_layer/ffn_layer2/linear/bias")[i]),
            })

    def __call__(self, x: torch.Tensor, act, cap: float = 50.0,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, d = x.shape
        h = self.heads
        for p in self.layers:
            a = F.layer_norm(x, (d,), *p["ln1"], eps=LN_EPS)
            qkv = F.linear(a, p["qkv_w"], p["qkv_b"]).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
            logits = (qkv[0] / math.sqrt(d // h)) @ qkv[1].transpose(-1, -2)
            logits = cap * torch.tanh(logits / cap)
            if mask is not None:
                logits = logits.masked_fill(~mask, -0.7 * torch.finfo(torch.float32).max)
            o = (torch.softmax(logits, dim=-1) @ qkv[2]).transpose(1, 2).reshape(b, s, d)
            x = x + F.linear(o, p["post_w"], p["post_b"])
            f = F.layer_norm(x, (d,), *p["ln2"], eps=LN_EPS)
            x = x + F.linear(act(F.linear(f, p["w1"], p["b1"])), p["w2"], p["b2"])
        return x


class TorchVideoPrism:
    """Eager reference: ``encode_video`` (tokens, or LvT unit embeddings) and ``encode_text``."""

    def __init__(self, arrays: dict[str, np.ndarray], config):
        c = self.config = config
        v = "params/vision_encoder/" if c.is_lvt else "params/"
        self.patch_w = _t(arrays[f"{v}patch_projection/linear/kernel"].T)
        self.patch_b = _t(arrays[f"{v}patch_projection/linear/bias"])
        self.spatial_pos = _t(arrays[f"{v}spatial_pos_emb/emb_var"])
        self.temporal_pos = _t(arrays[f"{v}temporal_pos_emb/emb_var"])
        self.spatial = _Stack(arrays, f"{v}spatial_encoder/transformers_stack", c.num_heads)
        self.temporal = _Stack(arrays, f"{v}temporal_encoder/transformers_stack", c.num_heads)
        self.lns = {n: (_t(arrays[f"{v}{n}/scale"] + 1), _t(arrays[f"{v}{n}/bias"]))
                    for n in ("spatial_ln", "temporal_ln")}
        if not c.is_lvt:
            return
        self.aux = _Stack(arrays, "params/auxiliary_encoder/transformers_stack", c.num_heads)
        pool = "params/contrastive_vision_pooler/"
        att = pool + "pooling_attention/"
        d = c.model_dim
        self.pool_query = _t(arrays[f"{pool}pooling_attention_query"])
        self.pool_w = {p: _t(arrays[f"{att}{p}/w"].reshape(d, -1).T) for p in ("query", "key", "value")}
        self.pool_b = {p: _t(arrays[f"{att}{p}/b"].reshape(-1)) for p in ("query", "key", "value")}
        self.pool_scale = _t(arrays[f"{att}per_dim_scale/per_dim_scale"])
        self.pool_post = (_t(arrays[f"{att}post/w"].reshape(d, -1)), _t(arrays[f"{att}post/b"]))
        self.pool_ln = (_t(arrays[f"{pool}pooling_attention_layer_norm/scale"] + 1),
                        _t(arrays[f"{pool}pooling_attention_layer_norm/bias"]))
        text = "params/text_encoder/"
        self.token_emb = _t(arrays[f"{text}token_emb/emb_var"])
        self.cls_emb = _t(arrays[f"{text}cls_emb"])
        self.text = _Stack(arrays, f"{text}unimodal_transformer", c.num_heads)
        self.text_ln = (_t(arrays[f"{text}unimodal_ln/scale"] + 1), _t(arrays[f"{text}unimodal_ln/bias"]))

    @torch.inference_mode()
    def encode_video(self, video: np.ndarray) -> np.ndarray:
        """video (B, T, S, S, 3) in [0, 1] -> tokens (B, T*N, D), or (B, D) unit-norm for LvT."""
        c = self.config
        x = torch.from_numpy(video)
        b, t, s, _, _ = x.shape
        p, d = c.patch_size, c.model_dim
        g = s // p
        n = g * g
        if (t, g, g) != tuple(c.pos_emb_shape):
            raise ValueError(f"the torch reference runs only the native size {c.pos_emb_shape}")
        x = x.reshape(b * t, g, p, g, p, 3).permute(0, 1, 3, 2, 4, 5).reshape(b * t, n, -1)
        x = F.linear(x, self.patch_w, self.patch_b) + self.spatial_pos
        x = F.layer_norm(self.spatial(x, F.gelu), (d,), *self.lns["spatial_ln"], eps=LN_EPS)
        x = x.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d) + self.temporal_pos
        x = F.layer_norm(self.temporal(x, F.gelu), (d,), *self.lns["temporal_ln"], eps=LN_EPS)
        x = x.reshape(b, n, t, d).transpose(1, 2).reshape(b, t * n, d)
        if not c.is_lvt:
            return x.numpy()
        x = self.aux(x, F.gelu)
        h = c.num_heads
        dh = self.pool_scale.shape[0]
        q = F.linear(self.pool_query, self.pool_w["query"], self.pool_b["query"]).view(1, h, 1, dh)
        q = q * (1.442695041 / math.sqrt(dh)) * F.softplus(self.pool_scale)
        k = F.linear(x, self.pool_w["key"], self.pool_b["key"]).view(b, -1, h, dh).transpose(1, 2)
        v = F.linear(x, self.pool_w["value"], self.pool_b["value"]).view(b, -1, h, dh).transpose(1, 2)
        o = (torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v).transpose(1, 2).reshape(b, h * dh)
        y = F.layer_norm(F.linear(o, *self.pool_post), (d,), *self.pool_ln, eps=LN_EPS)
        return F.normalize(y, dim=-1, eps=1e-6).numpy()

    @torch.inference_mode()
    def encode_text(self, ids: np.ndarray, paddings: np.ndarray) -> np.ndarray:
        """ids, paddings (B, L) -> (B, D) unit-norm; all L positions run (no truncation)."""
        d = self.config.model_dim
        b, length = ids.shape
        half = d // 2
        r = torch.exp(-torch.arange(half, dtype=torch.float64) * math.log(1e4) / (half - 1))
        ang = torch.arange(length, dtype=torch.float64)[:, None] * r[None]
        pos = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).float()
        x = self.token_emb[torch.from_numpy(ids).long()] * math.sqrt(d) + pos
        x = torch.cat([x, (self.cls_emb * math.sqrt(d)).expand(b, 1, d)], dim=1)
        valid = torch.cat([torch.from_numpy(paddings) < 0.5, torch.ones(b, 1, dtype=torch.bool)], 1)
        causal = torch.tril(torch.ones(length + 1, length + 1, dtype=torch.bool))
        mask = causal[None, None] & valid[:, None, None, :] & valid[:, None, :, None]
        x = self.text(x, torch.relu, mask=mask)
        y = F.layer_norm(x, (d,), *self.text_ln, eps=LN_EPS)[:, -1]
        return F.normalize(y, dim=-1, eps=1e-6).numpy()
