"""Child process of ``python -m bench``: the implementations a user would pick instead of MLX.

    python -m bench.peers keras-jax MODEL --repeats N --out OUTPUTS.npz
    python -m bench.peers transformers MODEL --repeats N --out OUTPUTS.npz

- ``keras-jax``: keras-hub's ``VideoPrismBackbone`` on Keras 3's JAX backend, so XLA compiles
  the whole forward pass (the stand-in for the original Flax model under ``jax.jit``, which
  is not on the package registry);
- ``transformers``: transformers' ``VideoPrismVisionModel`` (video-only models) or
  ``VideoPrismVideoModel`` (the video tower of ``VideoPrismClipModel``), eager PyTorch, with
  the library's default configuration (``gelu_python``, eager attention: the path with the
  logit cap).

Both get the random released-layout weights of :func:`bench.weights.random_flax_arrays`,
converted here, and the clip of :func:`bench.common.clip_input`; the parent checks their
output against MLX's. Prints one JSON line (seconds per clip); writes the output (tokens
(1, T*N, D), or the unit video embedding (1, D) for LvT models) to ``--out``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # A peer's process runs its own libraries only: MLX's BLAS set-up stays off (before the
    # package loads).
    os.environ["FIFTYONE_VIDEOPRISM_BLAS"] = "off"

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import fiftyone_videoprism as fvp  # noqa: E402
from bench.common import CORES, clip_input, median_seconds  # noqa: E402
from bench.weights import random_flax_arrays  # noqa: E402


def _stack(arrays: dict[str, np.ndarray], prefix: str) -> list[dict[str, np.ndarray]]:
    """One scanned ``x_layers`` stack split into per-layer dicts keyed by leaf path."""
    leaves = {k[len(prefix) + 10:]: v for k, v in arrays.items()
              if k.startswith(prefix + "/x_layers/")}
    layers = next(iter(leaves.values())).shape[0]
    return [{k: v[i] for k, v in leaves.items()} for i in range(layers)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# keras-hub on JAX


def _keras_ln(layer, scale: np.ndarray, bias: np.ndarray) -> None:
    layer.gamma.assign(scale + 1)  # the released files store gamma - 1
    layer.beta.assign(bias)


def _keras_attention(att, w: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    # EinsumDense "btd,dnh->btnh" kernels are (D, h, dh), the released layout itself; the
    # output "btnh,nhd->btd" kernel is (h, dh, D), while the released post is (D, h, dh).
    for name, dense in (("query", att.query_dense), ("key", att.key_dense),
                        ("value", att.value_dense)):
        dense.kernel.assign(w[name])
        dense.bias.assign(b[name])
    att.output_dense.kernel.assign(w["post"].transpose(1, 2, 0))
    att.output_dense.bias.assign(b["post"])


def _keras_encoder(encoder, arrays: dict[str, np.ndarray], prefix: str) -> None:
    for block, p in zip(encoder.encoder_layers, _stack(arrays, prefix), strict=True):
        _keras_ln(block.layer_norm_1, p["layer_norm/scale"], p["layer_norm/bias"])
        _keras_attention(block.mha, {n: p[f"self_attention/{n}/w"]
                                     for n in ("query", "key", "value", "post")},
                         {n: p[f"self_attention/{n}/b"] for n in ("query", "key", "value", "post")})
        _keras_ln(block.layer_norm_2, p["ff_layer/layer_norm/scale"], p["ff_layer/layer_norm/bias"])
        for n, dense in ((1, block.mlp.dense_1), (2, block.mlp.dense_2)):
            dense.kernel.assign(p[f"ff_layer/ffn_layer{n}/linear/kernel"])
            dense.bias.assign(p[f"ff_layer/ffn_layer{n}/linear/bias"])


def keras_jax(config, arrays: dict[str, np.ndarray]):
    """keras-hub's VideoPrismBackbone at the config's size with the released weights; returns
    (run(video) -> output, library version)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import keras_hub

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not JAX: set KERAS_BACKEND=jax")
    c = config
    lvt = c.is_lvt
    backbone = keras_hub.models.VideoPrismBackbone(
        num_frames=c.num_frames, patch_size=c.patch_size, hidden_dim=c.model_dim,
        intermediate_dim=c.mlp_dim, num_heads=c.num_heads,
        num_spatial_layers=c.num_spatial_layers, num_temporal_layers=c.num_temporal_layers,
        num_auxiliary_layers=c.num_auxiliary_layers or 0,
        vocabulary_size=c.vocabulary_size or 0,
        num_text_layers=c.num_unimodal_layers if lvt else 0,
        attention_logit_soft_cap=c.atten_logit_cap,
        image_shape=(c.image_size, c.image_size, 3), dtype="float32")
    v = "params/vision_encoder/" if lvt else "params/"
    emb = backbone.spatial_embedding
    emb.patch_embedding.kernel.assign(arrays[f"{v}patch_projection/linear/kernel"])
    emb.patch_embedding.bias.assign(arrays[f"{v}patch_projection/linear/bias"])
    emb.position_embedding.embeddings.assign(arrays[f"{v}spatial_pos_emb/emb_var"])
    backbone.temporal_embedding.embedding.embeddings.assign(arrays[f"{v}temporal_pos_emb/emb_var"])
    for name, encoder in (("spatial", backbone.spatial_encoder),
                          ("temporal", backbone.temporal_encoder)):
        _keras_encoder(encoder, arrays, f"{v}{name}_encoder/transformers_stack")
        _keras_ln(encoder.layer_norm, arrays[f"{v}{name}_ln/scale"], arrays[f"{v}{name}_ln/bias"])
    if lvt:
        _keras_encoder(backbone.auxiliary_encoder, arrays,
                       "params/auxiliary_encoder/transformers_stack")
        pool, att = "params/contrastive_vision_pooler/", "params/contrastive_vision_pooler/pooling_attention/"
        pooler = backbone.video_pooler
        pooler.pooling_attention_query.assign(arrays[f"{pool}pooling_attention_query"])
        _keras_attention(pooler.pooling_attention,
                         {n: arrays[f"{att}{n}/w"] for n in ("query", "key", "value", "post")},
                         {n: arrays[f"{att}{n}/b"] for n in ("query", "key", "value", "post")})
        pooler.pooling_attention.per_dim_scale_layer.per_dim_scale.assign(
            arrays[f"{att}per_dim_scale/per_dim_scale"])
        _keras_ln(pooler.layer_norm, arrays[f"{pool}pooling_attention_layer_norm/scale"],
                  arrays[f"{pool}pooling_attention_layer_norm/bias"])
        # The video tower alone, as its own (XLA-compiled) functional model.
        pixels = keras.Input((c.num_frames, c.image_size, c.image_size, 3))
        model = keras.Model(pixels, backbone.get_vision_embeddings(pixels))
    else:
        model = backbone

    def run(video: np.ndarray) -> np.ndarray:
        out = np.asarray(model.predict_on_batch(video))
        return _unit(out) if lvt else out.reshape(out.shape[0], -1, c.model_dim)

    return run, f"keras-hub {keras_hub.__version__}, keras {keras.__version__}"


