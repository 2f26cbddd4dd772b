"""Tokenizer: parity with the original tokenize_texts, canonicalisation, validation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import sentencepiece

from fiftyone_videoprism.core.tokenizer import (
    C4_EN_VOCAB_SIZE,
    Tokenizer,
    canonicalize_text,
    tokenize,
)

TOKENIZER_DIR = Path(__file__).parent / "data" / "tokenizer"
TEXTS = json.loads((TOKENIZER_DIR / "texts.json").read_text(encoding="utf-8"))
CANONICAL = json.loads((TOKENIZER_DIR / "canonical.json").read_text(encoding="utf-8"))
ORACLE = dict(np.load(TOKENIZER_DIR / "io.npz"))
SPM_MODELS = ("spm32k", "spm500")
# How the oracle called the original tokenize_texts for each key: (max_length, canonicalize).
CALLS = {"maxlen64": (64, True), "maxlen16": (16, True), "nocanon_maxlen64": (64, False)}

ARRAY_KEYS = [f"{m}/{call}/{kind}"
              for m in SPM_MODELS for call in CALLS for kind in ("ids", "paddings")]
COUNT_KEYS = [f"{m}/num_tokens" for m in SPM_MODELS]


@pytest.fixture(scope="module")
def oracle_tokenizers() -> dict[str, Tokenizer]:
    return {m: Tokenizer.from_file(TOKENIZER_DIR / f"{m}.model") for m in SPM_MODELS}


@pytest.fixture(scope="module")
def tiny(tiny_spm_model) -> Tokenizer:
    return Tokenizer.from_file(tiny_spm_model)


def test_oracle_keys_all_covered():
    assert sorted(ARRAY_KEYS + COUNT_KEYS) == sorted(ORACLE)


@pytest.mark.parametrize("key", ARRAY_KEYS)
def test_matches_original(key, oracle_tokenizers):
    model, call, kind = key.split("/")
    max_length, canonicalize = CALLS[call]
    ids, paddings = tokenize(TEXTS, oracle_tokenizers[model], max_length=max_length,
                             canonicalize=canonicalize)
    got = ids if kind == "ids" else paddings
    assert got.dtype == ORACLE[key].dtype
    np.testing.assert_array_equal(got, ORACLE[key])


@pytest.mark.parametrize("key", COUNT_KEYS)
def test_untruncated_lengths_match_original(key, oracle_tokenizers):
    tokenizer = oracle_tokenizers[key.split("/")[0]]
    counts = [len(ids) for ids in tokenizer.encode([canonicalize_text(t) for t in TEXTS])]
    np.testing.assert_array_equal(counts, ORACLE[key])


@pytest.mark.parametrize("index", range(len(TEXTS)), ids=lambda i: f"text{i}")
def test_canonicalize_matches_original(index):
    assert canonicalize_text(TEXTS[index]) == CANONICAL[index]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world."),
        ("", "."),
        ("  \t\n ", "."),
        ("?!...", "."),
        ("already ends.", "already ends."),
        ("don't-stop", "don t stop."),
        # Only ASCII punctuation goes; Unicode dashes/quotes and letters stay (lower-cased).
        ("Café — «Naïve» ÀB", "café — «naïve» àb."),
        # str.split() also splits on these separators and on NBSP.
        ("a\x1cb\x1fc\x85d\u00a0e", "a b c d e."),
    ],
)
def test_canonicalize(text, expected):
    assert canonicalize_text(text) == expected


def test_shapes_dtypes_and_padding(tiny):
    ids, paddings = tokenize(["a dog running", "a video of a person cooking in the kitchen"],
                             tiny, max_length=32)
    assert ids.shape == paddings.shape == (2, 32)
    assert ids.dtype == np.int32 and paddings.dtype == np.float32
    n = len(tiny.encode(["a dog running."])[0])
    np.testing.assert_array_equal(ids[0, :n], tiny.encode(["a dog running."])[0])
    assert (ids[0, n:] == 0).all()
    np.testing.assert_array_equal(paddings[0], [0.0] * n + [1.0] * (32 - n))
    # Neither BOS nor EOS is added: the last real id is the "." piece.
    assert ids[0, n - 1] == tiny.encode(["."])[0][-1]


def test_single_string_is_a_batch_of_one(tiny):
    ids, paddings = tokenize("a red ball", tiny, max_length=8)
    batch_ids, batch_paddings = tokenize(["a red ball"], tiny, max_length=8)
    assert ids.shape == (1, 8)
    np.testing.assert_array_equal(ids, batch_ids)
    np.testing.assert_array_equal(paddings, batch_paddings)


def test_truncation_keeps_the_first_ids(tiny):
    text = "a dog and a cat are running in the kitchen with a red ball"
    full = tiny.encode([canonicalize_text(text)])[0]
    assert len(full) > 5
    ids, paddings = tokenize(text, tiny, max_length=5)
    np.testing.assert_array_equal(ids[0], full[:5])
    assert (paddings == 0).all()
    ids, paddings = tokenize(text, tiny, max_length=1)
    assert ids.tolist() == [[full[0]]] and paddings.tolist() == [[0.0]]


def test_empty_string_becomes_a_period(tiny):
    ids, paddings = tokenize("", tiny, max_length=6)
    period = tiny.encode(["."])[0]
    np.testing.assert_array_equal(ids[0, : len(period)], period)
    assert paddings[0, 0] == 0.0 and paddings[0, -1] == 1.0
    # Without canonicalisation an empty text is all padding, as in the original.
    ids, paddings = tokenize("", tiny, max_length=6, canonicalize=False)
    assert (ids == 0).all() and (paddings == 1).all()


def test_empty_batch(tiny):
    ids, paddings = tokenize([], tiny, max_length=4)
    assert ids.shape == paddings.shape == (0, 4)


def test_non_ascii_text(oracle_tokenizers):
    tokenizer = oracle_tokenizers["spm500"]
    text = "Ünïcödé café, 日本語 и русский!"
    ids, paddings = tokenize(text, tokenizer, max_length=64)
    expected = tokenizer.encode([canonicalize_text(text)])[0]
    np.testing.assert_array_equal(ids[0, : len(expected)], expected)
    assert paddings[0, : len(expected)].sum() == 0 and paddings[0, len(expected):].all()


@pytest.mark.parametrize("max_length", [0, -3])
def test_rejects_non_positive_max_length(tiny, max_length):
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        tokenize("a cat", tiny, max_length=max_length)


@pytest.mark.parametrize("max_length", [1.5, "64", True])
def test_rejects_non_int_max_length(tiny, max_length):
    with pytest.raises(TypeError, match="max_length must be an int"):
        tokenize("a cat", tiny, max_length=max_length)


@pytest.mark.parametrize(
    ("texts", "message"),
    [(["a cat", 3], r"texts\[1\] is a int"), ([None], r"texts\[0\] is a NoneType"),
     (b"a cat", "got bytes")],
)
def test_rejects_non_str_texts(tiny, texts, message):
    with pytest.raises(TypeError, match=message):
        tokenize(texts, tiny)


def test_tiny_spm_model_fits_the_tiny_lvt_fixture(tiny):
    config = json.loads((TOKENIZER_DIR.parent / "tiny_lvt" / "config.json").read_text())["config"]
    assert tiny.vocab_size == config["vocabulary_size"]
    ids, paddings = tokenize(["a video of a person cooking in the kitchen", "a dog playing drums",
                              "a red car, a green ball and a blue cat swimming"], tiny)
    assert not (ids == 2).any(), "a prompt word fell back to <unk>"
    assert ids.max() < config["vocabulary_size"]


def test_properties(tiny, tiny_spm_model):
    assert tiny.vocab_size == 128
    assert tiny.path == tiny_spm_model


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(FileNotFoundError, match="nope.model"):
        Tokenizer.from_file(missing)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="half"),
        # Cut right after a piece: still a parseable proto that SentencePiece would load.
        pytest.param(lambda data: data[:7566], id="after_a_piece"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"this is not a sentencepiece model", id="junk"),
    ],
)
def test_corrupt_file_names_it(tmp_path, cut):
    data = (TOKENIZER_DIR / "spm500.model").read_bytes()
    bad = tmp_path / "bad.model"
    bad.write_bytes(cut(data))
    with pytest.raises(ValueError, match="bad.model") as info:
        Tokenizer.from_file(bad)
    assert "SentencePiece model" in str(info.value)


def test_truncation_after_a_piece_is_one_sentencepiece_accepts():
    # Guards the test above: this prefix really is a model SentencePiece loads.
    data = (TOKENIZER_DIR / "spm500.model").read_bytes()
    processor = sentencepiece.SentencePieceProcessor()
    processor.LoadFromSerializedProto(data[:7566])
    assert 0 < processor.get_piece_size() < 500


def test_wrong_special_ids_name_the_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a dog runs.\na cat sleeps.\n" * 50, encoding="utf-8")
    # SentencePiece's own defaults: unk 0, bos 1, eos 2, no pad.
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "default_ids"), vocab_size=30,
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    with pytest.raises(ValueError, match="default_ids.model") as info:
        Tokenizer.from_file(tmp_path / "default_ids.model")
    message = str(info.value)
    for part in ("pad_id -1 (expected 0)", "unk_id 0 (expected 2)", "bos_id 1 (expected -1)"):
        assert part in message


def test_check_vocabulary_accepts_its_own_size(tiny):
    tiny.check_vocabulary(128)


def test_check_vocabulary_explains_c4_en(tiny):
    with pytest.raises(ValueError) as info:
        tiny.check_vocabulary(200)
    message = str(info.value)
    for part in ("128 pieces", "200 rows", "cc_en.32000", "cc_all.32000", str(tiny.path)):
        assert part in message


def test_check_vocabulary_warns_for_a_32k_vocabulary_that_is_not_c4_en(oracle_tokenizers,
                                                                        caplog):
    spm32k = oracle_tokenizers["spm32k"]
    assert spm32k.vocab_size == C4_EN_VOCAB_SIZE
    assert not spm32k.matches_c4_en
    with caplog.at_level("WARNING", logger="fiftyone_videoprism.core.tokenizer"):
        spm32k.check_vocabulary(C4_EN_VOCAB_SIZE)
    # one record, one line of cause and fix, no source line (a log record, not warnings.warn)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "not c4_en" in message and "cc_en.32000" in message and "\n" not in message


def test_check_vocabulary_is_silent_for_other_sizes(oracle_tokenizers, caplog):
    with warnings.catch_warnings(), caplog.at_level("WARNING"):
        warnings.simplefilter("error")
        oracle_tokenizers["spm500"].check_vocabulary(500)
    assert not caplog.records
