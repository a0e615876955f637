"""``FocalCodec``: a thin facade over the five components of the pipeline.

    sig --encoder--> feats --compressor--> lats --quantizer--> toks / codes
    codes --decompressor--> qfeats --decoder--> sig

Method names, signatures and call forms are the original package's (``docs/migration.md``).
The method bodies handle whole signals; the original streaming form, with states threaded
by the caller, is routed to :mod:`focalcodec.streaming.threaded`, and
``codec.streaming()`` opens a session that owns the states. The step functions
(``encode_step``, ``decode_step``) are what :mod:`focalcodec.streaming` builds on.
``FocalCodec`` satisfies :class:`focalcodec.protocol.Codec`, as the ONNX backend does.

Batches and ``length``: ``length`` (B,) gives the fraction of the time axis that is real for
each item. Unlike the original, every item then gives exactly what it gives on its own: items
are processed at their true length (grouped by length) and the outputs are zero-padded to
the longest item. Positions past an item's end hold zeros.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__
from .config import SLOTS, config_hash, normalize_config, registry
from .errors import ConfigError, InputError, StreamingError
from .inputs import (
    check_finite,
    check_output_length,
    check_sig,
    check_toks,
    output_length,
    per_item,
    valid_counts,
)
from .modules import NetworkFacts
from .modules.knn import check_matching_set, knn
from .streaming.threaded import fit_length, stateful

__all__ = ["CodecOutput", "FocalCodec"]


# The stateful components, in pipeline order (see focalcodec.streaming.threaded).
_ALL = ("encoder", "compressor", "decompressor", "decoder")


class CodecOutput(NamedTuple):
    """Result of :meth:`FocalCodec.forward`."""

    toks: Tensor
    codes: Tensor
    sig: Tensor


class FocalCodec(nn.Module):
    """FocalCodec speech codec; see the module docstring for the data flow.

    The public API of the original package is kept, call for call; the table is in
    ``docs/migration.md``.

    Parameters
    ----------
    encoder_name, compressor_name, quantizer_name, decompressor_name, decoder_name
        Registry names of the components (see :func:`focalcodec.config.registry`).
    encoder_config, compressor_config, quantizer_config, decompressor_config, decoder_config
        Keyword arguments of each component, as in the official ``config.json``.
    """

    __version__ = __version__
    # (key, digest) of the weights, kept by focalcodec.identity.weights_hash.
    _weights_hash: tuple[tuple, str] | None = None

    def __init__(
        self,
        encoder_name: str = "WavLM",
        encoder_config: dict | None = None,
        compressor_name: str = "FocalEncoder",
        compressor_config: dict | None = None,
        quantizer_name: str = "BinarySphericalQuantizer",
        quantizer_config: dict | None = None,
        decompressor_name: str = "FocalDecoder",
        decompressor_config: dict | None = None,
        decoder_name: str = "WaveNeXt",
        decoder_config: dict | None = None,
    ) -> None:
        super().__init__()
        given = dict(locals())
        config = normalize_config({k: given[k] for k in _config_keys()})
        self._config = config
        self.model_id: str | None = None
        classes = registry()
        for slot in SLOTS:
            name, kwargs = config[f"{slot}_name"], config[f"{slot}_config"]
            # The original package's public attributes (encoder_name, encoder_config...).
            setattr(self, f"{slot}_name", name)
            setattr(self, f"{slot}_config", copy.deepcopy(kwargs))
            try:
                module = classes[name](**kwargs)
            except TypeError as exc:
                raise ConfigError(f"{slot}_config for {name}: {exc}") from None
            setattr(self, slot, module)
        # Read once: a network may later run behind a wrapper (fast modes, jit()).
        self._parts = NetworkFacts.read(*(getattr(self, slot) for slot in _ALL))

    # -- identity and derived properties ---------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The 10-key ``config.json`` content this model was built from."""
        return normalize_config(self._config)

    def config_hash(self) -> str:
        """Short digest of the architecture, used to tie compressed files to a model."""
        return config_hash(self._config)

    @property
    def sample_rate_input(self) -> int:
        return self._parts.sample_rate

    @property
    def sample_rate_output(self) -> int:
        """Output samples per second: ``token_rate * output_hop_length``."""
        return self.sample_rate_input * self.output_hop_length // self.hop_length

    @property
    def hop_length(self) -> int:
        """Input samples per token (320 at 50 Hz); the one owner of the token hop."""
        return self._parts.hop_length

    @property
    def output_hop_length(self) -> int:
        """Output samples per token: decompressor frames times decoder samples."""
        return self._parts.output_hop_length

    @property
    def sample_rate(self) -> int:
        """The sample rate, when input and output rates agree."""
        if self.sample_rate_input != self.sample_rate_output:
            raise RuntimeError(
                f"input ({self.sample_rate_input} Hz) and output "
                f"({self.sample_rate_output} Hz) rates differ: use sample_rate_input or "
                "sample_rate_output"
            )
        return self.sample_rate_input

    @property
    def causal(self) -> bool:
        return self._parts.causal

    @property
    def chunk_size(self) -> int:
        """Samples per streaming step (1280 = 80 ms for the released models)."""
        return self._parts.chunk_size

    @property
    def chunk_tokens(self) -> int:
        """Tokens per streaming step (``chunk_size`` over ``hop_length``)."""
        if self.chunk_size % self.hop_length:
            raise StreamingError(
                f"chunk_size {self.chunk_size} is not a whole number of {self.hop_length}"
                "-sample token hops: this model's config cannot stream"
            )
        return self.chunk_size // self.hop_length

    @property
    def min_samples(self) -> int:
        """Shortest input: one encoder frame (320 samples, 20 ms, for WavLM)."""
        return self._parts.frame_hop

    @property
    def latency(self) -> float | None:
        """Algorithmic latency in ms for causal models, None otherwise."""
        if not self.causal:
            return None
        return self.chunk_size / self.sample_rate_input * 1e3

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def bits_per_token(self) -> int:
        return self.quantizer.dim

    @property
    def token_rate(self) -> float:
        """Tokens per second."""
        return self.sample_rate_input / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second of the token stream."""
        return self.token_rate * self.bits_per_token

    def output_length(self, num_samples: int) -> int:
        """Output samples of ``num_samples`` input samples:
        ``num_samples * sample_rate_output // sample_rate_input``."""
        return output_length(
            num_samples, self.sample_rate_input, self.sample_rate_output
        )

    def num_tokens(self, num_samples: int) -> int:
        """Tokens that ``sig_to_toks`` gives for ``num_samples`` input samples."""
        output_length(num_samples, 1, 1)  # the same checks of a sample count
        frames = self._parts.frame_lengths(torch.tensor([int(num_samples)]))
        return int(self._parts.token_lengths(frames)[0])

    @property
    def device(self) -> torch.device:
        """Where the weights are; inputs are moved there."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights, and of waveforms going in."""
        return next(self.parameters()).dtype

    @property
    def codebook(self) -> Tensor:
        """All codes, shape (codebook_size, bits_per_token)."""
        return self.quantizer.codebook.clone()

    def info(self) -> dict[str, Any]:
        """Summary of the model, as in the original ``info()`` plus rate fields."""
        fields = (
            "sample_rate_input",
            "sample_rate_output",
            "causal",
            "chunk_size",
            "latency",
            "token_rate",
            "codebook_size",
            "bitrate",
        )
        summary = {"model_id": self.model_id, "version": __version__}
        summary.update({name: getattr(self, name) for name in fields})
        summary["num_total_params"] = sum(t.numel() for t in self.state_dict().values())
        return summary

    # -- encoding ------------------------------------------------------------------------

    @stateful("sig", "feats", ("encoder",))
    def sig_to_feats(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) at ``sample_rate_input`` -> encoder features (B, F, D)."""
        sig = self._check_sig(sig)
        return self._per_item(self._feats, sig, length)

    @stateful("sig", "lats", ("encoder", "compressor"))
    def sig_to_lats(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) -> unit-norm latents (B, L, C)."""
        sig = self._check_sig(sig)
        return self._per_item(lambda s: self.feats_to_lats(self._feats(s)), sig, length)

    @stateful("sig", "toks", ("encoder", "compressor"))
    def sig_to_toks(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) -> int64 tokens (B, L)."""
        sig = self._check_sig(sig)
        return self._per_item(lambda s: self.feats_to_toks(self._feats(s)), sig, length)

    def sig_to_toks_padded(self, sig: Tensor, lengths: Any) -> tuple[Tensor, Tensor]:
        """Tokens of a right-padded batch (B, N) with ``lengths`` (B,) real samples, in
        one pass: int64 tokens (B, L), zeros past each item's end, and counts (B,).

        Padding is masked wherever the model mixes time, so item ``i``'s first
        ``counts[i]`` tokens equal ``sig_to_toks(sig[i, :lengths[i]])`` except at
        float-rounding ties (measured in ``docs/tokenize.md``); ``length=`` gives
        bit-exact per-item results instead.
        """
        sig = self._check_sig(sig)
        lengths = torch.as_tensor(lengths).flatten()
        low, high = self._parts.frame_hop, sig.shape[1]
        if lengths.is_floating_point() or lengths.numel() != sig.shape[0]:
            raise InputError(f"lengths must be {sig.shape[0]} integer sample counts")
        if bool(((lengths < low) | (lengths > high)).any()):
            raise InputError(f"lengths must lie in [{low}, {high}] samples")
        lengths = lengths.to(device=sig.device, dtype=torch.long)
        feats, _ = self.encoder(sig, need_state=False, lengths=lengths)
        frames = self._parts.frame_lengths(lengths)
        lats, _ = self.compressor(feats, lengths=frames)
        check_finite(lats, "latents")
        counts = self._parts.token_lengths(frames)
        toks = self.quantizer.lats_to_toks(F.normalize(lats, dim=-1))
        toks = toks[:, : int(counts.max())]
        steps = torch.arange(toks.shape[1], device=toks.device)
        return toks.masked_fill(steps[None] >= counts[:, None], 0), counts

    @stateful("sig", "codes", ("encoder", "compressor"))
    def sig_to_codes(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) -> codes (B, L, C) with entries +-1/sqrt(C)."""
        sig = self._check_sig(sig)
        return self._per_item(
            lambda s: self.feats_to_codes(self._feats(s)), sig, length
        )

    @stateful("sig", "qfeats", ("encoder", "compressor", "decompressor"))
    def sig_to_qfeats(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) -> decompressed features (B, F', D)."""
        sig = self._check_sig(sig)
        return self._per_item(
            lambda s: self.feats_to_qfeats(self._feats(s)), sig, length
        )

    @stateful("sig", "out", _ALL)
    def sig_to_sig(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Resynthesis: waveform (B, N) -> (B, int(N * sr_out / sr_in))."""
        return self.forward(sig, length=length).sig

    @stateful("sig", "forward", _ALL, output=CodecOutput)
    def forward(self, sig: Tensor, length: Tensor | None = None) -> CodecOutput:
        """Encode and decode (B, N): tokens (B, L), codes (B, L, C), signal.

        The signal is cut, or extended by repeating its last sample, to
        ``int(N * sample_rate_output / sample_rate_input)`` samples.
        """
        sig = self._check_sig(sig)
        return CodecOutput(*self._per_item(self._roundtrip, sig, length))

    @stateful("feats", "lats", ("compressor",))
    def feats_to_lats(self, feats: Tensor) -> Tensor:
        """Features (B, F, D) -> unit-norm latents (B, L, C)."""
        lats, _ = self.compressor(feats)
        return F.normalize(check_finite(lats, "latents"), dim=-1)

    @stateful("feats", "toks", ("compressor",))
    def feats_to_toks(self, feats: Tensor) -> Tensor:
        return self.quantizer.lats_to_toks(self.feats_to_lats(feats))

    @stateful("feats", "codes", ("compressor",))
    def feats_to_codes(self, feats: Tensor) -> Tensor:
        return self.lats_to_codes(self.feats_to_lats(feats))

    @stateful("feats", "qfeats", ("compressor", "decompressor"))
    def feats_to_qfeats(self, feats: Tensor) -> Tensor:
        return self.codes_to_qfeats(self.feats_to_codes(feats))

    def lats_to_toks(self, lats: Tensor) -> Tensor:
        return self.quantizer.lats_to_toks(lats)

    def lats_to_codes(self, lats: Tensor) -> Tensor:
        return self.quantizer.lats_to_codes(lats)

    @stateful("lats", "qfeats", ("decompressor",))
    def lats_to_qfeats(self, lats: Tensor) -> Tensor:
        return self.codes_to_qfeats(self.lats_to_codes(lats))

    # -- decoding ------------------------------------------------------------------------

    def toks_to_codes(self, toks: Tensor) -> Tensor:
        """Tokens (B, L) -> codes (B, L, C)."""
        return self.quantizer.toks_to_codes(self._check_toks(toks))

    def codes_to_toks(self, codes: Tensor) -> Tensor:
        """Codes (B, L, C) -> tokens (B, L)."""
        return self.quantizer.codes_to_toks(codes)

    @stateful("toks", "qfeats", ("decompressor",), extra=("length",))
    def toks_to_qfeats(self, toks: Tensor, length: Tensor | None = None) -> Tensor:
        return self.codes_to_qfeats(self.toks_to_codes(toks), length=length)

    @stateful("codes", "qfeats", ("decompressor",), extra=("length",))
    def codes_to_qfeats(self, codes: Tensor, length: Tensor | None = None) -> Tensor:
        """Codes (B, L, C) -> decompressed features (B, L * up, D)."""
        codes = self._check_codes(codes)
        return self._per_item(lambda c: self.decompressor(c)[0], codes, length)

    @stateful("toks", "out", ("decompressor", "decoder"), extra=("length",))
    def toks_to_sig(
        self,
        toks: Tensor,
        matching_set: Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        length: Tensor | None = None,
    ) -> Tensor:
        """Tokens (B, L) -> waveform at ``sample_rate_output``.

        With a ``matching_set`` (M, D), each decoded frame is replaced by the mean of its
        ``topk`` nearest neighbours in the set (kNN voice conversion). ``output_length``
        is None or 1 to :data:`focalcodec.inputs.MAX_OUTPUT_SECONDS` of samples.
        """
        output_length = check_output_length(output_length, self.sample_rate_output)
        codes = self.toks_to_codes(toks)
        return self.codes_to_sig(
            codes,
            matching_set=matching_set,
            topk=topk,
            num_splits=num_splits,
            output_length=output_length,
            length=length,
        )

    @stateful("codes", "out", ("decompressor", "decoder"), extra=("length",))
    def codes_to_sig(
        self,
        codes: Tensor,
        matching_set: Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        length: Tensor | None = None,
    ) -> Tensor:
        """Codes (B, L, C) -> waveform; see :meth:`toks_to_sig`."""
        output_length = check_output_length(output_length, self.sample_rate_output)
        codes = self._check_codes(codes)

        def decode(c: Tensor) -> Tensor:
            qfeats, _ = self.decompressor(c)
            return self.feats_to_sig(
                qfeats, matching_set=matching_set, topk=topk, num_splits=num_splits
            )

        return fit_length(self._per_item(decode, codes, length), output_length)

    @stateful("qfeats", "out", ("decoder",))
    def feats_to_sig(
        self,
        feats: Tensor,
        matching_set: Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
    ) -> Tensor:
        """Features (B, F, D) -> waveform (B, F * hop), optionally kNN-matched."""
        output_length = check_output_length(output_length, self.sample_rate_output)
        if matching_set is not None:
            feats = self.knn(feats, matching_set, topk, num_splits).mean(dim=-2)
        sig, _ = self.decoder(feats)
        return fit_length(check_finite(sig, "decoded audio"), output_length)

    def knn(
        self, input: Tensor, matching_set: Tensor, topk: int = 4, num_splits: int = 1
    ) -> Tensor:
        """Nearest ``topk`` rows of ``matching_set`` (M, D) per frame: (..., k, D).

        ``matching_set`` must be finite, 2-D and ``D`` wide, and ``topk`` in [1, M];
        otherwise :class:`~focalcodec.errors.InputError`.
        """
        check_matching_set(matching_set, input.shape[-1], topk)
        return knn(input, matching_set.to(input), topk, num_splits)

    # -- streaming (implemented in streaming/) -------------------------------------------

    # What the step functions can do (see focalcodec.protocol.Codec).
    supports_partial_steps = supports_knn = True

    def new_stream_state(self):
        """An empty :class:`~focalcodec.streaming.steps.StreamState` (no stream yet)."""
        from .streaming.steps import StreamState

        return StreamState()

    def encode_step(self, sig: Tensor, state=None) -> tuple[Tensor, Tensor, Any]:
        """Samples (B, n) -> tokens (B, l), codes (B, l, C), state (``streaming.steps``)."""
        from .streaming.steps import encode_step

        return encode_step(self, sig, state)

    def decode_step(self, codes, state=None, matching_set=None, topk: int = 4):
        """Codes (B, l, C) or tokens (B, l) -> samples (B, m), state (``streaming.steps``)."""
        from .streaming.steps import decode_step

        codes = self.toks_to_codes(codes) if codes.dim() == 2 else codes
        return decode_step(self, codes, state, matching_set, topk)

    def streaming(self, batch_size: int = 1, **options):
        """A streaming session (causal models): ``with codec.streaming() as stream:``.

        See :class:`focalcodec.streaming.session.StreamingSession` for ``options`` (matching set for
        voice conversion, tail padding, chunks per step).
        """
        from .streaming.session import StreamingSession

        return StreamingSession(self, batch_size, **options)

    # -- loading and saving (implemented in pretrained.py) ------------------------------

    @classmethod
    def from_config(
        cls,
        config: str | Path | dict,
        pretrained: bool = False,
        overrides: dict | None = None,
        **hub_kwargs,
    ) -> FocalCodec:
        """Build a model from a config (name, path, Hub id or dict), optionally with weights."""
        from .pretrained import build

        return build(cls, config, pretrained, overrides, **hub_kwargs)

    @classmethod
    def from_pretrained(
        cls, config: str | Path, overrides: dict | None = None, **hub_kwargs
    ) -> FocalCodec:
        """Load config and weights from a local directory or JSON file, or a Hub repo id."""
        from .pretrained import build

        return build(cls, config, True, overrides, **hub_kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from .pretrained import save

        return save(self, directory)

    def to_config(self, config: str | Path, pretrained: bool = False) -> Path:
        """Write the config to ``config`` (``.json`` appended if missing), and with
        ``pretrained`` the weights to the ``.safetensors`` of the same stem."""
        from .pretrained import dump

        return dump(self, config, pretrained)

    def to_pretrained(self, config: str | Path) -> Path:
        """``to_config(config, pretrained=True)``."""
        return self.to_config(config, pretrained=True)

    # -- compiled and exported forms (implemented in deploy/) ---------------------------
    # The one place where the core imports focalcodec.deploy, lazily, on request.

    def jit(self, classes: Sequence[type] | None = None) -> FocalCodec:
        """A copy whose networks run traced TorchScript graphs (``torch.jit.trace`` per
        input shape, not ``torch.jit.script``); see :mod:`focalcodec.deploy.scripted`."""
        from .deploy.scripted import script

        return script(self, classes)

    def onnx(
        self,
        f: str | os.PathLike | io.BytesIO,
        batch_size: int | None = None,
        chunk_size: int | None = None,
        return_state: bool = False,
        **kwargs,
    ) -> None:
        """Export ``forward`` as one ONNX graph, as the original package did; see
        :mod:`focalcodec.deploy.onnx_forward` (and ``export_onnx`` for our layout)."""
        from .deploy.onnx_forward import export_forward

        export_forward(self, f, batch_size, chunk_size, return_state, **kwargs)

    # -- helpers -------------------------------------------------------------------------

    def _feats(self, sig: Tensor) -> Tensor:
        feats, _ = self.encoder(sig, need_state=False)
        return feats

    def _roundtrip(self, sig: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        codes = self.feats_to_codes(self._feats(sig))
        qfeats, _ = self.decompressor(codes)
        rec, _ = self.decoder(qfeats)
        check_finite(rec, "decoded audio")
        return (
            self.codes_to_toks(codes),
            codes,
            fit_length(rec, self.output_length(sig.shape[1])),
        )

    def _check_sig(self, sig: Tensor | np.ndarray) -> Tensor:
        if isinstance(sig, np.ndarray):
            sig = torch.from_numpy(sig)
        sig = check_sig(sig, self.min_samples, self.sample_rate_input)
        return sig.to(device=self.device, dtype=self.dtype)

    def _check_toks(self, toks: Tensor) -> Tensor:
        return check_toks(toks, self.codebook_size).to(self.quantizer.mask.device)

    def _check_codes(self, codes: Tensor) -> Tensor:
        if codes.dim() != 3 or codes.shape[-1] != self.bits_per_token:
            raise InputError(
                f"codes must have shape (B, L, {self.bits_per_token}), got "
                f"{tuple(codes.shape)}"
            )
        if codes.shape[0] == 0 or codes.shape[1] == 0:
            raise InputError(
                f"codes have shape {tuple(codes.shape)}: give at least one frame per "
                "item to decode"
            )
        return codes

    def _per_item(self, fn: Callable, x: Tensor, length: Tensor | None) -> Any:
        """Run ``fn`` so that each item only ever sees its own valid part of ``x``."""
        # Waveforms (B, N) need one encoder frame per item; codes (B, L, C) one step.
        minimum = self._parts.frame_hop if x.dim() == 2 else 1
        counts = valid_counts(length, x.shape[0], x.shape[1], minimum)
        return per_item(fn, x, counts)


def _config_keys() -> list[str]:
    return [f"{slot}_{part}" for slot in SLOTS for part in ("name", "config")]
