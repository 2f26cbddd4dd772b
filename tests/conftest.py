"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece

# Imported before any test module imports mlx, so MLX binds the optimised BLAS (see _blas.py).
import fiftyone_videoprism  # noqa: F401
from fiftyone_videoprism.core import env, kernels

# Vocabulary size of the tiny SentencePiece model; it must not exceed the tiny LvT fixture's
# vocabulary_size (128), so every id it produces has a row in that model's token embedding.
TINY_SPM_VOCAB_SIZE = 128

_TINY_CORPUS = [
    "a video of a person cooking in the kitchen.",
    "a video of a dog running in the park.",
    "a video of a cat playing with a red ball.",
    "a person is playing the drums.",
    "a green car is driving on the road.",
    "a blue ball and a red ball.",
    "a person swimming in the pool.",
    "a dog and a cat are running.",
    "the person is cooking dinner in a kitchen.",
    "a man playing drums on a stage.",
    "a woman swimming in the blue sea.",
    "a red car and a green car.",
    "a cat sleeping on a sofa.",
    "a video of people playing football.",
    "two children are jumping on a trampoline.",
    "someone is slicing vegetables with a sharp knife.",
    "a bird flies over the mountains at sunset.",
    "a girl rides her bicycle through the busy street.",
    "an old man walks his small brown dog.",
    "the band performs a loud song at night.",
    "waves crash against the rocks near the beach.",
    "a chef bakes fresh bread and cookies.",
    "kids throw snowballs in the white winter garden.",
    "a horse gallops across the wide field.",
    "somebody types quickly on a laptop keyboard.",
    "a yellow taxi stops at the traffic light.",
    # the synthetic test videos' colour classes, as zero-shot prompts
    "a video of red.", "a video of green.", "a video of blue.", "a video of a red square.",
    "a green square moving slowly.", "a blue square on a grey field.",
]


@pytest.fixture(params=["auto", "off"], ids=["vp-kernels", "mlx-kernels"])
def kernels_mode(request, monkeypatch) -> str:
    """Runs a test with the vectorised CPU kernels on (where they can run here) and off."""
    monkeypatch.setenv(env.KERNELS, request.param)
    assert kernels.active() == (request.param == "auto" and kernels.extension() is not None)
    return request.param


@pytest.fixture(scope="session")
def tiny_spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a SentencePiece model trained here, with c4_en's id layout and 128 pieces.

    pad 0, eos 1, unk 2, no BOS, like the real c4_en model; exactly the tiny LvT fixture's
    vocabulary_size (128), as the tokenizer/model vocabulary check requires. Trained (deterministically, in well under a second) on a
    few English sentences, so prompts such as "a video of a person cooking in the kitchen." or
    "a dog playing drums." encode without <unk>, and "." is a piece.
    """
    folder = tmp_path_factory.mktemp("tiny_spm")
    corpus = folder / "corpus.txt"
    # Repeated so that the unigram trainer sees enough sentences to keep its seed pieces.
    corpus.write_text("\n".join(_TINY_CORPUS * 20) + "\n", encoding="utf-8")
    prefix = folder / "tiny"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="unigram",
        vocab_size=TINY_SPM_VOCAB_SIZE,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")
