"""ONNX Runtime backend: the codec calls of the CLI, run on graphs from ``export_onnx``.

:class:`OnnxCodec` reads a directory written by
:func:`focalcodec.deploy.onnx_export.export_onnx` and implements
:class:`focalcodec.protocol.Codec` (rates, offline calls, streaming steps) with the
:class:`~focalcodec.FocalCodec` names and shapes, so code written against the protocol
runs it unchanged::

    codec = OnnxCodec("exported/focalcodec_50hz")
    toks = codec.sig_to_toks(sig)                     # (B, N) -> (B, L) int64
    rec = codec.toks_to_sig(toks, output_length=N)    # -> (B, N') at sample_rate_output
    toks, codes, state = codec.encode_step(chunk, state)   # causal models only
    out, state = codec.decode_step(codes, state)

Arrays go in as torch tensors or numpy arrays; results come back as the same kind.
Not supported: kNN voice conversion (``matching_set``) and partial streaming chunks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import (
    CheckpointError,
    InputError,
    OnnxRuntimeMissingError,
    StreamingError,
)
from ..inputs import (
    check_finite,
    check_output_length,
    check_sig,
    check_toks,
    output_length,
    per_item,
    valid_counts,
)
from .onnx_export import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME

__all__ = ["OnnxCodec", "OnnxRuntimeMissingError", "OnnxStreamState"]

# The export's layout, as its writer (onnx_export) defines it.
_MANIFEST, _FORMAT, _FORMAT_VERSION = MANIFEST_NAME, FORMAT_NAME, FORMAT_VERSION


@dataclass
class OnnxStreamState:
    """State of an ONNX stream; ``None`` halves mean "start of stream".

    Attributes
    ----------
    encoder
        Encoder and compressor state tensors by flat name (``StreamState.flatten``).
    decoder
        Decompressor and decoder state tensors by flat name.
    """

    encoder: dict[str, np.ndarray] | None = None
    decoder: dict[str, np.ndarray] | None = None


@dataclass
class _Graph:
    """One graph of the export and its lazily created session."""

    spec: dict[str, Any]
    session: Any = field(default=None, repr=False)


class OnnxCodec:
    """A FocalCodec export run with ONNX Runtime; a :class:`focalcodec.protocol.Codec`.

    Parameters
    ----------
    directory
        Folder written by :func:`focalcodec.deploy.onnx_export.export_onnx` (holds ``manifest.json``).
    threads
        Intra-op threads per session; None lets ONNX Runtime decide.
    providers
        ONNX Runtime execution providers; default ``["CPUExecutionProvider"]``.
    """

    # The graphs hold no dropout; they stream whole chunks only, without kNN matching.
    training = False
    supports_partial_steps = False
    supports_knn = False

    def __init__(
        self,
        directory: str | os.PathLike,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        self.threads = threads
        self.providers = providers or ["CPUExecutionProvider"]
        self._graphs = {
            name: _Graph(spec) for name, spec in self.manifest["graphs"].items()
        }
        self.model_id = self.manifest.get("model_id")
        self._shapes: Any = None  # a weightless copy of the architecture, on demand

    # -- properties of the model ---------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def config_hash(self) -> str:
        return self.manifest["config_hash"]

    @property
    def weights_digest(self) -> str | None:
        """The digest of the exported weights (``focalcodec.identity.weights_hash`` of
        the PyTorch model), or None for exports older than this field."""
        return self.manifest.get("weights_hash")

    @property
    def sample_rate_input(self) -> int:
        return int(self.manifest["sample_rate_input"])

    @property
    def sample_rate_output(self) -> int:
        return int(self.manifest["sample_rate_output"])

    @property
    def causal(self) -> bool:
        return bool(self.manifest["causal"])

    @property
    def chunk_size(self) -> int:
        return int(self.manifest["chunk_size"])

    @property
    def latency(self) -> float | None:
        return self.manifest["latency"]

    @property
    def hop_length(self) -> int:
        return int(self.manifest["samples_per_token"])

    @property
    def output_hop_length(self) -> int:
        return int(self.manifest["output_samples_per_token"])

    @property
    def token_rate(self) -> float:
        return float(self.manifest["token_rate"])

    @property
    def codebook_size(self) -> int:
        return int(self.manifest["codebook_size"])

    @property
    def bits_per_token(self) -> int:
        return int(self.manifest["bits_per_token"])

    @property
    def bitrate(self) -> float:
        return self.token_rate * self.bits_per_token

    @property
    def min_samples(self) -> int:
        """Shortest input the encoder graph accepts, in samples."""
        return int(self.manifest["min_samples"])

    @property
    def chunk_tokens(self) -> int:
        """Tokens per streaming chunk."""
        return self.chunk_size // self.hop_length

    def output_length(self, num_samples: int) -> int:
        """Output samples of ``num_samples`` input samples (rounded down)."""
        return output_length(
            num_samples, self.sample_rate_input, self.sample_rate_output
        )

    def num_tokens(self, num_samples: int) -> int:
        """Tokens of ``num_samples`` input samples, from the exported architecture."""
        if self._shapes is None:
            from ..codec import FocalCodec

            # Weights are not needed to count frames: build the modules without memory.
            with torch.device("meta"):
                self._shapes = FocalCodec(**self.config)
        return self._shapes.num_tokens(num_samples)

    @property
    def device(self) -> torch.device:
        """Inputs are read from, and results returned on, the CPU."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def info(self) -> dict[str, Any]:
        """The same summary as :meth:`FocalCodec.info`, plus the backend."""
        keys = ("sample_rate_input", "sample_rate_output", "causal", "chunk_size")
        keys += ("latency", "token_rate", "codebook_size", "num_total_params")
        info = {key: self.manifest.get(key) for key in keys}
        info.update(
            model_id=self.model_id,
            version=self.manifest["focalcodec_version"],
            bitrate=self.bitrate,
            backend="onnxruntime",
        )
        return info

    # -- offline calls -------------------------------------------------------------------

    def sig_to_toks(self, sig, length=None):
        """Waveform (B, N) or (N,) at ``sample_rate_input`` -> int64 tokens (B, L)."""
        array, like = _to_numpy(sig)
        array = self._check_sig(array)
        run = self._runner("encoder", "sig")

        def encode(part: np.ndarray) -> np.ndarray:
            # With ``length``, an item's valid part may be shorter than the whole.
            return run(self._check_sig(part))

        return _like(
            per_item(encode, array, valid_counts(length, *array.shape[:2])), like
        )

    def sig_to_codes(self, sig, length=None):
        """Waveform (B, N) -> codes (B, L, C) with entries +-1/sqrt(C)."""
        return self.toks_to_codes(self.sig_to_toks(sig, length))

    def toks_to_codes(self, toks):
        """Tokens (B, L) -> codes (B, L, C), most significant bit first."""
        array, like = _to_numpy(toks)
        bits = (array[..., None] >> self._bit_shifts()) & 1
        value = np.float32(1.0 / math.sqrt(self.bits_per_token))
        return _like(np.where(bits > 0, value, -value).astype(np.float32), like)

    def codes_to_toks(self, codes):
        """Codes (B, L, C) -> tokens (B, L)."""
        array, like = _to_numpy(codes)
        weights = np.int64(1) << self._bit_shifts()
        return _like(((array > 0).astype(np.int64) * weights).sum(-1), like)

    def toks_to_sig(
        self,
        toks,
        matching_set=None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        length=None,
    ):
        """Tokens (B, L) -> waveform (B, L * samples per token) at ``sample_rate_output``.

        ``output_length`` cuts the result or extends it by repeating the last sample
        (None, or 1 to :data:`focalcodec.inputs.MAX_OUTPUT_SECONDS` of samples).
        """
        _no_matching(matching_set)
        output_length = check_output_length(output_length, self.sample_rate_output)
        array, like = _to_numpy(toks)
        array = self._check_toks(array)
        decode = self._runner("decoder", "toks")
        sig = per_item(decode, array, valid_counts(length, *array.shape[:2]))
        return _like(
            _fit_length(check_finite(sig, "decoded audio"), output_length), like
        )

    def codes_to_sig(self, codes, matching_set=None, topk=4, num_splits=1, **kwargs):
        """Codes (B, L, C) -> waveform; see :meth:`toks_to_sig`."""
        return self.toks_to_sig(self.codes_to_toks(codes), matching_set, **kwargs)

    def sig_to_sig(self, sig, length=None):
        """Resynthesis: (B, N) -> (B, int(N * sample_rate_output / sample_rate_input))."""
        array, like = _to_numpy(sig)
        if array.ndim == 1:
            array = array[None]
        toks = self.sig_to_toks(array, length)
        size = self.output_length(array.shape[-1])
        return _like(self.toks_to_sig(toks, output_length=size), like)

    # -- streaming ------------------------------------------------------------------------

    def new_stream_state(self) -> OnnxStreamState:
        """The state of a stream that has not started."""
        self._check_streaming()
        return OnnxStreamState()

    def encode_step(self, sig, state: OnnxStreamState | None = None):
        """Encode whole chunks (B, k * chunk_size) -> (toks (B, l), codes, state).

        Same contract as :func:`focalcodec.streaming.steps.encode_step`, restricted to whole
        chunks (the graphs have a fixed chunk length).
        """
        array, like = _to_numpy(sig)
        array = self._check_sig(array, streaming=True)
        state = state or OnnxStreamState()
        toks, enc = self._stream("stream_encoder", "sig", array, state.encoder)
        new = OnnxStreamState(encoder=enc, decoder=state.decoder)
        return _like(toks, like), self.toks_to_codes(_like(toks, like)), new

    def decode_step(
        self, codes, state: OnnxStreamState | None = None, matching_set=None, topk=4
    ):
        """Decode codes (B, l, C) or tokens (B, l), l a multiple of ``chunk_tokens``.

        Returns the samples (B, l * output samples per token) and the new state.
        """
        _no_matching(matching_set)
        array, like = _to_numpy(codes)
        toks = self.codes_to_toks(array) if array.ndim == 3 else array
        toks = self._check_toks(toks)
        state = state or OnnxStreamState()
        sig, dec = self._stream("stream_decoder", "toks", toks, state.decoder)
        return _like(sig, like), OnnxStreamState(encoder=state.encoder, decoder=dec)

    def _check_streaming(self) -> None:
        if not self.causal:
            raise StreamingError(
                f"model {self.model_id or '(unnamed)'} is not causal: it has no "
                "streaming graphs; only causal models stream"
            )
        if not {"stream_encoder", "stream_decoder"} <= self._graphs.keys():
            raise StreamingError(
                f"the ONNX export {self.directory} has no streaming graphs (exported "
                "with --no-streaming): export the model again without it to stream"
            )

    def _stream(self, graph: str, name: str, array: np.ndarray, state):
        self._check_streaming()
        spec = self._graphs[graph].spec
        step = int(spec["inputs"][0]["shape"][1])
        if array.shape[1] % step:
            raise StreamingError(
                f"ONNX stream steps take whole chunks of {step} "
                f"{'samples' if name == 'sig' else 'tokens'}; got {array.shape[1]}"
            )
        first = state is None
        state = _initial_state(spec, array.shape[0]) if first else dict(state)
        _check_batch(state, spec, array.shape[0])
        session = self._session(graph)
        outs = []
        for start in range(0, array.shape[1], step):
            feed = {name: array[:, start : start + step], "first": np.array(first)}
            for entry in spec["state"]:
                if entry["input"] is not None:
                    feed[entry["input"]] = state[entry["name"]]
            results = session.run(None, feed)
            outs.append(results[0])
            state = {e["name"]: r for e, r in zip(spec["state"], results[1:])}
            first = False
        return np.concatenate(outs, axis=1), state

    # -- helpers -------------------------------------------------------------------------

    def _session(self, graph: str):
        entry = self._graphs[graph]
        if entry.session is None:
            entry.session = _open_session(
                self.directory / entry.spec["file"], self.threads, self.providers
            )
        return entry.session

    def _runner(self, graph: str, name: str) -> Callable[[np.ndarray], np.ndarray]:
        session = self._session(graph)
        return lambda array: session.run(None, {name: array})[0]

    def _bit_shifts(self) -> np.ndarray:
        return np.arange(self.bits_per_token - 1, -1, -1, dtype=np.int64)

    def _check_sig(self, sig: np.ndarray, streaming: bool = False) -> np.ndarray:
        minimum = self.chunk_size if streaming else self.min_samples
        sig = check_sig(sig, minimum, self.sample_rate_input)
        return np.ascontiguousarray(sig, dtype=np.float32)

    def _check_toks(self, toks: np.ndarray) -> np.ndarray:
        toks = check_toks(toks, self.codebook_size, dims=2)
        return np.ascontiguousarray(toks, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# Module helpers
# ---------------------------------------------------------------------------------------


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / _MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: no {_MANIFEST}; export a model first with "
            "'focalcodec export --model NAME --format onnx -o DIR'"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a FocalCodec ONNX export manifest")
    if manifest.get("format_version") != _FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: export format version {manifest.get('format_version')} is not "
            f"supported (this focalcodec reads version {_FORMAT_VERSION}); re-export it"
        )
    for name in ("encoder", "decoder"):
        spec = manifest.get("graphs", {}).get(name)
        if not spec or not (directory / spec["file"]).is_file():
            raise CheckpointError(f"{directory}: the {name} graph is missing")
    return manifest


