"""Released checkpoints (``flax_*_repeated.npz``) -> validated, converted MLX weights.

The released files hold one float32 array per Flax leaf, keyed ``params/<module path>``, with
``nn.scan``-stacked layers under ``.../x_layers/...`` carrying a leading layer axis. Conversion
runs once; the result is cached as ``<source stem>.mlx.safetensors`` beside the source (or in
the user cache when that folder is read-only), keyed by the source's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import mlx.core as mx
import numpy as np

from fiftyone_videoprism.core.configs import VideoPrismConfig, from_original_kwargs
from fiftyone_videoprism.core.env import user_cache_dir

logger = logging.getLogger(__name__)

FORMAT = "fiftyone-videoprism/1"
CONVERTED_SUFFIX = ".mlx.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that is damaged (truncated, bad bytes): fetching it again may help."""


# --------------------------------------------------------------------------------------------
# The layout of the released files


def _stack_shapes(prefix: str, layers: int, d: int, mlp: int, heads: int) -> dict[str, tuple]:
    dh = d // heads
    out = {}
    for ln in ("layer_norm", "ff_layer/layer_norm"):
        out[f"{ln}/scale"] = (layers, d)
        out[f"{ln}/bias"] = (layers, d)
    for proj in ("query", "key", "value", "post"):
        out[f"self_attention/{proj}/w"] = (layers, d, heads, dh)
        out[f"self_attention/{proj}/b"] = (layers, d) if proj == "post" else (layers, heads, dh)
    out["ff_layer/ffn_layer1/linear/kernel"] = (layers, d, mlp)
    out["ff_layer/ffn_layer1/linear/bias"] = (layers, mlp)
    out["ff_layer/ffn_layer2/linear/kernel"] = (layers, mlp, d)
    out["ff_layer/ffn_layer2/linear/bias"] = (layers, d)
    return {f"{prefix}/x_layers/{k}": v for k, v in out.items()}


def flax_shapes(config: VideoPrismConfig) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a released-format checkpoint for this config."""
    c = config
    d, t0, gh, gw = c.model_dim, *c.pos_emb_shape
    v = "params/vision_encoder/" if c.is_lvt else "params/"
    shapes = {
        f"{v}patch_projection/linear/kernel": (c.patch_size * c.patch_size * 3, d),
        f"{v}patch_projection/linear/bias": (d,),
        f"{v}spatial_pos_emb/emb_var": (gh * gw, d),
        f"{v}temporal_pos_emb/emb_var": (t0, d),
        **_stack_shapes(f"{v}spatial_encoder/transformers_stack", c.num_spatial_layers, d,
                        c.mlp_dim, c.num_heads),
        **_stack_shapes(f"{v}temporal_encoder/transformers_stack", c.num_temporal_layers, d,
                        c.mlp_dim, c.num_heads),
    }
    for ln in ("spatial_ln", "temporal_ln"):
        shapes[f"{v}{ln}/scale"] = (d,)
        shapes[f"{v}{ln}/bias"] = (d,)
    if not c.is_lvt:
        return shapes
    text = "params/text_encoder/"
    shapes.update(_stack_shapes("params/auxiliary_encoder/transformers_stack",
                                c.num_auxiliary_layers, d, c.mlp_dim, c.num_heads))
    shapes.update(pooler_shapes("params/contrastive_vision_pooler", d, c.num_heads, 4 * d))
    shapes.update({
        f"{text}cls_emb": (1, 1, d),
        f"{text}token_emb/emb_var": (c.vocabulary_size, d),
        f"{text}unimodal_ln/scale": (d,),
        f"{text}unimodal_ln/bias": (d,),
        **_stack_shapes(f"{text}unimodal_transformer", c.num_unimodal_layers, d, 4 * d,
                        c.num_heads),
    })
    return shapes


def pooler_shapes(prefix: str, d: int, heads: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an AttenTokenPoolingLayer (one query) of width ``d`` and inner width
    ``hidden`` under ``prefix``."""
    dh = hidden // heads
    att = f"{prefix}/pooling_attention/"
    shapes = {
        f"{prefix}/pooling_attention_query": (1, d),
        f"{att}per_dim_scale/per_dim_scale": (dh,),
        f"{att}post/w": (d, heads, dh),
        f"{att}post/b": (d,),
        f"{prefix}/pooling_attention_layer_norm/scale": (d,),
        f"{prefix}/pooling_attention_layer_norm/bias": (d,),
    }
    for proj in ("query", "key", "value"):
        shapes[f"{att}{proj}/w"] = (d, heads, dh)
        shapes[f"{att}{proj}/b"] = (heads, dh)
    return shapes


