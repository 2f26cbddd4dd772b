"""Released checkpoints (``flax_*_repeated.npz``) -> validated, converted MLX weights.

The released files hold one float32 array per Flax leaf, keyed ``params/<module path>``, with
``nn.scan``-stacked layers under ``.../x_layers/...`` carrying a leading layer axis. Conversion
runs once; the result is cached as ``<source stem>.mlx.safetensors`` beside the source (or in
the user cache when that folder is read-only), keyed by the source's size and mtime.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
# The key table: every released key, its shape, and the MLX parameter it becomes


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


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _fused_in(*ws: np.ndarray) -> np.ndarray:
    # One fused q/k/v projection: a single GEMM per block instead of three.
    return np.concatenate([_heads_in(w) for w in ws], axis=0)


def _fused_bias(*bs: np.ndarray) -> np.ndarray:
    return np.concatenate([b.reshape(-1) for b in bs])


def _flat(b: np.ndarray) -> np.ndarray:
    return b.reshape(-1)


@dataclass(frozen=True)
class Rule:
    """One MLX parameter: the released keys it is made from, their shapes, and how.

    A stacked rule (``layers`` > 0) stands for ``layers`` parameters: its keys live under
    ``.../x_layers/...`` with a leading layer axis, and ``target`` holds ``{i}``.
    """

    target: str
    sources: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    transform: Callable[..., np.ndarray] = _same
    layers: int = 0


def _stack_rules(flax: str, mlx: str, layers: int, d: int, mlp: int, heads: int) -> list[Rule]:
    src, dst, dh = f"{flax}/x_layers/", f"{mlx}.layers.{{i}}.", d // heads
    att = f"{src}self_attention/"
    qkv = ("query", "key", "value")
    rules = [
        Rule(f"{dst}self_attention.qkv.weight", tuple(f"{att}{p}/w" for p in qkv),
             ((d, heads, dh),) * 3, _fused_in),
        Rule(f"{dst}self_attention.qkv.bias", tuple(f"{att}{p}/b" for p in qkv),
             ((heads, dh),) * 3, _fused_bias),
        Rule(f"{dst}self_attention.post.weight", (f"{att}post/w",), ((d, heads, dh),),
             _heads_out),
        Rule(f"{dst}self_attention.post.bias", (f"{att}post/b",), ((d,),)),
    ]
    for ours, theirs in (("layer_norm", "layer_norm"), ("ff_layer_norm", "ff_layer/layer_norm")):
        rules += [Rule(f"{dst}{ours}.weight", (f"{src}{theirs}/scale",), ((d,),), _ln),
                  Rule(f"{dst}{ours}.bias", (f"{src}{theirs}/bias",), ((d,),))]
    for n, (d_in, d_out) in ((1, (d, mlp)), (2, (mlp, d))):
        lin = f"{src}ff_layer/ffn_layer{n}/linear/"
        rules += [Rule(f"{dst}ffn_layer{n}.weight", (f"{lin}kernel",), ((d_in, d_out),), _dense),
                  Rule(f"{dst}ffn_layer{n}.bias", (f"{lin}bias",), ((d_out,),))]
    return [dataclasses.replace(rule, layers=layers) for rule in rules]


def _vision_rules(c: VideoPrismConfig, flax: str, mlx: str) -> list[Rule]:
    d, t0, gh, gw = c.model_dim, *c.pos_emb_shape
    rules = [
        Rule(f"{mlx}patch_projection.weight", (f"{flax}patch_projection/linear/kernel",),
             ((c.patch_size * c.patch_size * 3, d),), _dense),
        Rule(f"{mlx}patch_projection.bias", (f"{flax}patch_projection/linear/bias",), ((d,),)),
        Rule(f"{mlx}spatial_pos_emb", (f"{flax}spatial_pos_emb/emb_var",), ((gh * gw, d),)),
        Rule(f"{mlx}temporal_pos_emb", (f"{flax}temporal_pos_emb/emb_var",), ((t0, d),)),
        *_stack_rules(f"{flax}spatial_encoder/transformers_stack", f"{mlx}spatial_encoder",
                      c.num_spatial_layers, d, c.mlp_dim, c.num_heads),
        *_stack_rules(f"{flax}temporal_encoder/transformers_stack", f"{mlx}temporal_encoder",
                      c.num_temporal_layers, d, c.mlp_dim, c.num_heads),
    ]
    for ln in ("spatial_ln", "temporal_ln"):
        rules += [Rule(f"{mlx}{ln}.weight", (f"{flax}{ln}/scale",), ((d,),), _ln),
                  Rule(f"{mlx}{ln}.bias", (f"{flax}{ln}/bias",), ((d,),))]
    return rules


def pooler_rules(flax: str, mlx: str, d: int, h: int, hidden: int) -> list[Rule]:
    """An AttenTokenPoolingLayer (one query) of width ``d`` and inner width ``hidden`` under
    ``flax`` as the ``model.AttentionPooler`` under ``mlx``."""
    dh = hidden // h
    att = f"{flax}pooling_attention/"
    rules = [
        Rule(f"{mlx}pooling_attention_query", (f"{flax}pooling_attention_query",), ((1, d),)),
        Rule(f"{mlx}per_dim_scale", (f"{att}per_dim_scale/per_dim_scale",), ((dh,),)),
        Rule(f"{mlx}post.weight", (f"{att}post/w",), ((d, h, dh),), _heads_out),
        Rule(f"{mlx}post.bias", (f"{att}post/b",), ((d,),)),
        Rule(f"{mlx}layer_norm.weight", (f"{flax}pooling_attention_layer_norm/scale",), ((d,),),
             _ln),
        Rule(f"{mlx}layer_norm.bias", (f"{flax}pooling_attention_layer_norm/bias",), ((d,),)),
    ]
    for proj in ("query", "key", "value"):
        rules += [Rule(f"{mlx}{proj}.weight", (f"{att}{proj}/w",), ((d, h, dh),), _heads_in),
                  Rule(f"{mlx}{proj}.bias", (f"{att}{proj}/b",), ((h, dh),), _flat)]
    return rules


def dense_rules(flax: str, mlx: str, d_in: int, d_out: int) -> list[Rule]:
    """A Flax Dense layer ``<flax>{kernel,bias}`` as the ``nn.Linear`` under ``mlx``."""
    return [Rule(f"{mlx}weight", (f"{flax}kernel",), ((d_in, d_out),), _dense),
            Rule(f"{mlx}bias", (f"{flax}bias",), ((d_out,),))]


def _lvt_rules(c: VideoPrismConfig) -> list[Rule]:
    d, h = c.model_dim, c.num_heads
    text = "params/text_encoder/"
    return [
        *_stack_rules("params/auxiliary_encoder/transformers_stack", "auxiliary_encoder",
                      c.num_auxiliary_layers, d, c.mlp_dim, h),
        # The LvT pooler's inner width is 4*D.
        *pooler_rules("params/contrastive_vision_pooler/", "contrastive_vision_pooler.", d, h,
                      4 * d),
        Rule("text_encoder.token_emb.weight", (f"{text}token_emb/emb_var",),
             ((c.vocabulary_size, d),)),
        Rule("text_encoder.cls_emb", (f"{text}cls_emb",), ((1, 1, d),)),
        *_stack_rules(f"{text}unimodal_transformer", "text_encoder.unimodal_transformer",
                      c.num_unimodal_layers, d, 4 * d, h),
        Rule("text_encoder.unimodal_ln.weight", (f"{text}unimodal_ln/scale",), ((d,),), _ln),
        Rule("text_encoder.unimodal_ln.bias", (f"{text}unimodal_ln/bias",), ((d,),)),
    ]


def key_table(config: VideoPrismConfig) -> list[Rule]:
    """The whole map from a released-format checkpoint of ``config`` to MLX parameters."""
    if config.is_lvt:
        return [*_vision_rules(config, "params/vision_encoder/", "vision_encoder."),
                *_lvt_rules(config)]
    return _vision_rules(config, "params/", "")


def flax_shapes(config: VideoPrismConfig) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a released-format checkpoint for this config."""
    return rule_shapes(key_table(config))


