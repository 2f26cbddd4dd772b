"""The LvT text tokenizer: SentencePiece ``c4_en`` plus the original's text canonicalisation.

``tokenize(texts, tokenizer)`` gives what the original ``tokenize_texts`` gives: int32 ids and
float32 paddings (1.0 = pad), both (N, max_length), right-padded with id 0, truncated to
``max_length``, no BOS and no EOS.

The released LvT models expect the 32,000-piece ``c4_en`` vocabulary, which is T5's English-only
``cc_en.32000`` SentencePiece model (``gs://t5-data/vocabs/cc_en.32000/sentencepiece.model``), not
T5's default ``cc_all.32000`` (the ``spiece.model`` of most T5 checkpoints). Both have 32,000 pieces
and the same special ids, so only the ids of real text tell them apart
(:attr:`Tokenizer.matches_c4_en`).
"""

from __future__ import annotations

import logging
import os
import string
from pathlib import Path
from typing import Sequence

import numpy as np
import sentencepiece

logger = logging.getLogger(__name__)

C4_EN_VOCAB_SIZE = 32_000
PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NO_BOS = -1

# Ids of the original's demo prompt under the real c4_en model, as asserted against the
# cc_en.32000 file by HF transformers' VideoPrism converter and tokenizer tests (not checked here:
# the file cannot be fetched on the build machine). The leading "▁", "a" split is c4_en's own.
C4_EN_REFERENCE_TEXT = "a video of playing drums."
C4_EN_REFERENCE_IDS = (262, 266, 768, 267, 1376, 14293, 259)

