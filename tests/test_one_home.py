"""One home for each rule (issue #9): the pure-MLX path gives the dataset's vectors, and the CLI
and the operators, thin callers of the same functions, give the same results."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from fo_fixtures import COLORS, PLUGIN_URI, lvt_params, unique_name

import fiftyone_videoprism as fvp
from fiftyone_videoprism.core import video
from fiftyone_videoprism.fo import runs
from fiftyone_videoprism.fo.cli import main
from fiftyone_videoprism.fo.model import VideoPrismModel, VideoPrismModelConfig

pytest_plugins = ["fo_fixtures"]


@pytest.mark.parametrize("family", ["lvt", "video"])
def test_pure_mlx_gives_the_vector_the_dataset_holds(family, tiny_models, video_dataset) -> None:
    kwargs = getattr(tiny_models, family)
    model = VideoPrismModel(VideoPrismModelConfig(kwargs))
    runs.compute_embeddings(video_dataset, model, "emb", cache=False)
    # A pure-MLX user: load_model + read_frames + embed_videos, no FiftyOne involved.
    net = fvp.load_model(kwargs["model_config"], checkpoint=kwargs["checkpoint_path"])
    for path, stored in zip(*video_dataset.values(["filepath", "emb"]), strict=True):
        frames = video.read_frames(path, model.num_frames, model.image_size)
        mine = fvp.embed_videos(net, frames[None])[0]
        np.testing.assert_allclose(mine, stored, atol=1e-6)
        assert abs(float(np.linalg.norm(mine)) - 1.0) < 1e-5


def _zero_shot_fields(dataset, field: str) -> list[tuple[str, float, tuple]]:
    return [(label.label, round(label.confidence, 6), tuple(np.round(label.logits, 4)))
            for label in dataset.values(field)]


def test_cli_and_operator_zero_shot_give_identical_labels(installed_plugin, tiny_models,
                                                          color_videos, capsys) -> None:
    dataset = fo.Dataset(unique_name("same"), persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in color_videos.values()])
    templates = ["a video of {}.", "a {} square on a grey field."]
    lvt = tiny_models.lvt
    try:
        assert main(["tag", dataset.name, "--model-config", lvt["model_config"],
                     "--checkpoint", lvt["checkpoint_path"], "--tokenizer",
                     lvt["tokenizer_path"], "--batch-size", "2", "--classes", ",".join(COLORS),
                     *[arg for t in templates for arg in ("--template", t)], "--store-logits",
                     "--label-field", "by_cli", "--field", "emb_cli"]) == 0
        result = foo.execute_operator(PLUGIN_URI.format("zero_shot_tag"), dataset=dataset,
                                      params=lvt_params(
                                          tiny_models, classes=", ".join(COLORS),
                                          prompt_templates=templates, store_logits=True,
                                          label_field="by_operator",
                                          embeddings_field="emb_operator"))
        assert result.error is None, result.error
        dataset.reload()
        assert _zero_shot_fields(dataset, "by_cli") == _zero_shot_fields(dataset, "by_operator")
        # Same recorded settings, and the zoo's shared model instance is left as it was.
        cli_prov = runs.field_provenance(dataset, "by_cli")
        op_prov = runs.field_provenance(dataset, "by_operator")
        assert cli_prov == op_prov and cli_prov["prompt_templates"] == templates
        import fiftyone.zoo as foz

        shared = foz.load_zoo_model("videoprism-lvt-base", **{k: lvt[k] for k in lvt},
                                    batch_size=2)
        assert shared.config.classes is None and shared.store_logits is False
    finally:
        dataset.delete()
