"""VideoPrism as a FiftyOne model: video embeddings, text-prompt embeddings and zero-shot
classification for video collections and clips views.

FiftyOne hands video models one sample at a time as an ``eta.core.video.FFmpegVideoReader``
(``apply_model``, ``compute_embeddings``, ``compute_similarity``). The model only takes the
reader's path and frame range from it and decodes the frames itself with PyAV
(:mod:`fiftyone_videoprism.core.video`); the batched, prefetching dataset run lives in
:mod:`fiftyone_videoprism.fo.runs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import eta.core.frameutils as etaf
import eta.core.video as etav
import fiftyone.core.config as foc
import fiftyone.core.labels as fol
import fiftyone.core.models as fom
import fiftyone.core.utils as fou
import numpy as np

from fiftyone_videoprism.core import embedding, factory, hub, settings, video, zeroshot
from fiftyone_videoprism.core.tokenizer import Tokenizer
from fiftyone_videoprism.fo import loading
from fiftyone_videoprism.fo.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL

logger = logging.getLogger(__name__)

CONFIG_KEYS = ("model_name", "checkpoint_path", "tokenizer_path", "model_config", "num_frames",
               "image_size", "resize", "batch_size", "classes", "prompt_templates",
               "temperature", "store_logits", "dtype")


class VideoPrismModelConfig(foc.Config):
    """Configuration of a :class:`VideoPrismModel`.

    Args:
        model_name ("videoprism-lvt-base"): a released model, ``videoprism-base``,
            ``videoprism-large``, ``videoprism-lvt-base`` or ``videoprism-lvt-large`` (original
            names such as ``videoprism_lvt_public_v1_base`` are accepted too)
        checkpoint_path (None): a local checkpoint (the released ``flax_*_repeated.npz`` or a
            converted ``*.mlx.safetensors``) or a folder holding the released file name. By
            default the file comes from ``FIFTYONE_VIDEOPRISM_CHECKPOINT_DIR`` or the
            Hugging Face Hub
        tokenizer_path (None): the c4_en SentencePiece ``.model`` file (LvT models only). By
            default it comes from ``FIFTYONE_VIDEOPRISM_TOKENIZER`` or the Hub, on first use
        model_config (None): overrides the architecture of ``model_name``: a dict of the
            original constructor kwargs, or the path of a JSON file holding them (optionally
            under a ``"config"`` key). Needs ``checkpoint_path``
        num_frames (None): frames sampled per video or clip, at the original demo's indices
            ``floor(k * n / T)``; default the model's trained count (16 for the base models,
            8 for the large ones; the LvT demo used 16 for both)
        image_size (None): side of the square frames fed to the model, a multiple of the patch
            size; default the trained size (288)
        resize ("squash"): ``"squash"`` resizes the whole frame to ``image_size`` square,
            ignoring its aspect ratio, as the original demo does; ``"center_crop"`` resizes
            the shorter side and crops the centre square, keeping proportions, as the
            original classification colab does. Both give the original's pixels (PIL
            Lanczos); ``"squash_swscale"`` and ``"center_crop_swscale"`` resize in FFmpeg
            instead, faster but about 1/255 off
            (:func:`fiftyone_videoprism.core.video.read_frames`)
        batch_size (1): videos per MLX call in :meth:`VideoPrismModel.embed_all`,
            :meth:`VideoPrismModel.predict_all` and :mod:`fiftyone_videoprism.fo.runs`
        classes (None): class names for zero-shot :meth:`VideoPrismModel.predict` (LvT only)
        prompt_templates (None): one template or a list, each with one ``{}`` for the class
            name; a list is averaged per class (prompt ensembling). Default the demo's
            ``"a video of {}."``
        temperature (0.01): softmax temperature over ``cosine similarity / temperature``, as
            in the original demo
        store_logits (False): whether predictions carry the per-class logits
            ``similarity / temperature``
        dtype ("float32"): precision of the MLX model, one of ``"float32"``, ``"bfloat16"``,
            ``"float16"`` (weights and activations), ``"q8"`` or ``"q4"`` (quantized Linear
            weights); see :func:`fiftyone_videoprism.core.factory.load_model`. Embeddings are
            float32 in every mode
    """

    def __init__(self, d: dict[str, Any]) -> None:
        unknown = sorted(set(d) - set(CONFIG_KEYS))
        if unknown:
            # A misspelt key (e.g. checkpoint= for checkpoint_path=) must not fall back silently.
            raise ValueError(f"unknown VideoPrism model parameters {unknown}; accepted: "
                             f"{', '.join(CONFIG_KEYS)}")
        d = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in d.items()}
        self.model_name = self.parse_string(d, "model_name", default=DEFAULT_MODEL)
        self.checkpoint_path = self.parse_path(d, "checkpoint_path", default=None)
        self.tokenizer_path = self.parse_path(d, "tokenizer_path", default=None)
        self.model_config = self.parse_raw(d, "model_config", default=None)
        if self.model_config is not None and not isinstance(self.model_config, (dict, str)):
            raise ValueError(
                "model_config must be a dict of the original constructor kwargs or the path of "
                f"a JSON file holding them; got {type(self.model_config).__name__}"
            )
        self.num_frames = self.parse_int(d, "num_frames", default=None)
        self.image_size = self.parse_int(d, "image_size", default=None)
        self.resize = self.parse_string(d, "resize", default=settings.DEFAULT_RESIZE)
        if self.resize not in settings.RESIZE_MODES:
            raise ValueError(
                f"Unsupported resize {self.resize!r}. Supported values are "
                f"{settings.RESIZE_MODES}")
        self.batch_size = self.parse_int(d, "batch_size", default=DEFAULT_BATCH_SIZE)
        for key in ("num_frames", "image_size", "batch_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value}")
        classes = self.parse_raw(d, "classes", default=None)
        self.classes = zeroshot.check_classes(classes) if classes is not None else None
        templates = self.parse_raw(d, "prompt_templates", default=None)
        self.prompt_templates = list(zeroshot.check_templates(templates))
        self.temperature = self.parse_number(d, "temperature",
                                             default=zeroshot.DEFAULT_TEMPERATURE)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.store_logits = self.parse_bool(d, "store_logits", default=False)
        self.dtype = factory.check_dtype(self.parse_string(d, "dtype",
                                                           default=settings.DEFAULT_DTYPE))


class SelfDecodingVideoModel(fom.Model):
    """A FiftyOne video model that decodes its own frames from the reader FiftyOne passes, so
    it takes no transforms or preprocessing, and whose batches are stacked frames."""

    @property
    def media_type(self) -> str:
        return "video"

    @property
    def ragged_batches(self) -> bool:
        return False

    @property
    def transforms(self) -> None:
        return None

    @property
    def preprocess(self) -> bool:
        return False

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        if value:
            raise ValueError(f"{type(self).__name__} decodes its own frames; preprocess cannot "
                             f"be enabled")


class VideoPrismModel(SelfDecodingVideoModel, fom.EmbeddingsMixin, fom.PromptMixin,
                      fom.LogitsMixin):
    """VideoPrism video encoders on MLX as a FiftyOne model for video collections.

    Every model embeds videos (one unit-norm vector per video or clip). The video-text (LvT)
    models also embed text prompts into the same space, so they power text search in the
    App, and classify zero-shot over ``classes``. The video-only models have no pooled output:
    their embedding is the mean of the ``T * 256`` space-time tokens, L2-normalised.

    Example usage::

        import fiftyone as fo
        import fiftyone.brain as fob
        import fiftyone.zoo as foz
        import fiftyone_videoprism as fvp

        fvp.register_zoo()  # once per machine; idempotent

        dataset = fo.Dataset.from_dir("/path/to/videos", fo.types.VideoDirectory)

        model = foz.load_zoo_model("videoprism-lvt-base")
        dataset.compute_embeddings(model, embeddings_field="videoprism")

        # Text-to-video search, in Python and in the App's search box
        fob.compute_similarity(
            dataset,
            model="videoprism-lvt-base",
            embeddings="videoprism",
            brain_key="videoprism",
        )
        view = dataset.sort_by_similarity("a person cooking", k=10, brain_key="videoprism")

        # Zero-shot classification (or pass classes=[...] to load_zoo_model)
        model.config.classes = ["cooking", "swimming", "playing drums"]
        dataset.apply_model(model, label_field="videoprism_zero_shot", store_logits=True)

        session = fo.launch_app(view)

    Args:
        config: a :class:`VideoPrismModelConfig`
    """

    def __init__(self, config: VideoPrismModelConfig) -> None:
        fom.LogitsMixin.__init__(self)
        self.config = config
        if config.model_config is not None and config.checkpoint_path is None:
            raise ValueError(
                "model_config replaces the architecture of a released model, so its weights "
                "must come from checkpoint_path too; pass checkpoint_path='/path/to/weights.npz'"
            )
        spec = config.model_config if config.model_config is not None else config.model_name
        # What costs nothing to check is checked before any weight is read or downloaded.
        _, architecture = factory.resolve_config(spec)
        patch = architecture.patch_size
        size = config.image_size or architecture.image_size
        if size % patch:
            raise ValueError(
                f"image_size must be a multiple of the patch size {patch} "
                f"(e.g. {architecture.image_size}), got {size}"
            )
        self._tokenizer: Tokenizer | None = None
        if architecture.is_lvt and config.tokenizer_path is not None:
            self._tokenizer = factory.load_tokenizer(config.tokenizer_path,
                                                     architecture.vocabulary_size)
        try:
            self._net = factory.load_model(spec, checkpoint=config.checkpoint_path,
                                           dtype=config.dtype)
        except hub.WeightsUnavailableError as err:
            raise err.pointing_to(_ways_to_pass(config.model_name, "checkpoint_path",
                                                "--checkpoint", err.release.filename)) from None
        # The App server may embed two queries at once from its worker threads; MLX calls on
        # one model are serialised.
        self._lock = threading.Lock()
        # ((classes, templates), (C, D) class embeddings): recomputed when either changes.
        self._class_cache: tuple[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] | None = None
        self._weights_digest: str | None = None  # the weights never change after loading
        self.store_logits = config.store_logits

    # -- capabilities ------------------------------------------------------------------------

    @property
    def is_lvt(self) -> bool:
        """True for the video-text (LvT) models, which embed text and classify zero-shot."""
        return self._net.config.is_lvt

    @property
    def has_embeddings(self) -> bool:
        return True

    @property
    def can_embed_prompts(self) -> bool:
        return self.is_lvt

    @property
    def has_logits(self) -> bool:
        return self.is_lvt

    @property
    def mlx_model(self):
        """The underlying MLX module (``FactorizedEncoder`` or ``FactorizedVideoCLIP``)."""
        return self._net

    @property
    def num_frames(self) -> int:
        """Frames sampled per video or clip (config ``num_frames`` or the trained count)."""
        return self.config.num_frames or self._net.config.num_frames

    @property
    def image_size(self) -> int:
        """Side of the square frames fed to the model (config ``image_size`` or trained)."""
        return self.config.image_size or self._net.config.image_size

    @property
    def embedding_dim(self) -> int:
        return self._net.config.model_dim

    @property
    def embedding_key(self) -> str:
        """Identifies what :meth:`embed` computes: a SHA-256 over the weights, the architecture,
        the pooling and the frame settings (``num_frames``, ``image_size``, ``resize``). Two
        models with equal keys give equal embeddings of the same video; the embeddings cache
        (:mod:`fiftyone_videoprism.core.cache`) keys entries by it."""
        spec = {
            "weights": self.weights_digest,
            "architecture": self._net.config.to_dict(),
            "pooling": "attention" if self.is_lvt else "token_mean",
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "resize": self.config.resize,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def zoo_kwargs(self) -> dict[str, Any]:
        """The load kwargs that give this model again, as
        ``foz.load_zoo_model(config.model_name, **kwargs)``: what a similarity index records so
        that another process (the App server) can embed text queries with the same model."""
        keys = ("checkpoint_path", "tokenizer_path", "model_config", "num_frames",
                "image_size", "resize", "batch_size", "dtype")
        return loading.model_kwargs(**{key: getattr(self.config, key) for key in keys})

    @property
    def provenance(self) -> dict[str, Any]:
        """What made this model's embeddings, as stored with every field it writes: the zoo
        name, the :attr:`embedding_key` (the identity that decides whether two models give
        the same vectors) and the settings a person reads (weights digest, frames, size,
        resize, dtype)."""
        return {
            "model": self.config.model_name,
            "embedding_key": self.embedding_key,
            "weights": self.weights_digest[:16],
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "resize": self.config.resize,
            "dtype": self.config.dtype,
        }

    # -- frames ------------------------------------------------------------------------------

    def read_frames(self, arg: Any) -> np.ndarray:
        """The (T, S, S, 3) uint8 frames the model sees for one video.

        Args:
            arg: an ``eta.core.video.VideoReader`` (what FiftyOne passes; its path and frame
                range are used, a clip's range included), a video path, or frames already
                sampled and resized, shaped ``(num_frames, image_size, image_size, 3)``
        """
        if isinstance(arg, etav.VideoReader):
            return self._decode(arg.inpath, _reader_support(arg))
        if isinstance(arg, (str, os.PathLike)):
            return self._decode(os.fspath(arg), None)
        if isinstance(arg, np.ndarray):
            expected = (self.num_frames, self.image_size, self.image_size, 3)
            if arg.shape != expected:
                raise ValueError(
                    f"decoded frames must have shape {expected} (num_frames, image_size, "
                    f"image_size, 3), got {arg.shape}"
                )
            return arg
        raise TypeError(
            f"Unsupported input of type {type(arg).__name__}; expected an "
            "eta.core.video.VideoReader, a video path, or a (T, S, S, 3) frames array"
        )

    def _decode(self, path: str, support: tuple[int, int] | None) -> np.ndarray:
        return video.read_frames(path, self.num_frames, self.image_size, support=support,
                                 resize=self.config.resize)

    # -- embeddings --------------------------------------------------------------------------

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, S, S, 3) frames (uint8, or float in [0, 1]) -> (B, D) float32 unit-norm
        embeddings (:func:`fiftyone_videoprism.core.embedding.embed_videos`)."""
        with self._lock:
            return embedding.embed_videos(self._net, frames)

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, S, S, 3) frames -> (B, T*N, D) float32 space-time tokens of the video
        encoder (:func:`fiftyone_videoprism.core.embedding.video_tokens`)."""
        with self._lock:
            return embedding.video_tokens(self._net, frames)

    @property
    def weights_digest(self) -> str:
        """SHA-256 of the weights (:func:`fiftyone_videoprism.core.embedding.weights_digest`)."""
        if self._weights_digest is None:
            self._weights_digest = embedding.weights_digest(self._net)
        return self._weights_digest

    def embed(self, arg: Any) -> np.ndarray:
        """(D,) float32 unit-norm embedding of one video or clip (see :meth:`read_frames`)."""
        return self.embed_all([arg])[0]

    def embed_all(self, args: Iterable[Any]) -> np.ndarray:
        """(N, D) embeddings, ``batch_size`` videos per MLX call (decoded batch by batch, so
        memory does not grow with N)."""
        args = list(args)
        if not args:
            return np.empty((0, self.embedding_dim), np.float32)
        step = self.config.batch_size
        return np.concatenate([
            self.embed_frames(np.stack([self.read_frames(arg) for arg in args[i:i + step]]))
            for i in range(0, len(args), step)
        ])

    def embed_prompt(self, prompt: str) -> np.ndarray:
        """(D,) float32 unit-norm embedding of a text prompt (LvT models only)."""
        return self.embed_prompts([prompt])[0]

    def embed_prompts(self, prompts: str | Iterable[str]) -> np.ndarray:
        """(N, D) float32 unit-norm embeddings of text prompts (LvT models only)."""
        self._require_text("embed text prompts")
        with self._lock:
            return embedding.embed_texts(self._net, self._get_tokenizer(), prompts)

    # -- zero-shot classification ------------------------------------------------------------

    def predict(self, arg: Any) -> fol.Classification:
        """Zero-shot :class:`fiftyone.core.labels.Classification` of one video or clip over
        ``classes`` (LvT models only)."""
        return self.predict_all([arg])[0]

    def predict_all(self, args: Iterable[Any]) -> list[fol.Classification]:
        """Zero-shot classifications of several videos, ``batch_size`` per MLX call."""
        self.class_embeddings()  # fail on a bad class setup before decoding anything
        return self.classify(self.embed_all(args))

    def classify(self, embeddings: np.ndarray,
                 top_k: int | None = None) -> list[fol.Classification | fol.Classifications]:
        """(B, D) video embeddings -> one label each: the most probable class with its
        probability under ``softmax(similarity / temperature)``, or with ``top_k`` a
        Classifications of the ``top_k`` most probable classes, best first. Logits (C,) are
        attached when ``store_logits``."""
        classes, class_embeddings = self.class_embeddings()
        if top_k is not None and not 1 <= top_k <= len(classes):
            raise ValueError(f"top_k must be between 1 and the number of classes "
                             f"({len(classes)}), got {top_k}")
        logits = zeroshot.zero_shot_logits(embeddings, class_embeddings, self.config.temperature)
        probs = zeroshot.softmax(logits, axis=1)
        labels = []
        for row_logits, row_probs in zip(logits, probs, strict=True):
            best = np.argsort(-row_probs, kind="stable")[: top_k or 1]
            picks = [fol.Classification(label=classes[i], confidence=float(row_probs[i]))
                     for i in best]
            label = picks[0] if top_k is None else fol.Classifications(classifications=picks)
            if self.store_logits:
                label.logits = row_logits.astype(np.float32)
            labels.append(label)
        return labels

    def class_embeddings(self) -> tuple[list[str], np.ndarray]:
        """(classes, (C, D) unit-norm class embeddings), prompt-ensembled over the templates;
        computed once per (classes, templates)."""
        self._require_text("classify zero-shot")
        if self.config.classes is None:
            raise ValueError(
                "no classes to predict: load the model with classes=[...] (e.g. "
                "foz.load_zoo_model(name, classes=['cooking', 'swimming'])) or set "
                "model.config.classes"
            )
        classes = zeroshot.check_classes(self.config.classes)
        templates = zeroshot.check_templates(self.config.prompt_templates)
        key = (tuple(classes), templates)
        if self._class_cache is None or self._class_cache[0] != key:
            prompts = zeroshot.build_prompts(classes, templates)
            ensembled = zeroshot.ensemble(self.embed_prompts(prompts), len(templates))
            self._class_cache = (key, ensembled)
        return list(classes), self._class_cache[1]

    # -- helpers -----------------------------------------------------------------------------

    def _require_text(self, action: str) -> None:
        if not self.is_lvt:
            raise ValueError(
                f"{self.config.model_name} is a video-only model with no text encoder, so it "
                f"cannot {action}; use videoprism-lvt-base or videoprism-lvt-large for text "
                "prompts and zero-shot classification"
            )

    def _get_tokenizer(self) -> Tokenizer:
        # Loaded on first use: embedding videos with an LvT model needs no tokenizer file.
        if self._tokenizer is None:
            try:
                self._tokenizer = factory.load_tokenizer(
                    self.config.tokenizer_path, vocabulary_size=self._net.config.vocabulary_size)
            except hub.WeightsUnavailableError as err:
                raise err.pointing_to(_ways_to_pass(self.config.model_name, "tokenizer_path",
                                                    "--tokenizer", err.release.filename)
                                      ) from None
        return self._tokenizer

    @contextlib.contextmanager
    def run_settings(self, *, classes: Sequence[str] | None = None,
                     prompt_templates: str | Sequence[str] | None = None,
                     store_logits: bool | None = None) -> Iterator[VideoPrismModel]:
        """Zero-shot settings for one run, restored afterwards: the zoo hands out one cached
        instance per load kwargs, which the next caller must find unchanged. ``None`` keeps a
        setting; templates are checked here, before anything runs."""
        config = {}
        if classes is not None:
            config["classes"] = zeroshot.check_classes(classes)
        if prompt_templates is not None:
            config["prompt_templates"] = list(zeroshot.check_templates(prompt_templates))
        model = {} if store_logits is None else {"store_logits": bool(store_logits)}
        with fou.SetAttributes(self.config, **config), fou.SetAttributes(self, **model):
            yield self

    def require_text(self) -> None:
        """Checks now, before any video is decoded, that this model can embed text: an LvT
        model whose tokenizer loads and fits it. Runs that will need text call this first."""
        self._require_text("embed text prompts")
        with self._lock:
            self._get_tokenizer()


def _ways_to_pass(model_name: str, key: str, flag: str, filename: str) -> list[str]:
    """How a FiftyOne user points this package at a local file, in each place they may be."""
    path = f"/path/to/{filename}"
    return [
        f"Python: foz.load_zoo_model({model_name!r}, {key}={path!r}), and for a similarity "
        f"index fob.compute_similarity(..., model={model_name!r}, "
        f"model_kwargs={{{key!r}: {path!r}}}) (add 'tokenizer_path' for text search)",
        f"command line: {flag} {path}",
    ]


def _reader_support(reader: etav.VideoReader) -> tuple[int, int] | None:
    """The 1-based inclusive (first, last) frames a reader covers, or None for a whole video."""
    ranges = etaf.parse_frame_ranges(reader.frames)
    if ranges.num_ranges != 1:
        raise ValueError(
            f"VideoPrism samples one contiguous frame range; the reader covers {reader.frames!r}"
        )
    first, last = ranges.limits
    # FiftyOne opens whole videos as frames "1-<count>", with the count estimated by ffprobe;
    # the decoder counts the frames itself then.
    if first == 1 and last == reader.total_frame_count:
        return None
    return first, last