_PUNCTUATION_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def canonicalize_text(text: str) -> str:
    """Canonicalises a text as the original does before tokenising.

    ASCII punctuation becomes a space, the text is lower-cased, whitespace runs (Python's
    ``str.split``) collapse to one space, and a ``"."`` is appended: ``"Hello, World!"`` gives
    ``"hello world."``; an empty or punctuation-only text gives ``"."``.
    """
    words = text.translate(_PUNCTUATION_TO_SPACE).lower().split()
    return " ".join(words) + "."


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("ends inside a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _top_level_fields(data: bytes) -> set[int]:
    """Field numbers present at the top level of a serialised ModelProto."""
    fields = set()
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        wire_type = tag & 7
        if wire_type == 0:
            _, pos = _read_varint(data, pos)
        elif wire_type == 2:
            size, pos = _read_varint(data, pos)
            pos += size
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unknown protobuf wire type {wire_type}")
        if pos > len(data):
            raise ValueError("ends inside a field")
        fields.add(tag >> 3)
    return fields


# ModelProto stores its pieces (field 1) first, then trainer_spec (2) and normalizer_spec (3).
# A file cut right after a piece still parses, as a smaller model with no normaliser, so
# SentencePiece loads it without complaint; only the missing specs reveal the truncation.
_REQUIRED_FIELDS = {1: "pieces", 2: "trainer_spec", 3: "normalizer_spec"}


class Tokenizer:
    """A SentencePiece model with c4_en's id layout (pad 0, eos 1, unk 2, no BOS).

    Build it with :meth:`from_file`, which validates the file.
    """

    def __init__(self, processor: sentencepiece.SentencePieceProcessor, path: Path) -> None:
        self._processor = processor
        self._path = path

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads and validates a SentencePiece ``.model`` file.

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it
        is unreadable, truncated, or does not use c4_en's special ids.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model {str(path)!r} does not exist or is not "
                                    "a file")
        data = path.read_bytes()
        try:
            fields = _top_level_fields(data)
        except ValueError as err:
            raise ValueError(
                f"{path}: not a SentencePiece model, or a truncated one ({err}); "
                "download or copy the file again"
            ) from err
        missing = [name for number, name in _REQUIRED_FIELDS.items() if number not in fields]
        if missing:
            raise ValueError(
                f"{path}: incomplete SentencePiece model (no {', '.join(missing)}); the file looks "
                "truncated: download or copy it again"
            )
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(data)
        except RuntimeError as err:
            raise ValueError(f"{path}: SentencePiece cannot load this model: {err}") from err
        ids = {
            "pad_id": (processor.pad_id(), PAD_ID),
            "eos_id": (processor.eos_id(), EOS_ID),
            "unk_id": (processor.unk_id(), UNK_ID),
            "bos_id": (processor.bos_id(), NO_BOS),
        }
        wrong = [f"{name} {got} (expected {want})"
                 for name, (got, want) in ids.items() if got != want]
        if wrong:
            raise ValueError(
                f"{path}: special ids do not follow c4_en's layout (pad 0, eos 1, unk 2, no BOS): "
                f"{'; '.join(wrong)}"
            )
        return cls(processor, path)

    @property
    def path(self) -> Path:
        """The ``.model`` file this tokenizer was loaded from."""
        return self._path

    @property
    def vocab_size(self) -> int:
        """Number of pieces (32,000 for c4_en)."""
        return self._processor.get_piece_size()

    @property
    def matches_c4_en(self) -> bool:
        """True if the reference prompt gets the ids the real c4_en model gives it."""
        return tuple(self.encode([C4_EN_REFERENCE_TEXT])[0]) == C4_EN_REFERENCE_IDS

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Raw SentencePiece ids of each text: no canonicalisation, BOS, EOS or truncation."""
        return self._processor.encode(list(texts), out_type=int)

    def check_vocabulary(self, vocabulary_size: int) -> None:
        """Raises ``ValueError`` unless this tokenizer fits a model with ``vocabulary_size`` rows.

        A 32,000-row model given a 32,000-piece file that is not c4_en gets a warning: the ids
        would be in range but mean other pieces.
        """
        if self.vocab_size != vocabulary_size:
            raise ValueError(
                f"{self.path}: the tokenizer has {self.vocab_size} pieces but the model's token "
                f"embedding has {vocabulary_size} rows. The released LvT models need the "
                f"{C4_EN_VOCAB_SIZE:,}-piece c4_en vocabulary: T5's English-only cc_en.32000 "
                "SentencePiece model (gs://t5-data/vocabs/cc_en.32000/sentencepiece.model), "
                "not T5's default cc_all.32000 (the spiece.model of T5 checkpoints)"
            )
        if vocabulary_size == C4_EN_VOCAB_SIZE and not self.matches_c4_en:
            # A log record, not warnings.warn: that would print this module's source line.
            logger.warning(
                "%s has %s pieces but is not c4_en: %r encodes to %s, c4_en gives %s. The "
                "released LvT models need T5's English-only cc_en.32000 model, not T5's default "
                "cc_all.32000; text embeddings from this file will be meaningless", self.path,
                f"{C4_EN_VOCAB_SIZE:,}", C4_EN_REFERENCE_TEXT,
                self.encode([C4_EN_REFERENCE_TEXT])[0], list(C4_EN_REFERENCE_IDS))


def tokenize(
    texts: str | Sequence[str],
    tokenizer: Tokenizer,
    max_length: int = 64,
    canonicalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenises texts as the original ``tokenize_texts`` does.

    Args:
        texts: one text or a sequence of N texts.
        tokenizer: a c4_en-layout :class:`Tokenizer`.
        max_length: L, the number of ids per text (64 for the released models); longer
            encodings are cut to their first L ids, including the appended ``"."``.
        canonicalize: apply :func:`canonicalize_text` first (the original's default).

    Returns:
        ``(ids, paddings)``: int32 (N, L) ids right-padded with 0, and float32 (N, L) paddings,
        1.0 where ``ids`` is padding.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be a str or a sequence of str, got bytes: decode them first")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str: {text!r}")
    if canonicalize:
        texts = [canonicalize_text(text) for text in texts]

    ids = np.full((len(texts), max_length), PAD_ID, dtype=np.int32)
    paddings = np.ones((len(texts), max_length), dtype=np.float32)
    for row, encoded in enumerate(tokenizer.encode(texts)):
        n = min(len(encoded), max_length)
        ids[row, :n] = encoded[:n]
        paddings[row, :n] = 0.0
    return ids, paddings