# --------------------------------------------------------------------------------------------
# Reading and validating


def read_flax_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a released-format ``.npz``; pickled objects are refused."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickle" in str(err).lower():
            raise CheckpointError(
                f"{path}: holds pickled objects; refusing to load it (a released VideoPrism "
                f"checkpoint holds plain float32 arrays only)") from err
        raise CorruptCheckpointError(f"{path}: not a readable .npz checkpoint ({err})") from err
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CorruptCheckpointError(
            f"{path}: not a readable .npz checkpoint ({err}); the file may be truncated or "
            f"corrupted: delete it and download it again") from err


def validate(arrays: dict[str, np.ndarray], config: VideoPrismConfig, source: str) -> None:
    """Raises CheckpointError listing missing, unexpected and mis-shaped keys."""
    check_shapes(arrays, flax_shapes(config), source,
                 f"a {config.original_class} with config {json.dumps(config.to_dict())}")


def check_shapes(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]],
                 source: str, what: str) -> None:
    """Raises CheckpointError listing the keys of ``arrays`` that are missing, unexpected,
    mis-shaped or not float against ``expected``; ``what`` names the model they should fit."""
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    wrong = [f"{k} has shape {tuple(arrays[k].shape)}, expected {expected[k]}"
             for k in sorted(set(expected) & set(arrays)) if tuple(arrays[k].shape) != expected[k]]
    bad_dtype = [f"{k} has dtype {arrays[k].dtype}, expected a float type"
                 for k in sorted(set(expected) & set(arrays))
                 if not np.issubdtype(arrays[k].dtype, np.floating)]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    problems += wrong + bad_dtype
    if problems:
        raise CheckpointError(f"{source} does not fit {what}: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# Flax layout -> MLX layout


def _dense(k: np.ndarray) -> np.ndarray:
    # Flax Dense kernels are (in, out); nn.Linear weights are (out, in).
    return k.T


def _heads_in(w: np.ndarray) -> np.ndarray:
    # q/k/v projections (D, h, dh) -> Linear weight (h*dh, D), hidden index = head*dh + k.
    return w.reshape(w.shape[0], -1).T


def _heads_out(w: np.ndarray) -> np.ndarray:
    # The post projection (D, h, dh) is indexed output-dim first: already (out, in).
    return w.reshape(w.shape[0], -1)


def _ln(scale: np.ndarray) -> np.ndarray:
    # The files store gamma - 1; the original adds 1 at run time.
    return scale + np.float32(1.0)


def _stack(arrays: dict[str, np.ndarray], flax: str, mlx: str,
           layers: int) -> Iterator[tuple[str, np.ndarray]]:
    src = lambda leaf: arrays[f"{flax}/x_layers/{leaf}"]  # noqa: E731
    att = "self_attention"
    for i in range(layers):
        dst = f"{mlx}.layers.{i}"
        yield f"{dst}.layer_norm.weight", _ln(src("layer_norm/scale")[i])
        yield f"{dst}.layer_norm.bias", src("layer_norm/bias")[i]
        # One fused q/k/v projection: a single GEMM per block instead of three.
        yield f"{dst}.self_attention.qkv.weight", np.concatenate(
            [_heads_in(src(f"{att}/{p}/w")[i]) for p in ("query", "key", "value")], axis=0)
        yield f"{dst}.self_attention.qkv.bias", np.concatenate(
            [src(f"{att}/{p}/b")[i].reshape(-1) for p in ("query", "key", "value")])
        yield f"{dst}.self_attention.post.weight", _heads_out(src(f"{att}/post/w")[i])
        yield f"{dst}.self_attention.post.bias", src(f"{att}/post/b")[i]
        yield f"{dst}.ff_layer_norm.weight", _ln(src("ff_layer/layer_norm/scale")[i])
        yield f"{dst}.ff_layer_norm.bias", src("ff_layer/layer_norm/bias")[i]
        for n in (1, 2):
            lin = f"ff_layer/ffn_layer{n}/linear"
            yield f"{dst}.ffn_layer{n}.weight", _dense(src(f"{lin}/kernel")[i])
            yield f"{dst}.ffn_layer{n}.bias", src(f"{lin}/bias")[i]


def _vision(arrays: dict[str, np.ndarray], c: VideoPrismConfig, flax: str,
            mlx: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{mlx}patch_projection.weight", _dense(arrays[f"{flax}patch_projection/linear/kernel"])
    yield f"{mlx}patch_projection.bias", arrays[f"{flax}patch_projection/linear/bias"]
    yield f"{mlx}spatial_pos_emb", arrays[f"{flax}spatial_pos_emb/emb_var"]
    yield f"{mlx}temporal_pos_emb", arrays[f"{flax}temporal_pos_emb/emb_var"]
    yield from _stack(arrays, f"{flax}spatial_encoder/transformers_stack",
                      f"{mlx}spatial_encoder", c.num_spatial_layers)
    yield from _stack(arrays, f"{flax}temporal_encoder/transformers_stack",
                      f"{mlx}temporal_encoder", c.num_temporal_layers)
    for ln in ("spatial_ln", "temporal_ln"):
        yield f"{mlx}{ln}.weight", _ln(arrays[f"{flax}{ln}/scale"])
        yield f"{mlx}{ln}.bias", arrays[f"{flax}{ln}/bias"]


def _lvt_extras(arrays: dict[str, np.ndarray],
                c: VideoPrismConfig) -> Iterator[tuple[str, np.ndarray]]:
    yield from _stack(arrays, "params/auxiliary_encoder/transformers_stack",
                      "auxiliary_encoder", c.num_auxiliary_layers)
    yield from convert_pooler(arrays, "params/contrastive_vision_pooler",
                              "contrastive_vision_pooler")
    text = "params/text_encoder/"
    yield "text_encoder.token_emb.weight", arrays[f"{text}token_emb/emb_var"]
    yield "text_encoder.cls_emb", arrays[f"{text}cls_emb"]
    yield from _stack(arrays, f"{text}unimodal_transformer", "text_encoder.unimodal_transformer",
                      c.num_unimodal_layers)
    yield "text_encoder.unimodal_ln.weight", _ln(arrays[f"{text}unimodal_ln/scale"])
    yield "text_encoder.unimodal_ln.bias", arrays[f"{text}unimodal_ln/bias"]


def convert_pooler(arrays: dict[str, np.ndarray], flax: str,
                   mlx: str) -> Iterator[tuple[str, np.ndarray]]:
    """The AttenTokenPoolingLayer under ``flax`` as ``model.AttentionPooler`` parameters."""
    att = f"{flax}/pooling_attention/"
    yield f"{mlx}.pooling_attention_query", arrays[f"{flax}/pooling_attention_query"]
    for proj in ("query", "key", "value"):
        yield f"{mlx}.{proj}.weight", _heads_in(arrays[f"{att}{proj}/w"])
        yield f"{mlx}.{proj}.bias", arrays[f"{att}{proj}/b"].reshape(-1)
    yield f"{mlx}.per_dim_scale", arrays[f"{att}per_dim_scale/per_dim_scale"]
    yield f"{mlx}.post.weight", _heads_out(arrays[f"{att}post/w"])
    yield f"{mlx}.post.bias", arrays[f"{att}post/b"]
    yield f"{mlx}.layer_norm.weight", _ln(arrays[f"{flax}/pooling_attention_layer_norm/scale"])
    yield f"{mlx}.layer_norm.bias", arrays[f"{flax}/pooling_attention_layer_norm/bias"]


def convert_dense(arrays: dict[str, np.ndarray], flax: str,
                  mlx: str) -> Iterator[tuple[str, np.ndarray]]:
    """The Flax Dense layer ``<flax>/{kernel,bias}`` as ``nn.Linear`` parameters."""
    yield f"{mlx}.weight", _dense(arrays[f"{flax}/kernel"])
    yield f"{mlx}.bias", arrays[f"{flax}/bias"]


def convert(arrays: dict[str, np.ndarray], config: VideoPrismConfig,
            source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Validated released-format arrays -> MLX parameter names and layouts (float32)."""
    validate(arrays, config, source)
    if config.is_lvt:
        items = [*_vision(arrays, config, "params/vision_encoder/", "vision_encoder."),
                 *_lvt_extras(arrays, config)]
    else:
        items = list(_vision(arrays, config, "params/", ""))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in items}


# --------------------------------------------------------------------------------------------
# The converted cache


def _source_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def converted_path(source: Path) -> Path:
    """Where the converted file for ``source`` lives: beside it if writable, else user cache."""
    beside = source.with_name(source.name.removesuffix(".npz") + CONVERTED_SUFFIX)
    if os.access(source.parent, os.W_OK):
        return beside
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / digest / beside.name


def _write_atomic(path: Path, weights: dict[str, mx.array], metadata: dict[str, str]) -> None:
    # Write to a temporary name and rename, so a killed process never leaves a half file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.safetensors")
    os.close(fd)
    try:
        mx.save_safetensors(tmp, weights, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_converted(path: Path) -> tuple[dict[str, mx.array], dict[str, str]] | None:
    """(weights, metadata) of a converted file, or None when it is unreadable or foreign."""
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except Exception:  # a truncated or corrupt cache entry is rebuilt, never trusted
        return None
    if metadata.get("format") != FORMAT:
        return None
    return weights, metadata


def load_converted(path: Path) -> tuple[dict[str, mx.array], VideoPrismConfig]:
    """Weights and config of a file written by this module (``*.mlx.safetensors``)."""
    found = _read_converted(path)
    if found is None:
        raise CheckpointError(f"{path}: not a readable {FORMAT} file; convert the released "
                              f".npz again (load it with checkpoint=<the .npz>)")
    weights, metadata = found
    return weights, from_original_kwargs(json.loads(metadata["config"]))


def load_checkpoint(path: str | os.PathLike,
                    config: VideoPrismConfig) -> dict[str, mx.array]:
    """MLX weights for ``config`` from a released ``.npz`` (converted once, then cached) or a
    converted ``.mlx.safetensors``; raises CheckpointError when the file does not fit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.name.endswith(".safetensors"):
        weights, file_config = load_converted(path)
        if file_config != config:
            raise CheckpointError(
                f"{path} was converted for config {json.dumps(file_config.to_dict())}, "
                f"not {json.dumps(config.to_dict())}")
        return weights

    cache = converted_path(path)
    found = _read_converted(cache) if cache.is_file() else None
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    if found is not None:
        weights, metadata = found
        if metadata.get("source") == _source_key(path) and metadata.get("config") == config_json:
            return weights
    # One MLX copy made while the NumPy conversion is alive, then reused for the cache file:
    # the peak is twice the weights, not four times.
    weights = {k: mx.array(v) for k, v in convert(read_flax_npz(path), config,
                                                   source=str(path)).items()}
    metadata = {"format": FORMAT, "source": _source_key(path), "config": config_json,
                "source_name": path.name}
    try:
        _write_atomic(cache, weights, metadata)
    except OSError as err:
        logger.warning("Could not cache the converted weights at %s (%s); the checkpoint "
                       "will be converted again next time", cache, err)
    return weights
