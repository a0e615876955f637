"""Test-set scores: accuracy, error rate and confusion matrix; CER and WER."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["asr_scores", "classification_scores"]


def classification_scores(
    labels: Sequence[int], preds: Sequence[int], num_classes: int
) -> dict[str, Any]:
    """Accuracy, error rate, chance level and the confusion matrix.

    Returns
    -------
        ``test_accuracy``, ``test_error_rate``, ``chance_accuracy`` (the share of the
        most frequent test class: what always guessing it scores) and ``confusion``
        (rows: true class, columns: predicted class).
    """
    if not labels or len(labels) != len(preds):
        raise ValueError("need as many predictions as labels, and at least one")
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for truth, guess in zip(labels, preds, strict=True):
        confusion[truth][guess] += 1
    correct = sum(confusion[i][i] for i in range(num_classes))
    accuracy = correct / len(labels)
    return {
        "test_accuracy": accuracy,
        "test_error_rate": 1.0 - accuracy,
        "chance_accuracy": Counter(labels).most_common(1)[0][1] / len(labels),
        "num_test": len(labels),
        "confusion": confusion,
    }


def asr_scores(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """Corpus-level character and word error rates (jiwer) of normalised texts.

    Returns
    -------
        ``test_cer``, ``test_wer``, ``num_test`` and a few ``examples``.
    """
    import jiwer

    if not refs or len(refs) != len(hyps):
        raise ValueError("need as many hypotheses as references, and at least one")
    # jiwer refuses empty references (probes drop such items); empty hypotheses are
    # all deletions.
    refs, hyps = list(refs), list(hyps)
    return {
        "test_cer": float(jiwer.cer(refs, hyps)),
        "test_wer": float(jiwer.wer(refs, hyps)),
        "num_test": len(refs),
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:5]],
    }
