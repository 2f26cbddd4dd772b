"""Random full-size weights in the released (Flax) layout, and MLX models built from them."""

from __future__ import annotations

import zlib

import fiftyone_videoprism  # noqa: F401  (before mlx: MLX must bind the optimised BLAS)
import mlx.core as mx
import numpy as np

from fiftyone_videoprism.core import checkpoint, model
from fiftyone_videoprism.core.configs import VideoPrismConfig


def random_flax_arrays(config: VideoPrismConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Every released key with N(0, 0.02) float32 values (LayerNorm scales near 0 = gamma 1)."""
    # One stream per key (seeded by its name), so the values do not depend on the key order.
    return {k: np.random.default_rng([seed, zlib.crc32(k.encode())])
            .standard_normal(s, dtype=np.float32) * np.float32(0.02)
            for k, s in checkpoint.flax_shapes(config).items()}


def mlx_model(config: VideoPrismConfig, arrays: dict[str, np.ndarray]):
    """The MLX model with ``arrays`` loaded through the package's own conversion."""
    net = model.build_model(config)
    net.load_weights([(k, mx.array(v)) for k, v in checkpoint.convert(arrays, config).items()],
                     strict=True)
    mx.eval(net.parameters())
    return net

