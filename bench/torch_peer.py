"""Child process of ``python -m bench``: the PyTorch peer's timings.

    python -m bench.torch_peer MODEL --repeats N --out OUTPUTS.npz   # one clip (+ one prompt)
    python -m bench.torch_peer --profile --repeats N                 # the one-layer op profile

Prints one JSON line. Runs in its own process, so that each framework has the cores, thread
pools and allocator to itself while it is timed; OpenBLAS is left off here, so torch runs on
its own MKL only. Weights and inputs are rebuilt from the same seeds, so both processes run
identical arrays.
"""

from __future__ import annotations

import os

# torch on its own MKL only (see above); set before the package loads.
os.environ["FIFTYONE_VIDEOPRISM_BLAS"] = "off"

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import fiftyone_videoprism as fvp  # noqa: E402
from bench.common import CORES, clip_input, median_seconds, text_input  # noqa: E402
from bench.weights import random_flax_arrays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.torch_peer")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        from bench.profile import torch_profile

        print(json.dumps(torch_profile(args.repeats)))
        return

    from bench.torch_ref import TorchVideoPrism

    torch.set_num_threads(CORES)
    config = fvp.get_config(args.model)
    peer = TorchVideoPrism(random_flax_arrays(config), config)
    video = clip_input(config)
    seconds, times = median_seconds(lambda: peer.encode_video(video), args.repeats)
    result = {"threads": CORES, "s_per_clip": seconds, "times": times,
              "version": torch.__version__}
    outputs = {"video": peer.encode_video(video)}
    if config.is_lvt:
        ids, paddings = text_input(config)
        seconds, _ = median_seconds(lambda: peer.encode_text(ids, paddings), args.repeats * 5)
        result["text_ms_padded"] = seconds * 1e3
        outputs["text"] = peer.encode_text(ids, paddings)
    np.savez(args.out, **outputs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
