"""Embed a folder of videos with VideoPrism, search it by text, tag it zero-shot, open the App.

    python examples/quickstart.py /path/to/videos --query "a person cooking" \
        --classes "cooking,swimming,playing drums" --app

The same job as ``fiftyone-videoprism embed``, written out with the Python API. Weights come
from the Hugging Face Hub on first use (or FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR /
FIFTYONE_VIDEOPRISM_TOKENIZER); ``--model-kwargs`` passes other load options as JSON, e.g.
'{"checkpoint_path": "/models/flax_lvt_base_f16r288_repeated.npz", "num_frames": 16}'.
"""

from __future__ import annotations

import argparse
import json

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.zoo as foz

from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.zoo import register_zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder of videos (searched recursively)")
    parser.add_argument("--dataset", default="videoprism-quickstart", help="dataset name")
    parser.add_argument("--model", default="videoprism-lvt-base", help="zoo model name")
    parser.add_argument("--model-kwargs", default="{}", help="load kwargs as a JSON object")
    parser.add_argument("--query", default="a person cooking", help="text query")
    parser.add_argument("--classes", help="comma-separated classes for zero-shot tags")
    parser.add_argument("--app", action="store_true", help="open the App on the results")
    args = parser.parse_args()
    model_kwargs = json.loads(args.model_kwargs)

    # 1. Make the four VideoPrism models known to FiftyOne's zoo (idempotent, offline).
    register_zoo()

    # 2. A persistent dataset, so that the App and later sessions find it by name.
    if fo.dataset_exists(args.dataset):
        fo.delete_dataset(args.dataset)
    dataset = fo.Dataset.from_videos_dir(args.folder, recursive=True, name=args.dataset,
                                         persistent=True)

    # 3. One embedding per video: several videos per MLX call, decoding ahead in a thread.
    model = foz.load_zoo_model(args.model, **model_kwargs)
    runs.compute_embeddings(dataset, model, "videoprism")

    # 4. A similarity index that knows the zoo model by name: text queries work in the App,
    #    whose server loads the model itself with these same kwargs.
    fob.compute_similarity(dataset, model=args.model, model_kwargs=model_kwargs,
                           embeddings="videoprism", brain_key="videoprism")

    # 5. Zero-shot tags over your classes (prompt "a video of {}.", softmax at T = 0.01).
    if args.classes:
        model.config.classes = [c.strip() for c in args.classes.split(",")]
        runs.apply_zero_shot(dataset, model, "videoprism_zero_shot",
                              embeddings_field="videoprism", tag_samples=True)
        print(dataset.count_values("videoprism_zero_shot.label"))

    # 6. Text search.
    view = dataset.sort_by_similarity(args.query, k=5, brain_key="videoprism")
    print(f"Top matches for {args.query!r}:")
    for rank, path in enumerate(view.values("filepath"), start=1):
        print(f"{rank}. {path}")

    if args.app:
        fo.launch_app(view).wait()


if __name__ == "__main__":
    main()
