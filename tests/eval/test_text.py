"""One text normaliser: eval's dWER/dCER and the ASR probe's CER/WER score alike."""

from __future__ import annotations

import pytest

from focalcodec.eval import asr
from focalcodec.eval.text import error_rate, normalize_text
from focalcodec.probe import units

# Pairs whose only differences are case, punctuation, symbols and quote marks, and one
# pair with real errors. Counted by hand after normalisation:
#   "save 50 on 20 items"     5 words, 19 chars, no edits
#   "tis the season"          3 words, 14 chars, no edits
#   "the cat sat on the mat"  6 words, 22 chars; hyp "the cat sit on mat":
#                             2 word edits (sat->sit, drop "the"), 5 char edits
PAIRS = [
    ("Save 50% on $20 items!", "save 50 on 20 items"),
    ("'Tis the season.", "tis the season"),
    ("The cat sat on the mat.", "the cat sit on mat"),
]
WER = 2 / 14
CER = 5 / 55


def test_there_is_one_normaliser():
    assert units.normalize_text is normalize_text
    assert asr.normalize_text is normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Save 50% on $20 items!", "save 50 on 20 items"),
        ("1 + 1 = 2", "1 1 2"),
        ("'Tis the boys' room, don't", "tis the boys room don't"),
        ("Ça  VA?\u00a0Très—bien", "ça va très bien"),
        ("ﬁne", "fine"),  # NFKC: the ligature is two letters
    ],
)
def test_symbols_and_quote_marks_are_not_words(text, expected):
    assert normalize_text(text) == expected
    assert normalize_text(expected) == expected


def test_the_same_pairs_score_the_same_in_eval_and_probe():
    pytest.importorskip("jiwer")  # the probe's scorer (extra "probe")
    from focalcodec.probe.metrics import asr_scores

    word = [error_rate(ref, hyp, "word") for ref, hyp in PAIRS]
    char = [error_rate(ref, hyp, "char") for ref, hyp in PAIRS]
    assert word == [(0, 5), (0, 3), (2, 6)]
    assert char == [(0, 19), (0, 14), (5, 22)]
    # Corpus rates, as eval's summary and the probe's test scores compute them.
    eval_wer = sum(e for e, _ in word) / sum(n for _, n in word)
    eval_cer = sum(e for e, _ in char) / sum(n for _, n in char)
    assert eval_wer == pytest.approx(WER) and eval_cer == pytest.approx(CER)
    # The probe normalises references and decoded hypotheses, then scores with jiwer.
    refs = [units.normalize_text(ref) for ref, _ in PAIRS]
    hyps = [units.normalize_text(hyp) for _, hyp in PAIRS]
    scores = asr_scores(refs, hyps)
    assert scores["test_wer"] == pytest.approx(WER)
    assert scores["test_cer"] == pytest.approx(CER)
