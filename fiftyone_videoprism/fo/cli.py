"""``fiftyone-videoprism``: register the zoo models, embed and index video datasets, search them
by text, tag them zero-shot, from the shell.

    fiftyone-videoprism demo
    fiftyone-videoprism register
    fiftyone-videoprism install-plugin
    fiftyone-videoprism embed /path/to/videos --classes "cooking,swimming" --query "a dog" --app
    fiftyone-videoprism search videos "a person cooking" -k 5
    fiftyone-videoprism tag videos --classes "cooking,swimming,playing drums" --sample-tags
    fiftyone-videoprism moments /path/to/long/videos --query "a dog jumps" -k 5 --app
    fiftyone-videoprism train videos --labels ground_truth --head attention --out heads/mine
    fiftyone-videoprism classify videos --head heads/mine.safetensors

Each command calls the same public functions as the Python API and the plugin operators
(:mod:`fiftyone_videoprism.fo.runs`, :mod:`fiftyone_videoprism.fo.moments`,
:mod:`fiftyone_videoprism.fo.classify`, :mod:`fiftyone_videoprism.fo.index`,
``sort_by_similarity``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fiftyone_videoprism.core.settings import DTYPES, RESIZE_MODES
from fiftyone_videoprism.fo.defaults import (DEFAULT_BRAIN_KEY, DEFAULT_CLASSIFIER_FIELD,
                                             DEFAULT_LABEL_FIELD, DEFAULT_MODEL,
                                             DEFAULT_MOMENT_LABELS_FIELD, DEFAULT_MOMENTS_FIELD,
                                             DEFAULT_WINDOWS_FIELD,
                                             RUN_SUMMARY_LOG_KEY,
                                             DEFAULT_EMBEDDINGS_FIELD as DEFAULT_FIELD)
from fiftyone_videoprism.version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    import logging

    # The runs' failure-summary log records are dropped while a command runs: it prints the
    # same counts from RunStats on stdout (see _report). Only then: Python callers of the
    # same process keep them.
    runs_logger = logging.getLogger("fiftyone_videoprism.fo.runs")
    runs_logger.addFilter(_not_a_run_summary)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        # Bad input or missing files: the message says what to fix; no traceback needed.
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        runs_logger.removeFilter(_not_a_run_summary)


def _not_a_run_summary(record) -> bool:
    return not getattr(record, RUN_SUMMARY_LOG_KEY, False)


def _model_options(default: str | None) -> argparse.ArgumentParser:
    """The model options shared by the commands; ``default`` is the ``--model`` default."""
    model = argparse.ArgumentParser(add_help=False)
    group = model.add_argument_group("model")
    group.add_argument("--model", default=default,
                       help=f"zoo model name (default: {default or 'the backbone of the head'})")
    group.add_argument("--checkpoint", help="local checkpoint file or folder (offline weights)")
    group.add_argument("--tokenizer", help="local c4_en SentencePiece .model file (LvT models)")
    group.add_argument("--model-config",
                       help="JSON file of original constructor kwargs overriding the "
                            "architecture (needs --checkpoint)")
    group.add_argument("--num-frames", type=int,
                       help="frames per video (default: the model's trained count)")
    group.add_argument("--image-size", type=int, help="frame side (default: 288)")
    group.add_argument("--resize", choices=RESIZE_MODES,
                       help="frame resize policy (default: squash, as the original demo)")
    group.add_argument("--dtype", choices=DTYPES,
                       help="precision (default: float32, the fastest on a CPU)")
    group.add_argument("--batch-size", type=int, help="videos per MLX call (default: 1, fastest on a CPU)")
    return model


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiftyone-videoprism",
        description="VideoPrism (MLX) video embeddings, text search and zero-shot tags for "
                    "FiftyOne datasets.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    model = _model_options(DEFAULT_MODEL)

    zero_shot = argparse.ArgumentParser(add_help=False)
    group = zero_shot.add_argument_group("zero-shot tagging (LvT models)")
    group.add_argument("--classes", help="comma-separated class names to classify into")
    group.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                       help="prompt template with one {} (repeat to ensemble; default: "
                            "'a video of {}.')")
    group.add_argument("--label-field", default=DEFAULT_LABEL_FIELD,
                       help="field for the Classification (default: %(default)s)")
    group.add_argument("--sample-tags", action="store_true",
                       help="also add each predicted class to the sample's tags")
    group.add_argument("--store-logits", action="store_true",
                       help="store per-class logits on each Classification")
    group.add_argument("--top-k", type=int,
                       help="store the k most probable classes (a Classifications) instead of "
                            "one label; --sample-tags then adds all k")

    app = argparse.ArgumentParser(add_help=False)
    group = app.add_argument_group("App")
    group.add_argument("--app", action="store_true", help="open the FiftyOne App at the end")
    group.add_argument("--port", type=int, help="App port (default: FiftyOne's)")
    group.add_argument("--address", help="address the App server binds to (default: "
                                         "FiftyOne's, localhost; 0.0.0.0 to reach it from "
                                         "another machine)")
    group.add_argument("--remote", action="store_true",
                       help="start the App server only and print how to reach it, for a "
                            "remote machine (open it through an SSH tunnel)")

    demo = commands.add_parser(
        "demo", parents=[model, app], help="the main job on sample videos written here",
        description="Writes a few sample clips (coloured shapes moving over backgrounds), then "
                    "runs 'embed' on them: dataset, embeddings, text-search index, zero-shot "
                    "tags, and the top matches of a text query.")
    demo.add_argument("--folder", default=str(Path.home() / "fiftyone" / "videoprism-demo"),
                      help="where the sample clips are written (default: %(default)s)")
    demo.add_argument("--dataset", default="videoprism-demo",
                      help="dataset name (default: %(default)s)")
    demo.set_defaults(run=_demo)

    register = commands.add_parser(
        "register", help="install the VideoPrism zoo source (idempotent)",
        description="Installs the VideoPrism models into FiftyOne's model zoo folder so that "
                    "foz.load_zoo_model('videoprism-lvt-base') and the App find them.")
    register.set_defaults(run=_register)

    for verb, run, text in (("install-plugin", _install_plugin,
                              "install the App operators into FiftyOne's plugins folder "
                              "(idempotent; registers the zoo models too)"),
                             ("uninstall-plugin", _uninstall_plugin,
                              "remove the folder written by install-plugin")):
        plugin = commands.add_parser(verb, help=text, description=text)
        plugin.add_argument("--plugins-dir",
                            help="plugins folder (default: fo.config.plugins_dir)")
        plugin.set_defaults(run=run)

    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("source", help="a folder of videos, or the name of a FiftyOne dataset")
    source.add_argument("--dataset", help="dataset name for a folder (default: folder name)")

    # What embed and moments share: the index they build and the workers they can run on.
    scale = argparse.ArgumentParser(add_help=False)
    scale.add_argument("--backend", help="similarity backend: any FiftyOne brain backend, e.g. "
                                         "sklearn, lancedb, pgvector (default: the brain config's)")
    scale.add_argument("--backend-param", action="append", dest="backend_params",
                       metavar="NAME=VALUE",
                       help="a backend parameter, e.g. uri=/data/lancedb (repeat for more); "
                            "connection parameters are saved to the brain config for other "
                            "processes")
    scale.add_argument("--workers", type=int, metavar="N",
                       help="split the embedding into N shards, queued as delegated operations "
                            "for `fiftyone delegated launch` workers sharing this database; "
                            "waits for them, then builds the index")
    scale.add_argument("--worker-timeout", type=float, default=120.0, metavar="SECONDS",
                       help="a shard whose worker sends no heartbeat for this long is queued "
                            "again (default: %(default)s)")

    embed = commands.add_parser(
        "embed", parents=[source, scale, model, zero_shot, app],
        help="embed a folder of videos or a dataset, index it for text search",
        description="Creates (or updates) a dataset from a folder of videos, or takes an "
                    "existing dataset, stores one embedding per video, builds a similarity "
                    "index for text search in Python and the App, and optionally tags the "
                    "videos zero-shot and prints the top matches of a text query.")
    embed.add_argument("--field", default=DEFAULT_FIELD,
                       help="embeddings field (default: %(default)s)")
    embed.add_argument("--brain-key", default=DEFAULT_BRAIN_KEY,
                       help="similarity index key (default: %(default)s)")
    embed.add_argument("--recompute", action="store_true",
                       help="recompute embeddings that are already stored")
    embed.add_argument("--no-map", dest="map", action="store_false",
                       help="skip the embeddings map (a 2-D layout of the embeddings for the "
                            "App's Embeddings panel, brain key <field>_map)")
    embed.add_argument("--query", help="print the top matches of this text query")
    embed.add_argument("-k", type=int, default=10, help="matches to print (default: 10)")
    embed.set_defaults(run=_embed)

    search = commands.add_parser(
        "search", parents=[app], help="print the videos that best match a text query",
        description="Sorts a dataset by similarity to a text query with an index built by "
                    "'embed' (or fob.compute_similarity with a VideoPrism LvT zoo model).")
    search.add_argument("dataset", help="dataset name")
    search.add_argument("query", help="text query, e.g. 'a person cooking'")
    search.add_argument("--brain-key", default=DEFAULT_BRAIN_KEY,
                        help="similarity index key (default: %(default)s)")
    search.add_argument("-k", type=int, default=10, help="matches to print (default: 10)")
    search.set_defaults(run=_search)

    tag = commands.add_parser(
        "tag", parents=[model, zero_shot, app], help="classify the videos of a dataset zero-shot",
        description="Stores a zero-shot Classification over --classes for every video, "
                    "reusing stored embeddings of the same model when present.")
    tag.add_argument("dataset", help="dataset name")
    tag.add_argument("--field", default=DEFAULT_FIELD,
                     help="embeddings field to reuse and fill (default: %(default)s)")
    tag.set_defaults(run=_tag)

    moments = commands.add_parser(
        "moments", parents=[source, scale, model, app], help="find when something happens in long videos",
        description="Embeds overlapping windows of every video (16 frames per 8 s, a window "
                    "every 4 s by default), indexes them for text search on the clips view of "
                    "the windows field (in Python and the App), and prints the best moments "
                    "of a text query; optionally labels segments zero-shot.")
    moments.add_argument("--field", default=DEFAULT_WINDOWS_FIELD,
                         help="windows field (default: %(default)s)")
    grid = moments.add_argument_group("windows")
    grid.add_argument("--window-seconds", type=float, help="window span (default: 8)")
    grid.add_argument("--stride-seconds", type=float,
                      help="time between window starts (default: 4)")
    grid.add_argument("--window-frames", type=int, help="window span in video frames instead")
    grid.add_argument("--stride-frames", type=int, help="stride in video frames instead")
    moments.add_argument("--recompute", action="store_true",
                         help="recompute the windows of videos that have them")
    moments.add_argument("--query", help="print the best moments for this text query")
    moments.add_argument("-k", type=int, default=10, help="moments to print (default: 10)")
    moments.add_argument("--threshold", type=float,
                         help="adjacent windows scoring at least this merge into one moment")
    moments.add_argument("--classes", help="also label segments zero-shot over these "
                                           "comma-separated classes")
    moments.add_argument("--label-field", default=DEFAULT_MOMENT_LABELS_FIELD,
                         help="field for the segments (default: %(default)s)")
    moments.set_defaults(run=_moments)

    train = commands.add_parser(
        "train", parents=[model], help="train a classifier head from a dataset's labels",
        description="Trains a few-shot head on the frozen encoder from a Classification or "
                    "Classifications field, or from sample tags (--labels tags --classes ...), "
                    "saves it, and evaluates it on held-out samples with FiftyOne.")
    train.add_argument("dataset", help="dataset name")
    train.add_argument("--labels", required=True, metavar="FIELD",
                       help="label field, or 'tags' (then --classes names the tags to learn)")
    train.add_argument("--classes", help="comma-separated class names (default: all found)")
    train.add_argument("--multi-label", action="store_true",
                       help="with tags: a video may carry several of them")
    train.add_argument("--head", choices=("attention", "linear"), default="attention",
                       help="attention pooler on the tokens (the original's head) or linear "
                            "probe on the embedding (default: %(default)s)")
    train.add_argument("--out", help="head path stem (default: ./<dataset>_<labels>_<head>)")
    train.add_argument("--epochs", type=int, default=100, help="at most (default: %(default)s)")
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="held-out share per class (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    train.set_defaults(run=_train)

    classify = commands.add_parser(
        "classify", parents=[_model_options(None)],
        help="label a dataset's videos with a saved head",
        description="Applies a head saved by 'train' to every video; the model defaults to "
                    "the one the head was trained on.")
    classify.add_argument("dataset", help="dataset name")
    classify.add_argument("--head", required=True, metavar="PATH",
                          help="the head's .safetensors or .json")
    classify.add_argument("--label-field", default=DEFAULT_CLASSIFIER_FIELD,
                          help="field for the labels (default: %(default)s)")
    classify.add_argument("--store-logits", action="store_true",
                          help="store per-class logits on each label")
    classify.set_defaults(run=_classify)
    return parser


# --------------------------------------------------------------------------------------------
# Commands


def _demo(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo import demo

    paths = demo.write_demo_videos(args.folder)
    print(f"{len(paths)} sample clips in {args.folder}")
    args = argparse.Namespace(
        **vars(args), source=args.folder, field=DEFAULT_FIELD, brain_key=DEFAULT_BRAIN_KEY,
        backend=None, backend_params=None, workers=None, worker_timeout=120.0,
        recompute=False, map=True, query=demo.QUERY, k=3, classes=",".join(demo.CLASSES), templates=None,
        label_field=DEFAULT_LABEL_FIELD, sample_tags=False, store_logits=False, top_k=None)
    return _embed(args)


def _register(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo.zoo import register_zoo, zoo_model_names

    folder = register_zoo()
    print(f"Registered the VideoPrism zoo source in {folder}")
    print("Models: " + ", ".join(zoo_model_names()))
    return 0


def _install_plugin(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo.plugin import install_plugin

    print(f"Installed the VideoPrism operators in {install_plugin(args.plugins_dir)}")
    return 0


def _uninstall_plugin(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo.plugin import plugin_dir, uninstall_plugin

    removed = uninstall_plugin(args.plugins_dir)
    where = plugin_dir(args.plugins_dir)
    print(f"Removed {where}" if removed else f"Nothing to remove at {where}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo import index, runs, shards

    # Everything that costs nothing is checked before weights load and videos decode.
    classes = _classes(args) if args.classes else None
    # Text is needed for classes or a query, and by any model that can embed it: the index
    # this builds is for text search.
    model, model_kwargs = _model_from_args(args, text=True if classes or args.query else None)
    dataset = _dataset_for(args.source, args.dataset)
    if classes:
        runs.check_label_field(dataset, args.label_field, _label_type(args))
    print(f"Dataset '{dataset.name}': {_count(len(dataset), 'video')}")
    if args.workers:
        _on_workers(functools.partial(shards.embed_on_workers, dataset, model, args.model,
                                      model_kwargs, args.field), args, "Embedded")
    else:
        stats = runs.compute_embeddings(dataset, model, args.field,
                                        skip_existing=not args.recompute)
        _report("Embedded", stats)

    index.build_index(dataset, args.model, model_kwargs, args.field, args.brain_key,
                      backend=args.backend,
                      backend_params=index.parse_backend_params(args.backend_params))
    print(f"Similarity index '{args.brain_key}' on field '{args.field}'"
          + (" (text search enabled)" if model.can_embed_prompts else ""))

    if classes:
        # Over the embedded videos: the ones that failed were just reported.
        _zero_shot(dataset.exists(args.field), model, classes, args)
    if args.map:
        _map(dataset, args.field, args.label_field if classes else None)

    view = dataset.view()
    if args.query:
        view = _print_matches(dataset, args.query, args.brain_key, args.k)
    _maybe_launch(view, args)
    return 0


def _on_workers(run: Callable[..., Any], args: argparse.Namespace, what: str) -> None:
    """Runs a sharded ``run`` of :mod:`fiftyone_videoprism.fo.shards`, printing progress."""
    print(f"Queueing up to {args.workers} shards for `fiftyone delegated launch` workers on "
          "this database", flush=True)
    status = run(args.workers, recompute=args.recompute, timeout_s=args.worker_timeout,
                 report=lambda progress: print(progress, flush=True))
    print(f"{what}: {status.done} of {_count(status.total, 'video')}")


def _search(args: argparse.Namespace) -> int:
    dataset = _existing_dataset(args.dataset)
    view = _print_matches(dataset, args.query, args.brain_key, args.k)
    _maybe_launch(view, args)
    return 0


def _tag(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo import runs

    if not args.classes:
        raise ValueError("--classes is required, e.g. --classes 'cooking,swimming'")
    classes = _classes(args)
    dataset = _existing_dataset(args.dataset)
    runs.check_label_field(dataset, args.label_field, _label_type(args))
    model, _ = _model_from_args(args, text=True)
    _zero_shot(dataset, model, classes, args)
    _maybe_launch(dataset.view(), args)
    return 0


def _moments(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo import index, moments, shards

    model, model_kwargs = _model_from_args(args, text=bool(args.query or args.classes))
    dataset = _dataset_for(args.source, args.dataset)
    print(f"Dataset '{dataset.name}': {len(dataset)} videos")
    grid = {key: getattr(args, key) for key in ("window_seconds", "stride_seconds",
                                                 "window_frames", "stride_frames")
            if getattr(args, key) is not None}
    backend_params = index.parse_backend_params(args.backend_params)
    if args.workers:
        _on_workers(functools.partial(shards.moments_on_workers, dataset, model, args.model,
                                      model_kwargs, args.field, grid=grid, backend=args.backend,
                                      backend_params=backend_params), args, "Windowed")
    else:
        stats = moments.compute_moments(dataset, model, args.field, model_kwargs=model_kwargs,
                                        skip_existing=not args.recompute, backend=args.backend,
                                        backend_params=backend_params, **grid)
        _report("Windowed", stats)
    view = dataset.to_clips(args.field) if dataset.has_field(args.field) else dataset.view()
    print(f"{len(view)} windows; the App searches them on the clips view of '{args.field}'")
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        stats = moments.tag_moments(dataset, model, classes, args.label_field,
                                    windows_field=args.field, **grid)
        print(f"Segments of {stats.written} videos in '{args.label_field}'")
    if args.query:
        view = moments.find_moments(dataset, args.query, k=args.k, threshold=args.threshold,
                                    windows_field=args.field, model=model)
        print(f"Top {len(view)} moments for {args.query!r}:")
        rows = zip(*view.values(["filepath", "support",
                                 f"{DEFAULT_MOMENTS_FIELD}.confidence"]), strict=True)
        for rank, (path, support, score) in enumerate(rows, start=1):
            print(f"{rank:3d}. {score:+.4f}  {path}  frames {support[0]}-{support[1]}")
    _maybe_launch(view, args)
    return 0


def _train(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.fo import classify

    dataset = _existing_dataset(args.dataset)
    model, _ = _model_from_args(args, text=False)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    clf = classify.train_classifier(
        dataset, model, args.labels, args.head, classes=classes,
        multi_label=True if args.multi_label else None, val_fraction=args.val_fraction,
        epochs=args.epochs, learning_rate=args.lr, seed=args.seed, progress=True)
    stats = clf.feature_stats
    print(f"Features of {stats.written} videos ({stats.computed} computed, the rest from the "
          f"store)" + (f"; {len(stats.failed)} could not be read" if stats.failed else ""))
    last = clf.history[-1]
    print(f"Trained {len(clf.history)} epochs: " + ", ".join(
        f"{k} {v:.4f}" for k, v in last.items() if k != "epoch"))
    path = clf.save(args.out or f"{dataset.name}_{args.labels}_{args.head}")
    print(f"Saved the head to {path} (and {path.with_suffix('.json').name})")
    if clf.evaluation is not None:
        clf.evaluation.print_report()
        plot = classify.save_confusion_matrix(clf.evaluation,
                                              path.with_name(path.stem + "_confusion.png"))
        print(f"Held-out accuracy {clf.evaluation.metrics()['accuracy']:.3f}; evaluation "
              f"'{clf.evaluation.key}'; confusion matrix {plot}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from fiftyone_videoprism.core import heads
    from fiftyone_videoprism.fo import classify

    dataset = _existing_dataset(args.dataset)
    _, spec = heads.load_head(args.head)
    if args.model is None:
        args.model = spec.backbone.get("name")
        if args.model is None:
            raise ValueError(f"{args.head} was trained on a model given by its architecture; "
                             f"pass --model, --model-config and --checkpoint")
    for key, value in (("num_frames", spec.num_frames), ("image_size", spec.image_size),
                       ("resize", spec.resize)):
        if getattr(args, key) is None:
            setattr(args, key, value)
    model, _ = _model_from_args(args, text=False)
    clf = classify.load_head(args.head, model)
    stats = classify.apply_classifier(dataset, clf, args.label_field,
                                      store_logits=args.store_logits, progress=True)
    _report("Classified", stats)
    path = args.label_field + (".classifications.label" if clf.multi_label else ".label")
    counts = dataset.count_values(path)
    print(f"Labels in '{args.label_field}': " + ", ".join(
        f"{name} {counts.get(name, 0)}" for name in clf.classes))
    return 0


# --------------------------------------------------------------------------------------------
# Helpers


def _dataset_for(source: str, name: str | None):
    """The dataset named ``source``, or one built from the folder ``source`` (videos not yet in
    it are added, so re-running after adding files embeds only the new ones)."""
    import fiftyone as fo
    import fiftyone.core.media as fom

    folder = Path(source).expanduser()
    if not folder.is_dir():
        return _existing_dataset(source)
    name = name or folder.resolve().name
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
    else:
        dataset = fo.Dataset(name, persistent=True)
    paths = [str(p.resolve()) for p in sorted(folder.rglob("*"))
             if p.is_file() and fom.get_media_type(str(p)) == fom.VIDEO]
    if not paths:
        raise ValueError(f"no video files found under {str(folder)!r}")
    known = set(dataset.values("filepath"))
    new = [p for p in paths if p not in known]
    if new:
        dataset.add_samples([fo.Sample(filepath=p) for p in new])
        # Frame counts, rates and sizes, which the App and clips views read.
        # Without warnings: a file FiftyOne cannot probe fails to embed too, and that error,
        # with its cause, is the one the user reads.
        dataset.select_by("filepath", new).compute_metadata(warn_failures=False)
    return dataset


def _existing_dataset(name: str):
    import fiftyone as fo

    if not fo.dataset_exists(name):
        raise ValueError(f"{name!r} is neither a folder nor a FiftyOne dataset; datasets: "
                         f"{', '.join(fo.list_datasets()) or '(none)'}")
    return fo.load_dataset(name)


def _classes(args: argparse.Namespace) -> list[str]:
    """--classes parsed and --template checked, before anything loads."""
    from fiftyone_videoprism.core import zeroshot

    zeroshot.check_templates(args.templates)
    return zeroshot.parse_classes(args.classes)


def _label_type(args: argparse.Namespace) -> type:
    import fiftyone.core.labels as fol

    return fol.Classifications if args.top_k else fol.Classification


def _model_from_args(args: argparse.Namespace, *, text: bool | None):
    """The zoo model and the load kwargs the similarity index stores for the App server."""
    from fiftyone_videoprism.fo import loading

    kwargs = loading.model_kwargs(
        checkpoint_path=args.checkpoint, tokenizer_path=args.tokenizer,
        model_config=args.model_config, num_frames=args.num_frames,
        image_size=args.image_size, resize=args.resize, batch_size=args.batch_size,
        dtype=args.dtype)
    return loading.zoo_model(args.model, kwargs, text=text), kwargs


def _zero_shot(dataset, model, classes: list[str], args: argparse.Namespace) -> None:
    from fiftyone_videoprism.fo import runs

    with model.run_settings(classes=classes, prompt_templates=args.templates,
                            store_logits=args.store_logits):
        stats = runs.apply_zero_shot(dataset, model, args.label_field,
                                     embeddings_field=args.field, tag_samples=args.sample_tags,
                                     top_k=args.top_k)
    _report("Tagged", stats)
    counts = runs.label_counts(dataset, args.label_field)
    summary = ", ".join(f"{name} {counts.get(name, 0)}" for name in classes)
    best = " (the best of each video's top {})".format(args.top_k) if args.top_k else ""
    print(f"Zero-shot labels in '{args.label_field}'{best}: {summary}")


def _map(dataset, field: str, label_field: str | None) -> None:
    from fiftyone_videoprism.fo import maps

    text = maps.describe_map(maps.build_map(dataset, field, label_field=label_field), field)
    print(text[0].upper() + text[1:])


def _print_matches(dataset, query: str, brain_key: str, k: int):
    """Prints the ``k`` best matches of ``query``; returns the sorted view."""
    import numpy as np

    from fiftyone_videoprism.fo.index import require_index

    require_index(dataset, brain_key)
    view = dataset.sort_by_similarity(query, k=k, brain_key=brain_key)
    results = dataset.load_brain_results(brain_key)
    field = results.config.embeddings_field
    scores: list[Any] = [None] * len(view)
    if field is not None:
        # Cosine similarity: the stored embeddings and the text embedding are unit-norm.
        text = results.get_model().embed_prompt(query)
        scores = [float(np.dot(vector, text)) for vector in view.values(field)]
    print(f"Top {len(view)} for {query!r}:")
    paths = view.values("filepath")
    for rank, (path, score) in enumerate(zip(paths, scores, strict=True), start=1):
        prefix = f"{rank:3d}. " + (f"{score:+.4f}  " if score is not None else "")
        print(prefix + path)
    return view


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _report(verb: str, stats: Any) -> None:
    failed = (f" ({len(stats.failed)} failed: their errors are in the field "
              f"'{stats.error_field}')" if stats.failed else "")
    print(f"{verb} {_count(stats.written, 'video')}{failed}")


def _maybe_launch(view, args: argparse.Namespace) -> None:
    if not args.app:
        return
    import fiftyone as fo

    session = fo.launch_app(view, port=args.port, address=args.address, remote=args.remote)
    session.wait()


if __name__ == "__main__":
    sys.exit(main())
