"""Classifier heads: how token storage precision affects held-out accuracy, and what feature
extraction costs against training.

    python -m bench.classifier            # ~3 minutes on a 2-core CPU
    python -m bench.classifier --quick    # fewer seeds, one full-size clip

Part 1, precision (a fixed 100 epochs: early stopping on a small validation set would turn
tiny differences into different stopping epochs): a synthetic task whose class is visible (2 colours x upper or lower half
for a moving square, random backgrounds, sizes and directions), the tiny video fixture model, tokens stored
at each precision of core/features.py, attention heads trained with the same seeds and splits.
Part 2, cost: ``videoprism-base`` with random weights in the released layout at 16 x 288:
seconds to extract one clip's tokens and embedding, against seconds per training epoch of each
head on 32 clips' features.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import fiftyone_videoprism  # noqa: F401  (before mlx: MLX must bind the optimised BLAS)
import numpy as np

from fiftyone_videoprism.core import embedding, factory, features, heads, training
from fiftyone_videoprism.core.configs import get_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_video"
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}


def synthetic_clip(colour, upper: bool, frames: int, size: int, rng) -> np.ndarray:
    """(T, S, S, 3) uint8: a square crossing a random grey field in its upper or lower half,
    left to right or back, with pixel noise."""
    side = int(rng.integers(size // 5, size // 3))
    top = int(rng.integers(0, size // 2 - side)) + (0 if upper else size // 2)
    grey = int(rng.integers(60, 200))
    rightwards = bool(rng.integers(0, 2))
    clip = np.full((frames, size, size, 3), grey, np.int16)
    for t in range(frames):
        step = t if rightwards else frames - 1 - t
        left = (size - side) * step // max(frames - 1, 1)
        clip[t, top:top + side, left:left + side] = colour
    clip += rng.integers(-12, 13, size=clip.shape)
    return np.clip(clip, 0, 255).astype(np.uint8)


def synthetic_task(per_class: int, frames: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for c, colour in enumerate(COLOURS.values()):
        for d in (False, True):
            for _ in range(per_class):
                clips.append(synthetic_clip(colour, d, frames, size, rng))
                labels.append(2 * c + int(d))
    return np.stack(clips), np.array(labels)


def precision_part(seeds: int) -> dict:
    config = json.loads((TINY / "config.json").read_text())["config"]
    # From a copy: loading writes the converted weights beside the file, not into tests/data.
    with tempfile.TemporaryDirectory() as folder:
        npz = shutil.copy(TINY / "flax_tiny_video_repeated.npz", folder)
        net = factory.load_model(config, checkpoint=npz)
    c = net.config
    clips, y = synthetic_task(24, c.num_frames, c.image_size)
    tokens = np.concatenate([embedding.video_tokens(net, clips[i:i + 8])
                             for i in range(0, len(clips), 8)])
    rows = {}
    reference: list[np.ndarray] = []  # float32 heads' held-out predictions, per seed
    for precision in features.PRECISIONS:
        stored = np.stack([features.quantize_tokens(t, precision) for t in tokens])
        err = float(np.max(np.abs(stored.astype(np.float32) - tokens)) / np.max(np.abs(tokens)))
        accs, agree = [], []
        for seed in range(seeds):
            order = np.random.default_rng(seed).permutation(len(y))
            val, train = order[: len(y) // 3], order[len(y) // 3:]
            head = heads.new_head("attention", c.model_dim, c.num_heads, 4, seed=seed)
            training.train_head(head, (stored[train], y[train]), (stored[val], y[val]),
                                settings=training.TrainSettings(epochs=100,
                                                                learning_rate=3e-3,
                                                                patience=None, seed=seed))
            logits = training.predict_logits(head, stored[val])
            accs.append(training.accuracy(logits, y[val], False))
            if precision == "float32":
                reference.append(np.argmax(logits, axis=1))
            agree.append(float(np.mean(np.argmax(logits, axis=1) == reference[seed])))
        base = get_config("videoprism-base")
        rows[precision] = {
            "held_out_accuracy": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)),
            "agreement_with_float32": float(np.mean(agree)),
            "accuracies": accs,
            "max_relative_error": err,
            "bytes_per_clip_base_16x288": features.token_bytes(
                base.num_frames * 256, base.model_dim, precision),
        }
    return {"clips": len(y), "classes": 4, "seeds": seeds, "rows": rows}


def cost_part(clips: int) -> dict:
    from bench.weights import mlx_model, random_flax_arrays

    config = get_config("videoprism-base")
    net = mlx_model(config, random_flax_arrays(config))
    rng = np.random.default_rng(0)
    video = np.stack([synthetic_clip((220, 40, 40), True, 16, 288, rng) for _ in range(clips)])
    start = time.perf_counter()
    tokens = np.concatenate([embedding.video_tokens(net, video[i:i + 1]) for i in range(clips)])
    token_s = (time.perf_counter() - start) / clips
    start = time.perf_counter()
    for i in range(clips):
        embedding.embed_videos(net, video[i:i + 1])
    embed_s = (time.perf_counter() - start) / clips
    # 32 clips' features, 4 classes: noisy copies of the measured ones (the cost does not
    # depend on the values).
    n = 32
    x_tok = np.stack([features.quantize_tokens(
        tokens[i % clips] + rng.normal(scale=0.1, size=tokens.shape[1:]).astype(np.float32),
        features.DEFAULT_PRECISION) for i in range(n)])
    x_emb = embedding.l2_normalize(x_tok.astype(np.float32).mean(axis=1))
    y = np.arange(n) % 4
    epoch_s = {}
    for kind, x in (("attention", x_tok), ("linear", x_emb)):
        head = heads.new_head(kind, config.model_dim, config.num_heads, 4)
        start = time.perf_counter()
        history = training.train_head(head, (x, y), settings=training.TrainSettings(
            epochs=3, patience=None))
        epoch_s[kind] = (time.perf_counter() - start) / len(history)
    return {"model": "videoprism-base (random weights), 16 x 288", "clips_timed": clips,
            "tokens_s_per_clip": token_s, "embedding_s_per_clip": embed_s,
            "train_clips": n, "epoch_s": epoch_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "classifier.json")
    args = parser.parse_args()
    result = {"precision": precision_part(2 if args.quick else 5),
              "cost": cost_part(1 if args.quick else 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    p = result["precision"]
    print(f"Token precision, tiny model, synthetic task ({p['clips']} clips, {p['classes']} "
          f"classes, {p['seeds']} seeds):")
    print("| precision | held-out accuracy (std over seeds) | same prediction as float32 | "
          "max rel. error | disk per videoprism-base clip |")
    print("|---|---|---|---|---|")
    for name, row in p["rows"].items():
        print(f"| {name} | {row['held_out_accuracy']:.3f} ({row['accuracy_std']:.3f}) | "
              f"{row['agreement_with_float32']:.3f} | {row['max_relative_error']:.1e} | "
              f"{row['bytes_per_clip_base_16x288'] / 1e6:.1f} MB |")
    c = result["cost"]
    print(f"\nCost, {c['model']}:")
    print(f"tokens {c['tokens_s_per_clip']:.2f} s/clip, embedding "
          f"{c['embedding_s_per_clip']:.2f} s/clip; one epoch on {c['train_clips']} clips: "
          f"attention head {c['epoch_s']['attention']:.3f} s, linear probe "
          f"{c['epoch_s']['linear'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
