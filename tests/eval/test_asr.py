"""dWER / dCER: text normalisation, edit distance on known strings, the ASR metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalcodec.eval.asr import (
    ASRMetric,
    FasterWhisperTranscriber,
    edit_distance,
    error_rate,
    normalize_text,
)
from focalcodec.eval.base import EvalItem, MetricModels, MetricUnavailable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  It's   a TEST... ", "it's a test"),
        ("'quoted' words", "quoted words"),
        ("Mr. Smith-Jones — 42%", "mr smith jones 42"),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("ref", "hyp", "distance"),
    [
        ("kitten", "sitting", 3),  # the textbook example
        ("flaw", "lawn", 2),
        ("", "abc", 3),
        ("abc", "", 3),
        ("same", "same", 0),
    ],
)
def test_edit_distance_known_pairs(ref, hyp, distance):
    assert edit_distance(ref, hyp) == distance
    assert edit_distance(hyp, ref) == distance


def test_word_and_char_error_rates_on_known_strings():
    # One substitution (sat -> sit) and one deletion (the) out of six words.
    assert error_rate("The cat sat on the mat.", "the cat sit on mat", "word") == (2, 6)
    # Characters: "sat"->"sit" is 1 edit, dropping "the " is 4 edits; 22 chars.
    assert error_rate("the cat sat on the mat", "the cat sit on mat", "char") == (5, 22)
    with pytest.raises(ValueError):
        error_rate("a", "b", "phone")


@pytest.mark.parametrize(
    ("ref", "hyp"),
    [
        ("the quick brown fox", "the quick brown fox jumps"),
        ("a b c d e f", "a x c e f g"),
        ("one two three", "three two one"),
    ],
)
def test_error_counts_agree_with_jiwer(ref, hyp):
    jiwer = pytest.importorskip("jiwer")
    errors, words = error_rate(ref, hyp, "word")
    assert errors / words == pytest.approx(jiwer.wer(ref, hyp))
    errors, chars = error_rate(ref, hyp, "char")
    assert errors / chars == pytest.approx(jiwer.cer(ref, hyp))


class FakeTranscriber:
    """Returns a text chosen from the waveform's first sample, and counts calls."""

    def __init__(self, texts: dict[float, str]):
        self.texts = texts
        self.calls = 0

    def transcribe(self, wavs):
        self.calls += len(wavs)
        return [self.texts[round(float(w[0]), 2)] for w in wavs]


def _wave(marker: float) -> np.ndarray:
    return np.full(1600, marker, dtype=np.float32)


def test_asr_metric_scores_against_the_transcript_of_the_original():
    fake = FakeTranscriber(
        {0.1: "one two three four", 0.2: "one two three four", 0.3: "one too three"}
    )
    metric = ASRMetric(transcriber=fake)
    metric.setup(MetricModels())
    items = [
        EvalItem("a", _wave(0.1), _wave(0.2)),  # same text: 0 errors
        EvalItem("b", _wave(0.1), _wave(0.3)),  # 1 sub + 1 del over 4 words
    ]
    rows = metric.score(items)
    assert rows[0]["dwer"] == 0.0
    assert rows[1]["dwer"] == pytest.approx(0.5)
    assert rows[1]["text_ref"] == "one two three four"
    # Corpus level: 2 errors over 8 reference words.
    assert metric.summarize(rows)["dwer"] == pytest.approx(0.25)
    assert 0 < metric.summarize(rows)["dcer"] < 1


def test_reference_transcripts_are_shared_between_metric_instances():
    fake = FakeTranscriber({0.1: "hello world", 0.2: "hello word"})
    cache = MetricModels()
    items = [EvalItem("a", _wave(0.1), _wave(0.2))]
    for _ in range(2):  # two codecs scored in one run
        metric = ASRMetric(transcriber=fake)
        metric.setup(cache)
        metric.score(items)
    assert fake.calls == 3  # one original + two outputs


def test_empty_reference_transcript_gives_nan_rate():
    fake = FakeTranscriber({0.1: "", 0.2: "noise"})
    metric = ASRMetric(transcriber=fake)
    metric.setup(MetricModels())
    row = metric.score([EvalItem("a", _wave(0.1), _wave(0.2))])[0]
    assert math.isnan(row["dwer"])


def test_missing_asr_model_makes_the_metric_unavailable(monkeypatch):
    monkeypatch.delenv("FOCALCODEC_ASR_MODEL", raising=False)
    with pytest.raises(MetricUnavailable, match="--asr-model"):
        ASRMetric().setup(MetricModels())


def test_directory_without_ctranslate2_model_is_rejected(tmp_path):
    pytest.importorskip("faster_whisper")
    with pytest.raises(MetricUnavailable, match="model.bin"):
        FasterWhisperTranscriber(str(tmp_path))


def test_missing_local_directory_is_reported(tmp_path):
    pytest.importorskip("faster_whisper")
    with pytest.raises(MetricUnavailable, match="not found"):
        FasterWhisperTranscriber(str(tmp_path / "absent"))


class FakeWhisperModel:
    """Stands in for faster_whisper.WhisperModel; records how it was called."""

    instances: list[FakeWhisperModel] = []

    def __init__(self, model, device, compute_type):
        self.args = (model, device, compute_type)
        self.calls: list[dict] = []
        FakeWhisperModel.instances.append(self)

    def transcribe(self, audio, **options):
        self.calls.append({"dtype": audio.dtype, "size": audio.size, **options})

        class Segment:
            def __init__(self, text):
                self.text = text

        return iter([Segment(" Hello,"), Segment(" world. ")]), None


def test_faster_whisper_plumbing_with_a_fake_model(tmp_path, monkeypatch):
    faster_whisper = pytest.importorskip("faster_whisper")
    monkeypatch.setattr(faster_whisper, "WhisperModel", FakeWhisperModel)
    (tmp_path / "model.bin").write_bytes(b"")
    asr = FasterWhisperTranscriber(str(tmp_path), "cpu", "int8", language="en")
    model = FakeWhisperModel.instances[-1]
    assert model.args == (str(tmp_path), "cpu", "int8")
    texts = asr.transcribe([np.zeros(800, dtype=np.float64), np.zeros(1600)])
    assert texts == ["Hello, world.", "Hello, world."]
    assert [c["size"] for c in model.calls] == [800, 1600]
    assert all(c["dtype"] == np.float32 and c["language"] == "en" for c in model.calls)
    # Through the metric: identical transcripts, so no differential errors.
    metric = ASRMetric(transcriber=asr)
    metric.setup(MetricModels())
    row = metric.score([EvalItem("a", np.zeros(800), np.zeros(800))])[0]
    assert row["dwer"] == 0.0 and row["text_est"] == "Hello, world."
