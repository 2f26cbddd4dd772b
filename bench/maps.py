"""Cost of the embeddings map (fiftyone_videoprism.fo.maps) next to the embeddings it lays out.

    python -m bench.maps 1000 10000

Fits each method FiftyOne's way (the brain's own reducer, with the settings ``build_map``
passes) on random unit 768-d vectors, and prints CPU and wall seconds and their share of
embedding as many clips with videoprism-lvt-base (``SECONDS_PER_CLIP``, the README's figure).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

import fiftyone_videoprism  # noqa: F401  (the BLAS set-up, as in every run)
from fiftyone_videoprism.fo import maps

# videoprism-lvt-base on this 2-core CPU, one clip per call (fo/defaults.py).
SECONDS_PER_CLIP = 14.1
_CONFIGS = {
    "pca": "fiftyone.brain.visualization.PCAVisualizationConfig",
    "tsne": "fiftyone.brain.visualization.TSNEVisualizationConfig",
    "umap": "fiftyone.brain.visualization.UMAPVisualizationConfig",
}


def main() -> None:
    import eta.core.utils as etau

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    args = parser.parse_args()
    methods = [m for m in maps.METHODS if m != "umap" or importlib.util.find_spec("umap")]
    print("| videos | embedding them | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for n in args.sizes:
        vectors = np.random.default_rng(0).standard_normal((n, 768)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cells = []
        for method in methods:
            config = etau.get_class(_CONFIGS[method])(**maps._method_kwargs(method, n, 768))
            wall, cpu = time.perf_counter(), time.process_time()
            config.build().fit_reducer(vectors)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            share = 100 * cpu / (n * SECONDS_PER_CLIP)
            cells.append(f"{cpu:.1f} s CPU, {wall:.1f} s wall ({share:.2f}%)")
        print(f"| {n:,} | {n * SECONDS_PER_CLIP / 3600:.1f} h | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
