"""Differential word and character error rates (dWER, dCER) with an ASR model.

No reference transcripts are needed: the ASR transcript of the original is the reference
and the transcript of the codec output is the hypothesis, so the score measures what the
codec destroyed rather than how good the recogniser is. Summary rates are corpus-level
(total edits over total reference words), like WER in the ASR literature. Both
transcripts go through :func:`focalcodec.eval.text.normalize_text` first, the
normaliser that the ASR probe uses too.

The recogniser is anything with a ``transcribe(wavs) -> list[str]`` method
(:class:`Transcriber`). The default is faster-whisper, given a local CTranslate2 Whisper
directory (offline) or a Hugging Face id such as ``Systran/faster-whisper-small``
(online; downloaded to the Hub cache).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .base import EvalItem, Metric, MetricModels, MetricUnavailable, Row
from .base import register_metric as _register
from .text import edit_distance, error_rate, normalize_text

__all__ = [
    "ASRMetric",
    "FasterWhisperTranscriber",
    "Transcriber",
    "edit_distance",
    "error_rate",
    "normalize_text",
]

# Environment variable naming the default faster-whisper model (path or Hub id).
ASR_MODEL_ENV = "FOCALCODEC_ASR_MODEL"


class Transcriber(Protocol):
    """Something that turns 16 kHz waveforms into text."""

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe each waveform, shape (N_i,) float32 at 16 kHz."""
        ...


class FasterWhisperTranscriber:
    """faster-whisper (CTranslate2) transcription, one file at a time.

    Parameters
    ----------
    model
        Local CTranslate2 Whisper directory (contains ``model.bin``) or a Hub id.
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    compute_type
        CTranslate2 precision, e.g. ``"int8"`` (fast on CPU) or ``"float16"``.
    language
        ISO code to skip language detection, or ``None`` to detect per file.
    beam_size
        Beam width; 5 is Whisper's default.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        compute_type: str = "default",
        language: str | None = None,
        beam_size: int = 5,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MetricUnavailable(
                "needs faster-whisper: pip install 'focalcodec[eval-models]'"
            ) from exc
        if os.path.isdir(model):
            if not os.path.isfile(os.path.join(model, "model.bin")):
                raise MetricUnavailable(
                    f"ASR model {model!r} is not a CTranslate2 Whisper directory "
                    "(no model.bin); convert one with ct2-transformers-converter"
                )
        elif os.path.exists(model):
            raise MetricUnavailable(f"ASR model {model!r} is a file, not a directory")
        elif model.startswith((os.sep, ".", "~")):
            raise MetricUnavailable(f"ASR model directory {model!r} not found")
        # Anything else is a Hub id ("Systran/faster-whisper-small") or a size name
        # ("small"), which faster-whisper downloads; offline that fails below.
        try:
            self.model = WhisperModel(model, device=device, compute_type=compute_type)
        except Exception as exc:
            raise MetricUnavailable(f"cannot load ASR model {model!r}: {exc}") from exc
        self.language = language
        self.beam_size = beam_size

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        texts = []
        for wav in wavs:
            segments, _ = self.model.transcribe(
                np.asarray(wav, dtype=np.float32),
                language=self.language,
                beam_size=self.beam_size,
                condition_on_previous_text=False,
            )
            texts.append(" ".join(seg.text.strip() for seg in segments).strip())
        return texts


@_register("asr")
class ASRMetric(Metric):
    """dWER and dCER of the output against the transcript of the original.

    Parameters
    ----------
    transcriber
        A ready :class:`Transcriber`; if ``None``, faster-whisper is loaded in
        :meth:`setup` from ``model`` (or the ``FOCALCODEC_ASR_MODEL`` variable).
    model, device, compute_type, language
        Passed to :class:`FasterWhisperTranscriber`.
    """

    name = "asr"
    columns = ("dwer", "dcer")
    higher_is_better = {"dwer": False, "dcer": False}
    intrusive = False

    def __init__(
        self,
        transcriber: Transcriber | None = None,
        model: str | None = None,
        device: str = "auto",
        compute_type: str = "default",
        language: str | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.options = (model, device, compute_type, language)
        self._ref_texts: dict[str, str] = {}

    def setup(self, cache: MetricModels) -> None:
        model, device, compute_type, language = self.options
        model = model or os.environ.get(ASR_MODEL_ENV)
        if self.transcriber is None:
            if not model:
                raise MetricUnavailable(
                    f"no ASR model given: pass --asr-model DIR (a CTranslate2 Whisper "
                    f"directory) or a Hub id, or set {ASR_MODEL_ENV}"
                )
            self.transcriber = cache.get(
                ("faster-whisper", model, device, compute_type, language),
                lambda: FasterWhisperTranscriber(model, device, compute_type, language),
            )
        # Transcripts of originals are shared by every codec of the run.
        self._ref_texts = cache.get(("asr-ref-texts", id(self.transcriber)), dict)

    def score(self, items: Sequence[EvalItem]) -> list[Row]:
        assert self.transcriber is not None, "setup() was not called"
        todo = [it for it in items if it.key not in self._ref_texts]
        if todo:
            texts = self.transcriber.transcribe([_clip(it.ref) for it in todo])
            self._ref_texts.update(zip([it.key for it in todo], texts, strict=True))
        hyps = self.transcriber.transcribe([_clip(it.est) for it in items])
        rows = []
        for item, hyp in zip(items, hyps, strict=True):
            ref = self._ref_texts[item.key]
            word_err, words = error_rate(ref, hyp, "word")
            char_err, chars = error_rate(ref, hyp, "char")
            rows.append(
                {
                    "dwer": word_err / words if words else math.nan,
                    "dcer": char_err / chars if chars else math.nan,
                    "word_errors": word_err,
                    "ref_words": words,
                    "char_errors": char_err,
                    "ref_chars": chars,
                    "text_ref": ref,
                    "text_est": hyp,
                }
            )
        return rows

    def summarize(self, rows: Sequence[Row]) -> dict[str, float]:
        return {
            "dwer": _ratio(rows, "word_errors", "ref_words"),
            "dcer": _ratio(rows, "char_errors", "ref_chars"),
        }


def _ratio(rows: Sequence[Row], num: str, den: str) -> float:
    total = sum(int(r.get(den, 0)) for r in rows)
    return sum(int(r.get(num, 0)) for r in rows) / total if total else math.nan


def _clip(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