# --------------------------------------------------------------------------------------------
# transformers


def _hf_layers(arrays: dict[str, np.ndarray], prefix: str, dst: str, torch) -> dict:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    out = {}
    for i, p in enumerate(_stack(arrays, prefix)):
        d = f"{dst}.{i}."
        # transformers' VideoPrismLayerNorm adds the 1 itself, as the released files expect.
        out[d + "layernorm_before.weight"] = t(p["layer_norm/scale"])
        out[d + "layernorm_before.bias"] = t(p["layer_norm/bias"])
        out[d + "layernorm_after.weight"] = t(p["ff_layer/layer_norm/scale"])
        out[d + "layernorm_after.bias"] = t(p["ff_layer/layer_norm/bias"])
        for src, name in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            w = p[f"self_attention/{src}/w"]
            out[d + f"attention.{name}.weight"] = t(w.reshape(w.shape[0], -1).T)
            out[d + f"attention.{name}.bias"] = t(p[f"self_attention/{src}/b"].reshape(-1))
        post = p["self_attention/post/w"]
        out[d + "attention.o_proj.weight"] = t(post.reshape(post.shape[0], -1))
        out[d + "attention.o_proj.bias"] = t(p["self_attention/post/b"])
        for n in (1, 2):
            out[d + f"mlp.fc{n}.weight"] = t(p[f"ff_layer/ffn_layer{n}/linear/kernel"].T)
            out[d + f"mlp.fc{n}.bias"] = t(p[f"ff_layer/ffn_layer{n}/linear/bias"])
    return out