def rule_shapes(rules: list[Rule]) -> dict[str, tuple[int, ...]]:
    """Every released key the rules read, with its shape (layer axis first when stacked)."""
    return {source: ((rule.layers, *shape) if rule.layers else shape)
            for rule in rules
            for source, shape in zip(rule.sources, rule.shapes, strict=True)}


# --------------------------------------------------------------------------------------------
# Reading and validating


# Leading bytes of files people give by mistake, and what to call them.
_NOT_CHECKPOINTS = (
    (4, b"ftyp", "an MP4/MOV video"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (0, b"RIFF", "a RIFF (AVI/WAV) file"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x0a", "a SentencePiece model or other protobuf"),
)


def sniff(path: str | os.PathLike) -> str:
    """``"npz"`` or ``"safetensors"``: what the file's first bytes say it is.

    Raises:
        FileNotFoundError: nothing at ``path``
        CheckpointError: anything else, named (a pickle, a video, text, ...), with the fix
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if len(head) >= 9 and head[8:9] == b"{" and path.name.endswith(".safetensors"):
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05":
        kind = "a Python pickle (e.g. a PyTorch .pt/.bin file)"
    elif not head:
        kind = "an empty file"
    else:
        kind = next((name for offset, magic, name in _NOT_CHECKPOINTS
                     if head[offset:offset + len(magic)] == magic), None)
        if kind is None:
            kind = ("a text file" if all(32 <= b < 127 or b in b"\t\r\n" for b in head)
                    else "not a checkpoint format this package reads")
    raise CheckpointError(
        f"{path}: this is {kind}, not a VideoPrism checkpoint. Pass the released "
        f"flax_*_repeated.npz (from the model's Hugging Face repo) or a *.mlx.safetensors "
        f"converted from one")


def read_flax_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a released-format ``.npz``; other files are named and refused."""
    path = Path(path)
    sniff(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise CheckpointError(
                f"{path}: holds pickled objects; refusing to load it (a released VideoPrism "
                f"checkpoint holds plain float32 arrays only)") from err
        raise CorruptCheckpointError(f"{path}: not a readable .npz checkpoint ({err})") from err
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CorruptCheckpointError(
            f"{path}: not a readable .npz checkpoint ({err}); the file may be truncated or "
            f"corrupted: delete it and download it again") from err


def identify(arrays: dict[str, np.ndarray]) -> str | None:
    """The released model whose exact key layout ``arrays`` has, or None."""
    from fiftyone_videoprism.core.configs import get_config, list_models

    shapes = {key: tuple(value.shape) for key, value in arrays.items()}
    return next((name for name in list_models() if flax_shapes(get_config(name)) == shapes),
                None)


def _listed(items: list[str], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def shape_problems(arrays: dict[str, np.ndarray],
                   expected: dict[str, tuple[int, ...]]) -> list[str]:
    """What is wrong with ``arrays`` against the ``expected`` keys and shapes (missing,
    unexpected, mis-shaped and non-float keys, summarised); empty when they fit."""
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    wrong = [f"{k} has shape {tuple(arrays[k].shape)}, expected {expected[k]}"
             for k in sorted(set(expected) & set(arrays)) if tuple(arrays[k].shape) != expected[k]]
    bad_dtype = [f"{k} has dtype {arrays[k].dtype}, expected a float type"
                 for k in sorted(set(expected) & set(arrays))
                 if not np.issubdtype(arrays[k].dtype, np.floating)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped ({_listed(wrong, 2)})")
    if bad_dtype:
        problems.append(_listed(bad_dtype, 2))
    return problems


def validate(arrays: dict[str, np.ndarray], config: VideoPrismConfig, source: str) -> None:
    """Raises CheckpointError listing missing, unexpected and mis-shaped keys."""
    problems = shape_problems(arrays, flax_shapes(config))
    if not problems:
        return
    released = identify(arrays)
    lvt_file = any(key.startswith("params/text_encoder/") for key in arrays)
    if released is not None:
        fix = (f"this looks like a {released} checkpoint: load it as {released}, or pass the "
               f"checkpoint of the model you asked for")
    elif lvt_file != config.is_lvt:
        family = "video-text (LvT)" if lvt_file else "video-only"
        fix = (f"this is a {family} checkpoint and the model is "
               f"{'video-text (LvT)' if config.is_lvt else 'video-only'}: load it with a "
               f"{family} model or config")
    else:
        fix = ("it matches none of the released models; if it is a model of another size, "
               "pass its architecture too (model_config= / --model-config: the original "
               "constructor kwargs as JSON)")
    raise CheckpointError(f"{source} does not fit {config.original_class} "
                          f"{json.dumps(config.to_dict())}: {fix}. Found " + "; ".join(problems))


def convert(arrays: dict[str, np.ndarray], config: VideoPrismConfig,
            source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Validated released-format arrays -> MLX parameter names and layouts (float32)."""
    validate(arrays, config, source)
    return convert_rules(arrays, key_table(config))


def convert_rules(arrays: dict[str, np.ndarray], rules: list[Rule]) -> dict[str, np.ndarray]:
    """The MLX parameters the rules make from (already validated) released-format arrays."""
    out = {}
    for rule in rules:
        inputs = [arrays[key] for key in rule.sources]
        for i in range(rule.layers or 1):
            layer = [x[i] for x in inputs] if rule.layers else inputs
            out[rule.target.format(i=i)] = np.ascontiguousarray(rule.transform(*layer),
                                                                dtype=np.float32)
    return out


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
    if sniff(path) == "safetensors":
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