def _open_session(path: Path, threads: int | None, providers: list[str]):
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxRuntimeMissingError(
            "the ONNX backend needs onnxruntime: pip install 'focalcodec[onnx]'"
        ) from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not path.is_file():
        raise CheckpointError(f"{path}: graph file is missing")
    return ort.InferenceSession(str(path), options, providers=providers)


def _to_numpy(x) -> tuple[np.ndarray, Tensor | None]:
    """An array view of ``x`` and, for a tensor, the tensor (to return the same kind)."""
    if torch.is_tensor(x):
        return x.detach().cpu().numpy(), x
    try:
        return np.asarray(x), None
    except (TypeError, ValueError):
        raise InputError(
            f"expected an array or tensor, got {type(x).__name__}"
        ) from None


def _like(array: np.ndarray, like: Tensor | None):
    if like is None:
        return array
    return torch.from_numpy(np.ascontiguousarray(array)).to(like.device)


def _no_matching(matching_set) -> None:
    if matching_set is not None:
        raise InputError(
            "the ONNX backend does not support kNN voice conversion (matching_set); "
            "use the PyTorch model for 'focalcodec vc'"
        )


def _fit_length(sig: np.ndarray, size: int | None) -> np.ndarray:
    """Cut to ``size`` samples, or extend by repeating the last sample."""
    if size is None or sig.shape[-1] == size:
        return sig
    if sig.shape[-1] > size:
        return sig[..., :size]
    return np.pad(sig, ((0, 0), (0, size - sig.shape[-1])), mode="edge")


def _initial_state(spec: dict[str, Any], batch: int) -> dict[str, np.ndarray]:
    """Zero state tensors; the graph replaces them when ``first`` is true."""
    state = {}
    for entry in spec["state"]:
        shape = [batch if dim == "batch" else int(dim) for dim in entry["shape"]]
        state[entry["name"]] = np.zeros(shape, dtype=np.dtype(entry["dtype"]))
    return state


def _check_batch(state: dict[str, np.ndarray], spec: dict[str, Any], batch: int):
    for entry in spec["state"]:
        if entry["shape"] and state[entry["name"]].shape[0] != batch:
            raise StreamingError(
                f"the stream was started with batch size "
                f"{state[entry['name']].shape[0]}, got {batch}; start a new stream"
            )
