"""The embeddings map: a 2-D layout of stored VideoPrism embeddings, registered as a FiftyOne
brain run so that the App's Embeddings panel plots the videos (or clips).

The map is ``fob.compute_visualization`` over the vectors already in a field; nothing is
embedded again. Its cost is small next to embedding (see the README's *Embeddings map*).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import fiftyone.brain as fob
import fiftyone.core.labels as fol
import numpy as np

# Below this many points a neighbourhood method (UMAP, t-SNE) has no neighbourhoods to keep,
# and PCA's exact projection shows the same thing.
_NEIGHBOURHOOD_MIN_POINTS = 10
# t-SNE's default perplexity, lowered for small sets (it must stay below the point count).
_PERPLEXITY = 30.0
# Dimensions PCA keeps before t-SNE, as FiftyOne's default does.
_TSNE_PCA_DIMS = 50
# Fixed, so that re-running on the same vectors draws the same map.
_SEED = 51

METHODS = ("umap", "tsne", "pca")


@dataclasses.dataclass(frozen=True)
class EmbeddingsMap:
    """What :func:`build_map` registered.

    Attributes:
        brain_key: the visualization's brain key, listed in the App's Embeddings panel
        method: ``"umap"``, ``"tsne"`` or ``"pca"``
        count: points in the map (videos or clips with an embedding)
        color_by: the path to pick under "Color by" in the Embeddings panel (the zero-shot
            label), or None
    """

    brain_key: str
    method: str
    count: int
    color_by: str | None = None


def map_brain_key(embeddings_field: str) -> str:
    """The brain key of the map of ``embeddings_field``: ``<field>_map``."""
    return f"{embeddings_field}_map"


def default_method(count: int) -> str:
    """UMAP where ``umap-learn`` is installed, else t-SNE (scikit-learn, a FiftyOne
    dependency); PCA for a handful of points."""
    if count < _NEIGHBOURHOOD_MIN_POINTS:
        return "pca"
    return "umap" if importlib.util.find_spec("umap") is not None else "tsne"


def color_path(samples, label_field: str | None) -> str | None:
    """The field path that colours the map by a label field's class (None when there is no
    such field)."""
    if not label_field or not samples.has_field(label_field):
        return None
    doc_type = getattr(samples.get_field(label_field), "document_type", None)
    if doc_type is fol.Classifications:
        return f"{label_field}.classifications.label"
    return f"{label_field}.label"


def build_map(samples, embeddings_field: str, *, brain_key: str | None = None,
              label_field: str | None = None, method: str | None = None,
              progress=None) -> EmbeddingsMap | None:
    """Registers a 2-D map of the embeddings stored in ``embeddings_field`` under
    ``brain_key`` (default ``<field>_map``), replacing an earlier run of that key.

    Args:
        samples: a dataset, view or clips view whose samples hold the embeddings
        embeddings_field: a vector field written by :func:`fiftyone_videoprism.compute_embeddings`
        brain_key (None): the visualization's key; default :func:`map_brain_key`
        label_field (None): a label field to colour the map by, reported in ``color_by``
        method (None): ``"umap"``, ``"tsne"`` or ``"pca"``; default :func:`default_method`
        progress (None): FiftyOne's progress argument

    Returns:
        the map, or None when fewer than two samples have an embedding (nothing to lay out)

    Raises:
        ValueError: an unknown method, or a field that does not exist
    """
    if not samples.has_field(embeddings_field):
        raise ValueError(f"no field '{embeddings_field}' to map; compute the embeddings first")
    embedded = samples.exists(embeddings_field)
    return _lay_out(embedded, embeddings_field, len(embedded),
                    lambda: _dimension(embedded, embeddings_field),
                    brain_key or map_brain_key(embeddings_field), method, progress,
                    color_path(samples, label_field))


def map_vectors(samples, vectors, brain_key: str, *, method: str | None = None,
                progress=None) -> EmbeddingsMap | None:
    """:func:`build_map` for vectors held outside the samples (moment windows keep theirs in a
    store): ``vectors`` (N, D), one row per sample of ``samples`` in its order."""
    vectors = np.asarray(vectors)
    return _lay_out(samples, vectors, len(vectors), lambda: vectors.shape[1], brain_key,
                    method, progress, None)


def _lay_out(samples, embeddings, count: int, dimension, brain_key: str, method: str | None,
             progress, color_by: str | None) -> EmbeddingsMap | None:
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    if count < 2:
        return None
    method = method or default_method(count)
    if samples.has_brain_run(brain_key):
        samples.delete_brain_run(brain_key)
    fob.compute_visualization(samples, embeddings=embeddings, brain_key=brain_key,
                              method=method, progress=progress,
                              **_method_kwargs(method, count, dimension()))
    return EmbeddingsMap(brain_key, method, count, color_by)


def describe_map(built: EmbeddingsMap | None, field: str) -> str:
    """One phrase for the CLI and the operators: the map that was built and how to look at
    it, or why there is none."""
    if built is None:
        return f"no embeddings map: it needs at least 2 videos with an embedding in '{field}'"
    color = f", coloured by {built.color_by} under 'Color by'" if built.color_by else ""
    return (f"embeddings map '{built.brain_key}' ({built.method}, {built.count} points): "
            f"the App's Embeddings panel shows it{color}")


def _dimension(samples, embeddings_field: str) -> int:
    return len(samples.first()[embeddings_field])


def _method_kwargs(method: str, count: int, dim: int) -> dict:
    if method == "tsne":
        return {"perplexity": min(_PERPLEXITY, max(1.0, (count - 1) / 3)),
                "pca_dims": min(_TSNE_PCA_DIMS, count, dim), "verbose": False, "seed": _SEED}
    if method == "umap":
        return {"num_neighbors": min(15, count - 1), "seed": _SEED, "verbose": False}
    return {"seed": _SEED}
