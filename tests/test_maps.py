"""maps.py: the embeddings map (a FiftyOne visualization brain run) over stored vectors."""

from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest
from fo_fixtures import unique_name
from sklearn.decomposition import PCA

import fiftyone_videoprism as fvp
from fiftyone_videoprism.fo import maps

pytest_plugins = ["fo_fixtures"]


@pytest.fixture()
def clustered():
    """24 unit 768-d vectors in two tight, far-apart clusters (labels "a"/"b"), and one
    sample with no vector."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2, 768))
    dataset = fo.Dataset(unique_name("map"))
    samples = []
    for i in range(24):
        vector = centres[i % 2] + 0.05 * rng.standard_normal(768)
        samples.append(fo.Sample(filepath=f"/videos/{i}.mp4",
                                 emb=(vector / np.linalg.norm(vector)).astype(np.float32),
                                 zs=fo.Classification(label="ab"[i % 2])))
    samples.append(fo.Sample(filepath="/videos/none.mp4"))
    dataset.add_samples(samples)
    yield dataset
    dataset.delete()


def test_map_lays_out_the_embedded_videos_and_keeps_the_clusters_apart(clustered) -> None:
    built = fvp.build_map(clustered, "emb", label_field="zs")
    assert built == maps.EmbeddingsMap("emb_map", maps.default_method(24), 24, "zs.label")
    assert built.method in ("umap", "tsne")  # a neighbourhood method for 24 points
    results = clustered.load_brain_results("emb_map")
    embedded = clustered.exists("emb")
    assert sorted(results.sample_ids) == sorted(embedded.values("id"))
    points = np.asarray(results.points)
    assert points.shape == (24, 2)
    # The two input clusters stay two groups: each point is nearer its own group's centre.
    labels = np.array([clustered[i].zs.label for i in results.sample_ids])
    centres = {c: points[labels == c].mean(axis=0) for c in "ab"}
    nearest = [min(centres, key=lambda c: np.linalg.norm(p - centres[c])) for p in points]
    assert nearest == list(labels)


def test_map_replaces_its_earlier_run_and_pca_is_the_exact_projection(clustered) -> None:
    maps.build_map(clustered, "emb")
    built = maps.build_map(clustered, "emb", method="pca")
    assert clustered.list_brain_runs() == ["emb_map"]
    assert clustered.get_brain_info("emb_map").config.method == "pca" == built.method
    results = clustered.load_brain_results("emb_map")
    vectors = np.stack(clustered.select(results.sample_ids, ordered=True).values("emb"))
    expected = PCA(2, svd_solver="full").fit_transform(vectors)
    # The first principal axis (defined up to sign) carries the clusters; the second is noise
    # with near-equal variances, whose direction each solver picks differently.
    assert np.allclose(np.abs(results.points[:, 0]), np.abs(expected[:, 0]), atol=1e-4)


def test_map_colour_paths_and_what_cannot_be_mapped(clustered) -> None:
    clustered.set_values("top", [fo.Classifications(classifications=[fo.Classification(
        label="a")])] * len(clustered))
    assert maps.color_path(clustered, "top") == "top.classifications.label"
    assert maps.color_path(clustered, "zs") == "zs.label"
    assert maps.color_path(clustered, "absent") is None and maps.color_path(clustered, None) is None
    assert maps.default_method(5) == "pca"

    assert maps.build_map(clustered.limit(1), "emb") is None  # one point: nothing to lay out
    assert "at least 2 videos" in maps.describe_map(None, "emb")
    with pytest.raises(ValueError, match="no field 'nope'"):
        maps.build_map(clustered, "nope")
    with pytest.raises(ValueError, match="unknown map method 'mds'"):
        maps.build_map(clustered, "emb", method="mds")
