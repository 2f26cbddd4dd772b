"""FiftyOne plugin operators: embed videos, tag them zero-shot, build a text-searchable
similarity index and search it by text, train and apply few-shot classifier heads, from the App (immediately or delegated) or with
``fiftyone.operators.execute_operator``.

FiftyOne runs this file from a path under a made-up module name (through the shim that
:func:`fiftyone_videoprism.fo.plugin.install_plugin` writes, or the repository's ``fiftyone.yml``),
so it imports the package absolutely. The operators only build forms and read parameters; the
work is done by the functions the CLI calls too: :mod:`fiftyone_videoprism.fo.runs`,
:mod:`fiftyone_videoprism.fo.classify`, :func:`fiftyone_videoprism.fo.index.build_index`
and ``sort_by_similarity``.

Weights come from the Hugging Face Hub or the ``FIFTYONE_VIDEOPRISM_*`` environment variables
of the process that runs the operator; the "Local files" section of each form points to local
copies instead. Those paths are operator parameters, so a delegated run stores them and its
worker loads the same files.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.core.fields as fof
import fiftyone.core.labels as fol
import fiftyone.core.utils as fou
import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_videoprism.core import blas, heads, windows, zeroshot
from fiftyone_videoprism.fo import (classify, index, loading, maps, moments, outputs, runs,
                                    shards)
from fiftyone_videoprism.core.configs import get_config
from fiftyone_videoprism.fo.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_BRAIN_KEY,
                                             DEFAULT_CLASSIFIER_FIELD, DEFAULT_DIST_FIELD,
                                             DEFAULT_EMBEDDINGS_FIELD, DEFAULT_LABEL_FIELD,
                                             DEFAULT_MODEL, DEFAULT_MOMENT_LABELS_FIELD,
                                             DEFAULT_WINDOWS_FIELD)
from fiftyone_videoprism.core.settings import DEFAULT_DTYPE, DEFAULT_RESIZE, DTYPES, RESIZE_MODES
from fiftyone_videoprism.fo.zoo import zoo_model_names

T = TypeVar("T")

# Seconds between progress reports: often enough to look alive, rare enough to cost nothing.
_PROGRESS_INTERVAL = 1.0

# Label types whose class names can seed a zero-shot class list, with the list attribute that
# holds the individual labels ("" for single labels).
_CLASS_SOURCE_TYPES: dict[type, str] = {
    fol.Classification: "",
    fol.Classifications: "classifications",
    fol.Detection: "",
    fol.Detections: "detections",
    fol.TemporalDetection: "",
    fol.TemporalDetections: "detections",
}
_ZERO_SHOT_TYPES = (fol.Classification, fol.Classifications)


def _job_config(name: str, label: str, description: str,
                delegated_by_default: bool = True) -> foo.OperatorConfig:
    """The config every operator here shares: dynamic forms, progress streamed from a
    generator, immediate or delegated execution."""
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        dynamic=True,
        execute_as_generator=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=delegated_by_default,
    )


class ComputeEmbeddings(foo.Operator):
    """Stores one VideoPrism embedding per video or clip in a sample field."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("compute_embeddings", "Compute embeddings (VideoPrism)",
                           "Store one VideoPrism embedding per video or clip in a field")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Embed")
        model_form(ctx, inputs, text=False)
        field = embeddings_field_form(ctx, inputs, DEFAULT_EMBEDDINGS_FIELD,
                                      "Sample field that receives the embeddings")
        if field is not None:
            target = ctx.target_view()
            if target.has_field(field):
                missing = len(target.exists(field, False))
                choices = types.RadioGroup()
                choices.add_choice("skip", label=f"Embed only the {missing} videos without one")
                choices.add_choice("overwrite", label=f"Recompute all {len(target)} videos")
                inputs.enum("existing", choices.values(), default="skip", view=choices,
                            label=f"'{field}' already exists")
        map_form(ctx, inputs, field)
        workers_form(inputs)
        return types.Property(inputs, view=types.View(label="Compute VideoPrism embeddings"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        model, model_kwargs = model_from_form(ctx)
        field = ctx.params.get("embeddings_field") or DEFAULT_EMBEDDINGS_FIELD
        stats = yield from embed_with_progress(
            ctx, target, model, model_kwargs, field,
            recompute=ctx.params.get("existing", "skip") != "skip")
        message, links = f"Embedded {stats.written} videos into '{field}'", []
        if ctx.params.get("build_map", True):
            built = maps.build_map(target, field, label_field=_newest(zero_shot_fields(target)))
            message += "; " + maps.describe_map(built, field)
            links = map_links(built)
        yield from finish(ctx, message, stats, links=links)


class ZeroShotTag(foo.Operator):
    """Classifies videos zero-shot over typed, field-derived or file-listed classes."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("zero_shot_tag", "Zero-shot tag (VideoPrism)",
                           "Classify videos over class names given as text, with an LvT model")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        zero_shot_form(ctx, inputs)
        new_field_form(ctx, inputs, "label_field", DEFAULT_LABEL_FIELD, "Label field",
                       "Field that receives one Classification per video",
                       allowed_types=_ZERO_SHOT_TYPES)
        inputs.int("top_k", label="Top-k labels", min=1,
                   description="Optional: store the k most probable classes (a Classifications, "
                               "best first) instead of one label; with sample tags, all k are "
                               "added")
        top_k = ctx.params.get("top_k")
        if top_k is not None and top_k < 1:
            inputs.get_property("top_k").invalid = True
            inputs.get_property("top_k").error_message = "Top-k must be at least 1"
        inputs.bool("store_logits", default=False, label="Store logits",
                    description="Keep the per-class logits (similarity / 0.01) on each label")
        inputs.bool("tag_samples", default=False, label="Also add sample tags",
                    description="Add each video's predicted class to its sample tags")
        embeddings_field_form(
            ctx, inputs, stored_embeddings_field(ctx, None),
            "Optional: embeddings of the same model are reused from this field (no "
            "decoding), and new ones are stored there",
        )
        return types.Property(inputs, view=types.View(label="Zero-shot tag with VideoPrism"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        classes = resolve_classes(ctx)
        templates = ctx.params.get("prompt_templates") or None
        zeroshot.check_templates(templates)
        top_k = ctx.params.get("top_k") or None
        field = ctx.params.get("label_field") or DEFAULT_LABEL_FIELD
        runs.check_label_field(target, field,
                               fol.Classifications if top_k else fol.Classification)
        model, _ = model_from_form(ctx, text=True)

        def tag(progress):
            with model.run_settings(classes=classes, prompt_templates=templates,
                                    store_logits=ctx.params.get("store_logits", False)):
                return runs.apply_zero_shot(
                    target, model, field,
                    embeddings_field=ctx.params.get("embeddings_field") or None,
                    tag_samples=bool(ctx.params.get("tag_samples", False)),
                    top_k=top_k, progress=progress)

        stats = yield from run_with_progress(ctx, "Tagging videos", tag)
        yield from finish(
            ctx, f"Tagged {stats.written} videos into '{field}' over {len(classes)} classes",
            stats, distribution=runs.label_counts(target, field),
            links=[labelled_link(target, field)])


class BuildTextIndex(foo.Operator):
    """Embeds the videos and registers a similarity index that the App can query by text."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("build_text_index", "Build text index (VideoPrism)",
                           "Index videos for text search in the App's similarity search box")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Index")
        new_brain_key_form(ctx, inputs)
        model_form(ctx, inputs, text=True)
        field = embeddings_field_form(
            ctx, inputs, stored_embeddings_field(ctx, DEFAULT_EMBEDDINGS_FIELD),
            "Embeddings already in this field are reused (they must come from the same model "
            "and settings); missing ones are computed and stored there",
        )
        if field is not None and ctx.target_view().has_field(field):
            target = ctx.target_view()
            have = len(target.exists(field))
            inputs.view("reuse", types.Notice(
                label=f"Reusing {have} of {len(target)} embeddings stored in '{field}'"))
        backend_form(ctx, inputs)
        workers_form(inputs)
        return types.Property(inputs, view=types.View(label="Build a VideoPrism text index"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        model, model_kwargs = model_from_form(ctx, text=True)
        field = ctx.params.get("embeddings_field") or DEFAULT_EMBEDDINGS_FIELD
        brain_key = ctx.params.get("brain_key") or DEFAULT_BRAIN_KEY
        stats = yield from embed_with_progress(ctx, target, model, model_kwargs, field,
                                               recompute=False)
        # By zoo name and load kwargs, not the model object: the index records them, so the App
        # server (another process) can load the text encoder for every query.
        index.build_index(target, ctx.params.get("model", DEFAULT_MODEL), model_kwargs, field,
                          brain_key, **backend_params(ctx))
        yield from finish(
            ctx, f"Built text index '{brain_key}' over {len(target)} videos", stats,
            links=[outputs.OperatorLink("Search it by text",
                                        f"{self.plugin_name}/search_by_text",
                                        {"brain_key": brain_key})])


class EmbedShard(foo.Operator):
    """One shard of a sharded run (:mod:`fiftyone_videoprism.fo.shards`): queued by
    ``--workers N`` or the *Workers* field of the embedding operators, run by a
    ``fiftyone delegated launch`` worker."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name="embed_shard", label="Embed a shard (VideoPrism)",
                                  unlisted=True, allow_immediate_execution=False,
                                  allow_delegated_execution=True)

    def execute(self, ctx) -> dict[str, Any]:
        stats = shards.execute_shard(ctx)
        return {"written": stats.written, "computed": stats.computed, "failed": stats.failed}


class SearchByText(foo.Operator):
    """Sorts the current view by similarity to a text query through a prompt-capable index."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="search_by_text",
            label="Search by text (VideoPrism)",
            description="Sort the current view by a text query; store the similarity per video",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        text_index_form(ctx, inputs)
        query = inputs.str("query", required=True, label="Query",
                           description="e.g. a person cooking in a kitchen")
        if ctx.params.get("query") is not None and not ctx.params["query"].strip():
            query.invalid = True
            query.error_message = "Enter a text query"
        inputs.int("k", min=1, label="Number of matches",
                   description="Keep only the k best matches; empty: sort the whole view")
        inputs.bool("reverse", default=False, label="Least similar first")
        inputs.str("dist_field", default=DEFAULT_DIST_FIELD, label="Similarity field",
                   description="Sample field that stores each match's distance to the query "
                               "(overwritten by each search); empty: store nothing")
        name = inputs.str("saved_view", label="Save as view",
                          description="Optional: save the result under this view name")
        wanted = ctx.params.get("saved_view")
        if wanted and ctx.dataset.has_saved_view(wanted):
            name.invalid = True
            name.error_message = f"A saved view named '{wanted}' already exists"
        return types.Property(inputs, view=types.View(label="Search videos by text"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        view = ctx.view.sort_by_similarity(
            ctx.params["query"],
            k=ctx.params.get("k"),
            reverse=bool(ctx.params.get("reverse", False)),
            dist_field=ctx.params.get("dist_field", DEFAULT_DIST_FIELD) or None,
            brain_key=ctx.params["brain_key"],
        )
        saved = ctx.params.get("saved_view")
        if saved:
            ctx.dataset.save_view(saved, view)
        if not ctx.delegated:
            yield ctx.ops.set_view(view)
        message = f"{len(view)} matches for {ctx.params['query']!r}" + (
            f", saved as the view '{saved}'" if saved else "")
        yield from outputs.show_results(ctx, outputs.RunResult(
            message, links=[outputs.ViewLink("Show the matches, best first", view)]))


class ComputeMoments(foo.Operator):
    """Embeds overlapping windows of every video and indexes them for text search."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("compute_moments", "Compute moments (VideoPrism)",
                           "Embed overlapping windows of long videos and index them, so "
                           "text search finds when something happens")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Window")
        model_form(ctx, inputs, text=False)
        inputs.str("windows_field", default=DEFAULT_WINDOWS_FIELD, label="Windows field",
                   description="TemporalDetections field of the windows; the App searches "
                               "its clips view")
        grid_form(inputs)
        inputs.bool("skip_existing", default=True, label="Skip videos that have windows",
                    description="Resume: compute only videos without windows (or that failed)")
        backend_form(ctx, inputs)
        workers_form(inputs)
        return types.Property(inputs, view=types.View(label="Compute VideoPrism moments"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        model, kwargs = model_from_form(ctx)
        field = ctx.params.get("windows_field") or DEFAULT_WINDOWS_FIELD
        skip = bool(ctx.params.get("skip_existing", True))
        stats = yield from run_here_or_on_workers(
            ctx, target, field, "Embedding windows",
            lambda progress: moments.compute_moments(
                target, model, field, model_kwargs=kwargs, progress=progress,
                skip_existing=skip, **backend_params(ctx), **grid_params(ctx)),
            lambda workers, report: shards.moments_on_workers(
                target, model, ctx.params.get("model", DEFAULT_MODEL), kwargs, field, workers,
                grid=grid_params(ctx), recompute=not skip, report=report,
                **backend_params(ctx)))
        yield from finish(ctx, f"Windows of {stats.written} videos in '{field}'; search them "
                               f"on the clips view of '{field}'", stats)


class FindMoments(foo.Operator):
    """Opens the best moments for a text query as a clips view, best first."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="find_moments",
            label="Find moments (VideoPrism)",
            description="Find when something happens: the best windows for a text query",
            dynamic=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        fields = sorted(ctx.dataset.info.get(moments.INFO_KEY, {}))
        if not fields:
            message = ("This dataset has no moments yet; run 'Compute moments (VideoPrism)' "
                       "first")
            inputs.view("no_moments", types.Warning(label=message))
            prop = inputs.str("windows_field", required=True, view=types.HiddenView())
            prop.invalid = True
            prop.error_message = message
            return types.Property(inputs)
        default = DEFAULT_WINDOWS_FIELD if DEFAULT_WINDOWS_FIELD in fields else fields[0]
        inputs.enum("windows_field", fields, default=default, label="Windows",
                    view=types.DropdownView())
        query = inputs.str("query", required=True, label="Query",
                           description="e.g. a person opens a door")
        if ctx.params.get("query") is not None and not ctx.params["query"].strip():
            query.invalid = True
            query.error_message = "Enter a text query"
        inputs.int("k", default=10, min=1, label="Number of moments")
        inputs.float("threshold", label="Merge threshold",
                     description="Optional: adjacent windows scoring at least this (cosine "
                                 "similarity) merge into one moment, and lower ones are "
                                 "dropped; empty: every window is a moment")
        return types.Property(inputs, view=types.View(label="Find moments"))

    def execute(self, ctx) -> dict[str, Any]:
        # From a clips view (e.g. the last result), search the videos it came from.
        samples = ctx.dataset if ctx.view._is_clips else ctx.view
        view = moments.find_moments(
            samples, ctx.params["query"], k=ctx.params.get("k") or 10,
            threshold=ctx.params.get("threshold"),
            windows_field=ctx.params.get("windows_field") or DEFAULT_WINDOWS_FIELD)
        ctx.ops.set_view(view)
        return {"moments": len(view)}


class TagMoments(foo.Operator):
    """Zero-shot segments: consecutive windows with one top class become one label."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("tag_moments", "Tag moments (VideoPrism)",
                           "Label segments of long videos zero-shot (temporal localisation)")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        zero_shot_form(ctx, inputs)
        new_field_form(ctx, inputs, "label_field", DEFAULT_MOMENT_LABELS_FIELD, "Label field",
                       "Field that receives the labelled segments of each video",
                       allowed_types=(fol.TemporalDetections,))
        inputs.float("threshold", default=0.0, min=0.0, max=1.0, label="Threshold",
                     description="Probability a window needs to be part of a segment")
        inputs.str("windows_field", default=DEFAULT_WINDOWS_FIELD, label="Windows field",
                   description="Windows to classify; videos without them get them first")
        grid_form(inputs)
        return types.Property(inputs, view=types.View(label="Tag moments with VideoPrism"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        classes = resolve_classes(ctx)
        model, kwargs = model_from_form(ctx, text=True)
        field = ctx.params.get("label_field") or DEFAULT_MOMENT_LABELS_FIELD
        stats = yield from run_with_progress(
            ctx, "Tagging moments",
            lambda progress: moments.tag_moments(
                target, model, classes, field,
                threshold=ctx.params.get("threshold") or 0.0,
                prompt_templates=ctx.params.get("prompt_templates") or None,
                windows_field=ctx.params.get("windows_field") or DEFAULT_WINDOWS_FIELD,
                model_kwargs=kwargs, progress=progress, **grid_params(ctx)),
        )
        yield from finish(ctx, f"Tagged segments of {stats.written} videos into '{field}'",
                          stats)


class TrainClassifier(foo.Operator):
    """Trains a few-shot head on the frozen encoder from a label field or sample tags, saves
    it, and evaluates it on held-out samples with FiftyOne's evaluation."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("train_classifier", "Train classifier (VideoPrism)",
                           "Train a classifier head on the frozen encoder from the labels "
                           "in a field or the sample tags")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Train on")
        model_form(ctx, inputs, text=False)
        fields = sorted(ctx.dataset.get_field_schema(embedded_doc_type=_ZERO_SHOT_TYPES))
        inputs.enum("label_field", [*fields, classify.TAGS], required=True,
                             label="Labels", view=types.DropdownView(),
                             description="A Classification field (single-label), a "
                                         "Classifications field (multi-label), or the tags")
        if ctx.params.get("label_field") == classify.TAGS:
            inputs.str("classes", required=True, label="Tags to learn",
                       description="Comma-separated; a video carrying one of them is a "
                                   "training example")
            inputs.bool("multi_label", default=False, label="Several tags per video")
        head = types.RadioGroup()
        head.add_choice("attention", label="Attention pooler (the original's head)")
        head.add_choice("linear", label="Linear probe on the embedding (faster, smaller)")
        inputs.enum("head", head.values(), default="attention", view=head, label="Head")
        inputs.int("epochs", default=100, min=1, label="Epochs (at most)")
        inputs.float("learning_rate", default=1e-3, min=0, label="Learning rate")
        inputs.float("val_fraction", default=0.2, min=0, max=0.9, label="Held-out share",
                     description="Per class, for early stopping and the evaluation")
        inputs.int("seed", default=0, label="Seed")
        default_path = str(Path(fo.config.default_dataset_dir).parent / "videoprism-heads"
                           / f"{ctx.dataset.name}_{ctx.params.get('label_field') or 'labels'}")
        out = inputs.str("head_path", default=default_path, label="Save head as",
                         description="Writes <path>.safetensors, <path>.json and "
                                     "<path>_confusion.png")
        wanted = ctx.params.get("head_path")
        if wanted and not Path(wanted).expanduser().parent.exists() and \
                not Path(wanted).expanduser().parent.parent.exists():
            out.invalid = True
            out.error_message = f"No folder to save '{wanted}' in"
        if not fields:
            inputs.view("no_labels", types.Notice(
                label="This dataset has no Classification fields: train on tags"))
        return types.Property(inputs, view=types.View(label="Train a VideoPrism classifier"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        model, _ = model_from_form(ctx)
        label_field = ctx.params["label_field"]
        classes = None
        if label_field == classify.TAGS:
            classes = [c.strip() for c in ctx.params.get("classes", "").split(",") if c.strip()]
        clf = yield from run_with_progress(
            ctx, "Training classifier",
            lambda progress: classify.train_classifier(
                target, model, label_field, ctx.params.get("head", "attention"),
                classes=classes, multi_label=ctx.params.get("multi_label") or None,
                val_fraction=ctx.params.get("val_fraction", 0.2),
                epochs=ctx.params.get("epochs", 100),
                learning_rate=ctx.params.get("learning_rate", 1e-3),
                seed=ctx.params.get("seed", 0), progress=progress),
        )
        path = clf.save(os.path.expanduser(ctx.params["head_path"]))
        message = f"Trained a {clf.spec.head} head over {len(clf.classes)} classes; saved {path}"
        if clf.evaluation is not None:
            plot = classify.save_confusion_matrix(
                clf.evaluation, path.with_name(path.stem + "_confusion.png"))
            message += (f"; held-out accuracy {clf.evaluation.metrics()['accuracy']:.3f} "
                        f"(evaluation '{clf.evaluation.key}', confusion matrix {plot})")
        yield from finish(ctx, message, clf.feature_stats)


class ApplyClassifier(foo.Operator):
    """Labels videos with a head saved by "Train classifier (VideoPrism)"."""

    @property
    def config(self) -> foo.OperatorConfig:
        return _job_config("apply_classifier", "Apply classifier (VideoPrism)",
                           "Label videos with a saved VideoPrism classifier head")

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Classify")
        model_form(ctx, inputs, text=False)
        prop = inputs.str("head_path", required=True, label="Head",
                          description="The .safetensors or .json of a saved head")
        wanted = ctx.params.get("head_path")
        if wanted:
            try:
                _, spec = heads.load_head(Path(wanted).expanduser())
            except (OSError, ValueError) as err:
                prop.invalid = True
                prop.error_message = str(err)
            else:
                inputs.view("head_info", types.Notice(
                    label=f"{spec.head} head, {len(spec.classes)} classes "
                          f"({', '.join(spec.classes[:6])}{', ...' if len(spec.classes) > 6 else ''})"
                          f", trained on {spec.backbone.get('name') or 'a local model'}"))
        new_field_form(ctx, inputs, "label_field", DEFAULT_CLASSIFIER_FIELD, "Label field",
                       "Field that receives one label per video", allowed_types=_ZERO_SHOT_TYPES)
        inputs.bool("store_logits", default=False, label="Store logits")
        return types.Property(inputs, view=types.View(label="Apply a VideoPrism classifier"))

    def execute(self, ctx) -> Generator[Any, None, None]:
        target = ctx.target_view()
        model, _ = model_from_form(ctx)
        clf = classify.load_head(os.path.expanduser(ctx.params["head_path"]), model)
        field = ctx.params.get("label_field") or DEFAULT_CLASSIFIER_FIELD
        stats = yield from run_with_progress(
            ctx, "Classifying videos",
            lambda progress: classify.apply_classifier(
                target, clf, field, store_logits=bool(ctx.params.get("store_logits")),
                progress=progress),
        )
        yield from finish(ctx, f"Classified {stats.written} videos into '{field}'", stats,
                          distribution=runs.label_counts(target, field),
                          links=[labelled_link(target, field)])


# ---------------------------------------------------------------------------------------------
# Shared form pieces


def zero_shot_form(ctx, inputs: types.Object) -> None:
    """What to tag, the LvT model, the classes and the prompt templates."""
    inputs.view_target(ctx, action_description="Tag")
    model_form(ctx, inputs, text=True)
    classes_form(ctx, inputs)
    templates_form(ctx, inputs)


def model_form(ctx, inputs: types.Object, *, text: bool) -> None:
    """Model choice, sampling, batching and the optional local-files section."""
    names = [n for n in zoo_model_names() if get_config(n).is_lvt or not text]
    model = inputs.enum(
        "model", names, default=DEFAULT_MODEL, label="Model", view=types.DropdownView(),
        description="VideoPrism video-text (LvT) models embed text prompts"
        if text else "LvT models also support text search and zero-shot tagging",
    )
    chosen = ctx.params.get("model")
    if text and chosen is not None and chosen in zoo_model_names() and chosen not in names:
        model.invalid = True
        model.error_message = (f"{chosen} has no text encoder, so it cannot embed prompts; "
                               "choose an LvT model")
    inputs.int("num_frames", min=1, label="Frames per video",
               description="Sampled uniformly over each video or clip; empty: the model's "
                           "trained count")
    inputs.int("image_size", min=1, label="Frame size",
               description="Side of the square frames, a multiple of 18; empty: 288")
    inputs.enum("resize", list(RESIZE_MODES), default=DEFAULT_RESIZE, label="Resize",
                description="squash: whole frame to a square (the original demo); "
                            "center_crop: keep proportions, crop the centre (the original "
                            "colab); *_swscale: the same resized by FFmpeg (faster, not the "
                            "original's pixels)")
    inputs.enum("dtype", list(DTYPES), default=DEFAULT_DTYPE, label="Precision",
                description="float32 is the reference and the fastest on a CPU")
    inputs.int("batch_size", min=1, default=DEFAULT_BATCH_SIZE, label="Batch size",
               description="Videos per MLX call")
    inputs.bool("local_files", default=False, label="Local files",
                description="Load weights, tokenizer or architecture from local paths "
                            "instead of the Hub or the FIFTYONE_VIDEOPRISM_* variables")
    if not ctx.params.get("local_files", False):
        return
    paths = [
        ("checkpoint_path", "Checkpoint",
         "A released flax_*_repeated.npz, a converted *.mlx.safetensors, or their folder"),
        ("model_config", "Architecture (JSON)",
         "Original constructor kwargs overriding the model's architecture; needs a checkpoint"),
    ]
    if text:
        paths.append(("tokenizer_path", "Tokenizer", "The c4_en SentencePiece .model file"))
    for key, label, description in paths:
        prop = inputs.str(key, label=label, description=description)
        value = ctx.params.get(key)
        if value and not Path(value).expanduser().exists():
            prop.invalid = True
            prop.error_message = f"Nothing at '{value}'"
        elif key == "model_config" and value and not ctx.params.get("checkpoint_path"):
            prop.invalid = True
            prop.error_message = "An architecture override needs its checkpoint too"


def grid_form(inputs: types.Object) -> None:
    """Window span and stride in seconds (empty: the defaults)."""
    inputs.float("window_seconds", min=0.0, label="Window (seconds)",
                 description=f"Span of each window; empty: {windows.DEFAULT_WINDOW_SECONDS:g}")
    inputs.float("stride_seconds", min=0.0, label="Stride (seconds)",
                 description="Time between window starts, a multiple of window / frames; "
                             f"empty: {windows.DEFAULT_STRIDE_SECONDS:g}")


def grid_params(ctx) -> dict[str, float]:
    return {key: ctx.params[key] for key in ("window_seconds", "stride_seconds")
            if ctx.params.get(key)}


def backend_form(ctx, inputs: types.Object) -> None:
    """The similarity backend of the index a run builds, and its parameters."""
    backends = installed_similarity_backends()
    default = fob.brain_config.default_similarity_backend
    inputs.enum("backend", backends, default=default if default in backends else backends[0],
                label="Backend", view=types.DropdownView(),
                description="Similarity backends whose client package is installed here")
    params = inputs.list("backend_params", types.String(), label="Backend parameters",
                         description="Optional NAME=VALUE items, e.g. uri=/data/lancedb; "
                                     "connection parameters are saved to the brain config")
    try:
        index.parse_backend_params(ctx.params.get("backend_params"))
    except ValueError as err:
        params.invalid = True
        params.error_message = str(err)


def backend_params(ctx) -> dict[str, Any]:
    """``backend`` and ``backend_params`` for :func:`~fiftyone_videoprism.fo.index.build_index`
    from the form of :func:`backend_form`."""
    return {"backend": ctx.params.get("backend"),
            "backend_params": index.parse_backend_params(ctx.params.get("backend_params"))}


def workers_form(inputs: types.Object) -> None:
    """The number of shards for ``fiftyone delegated launch`` workers (0: this process)."""
    inputs.int("workers", default=0, min=0, label="Workers",
               description="0: embed here. N: split the videos into N shards, queued as "
                           "delegated operations for `fiftyone delegated launch` workers on "
                           "this database; this run waits for them, re-queues a shard whose "
                           "worker stops beating, then builds what follows")


def embed_with_progress(ctx, target, model, model_kwargs: dict[str, Any], field: str, *,
                        recompute: bool) -> Generator[Any, None, runs.RunStats]:
    """Embeds ``target`` into ``field`` here, or on the form's number of workers, reporting
    progress (use with ``yield from``)."""
    return (yield from run_here_or_on_workers(
        ctx, target, field, "Embedding videos",
        lambda progress: runs.compute_embeddings(target, model, field,
                                                  skip_existing=not recompute,
                                                  progress=progress),
        lambda workers, report: shards.embed_on_workers(
            target, model, ctx.params.get("model", DEFAULT_MODEL), model_kwargs, field, workers,
            recompute=recompute, report=report)))


def run_here_or_on_workers(ctx, target, field: str, label: str,
                           here: Callable[[Callable], runs.RunStats],
                           on_workers: Callable[[int, Callable], shards.ShardProgress],
                           ) -> Generator[Any, None, runs.RunStats]:
    """``here(progress)`` when the form's *Workers* is 0, else ``on_workers(n, report)``
    (a sharded run of :mod:`fiftyone_videoprism.fo.shards` writing ``field``), reporting
    progress either way; returns the run's stats (use with ``yield from``)."""
    workers = ctx.params.get("workers") or 0
    if not workers:
        return (yield from run_with_progress(ctx, label, here))
    # Shard progress changes once a poll at most: every report is shown.
    status = yield from run_with_progress(ctx, f"{label} on workers",
                                          lambda report: on_workers(workers, report),
                                          throttle=False)
    return shards.stats_of(target, field, status)


def map_form(ctx, inputs: types.Object, field: str | None) -> None:
    """The "embeddings map" checkbox (on by default: the map costs little next to the
    embeddings; see :mod:`fiftyone_videoprism.fo.maps`)."""
    key = maps.map_brain_key(field or DEFAULT_EMBEDDINGS_FIELD)
    inputs.bool("build_map", default=True, label="Embeddings map",
                description=f"Lay the embeddings out in 2-D for the App's Embeddings panel "
                            f"(brain key '{key}', replaced if it exists)")


def embeddings_field_form(ctx, inputs: types.Object, default: str | None,
                          description: str) -> str | None:
    """The embeddings field input (empty: ``default``, which None makes optional); flags a
    field that exists but holds something else."""
    prop = inputs.str("embeddings_field", default=default, label="Embeddings field",
                      description=description)
    field = ctx.params.get("embeddings_field") or default
    if not field:
        return None
    target = ctx.target_view()
    if target.has_field(field) and not _is_vector_field(target.get_field(field)):
        prop.invalid = True
        prop.error_message = f"Field '{field}' exists and does not hold embeddings"
        return None
    return field


def new_field_form(ctx, inputs: types.Object, name: str, default: str, label: str,
                   description: str, *, allowed_types: tuple[type, ...]) -> None:
    """An output label field; an existing field needs "overwrite" and a compatible type."""
    prop = inputs.str(name, default=default, label=label, description=description)
    field = ctx.params.get(name) or default
    target = ctx.target_view()
    if not field or not target.has_field(field):
        return
    existing = target.get_field(field)
    if not (isinstance(existing, fof.EmbeddedDocumentField)
            and issubclass(existing.document_type, allowed_types)):
        prop.invalid = True
        prop.error_message = f"Field '{field}' exists and holds other data; choose another name"
        return
    inputs.bool("overwrite", default=False, label=f"Overwrite '{field}'",
                description="Replace the labels already stored there")
    if not ctx.params.get("overwrite", False):
        prop.invalid = True
        prop.error_message = f"Field '{field}' already exists; tick Overwrite or rename"


def classes_form(ctx, inputs: types.Object) -> None:
    """Where the class names come from, and a preview (or the reason there are none)."""
    sources = types.RadioGroup()
    sources.add_choice("text", label="Type them")
    sources.add_choice("field", label="From a label field")
    sources.add_choice("file", label="From a text file")
    inputs.enum("classes_from", sources.values(), default="text", view=sources,
                label="Classes")
    source = ctx.params.get("classes_from", "text")
    if source == "text":
        prop = inputs.str("classes", required=True, label="Class names",
                          description="Comma-separated, e.g. cooking, swimming, playing drums")
    elif source == "field":
        fields = sorted(ctx.dataset.get_field_schema(
            embedded_doc_type=tuple(_CLASS_SOURCE_TYPES)).keys())
        if not fields:
            prop = inputs.str("classes_field", required=True, label="Label field",
                              view=types.HiddenView())
            prop.invalid = True
            prop.error_message = "This dataset has no label fields to take classes from"
            inputs.view("no_fields", types.Warning(label=prop.error_message))
            return
        prop = inputs.enum("classes_field", fields, required=True, label="Label field",
                           view=types.DropdownView(),
                           description="Its distinct label values become the classes")
    else:
        prop = inputs.str("classes_file", required=True, label="Class file",
                          description="A UTF-8 text file with one class name per line")
    try:
        classes = resolve_classes(ctx)
    except (ValueError, OSError) as err:
        # Nothing entered yet is not an error to show; the required flag covers submission.
        if _class_param(ctx) is not None:
            prop.invalid = True
            prop.error_message = str(err)
        return
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    inputs.view("classes_preview", types.Notice(label=f"{len(classes)} classes: {shown}"))


def templates_form(ctx, inputs: types.Object) -> None:
    """Prompt templates, each with one ``{}``; several are averaged per class."""
    prop = inputs.list("prompt_templates", types.String(), default=list(zeroshot.DEFAULT_TEMPLATES),
                       label="Prompt templates",
                       description="Each with one {} for the class name; several are averaged")
    try:
        zeroshot.check_templates(ctx.params.get("prompt_templates") or None)
    except ValueError as err:
        prop.invalid = True
        prop.error_message = str(err)


def new_brain_key_form(ctx, inputs: types.Object) -> None:
    """A brain key that is a valid identifier; a taken one is replaced by the new index."""
    prop = inputs.str("brain_key", default=DEFAULT_BRAIN_KEY, label="Brain key",
                      description="Name of the index; the App's search box lists it")
    key = ctx.params.get("brain_key") or DEFAULT_BRAIN_KEY
    if key and key in ctx.dataset.list_brain_runs():
        inputs.view("replaces", types.Notice(
            label=f"Replaces the index '{key}' once the new one has been built and checked"))
    elif key and not key.isidentifier():
        prop.invalid = True
        prop.error_message = "Brain keys must be valid variable names, e.g. videoprism_text"


def text_index_form(ctx, inputs: types.Object) -> None:
    """The choice among this dataset's similarity indexes that accept text prompts."""
    keys = text_indexes(ctx.dataset)
    if not keys:
        message = ("This dataset has no similarity indexes that support text prompts; "
                   "build one with 'Build text index (VideoPrism)'")
        inputs.view("no_index", types.Warning(label=message))
        prop = inputs.str("brain_key", required=True, view=types.HiddenView())
        prop.invalid = True
        prop.error_message = message
        return
    default = DEFAULT_BRAIN_KEY if DEFAULT_BRAIN_KEY in keys else keys[0]
    prop = inputs.enum("brain_key", keys, default=default, required=True, label="Index",
                       view=types.DropdownView())
    wanted = ctx.params.get("brain_key")
    if wanted is not None and wanted not in keys:
        prop.invalid = True
        prop.error_message = f"'{wanted}' is not a text-searchable index of this dataset"


# ---------------------------------------------------------------------------------------------
# Parameters -> library arguments


def model_kwargs(ctx) -> dict[str, Any]:
    """Zoo load kwargs from the form (:func:`fiftyone_videoprism.fo.loading.model_kwargs`)."""
    local = ctx.params.get("local_files", False)
    return loading.model_kwargs(
        num_frames=ctx.params.get("num_frames"), batch_size=ctx.params.get("batch_size"),
        image_size=ctx.params.get("image_size"), resize=ctx.params.get("resize"),
        dtype=ctx.params.get("dtype"),
        **{key: ctx.params.get(key) if local else None for key in loading.PATH_KEYS})


def model_from_form(ctx, *, text: bool = False):
    """The chosen zoo model and its load kwargs (:func:`fiftyone_videoprism.fo.loading.zoo_model`)."""
    kwargs = model_kwargs(ctx)
    return loading.zoo_model(ctx.params.get("model", DEFAULT_MODEL), kwargs, text=text), kwargs


def resolve_classes(ctx) -> list[str]:
    """The class list the form describes, in a stable order, without duplicates.

    Raises:
        ValueError: nothing given, or the source yields no class names
        OSError: the class file cannot be read
    """
    source = ctx.params.get("classes_from", "text")
    value = _class_param(ctx)
    if not value:
        raise ValueError("Enter at least one class name")
    if source == "text":
        names: list[str] | str = value
    elif source == "field":
        names = ctx.dataset.distinct(_label_path(ctx.dataset, value))
    else:
        names = Path(value).expanduser().read_text(encoding="utf-8").splitlines()
    if not [n for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]:
        raise ValueError(f"No class names in {value!r}")
    return zeroshot.parse_classes(names)


def zero_shot_fields(samples) -> list[str]:
    """Label fields this package's zero-shot runs wrote, oldest first."""
    schema = samples.get_field_schema(embedded_doc_type=_ZERO_SHOT_TYPES)
    return [name for name in schema
            if (runs.field_provenance(samples, name) or {}).get("classes") is not None]


def embeddings_fields(samples) -> list[str]:
    """Vector fields this package wrote."""
    return [name for name, field in samples.get_field_schema().items()
            if _is_vector_field(field) and runs.field_provenance(samples, name) is not None]


def stored_embeddings_field(ctx, fallback: str | None) -> str | None:
    """A form's default embeddings field: the default field, else the newest one that the
    chosen model wrote, else ``fallback``."""
    target = ctx.target_view()
    model = ctx.params.get("model", DEFAULT_MODEL)
    mine = [name for name in embeddings_fields(target)
            if runs.field_provenance(target, name).get("model") == model]
    if DEFAULT_EMBEDDINGS_FIELD in mine:
        return DEFAULT_EMBEDDINGS_FIELD
    return _newest(mine) or fallback


def text_indexes(dataset) -> list[str]:
    """Brain keys of the similarity indexes of ``dataset`` that accept text prompts."""
    return [key for key in dataset.list_brain_runs(type=fob.Similarity)
            if dataset.get_brain_info(key).config.supports_prompts]


def installed_similarity_backends() -> list[str]:
    """Similarity backends whose requirements are met here (sklearn always is)."""
    import eta.core.utils as etau

    names = []
    for name, spec in fob.brain_config.similarity_backends.items():
        try:
            etau.get_class(spec["config_cls"])().build().ensure_requirements()
        except (ImportError, ValueError):
            # A missing client package (PackageError is an ImportError), or a backend that
            # cannot even be configured without extra settings: not offered.
            continue
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# Running


def run_with_progress(ctx, label: str, work: Callable[[Callable], T], *,
                      throttle: bool = True) -> Generator[Any, None, T]:
    """Runs ``work(progress)``, where ``progress`` is a FiftyOne progress callback (called at
    most every few seconds; every time without ``throttle``, for reports that are rare and
    need only a ``progress`` attribute), and reports its progress; returns what ``work``
    returns (use with ``yield from``).

    Delegated runs report through ``ctx.set_progress`` (stored on the run, shown in the App's
    runs list). Immediate runs have no such channel: the work runs in a thread while this
    generator yields App progress messages, which the App shows as they stream in.
    """
    def every(report: Callable) -> Callable:
        return fou.report_progress(report, dt=_PROGRESS_INTERVAL) if throttle else report

    if ctx.delegated:
        def report(pb) -> None:
            ctx.set_progress(progress=pb.progress, label=label)

        return work(every(report))

    updates: queue.Queue[float] = queue.Queue()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work, every(lambda pb: updates.put(pb.progress)))
        while not (future.done() and updates.empty()):
            try:
                progress = updates.get(timeout=0.2)
            except queue.Empty:
                continue
            yield ctx.ops.set_progress(label=label, progress=progress)
    return future.result()


def finish(ctx, message: str, stats: runs.RunStats, *,
           distribution: dict[str, int] | None = None,
           links: list[outputs.Link] = (),
           ) -> Generator[Any, None, None]:
    """Ends a run: the new fields, a notification and the results panel (counts, the label
    ``distribution``, a button to the failures, then ``links``); see
    :func:`fiftyone_videoprism.fo.outputs.show_results`."""
    failed = len(stats.failed)
    if failed:
        message += f"; {failed} failed: their errors are in the field '{stats.error_field}'"
    # The model ran slowly without a fast BLAS: said here, where an App user looks.
    slow = blas.blas_info()["problem"] if stats.computed else None
    yield from outputs.show_results(ctx, outputs.RunResult(
        message, stats.written, failed, stats.error_field, distribution,
        [*outputs.failures_link(ctx.target_view(), stats.error_field, failed), *links],
        notes=[slow] if slow else []))


def labelled_link(samples, field: str) -> outputs.ViewLink:
    """The button that opens the videos labelled in ``field``, most confident first (single
    labels; lists of labels keep the collection's order)."""
    labelled = samples.exists(field)
    single = samples.get_field(field).document_type is fol.Classification
    if single:
        labelled = labelled.sort_by(f"{field}.confidence", reverse=True)
    return outputs.ViewLink(f"Show the {len(labelled)} labelled videos"
                            + (", most confident first" if single else ""), labelled)


def map_links(built: maps.EmbeddingsMap | None) -> list[outputs.PanelLink]:
    """The button that opens the Embeddings panel on a map."""
    return [] if built is None else [outputs.PanelLink(
        f"Open the Embeddings panel ('{built.brain_key}')", "Embeddings")]


def _newest(names: list[str]) -> str | None:
    return names[-1] if names else None


def _class_param(ctx) -> str | None:
    key = {"text": "classes", "field": "classes_field", "file": "classes_file"}
    return ctx.params.get(key.get(ctx.params.get("classes_from", "text"), "classes"))


def _label_path(samples, field: str) -> str:
    """``field.label`` or ``field.<list>.label``: the path of a label field's class names."""
    doc_type = samples.get_field(field).document_type
    list_attr = _CLASS_SOURCE_TYPES.get(doc_type, "")
    return f"{field}.{list_attr}.label" if list_attr else f"{field}.label"


def _is_vector_field(field: fof.Field) -> bool:
    return isinstance(field, fof.VectorField) or (
        isinstance(field, fof.ListField) and isinstance(field.field, fof.FloatField))


def register(p) -> None:
    """Plugin hook: registers the operators in the order of the manifest."""
    p.register(ComputeEmbeddings)
    p.register(ZeroShotTag)
    p.register(BuildTextIndex)
    p.register(SearchByText)
    p.register(ComputeMoments)
    p.register(FindMoments)
    p.register(TagMoments)
    p.register(TrainClassifier)
    p.register(ApplyClassifier)
    p.register(EmbedShard)
