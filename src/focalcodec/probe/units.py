"""Output units of the ASR probe: characters or BPE pieces, and CTC greedy decoding.

Transcripts are normalised once (:func:`normalize_text`, the one normaliser of the
package, :func:`focalcodec.eval.text.normalize_text`: Unicode NFKC, lower case,
punctuation and symbols dropped, whitespace collapsed) before units are built and
before error rates are computed, so punctuation, symbols and case never count as
recognition errors, and ``eval`` scores the same strings the same.

Unit ids start at 1: id 0 is the CTC blank.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..eval.text import normalize_text

__all__ = [
    "BLANK",
    "BpeUnits",
    "CharUnits",
    "Units",
    "ctc_greedy",
    "load_units",
    "make_units",
    "normalize_text",
    "parse_units",
]

BLANK = 0


def parse_units(spec: str) -> tuple[str, int | None]:
    """``char`` -> ("char", None); ``bpe:500`` -> ("bpe", 500)."""
    if spec == "char":
        return "char", None
    kind, _, size = spec.partition(":")
    if kind == "bpe" and size.isdigit() and int(size) > 1:
        return "bpe", int(size)
    raise ConfigError(f"units {spec!r}: use 'char' or 'bpe:N' (e.g. bpe:250)")


class Units:
    """Text <-> unit ids (1-based; 0 is the CTC blank)."""

    spec: str

    @property
    def size(self) -> int:
        """Number of units, blank excluded."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError


class CharUnits(Units):
    """One unit per character of the training transcripts, plus ``<unk>`` (id 1)."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        self.spec = "char"
        self._index = {c: i + 2 for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharUnits:
        return cls("".join(texts))

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        return [self._index.get(c, 1) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i - 2] if i >= 2 else "" for i in ids)

    def to_bytes(self) -> bytes:
        return ("char\n" + "".join(self.chars)).encode()


class BpeUnits(Units):
    """A SentencePiece BPE model trained on the training transcripts."""

    def __init__(self, model: bytes, vocab_size: int) -> None:
        import sentencepiece as spm

        self.model = model
        self.spec = f"bpe:{vocab_size}"
        self._sp = spm.SentencePieceProcessor(model_proto=model)

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int) -> BpeUnits:
        try:
            import sentencepiece as spm
        except ImportError as exc:
            raise ConfigError(
                "BPE units need sentencepiece: pip install 'focalcodec[probe]'"
            ) from exc
        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(list(texts)),
                model_writer=buffer,
                vocab_size=vocab_size,
                model_type="bpe",
                character_coverage=1.0,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot train bpe:{vocab_size} on {len(texts)} transcripts "
                f"({str(exc).strip().splitlines()[-1]}); choose fewer units"
            ) from None
        return cls(buffer.getvalue(), vocab_size)

    @property
    def size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self._sp.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([i - 1 for i in ids if i >= 1])

    def to_bytes(self) -> bytes:
        return b"bpe\n" + self.model


def make_units(spec: str, texts: Sequence[str]) -> Units:
    """Build the units of ``spec`` from normalised training transcripts."""
    kind, size = parse_units(spec)
    if kind == "char":
        return CharUnits.fit(texts)
    return BpeUnits.fit(texts, size)


def load_units(path: Path) -> Units:
    """Units saved with ``path.write_bytes(units.to_bytes())``."""
    data = Path(path).read_bytes()
    kind, _, body = data.partition(b"\n")
    if kind == b"char":
        return CharUnits(body.decode())
    if kind == b"bpe":
        import sentencepiece as spm

        size = spm.SentencePieceProcessor(model_proto=body).get_piece_size()
        return BpeUnits(body, int(size))
    raise ConfigError(f"{path}: not a units file")


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path decoding: argmax per frame, repeats merged, blanks removed.

    Parameters
    ----------
    log_probs
        Scores (B, T, V) with the blank at index 0.
    lengths
        Valid frames per item (B,).

    Returns
    -------
        One list of unit ids per item.
    """
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        path = torch.unique_consecutive(row[: int(length)]).tolist()
        out.append([u for u in path if u != BLANK])
    return out
