"""Transcript normalisation and word / character error counts, shared by eval and probe.

One normaliser serves every error rate of the package (the ``asr`` metric's dWER and
dCER, the ASR probe's units, CER and WER), so the same reference and hypothesis give
the same score wherever they are compared. It follows the basic normaliser of Whisper's
evaluations: Unicode NFKC, lower case, punctuation and symbols replaced by spaces,
whitespace collapsed. Two choices of ours: apostrophes inside a word are kept ("don't"
stays one word, as in LibriSpeech transcripts) and combining marks are kept (dropping
them would change the letters of scripts that need them, e.g. Devanagari vowel signs).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["edit_distance", "error_rate", "normalize_text"]

# An apostrophe that does not sit between two word characters: a quote mark.
_QUOTE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and symbols, collapse whitespace.

    Whisper writes "Hello, world!" where a codec that changed nothing audible would
    also give "hello world": casing, punctuation and symbols ("50%", "$20") are not
    content, so they are removed before counting errors. Apostrophes inside words are
    kept ("don't" is one word); quote marks are not. The result is normalised again
    unchanged.

    Parameters
    ----------
    text
        Any transcript.

    Returns
    -------
        Words of lower-case letters, digits, marks and inner apostrophes, separated by
        single spaces, without leading or trailing space.
    """
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _QUOTE.sub(" ", text)
    kept = [
        ch
        if (ch == "'" or not unicodedata.category(ch).startswith(("P", "S")))
        else " "
        for ch in text
    ]
    return " ".join("".join(kept).split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions, unit costs).

    Parameters
    ----------
    ref, hyp
        Sequences of comparable items (words or characters).

    Returns
    -------
        The minimum number of edits turning ``ref`` into ``hyp``.
    """
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    # One row of the dynamic-programming table, over the shorter sequence.
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        curr = [i]
        for j, h in enumerate(hyp, start=1):
            curr.append(min(prev[j] + 1, curr[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = curr
    return prev[-1]


def error_rate(ref: str, hyp: str, unit: str = "word") -> tuple[int, int]:
    """Edits and reference length for one transcript pair, after normalisation.

    Parameters
    ----------
    ref, hyp
        Reference and hypothesis text (normalised by :func:`normalize_text` here).
    unit
        ``"word"`` for WER, ``"char"`` for CER (spaces count as characters).

    Returns
    -------
        (number of edits, number of reference units); the rate is their ratio, and a
        corpus rate is the sum of edits over the sum of reference units.
    """
    ref, hyp = normalize_text(ref), normalize_text(hyp)
    if unit == "word":
        ref_units: Sequence[str] = ref.split()
        hyp_units: Sequence[str] = hyp.split()
    elif unit == "char":
        ref_units, hyp_units = ref, hyp
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    return edit_distance(ref_units, hyp_units), len(ref_units)