def transformers_eager(config, arrays: dict[str, np.ndarray]):
    """transformers' VideoPrism video model with the released weights; returns
    (run(video) -> output, library version)."""
    import torch
    import transformers
    from transformers import VideoPrismVideoModel, VideoPrismVisionConfig, VideoPrismVisionModel

    torch.set_num_threads(CORES)
    c = config
    lvt = c.is_lvt
    hf = VideoPrismVisionConfig(
        image_size=c.image_size, num_frames=c.num_frames, tubelet_size=[1, c.patch_size, c.patch_size],
        hidden_size=c.model_dim, num_attention_heads=c.num_heads, intermediate_size=c.mlp_dim,
        num_spatial_layers=c.num_spatial_layers, num_temporal_layers=c.num_temporal_layers,
        num_auxiliary_layers=c.num_auxiliary_layers or 0, attn_logit_softcapping=c.atten_logit_cap)
    hf._attn_implementation = "eager"  # the attention that applies the logit cap
    model = (VideoPrismVideoModel if lvt else VideoPrismVisionModel)(hf).eval()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    v = "params/vision_encoder/" if lvt else "params/"
    m = "vision_model." if lvt else ""
    p, d = c.patch_size, c.model_dim
    state = {
        # Patches flatten as (row, col, channel); Conv3d weights are (D, C, 1, P, P).
        f"{m}spatial_embeddings.patch_embeddings.projection.weight": t(
            arrays[f"{v}patch_projection/linear/kernel"].reshape(p, p, 3, d)
            .transpose(3, 2, 0, 1)[:, :, None]),
        f"{m}spatial_embeddings.patch_embeddings.projection.bias": t(
            arrays[f"{v}patch_projection/linear/bias"]),
        f"{m}spatial_embeddings.position_embeddings": t(arrays[f"{v}spatial_pos_emb/emb_var"][None]),
        f"{m}temporal_embeddings.position_embeddings": t(arrays[f"{v}temporal_pos_emb/emb_var"][None]),
        f"{m}layernorm1.weight": t(arrays[f"{v}spatial_ln/scale"]),
        f"{m}layernorm1.bias": t(arrays[f"{v}spatial_ln/bias"]),
        f"{m}layernorm2.weight": t(arrays[f"{v}temporal_ln/scale"]),
        f"{m}layernorm2.bias": t(arrays[f"{v}temporal_ln/bias"]),
        **_hf_layers(arrays, f"{v}spatial_encoder/transformers_stack", f"{m}spatial_layers", torch),
        **_hf_layers(arrays, f"{v}temporal_encoder/transformers_stack", f"{m}temporal_layers", torch),
    }
    if lvt:
        pool, att = "params/contrastive_vision_pooler/", "params/contrastive_vision_pooler/pooling_attention/"
        state.update(_hf_layers(arrays, "params/auxiliary_encoder/transformers_stack",
                                "auxiliary_layers", torch))
        for src, name in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            state[f"head.{name}.weight"] = t(arrays[f"{att}{src}/w"].reshape(d, -1).T)
            state[f"head.{name}.bias"] = t(arrays[f"{att}{src}/b"].reshape(-1))
        state["head.o_proj.weight"] = t(arrays[f"{att}post/w"].reshape(d, -1))
        state["head.o_proj.bias"] = t(arrays[f"{att}post/b"])
        state["head.per_dim_scale"] = t(arrays[f"{att}per_dim_scale/per_dim_scale"])
        state["head.pooling_attention_query"] = t(arrays[f"{pool}pooling_attention_query"][None])
        state["head_layernorm.weight"] = t(arrays[f"{pool}pooling_attention_layer_norm/scale"])
        state["head_layernorm.bias"] = t(arrays[f"{pool}pooling_attention_layer_norm/bias"])
    model.load_state_dict(state, strict=True)

    @torch.inference_mode()
    def run(video: np.ndarray) -> np.ndarray:
        out = model(pixel_values_videos=torch.from_numpy(video).permute(0, 1, 4, 2, 3))
        return _unit(out.pooler_output.numpy()) if lvt else out.last_hidden_state.numpy()

    return run, f"transformers {transformers.__version__}, torch {torch.__version__}"


PEERS = {"keras-jax": keras_jax, "transformers": transformers_eager}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = fvp.get_config(args.model)
    run, version = PEERS[args.peer](config, random_flax_arrays(config))
    video = clip_input(config)
    seconds, times = median_seconds(lambda: run(video), args.repeats)
    np.savez(args.out, video=run(video))
    print(json.dumps({"threads": CORES, "s_per_clip": seconds, "times": times,
                      "version": version}))


if __name__ == "__main__":
    sys.exit(main())
