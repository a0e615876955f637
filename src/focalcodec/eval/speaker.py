"""Speaker similarity: cosine similarity of speaker embeddings.

The default embedder is Resemblyzer's GE2E voice encoder (a 3-layer LSTM on 40-band mel
frames; its weights ship inside the ``resemblyzer`` wheel, so it works offline). Each
utterance is volume-normalised and has long silences removed by Resemblyzer's own
preprocessing, then embedded as the mean of its 1.6 s partial windows (batched inside
Resemblyzer). Embeddings are L2-normalised, so similarity lies in [-1, 1]; 1 means the
same voice. A different embedder (WavLM-SV, ECAPA) plugs in through :class:`Embedder`.

For reconstruction the output is compared with its own original. For voice conversion it
is compared with the target speaker (the mean embedding of the reference set), and
``spk_sim_src`` also reports how much it still sounds like the source speaker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .base import EVAL_RATE, EvalItem, Metric, MetricModels, MetricUnavailable, Row
from .base import register_metric as _register

__all__ = ["Embedder", "ResemblyzerEmbedder", "SpeakerSimilarity", "cosine"]

# Below this many samples (0.1 s) after silence trimming, embed the untrimmed audio.
_MIN_SAMPLES = EVAL_RATE // 10


class Embedder(Protocol):
    """Something that maps 16 kHz waveforms to speaker embeddings."""

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Embed each waveform (N_i,); returns (len(wavs), E), rows L2-normalised."""
        ...


class ResemblyzerEmbedder:
    """Resemblyzer voice encoder on CPU (or ``device``)."""

    def __init__(self, device: str = "cpu") -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            # webrtcvad 2.0.10 imports pkg_resources, which new setuptools removed;
            # webrtcvad-wheels provides the same module without it.
            raise MetricUnavailable(
                f"needs resemblyzer ({exc}); pip install 'focalcodec[eval-models]'"
            ) from exc
        self._preprocess = preprocess_wav
        self._encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for wav in wavs:
            wav = np.asarray(wav, dtype=np.float32)
            trimmed = self._preprocess(wav, source_sr=EVAL_RATE)
            if trimmed.size < _MIN_SAMPLES:
                trimmed = wav
            out.append(self._encoder.embed_utterance(trimmed))
        return np.stack(out).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors, shape (E,); NaN if either is zero."""
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else math.nan


@_register("speaker")
class SpeakerSimilarity(Metric):
    """Speaker similarity of the output to the intended speaker.

    Parameters
    ----------
    embedder
        A ready :class:`Embedder`; if ``None``, Resemblyzer is loaded in :meth:`setup`.
    """

    name = "speaker"
    columns = ("spk_sim", "spk_sim_src")
    higher_is_better = {"spk_sim": True, "spk_sim_src": True}
    intrusive = False

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder
        self._refs: dict[str, np.ndarray] = {}

    def setup(self, cache: MetricModels) -> None:
        if self.embedder is None:
            self.embedder = cache.get(("resemblyzer",), ResemblyzerEmbedder)
        # Embeddings of originals and target sets are shared by every codec of the run.
        self._refs = cache.get(("speaker-ref-embeds", id(self.embedder)), dict)

    def _ref_embeddings(self, items: Sequence[EvalItem]) -> None:
        assert self.embedder is not None, "setup() was not called"
        todo = list(
            {it.key: it for it in items if ("utt", it.key) not in self._refs}.values()
        )
        if todo:
            embeds = self.embedder.embed([it.ref for it in todo])
            for item, emb in zip(todo, embeds, strict=True):
                self._refs["utt", item.key] = emb
        for item in items:
            if item.speaker_refs and ("set", item.speaker_key) not in self._refs:
                if not item.speaker_key:
                    raise ValueError(
                        f"{item.key}: speaker_refs given without speaker_key"
                    )
                mean = self.embedder.embed(list(item.speaker_refs)).mean(axis=0)
                self._refs["set", item.speaker_key] = mean / np.linalg.norm(mean)

    def score(self, items: Sequence[EvalItem]) -> list[Row]:
        assert self.embedder is not None, "setup() was not called"
        self._ref_embeddings(items)
        embeds = self.embedder.embed([it.est for it in items])
        rows = []
        for item, emb in zip(items, embeds, strict=True):
            own = cosine(emb, self._refs["utt", item.key])
            if item.speaker_refs:
                target = cosine(emb, self._refs["set", item.speaker_key])
                rows.append({"spk_sim": target, "spk_sim_src": own})
            else:
                rows.append({"spk_sim": own, "spk_sim_src": math.nan})
        return rows
