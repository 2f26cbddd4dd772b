"""Find the moment, not just the video: cut videos into fixed windows, embed each window with
VideoPrism and search the windows by text.

    python examples/search_clips.py /path/to/videos --window 64 --query "a goal is scored" --app

A clips view's samples carry their ``[first, last]`` frame support; the model samples its
frames inside that range only, so each window gets its own embedding.
"""

from __future__ import annotations

import argparse
import json

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.zoo as foz

from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.zoo import register_zoo


def windows(total_frames: int, length: int) -> list[tuple[int, int]]:
    """1-based inclusive [first, last] windows covering 1..total_frames."""
    return [(first, min(first + length - 1, total_frames))
            for first in range(1, total_frames + 1, length)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder of videos (searched recursively)")
    parser.add_argument("--dataset", default="videoprism-clips", help="dataset name")
    parser.add_argument("--model", default="videoprism-lvt-base", help="zoo model name")
    parser.add_argument("--model-kwargs", default="{}", help="load kwargs as a JSON object")
    parser.add_argument("--window", type=int, default=64, help="frames per clip")
    parser.add_argument("--query", default="a person cooking", help="text query")
    parser.add_argument("--app", action="store_true", help="open the App on the results")
    args = parser.parse_args()
    model_kwargs = json.loads(args.model_kwargs)

    register_zoo()
    if fo.dataset_exists(args.dataset):
        fo.delete_dataset(args.dataset)
    dataset = fo.Dataset.from_videos_dir(args.folder, recursive=True, name=args.dataset,
                                         persistent=True)
    dataset.compute_metadata()  # frame counts, to lay out the windows

    # Store the windows as temporal detections, so the clips view can be rebuilt by name.
    for sample in dataset.iter_samples(autosave=True):
        total = sample.metadata.total_frame_count
        sample["windows"] = fo.TemporalDetections(detections=[
            fo.TemporalDetection(label=f"{first}-{last}", support=[first, last])
            for first, last in windows(total, args.window)
        ])
    clips = dataset.to_clips("windows")
    print(f"{len(dataset)} videos -> {len(clips)} clips of up to {args.window} frames")

    model = foz.load_zoo_model(args.model, **model_kwargs)
    runs.compute_embeddings(clips, model, "videoprism")
    fob.compute_similarity(clips, model=args.model, model_kwargs=model_kwargs,
                           embeddings="videoprism", brain_key="videoprism_clips")

    view = clips.sort_by_similarity(args.query, k=5, brain_key="videoprism_clips")
    print(f"Top clips for {args.query!r}:")
    paths, supports = view.values(["filepath", "support"])
    for rank, (path, support) in enumerate(zip(paths, supports, strict=True), start=1):
        print(f"{rank}. {path} frames {support[0]}-{support[1]}")

    if args.app:
        fo.launch_app(view).wait()


if __name__ == "__main__":
    main()
