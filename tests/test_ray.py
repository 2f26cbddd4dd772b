"""fiftyone_videoprism.ray: the sharded embedding on local Ray Data actors, writing into the
session's FiftyOne database; every sample saved once, with the vector one process computes."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.zoo as foz
import numpy as np
import pytest
from fo_fixtures import unique_name
from videogen import moving_shape_frames, write_video

from fiftyone_videoprism.fo import runs

# The fixtures (database, zoo folder, tiny models, videos) live in tests/fo_fixtures.py.
pytest_plugins = ["fo_fixtures"]

ray = pytest.importorskip("ray", reason="the [ray] extra (part of the test extra) is not installed")


def test_ray_actors_embed_every_sample_once(tiny_models, zoo_registered, tmp_path) -> None:
    import fiftyone_videoprism.ray as fvp_ray

    rng = np.random.default_rng(5)
    paths = [str(write_video(tmp_path / f"clip_{i}.mp4",
                             moving_shape_frames(6, tuple(int(c) for c in rng.integers(0, 256, 3)),
                                                 48, 32)))
             for i in range(8)]
    dataset = fo.Dataset(unique_name("ray"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    reference = dataset.clone()
    model = foz.load_zoo_model("videoprism-lvt-base", **tiny_models.lvt)
    runs.compute_embeddings(reference, model, "emb")
    expected = dict(zip(reference.values("filepath"), reference.values("emb")))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        summary = fvp_ray.compute_embeddings(dataset.name, "videoprism-lvt-base", tiny_models.lvt,
                                             "emb", num_actors=2, batch_size=3)
        assert summary == {"saved": 8, "failed": 0, "saved_twice": []}
        # Running again finds nothing to do.
        assert fvp_ray.compute_embeddings(dataset.name, "videoprism-lvt-base", tiny_models.lvt,
                                          "emb")["saved"] == 0
    finally:
        ray.shutdown()
        reference.delete()
    dataset.reload()
    assert dataset.get_field("emb") is not None and dataset.has_field("emb_error")
    for path, vector in zip(dataset.values("filepath"), dataset.values("emb"), strict=True):
        np.testing.assert_allclose(vector, expected[path], atol=1e-5)
    dataset.delete()
