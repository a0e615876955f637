"""ONNX export: offline graphs for any model, chunk-step graphs for causal models.

A directory written by :func:`export_onnx` holds::

    encoder.onnx          sig (batch, time) float32            -> toks (batch, latent_time)
    decoder.onnx          toks (batch, latent_time) int64      -> sig (batch, out_time)
    stream_encoder.onnx   sig (batch, chunk_size), first, state_in.*  -> toks, state_out.*
    stream_decoder.onnx   toks (batch, chunk_tokens), first, state_in.* -> sig, state_out.*
    manifest.json         what the graphs expect (see ``docs/deployment.md``)

The two ``stream_*`` graphs exist only for causal models. Their state tensors are the
tensors of :meth:`focalcodec.streaming.steps.StreamState.flatten`, with the same names and
layout, so a stream can move between PyTorch and ONNX Runtime at any chunk.

Start of a stream. PyTorch invents the missing past (edge replication or zeros) when the
state is None, but a graph has no None inputs. The step graphs therefore take a boolean
``first``: pass zero-filled state tensors and ``first=True`` for the first chunk, then
the returned state with ``first=False`` (see :func:`_traceable_core`).

Exporter. These graphs are traced with the TorchScript-based ``torch.onnx.export``
(``dynamo=False``). With torch 2.13 the torch.export-based exporter took 30-70 s per
graph for the 2-layer test models, failed in its type-promotion pass on the attention
reshape unless SDPA was forced to the math kernel, and refused dynamic lengths that
could be 1 frame. Tracing takes about a second and keeps shape arithmetic dynamic; the
Python branches it would freeze are avoided (:func:`_traceable_core`) or steered
(:func:`_dummy_length`, :func:`min_samples`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import __version__
from ..config import SLOTS
from ..errors import InputError
from ..io.atomic import atomic_write, check_output
from ..modules import layers as _layers
from ..modules.wavlm import WavLMState
from ..streaming.steps import StreamState, decode_step, encode_step

__all__ = [
    "DFTISTFTHead",
    "MANIFEST_NAME",
    "OfflineDecoder",
    "OfflineEncoder",
    "StreamDecoderStep",
    "StreamEncoderStep",
    "chunk_tokens",
    "export_onnx",
    "inverse_rdft_basis",
    "min_samples",
    "state_names",
    "stream_template",
]

OPSET = 17
FORMAT_NAME = "focalcodec-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Components of StreamState in flatten() numbering, with the prefix of their subtree.
_ENCODER_PARTS = (("encoder", "0"), ("compressor", "1.0"))
_DECODER_PARTS = (("decompressor", "2.0"), ("decoder", "3.0"))


# ---------------------------------------------------------------------------------------
# Tracing aids
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _traceable_core(first: Tensor | None = None) -> Iterator[None]:
    """Swap two helpers of ``focalcodec.modules.layers`` for the duration of a trace.

    * ``conv_time`` picks a kernel from the input shape with Python branches, which a
      trace would freeze at the dummy shape: use the plain convolution it stands for.
    * ``extend_left`` (streaming only) invents the start-of-stream past when given None;
      a graph has no None, so select between that past and the given context with the
      boolean tensor ``first``.

    Each module under ``focalcodec.modules`` that imported a helper gets the swap.
    """
    swaps = {"conv_time": _plain_conv_time}
    if first is not None:
        swaps["extend_left"] = _flagged_extend_left(first, _layers.extend_left)
    patched = []
    for name, module in list(sys.modules.items()):
        if name.startswith("focalcodec.modules.") and module is not None:
            for attr in swaps:
                if getattr(module, attr, None) is getattr(_layers, attr):
                    patched.append((module, attr, getattr(module, attr)))
    try:
        for module, attr, _ in patched:
            setattr(module, attr, swaps[attr])
        yield
    finally:
        for module, attr, original in patched:
            setattr(module, attr, original)


def _plain_conv_time(conv: nn.Module, x: Tensor) -> Tensor:
    if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
        return conv(x.transpose(1, 2)).transpose(1, 2)
    return conv(x)


def _flagged_extend_left(first: Tensor, original):
    def extend_left(x, context, size, mode="replicate"):
        if size > 0 and context is not None:
            if mode == "replicate":
                start = x[:, :1].expand(-1, size, -1)
            else:
                start = torch.zeros_like(context)
            context = torch.where(first, start, context)
        return original(x, context, size, mode)

    return extend_left


# ---------------------------------------------------------------------------------------
# Vocos head without complex numbers
# ---------------------------------------------------------------------------------------


def inverse_rdft_basis(n: int) -> Tensor:
    """Matrix form of ``torch.fft.irfft(X, n)`` ("backward" norm) in float64.

    Returns
    -------
    Tensor of shape (2K, n), K = n // 2 + 1: ``x = Re(X) @ basis[:K] + Im(X) @ basis[K:]``.
    The imaginary parts of the DC and Nyquist bins get zero weight, as in irfft.
    """
    k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None, :]
    # Reduce k*t modulo n before scaling so the angle stays exact for large n.
    angle = 2 * math.pi * torch.remainder(k * t, n) / n
    # Bins 1..K-2 stand for a conjugate pair, hence weight 2; DC and Nyquist appear once.
    weight = torch.full((k.shape[0], 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) / n


class DFTISTFTHead(nn.Module):
    """The Vocos ISTFT head with the inverse FFT written as products with a fixed basis.

    ONNX has no real inverse FFT and no complex tensors. The basis, the synthesis window
    and the overlap-add fold into one transposed convolution (stride ``hop``); the window
    envelope is the same operation on a row of ones. Causal heads keep the last ``hop``
    samples of each frame, so they need only those basis columns and a matrix product.
    Input (B, T, dim), output (B, T * hop), like the original head.
    """

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        istft = head.istft
        n, hop = istft.n_fft, istft.hop_length
        self.proj = head.proj
        self.causal = istft.causal
        self.hop = hop
        self.trim = (n - hop) // 2
        basis = inverse_rdft_basis(n)
        if self.causal:
            self.register_buffer("basis", basis[:, n - hop :].float(), persistent=False)
        else:
            synthesis = basis * istft.window.double()
            self.register_buffer(
                "synthesis", synthesis.float()[:, None], persistent=False
            )
            envelope = istft.window_sq.float()[None, None]
            self.register_buffer("window_sq", envelope, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        log_mag, phase = self.proj(x).chunk(2, dim=-1)
        # Same clamp as the original head: exp() of an untrained frame must stay finite.
        mag = torch.exp(log_mag).clamp(max=100.0)
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        if self.causal:
            return torch.matmul(spec, self.basis).reshape(x.shape[0], -1)
        frames = spec.transpose(1, 2)
        sig = F.conv_transpose1d(frames, self.synthesis, stride=self.hop)[:, 0]
        ones = torch.ones_like(frames[:1, :1])
        envelope = F.conv_transpose1d(ones, self.window_sq, stride=self.hop)[:, 0]
        # "same" trimming: (T - 1) * hop + n samples minus (n - hop) // 2 per side.
        end = sig.shape[1] - self.trim
        return sig[:, self.trim : end] / envelope[:, self.trim : end]


def _export_head(decoder: nn.Module) -> nn.Module:
    head = decoder.head
    return DFTISTFTHead(head) if hasattr(head, "istft") else head


# ---------------------------------------------------------------------------------------
# WavLM transformer in traceable form
# ---------------------------------------------------------------------------------------
# The core's attention picks query blocks and cache slices with Python integers derived
# from shapes and from the stream position, which a trace would freeze. These functions
# compute the same layers (pre-norm, gated relative position bias, feed-forward) from
# the core's parameters with tensor arithmetic only.


def _project(attn: nn.Module, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values (B, T, H, d) of the normalised input h (B, T, dim)."""
    qkv = attn.qkv_proj(h).view(h.shape[0], h.shape[1], -1, attn.head_dim)
    return qkv.split(attn.num_heads, dim=2)


def _bias(relative: nn.Module, queries: Tensor, keys: Tensor) -> Tensor:
    """Ungated bias (H, T, K) for query and key positions (int64 vectors)."""
    buckets = relative.buckets(keys[None, :] - queries[:, None])
    return F.embedding(buckets, relative.weight).permute(2, 0, 1)


def _attend(layer: nn.Module, x: Tensor, h: Tensor, q, k, v, bias: Tensor) -> Tensor:
    """The rest of a transformer layer once q, k, v and the additive bias are known.

    Shapes: x, h (B, T, dim); q (B, T, H, d); k, v (B, K, H, d); bias (H, T, K) with
    masked keys at -inf. Returns the layer output (B, T, dim).
    """
    attn = layer.attention
    y = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=attn.gate(h) * bias,
    )
    y = attn.out_proj(y.transpose(1, 2).reshape(x.shape))
    x = x + layer.dropout(y)
    return x + layer.feed_forward(layer.feed_forward_norm(x))


def _offline_transformer(wavlm: nn.Module, x: Tensor) -> Tensor:
    """Positional conv and transformer layers over a whole input (B, F, dim)."""
    enc = wavlm.encoder
    x, _ = enc.positional_embedding(x, None, causal=wavlm.causal)
    x = enc.dropout(x)
    positions = torch.arange(x.shape[1])
    bias = _bias(enc.relative_embedding, positions, positions)
    if wavlm.causal:
        # Keys visible to frame t: the window ending with t's chunk of c frames.
        chunk = 1 + wavlm.lookahead_size
        end = torch.div(positions + chunk, chunk, rounding_mode="floor") * chunk
        # Clip to the last frame with a tensor: a Python int would be traced as constant.
        end = torch.minimum(end, positions[-1:] + 1)
        visible = (positions[None, :] < end[:, None]) & (
            positions[None, :] >= end[:, None] - wavlm.window_size
        )
        bias = bias.masked_fill(~visible, float("-inf"))
    for layer in enc.layers:
        h = layer.attention_norm(x)
        x = _attend(layer, x, h, *_project(layer.attention, h), bias)
    return x


def _attention_step(
    layer: nn.Module, relative: nn.Module, x: Tensor, cache: Tensor, position: Tensor
) -> tuple[Tensor, Tensor]:
    """One transformer layer on one chunk, with the cache row as a tensor.

    The chunk's keys/values are scattered into the cache with a row mask, attention runs
    over all ``W`` rows with the unwritten ones masked out, which gives the cache layout
    of the eager step (see ``modules/attention.py``).

    Shapes: x (B, c, dim), cache (B, W, H, d, 2), position int64 0-dim (0 <= p <= W - c).
    """
    h = layer.attention_norm(x)
    frames, window = x.shape[1], cache.shape[1]
    q, k, v = _project(layer.attention, h)
    rows = torch.arange(window)
    offset = rows - position
    written = ((offset >= 0) & (offset < frames))[None, :, None, None, None]
    fresh = torch.stack([k, v], dim=-1).index_select(1, offset.clamp(0, frames - 1))
    cache = torch.where(written, fresh, cache)
    bias = _bias(relative, position + torch.arange(frames), rows)
    bias = bias.masked_fill(rows >= position + frames, float("-inf"))
    return _attend(layer, x, h, q, *cache.unbind(-1), bias), cache


def _encoder_step(wavlm: nn.Module, sig: Tensor, state: WavLMState, first: Tensor):
    """WavLM on one chunk (B, chunk_size) -> features (B, c, dim) and the next state."""
    x, cnn = wavlm.feature_extractor(sig.unsqueeze(-1), state.contexts[:-1], True)
    x = wavlm.dropout(wavlm.feature_proj(wavlm.norm(x)))
    enc = wavlm.encoder
    x, pos_context = enc.positional_embedding(x, state.contexts[-1], causal=True)
    x = enc.dropout(x)
    position = torch.where(first, torch.zeros_like(state.position), state.position)
    chunk = 1 + wavlm.lookahead_size
    caches = []
    for layer, cache in zip(enc.layers, state.kv_caches):
        cache = torch.where(first, torch.zeros_like(cache), cache)
        x, cache = _attention_step(layer, enc.relative_embedding, x, cache, position)
        # Same shift as the eager step: the next chunk's rows must start at W - chunk.
        window = cache.shape[1]
        shift = (position + x.shape[1] + chunk - window).clamp(min=0)
        rows = torch.arange(window)
        caches.append(cache.index_select(1, torch.remainder(rows + shift, window)))
    position = (position + x.shape[1]).clamp(max=window - chunk)
    return x, WavLMState(position, [*cnn, pos_context], caches)


# ---------------------------------------------------------------------------------------
# Offline graphs
# ---------------------------------------------------------------------------------------


class OfflineEncoder(nn.Module):
    """Waveform (B, N) at ``sample_rate_input`` -> tokens (B, L), as ``sig_to_toks``."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, sig: Tensor) -> Tensor:
        wavlm = self.codec.encoder
        with _traceable_core():
            x, _ = wavlm.feature_extractor(sig.unsqueeze(-1), None, wavlm.causal)
            x = wavlm.dropout(wavlm.feature_proj(wavlm.norm(x)))
            feats = _offline_transformer(wavlm, x)
            return self.codec.feats_to_toks(feats)


class OfflineDecoder(nn.Module):
    """Tokens (B, L) -> waveform (B, L * up * hop), as ``toks_to_sig`` without trimming."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = codec
        self.head = _export_head(codec.decoder)

    def forward(self, toks: Tensor) -> Tensor:
        # quantizer.toks_to_codes, not codec.toks_to_codes: its range check would be
        # traced as a constant; the runtime checks the range instead.
        codes = self.codec.quantizer.toks_to_codes(toks)
        with _traceable_core():
            qfeats, _ = self.codec.decompressor(codes)
            x, _ = self.codec.decoder.backbone(qfeats)
        return self.head(x)


# ---------------------------------------------------------------------------------------
# Streaming graphs
# ---------------------------------------------------------------------------------------


def _rebuild(node: Any, prefix: str, flat: dict[str, Tensor]) -> Any:
    """Inverse of ``StreamState.flatten`` for one component, using a template's layout."""
    if node is None:
        return None
    if torch.is_tensor(node):
        return flat[prefix]
    children = [_rebuild(child, f"{prefix}.{i}", flat) for i, child in enumerate(node)]
    return type(node)(*children) if isinstance(node, tuple) else children


class _StepBase(nn.Module):
    """Shared bookkeeping of the two step graphs: state names and their template."""

    parts: tuple[tuple[str, str], ...] = ()

    def __init__(self, codec: nn.Module, template: StreamState) -> None:
        super().__init__()
        self.codec = codec
        self.template = template
        self.names = state_names(template, self.parts)

    def unpack(self, tensors: tuple[Tensor, ...]) -> dict[str, Any]:
        flat = dict(zip(self.names, tensors, strict=True))
        return {
            field: _rebuild(getattr(self.template, field), prefix, flat)
            for field, prefix in self.parts
        }

    def pack(self, state: StreamState) -> list[Tensor]:
        flat = state.flatten()
        return [flat[name] for name in self.names]


def state_names(template: StreamState, parts) -> list[str]:
    """Flat state names (``StreamState.flatten`` keys) of the given components."""
    prefixes = tuple(prefix.split(".")[0] + "." for _, prefix in parts)
    return [name for name in template.flatten() if name.startswith(prefixes)]


class StreamEncoderStep(_StepBase):
    """One encoder chunk: (sig (B, chunk_size), first, *state) -> (toks (B, l), *state)."""

    parts = _ENCODER_PARTS

    def forward(self, sig: Tensor, first: Tensor, *tensors: Tensor) -> tuple:
        state = self.unpack(tensors)
        with _traceable_core(first):
            feats, enc = _encoder_step(self.codec.encoder, sig, state["encoder"], first)
            lats, comp = self.codec.compressor(feats, state["compressor"])
        toks = self.codec.quantizer.lats_to_toks(F.normalize(lats, dim=-1))
        return (toks, *self.pack(StreamState(encoder=enc, compressor=comp)))


class StreamDecoderStep(_StepBase):
    """One decoder chunk: (toks (B, l), first, *state) -> (sig (B, n_out), *state)."""

    parts = _DECODER_PARTS

    def __init__(self, codec: nn.Module, template: StreamState) -> None:
        super().__init__(codec, template)
        self.head = _export_head(codec.decoder)

    def forward(self, toks: Tensor, first: Tensor, *tensors: Tensor) -> tuple:
        state = self.unpack(tensors)
        codes = self.codec.quantizer.toks_to_codes(toks)
        with _traceable_core(first):
            qfeats, dec = self.codec.decompressor(codes, state["decompressor"])
            x, voc = self.codec.decoder.backbone(qfeats, state["decoder"])
        sig = self.head(x)
        return (sig, *self.pack(StreamState(decompressor=dec, decoder=voc)))


def stream_template(codec: nn.Module) -> StreamState:
    """A full stream state after one chunk (batch 1): gives names, shapes and dtypes."""
    with torch.inference_mode():
        sig = torch.zeros(1, codec.chunk_size)
        _, codes, state = encode_step(codec, sig)
        _, state = decode_step(codec, codes, state)
    return state


def chunk_tokens(codec: nn.Module) -> int:
    """Tokens per streaming chunk (``chunk_size`` over the token hop)."""
    hop = codec.encoder.downsample_factor * codec.compressor.downsample_factor
    if codec.chunk_size % hop:
        raise InputError(
            f"chunk_size {codec.chunk_size} is not a whole number of token hops ({hop}); "
            "this model cannot be exported for streaming"
        )
    return codec.chunk_size // hop


# ---------------------------------------------------------------------------------------
# Shapes that tracing freezes
# ---------------------------------------------------------------------------------------


def _frames(wavlm: nn.Module, samples: int) -> tuple[int, bool]:
    """Encoder frames for ``samples`` and whether no conv input was shorter than its kernel."""
    length, whole = samples, True
    for block in wavlm.feature_extractor.layers:
        kernel, stride = block.conv.kernel_size[0], block.conv.stride[0]
        if wavlm.causal:
            length = (length - 1) // stride + 1
            continue
        whole = whole and length >= kernel
        length = (max(length, kernel) - kernel) // stride + 1
    return length, whole


def min_samples(codec: nn.Module) -> int:
    """Shortest input the offline encoder graph handles exactly.

    Tracing records the usual branch of the non-causal CNN front-end (no conv input
    shorter than its kernel: 400 samples for WavLM); the core pads shorter inputs.
    """
    samples = codec.encoder.downsample_factor
    while not _frames(codec.encoder, samples)[1]:
        samples += 1
    return samples


def _dummy_length(codec: nn.Module, seconds: float = 2.0) -> int:
    """Input length for tracing the offline encoder.

    The non-causal DownScale pads ``(T - f) % f`` frames only ``if`` that is non-zero;
    tracing keeps whichever branch the dummy input takes, while the pad amount itself
    stays dynamic. Choose a length for which every DownScale pads, so the graph keeps the
    pad (of 0 when nothing is missing).
    """
    factors = [layer.downscale.factor for layer in codec.compressor.layers]
    hop = codec.encoder.downsample_factor
    samples = max(int(seconds * codec.sample_rate_input), 4 * codec.chunk_size)
    for extra in range(0, 64 * math.prod(factors) * hop, hop):
        frames = _frames(codec.encoder, samples + extra)[0]
        if _pads_everywhere(frames, factors):
            return samples + extra
    raise InputError(f"no tracing length found for the downscale factors {factors}")


def _pads_everywhere(frames: int, factors: list[int]) -> bool:
    for factor in factors:
        if factor > 1 and frames % factor == 0:
            return False
        frames = -(-frames // factor)
    return True


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------


def export_onnx(
    codec: nn.Module,
    directory: str | os.PathLike,
    *,
    force: bool = False,
    streaming: bool | None = None,
    opset: int = OPSET,
) -> dict[str, Any]:
    """Write the ONNX graphs of ``codec`` and ``manifest.json`` into ``directory``.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec` on the CPU; it is put in eval mode.
    directory
        Output folder, created if missing.
    force
        Replace graphs and manifest that already exist there.
    streaming
        Also export the chunk-step graphs; default: when the model is causal.
    opset
        ONNX opset version.

    Returns
    -------
    The manifest, also written to ``directory / "manifest.json"``.
    """
    codec.eval()
    streaming = codec.causal if streaming is None else streaming
    if streaming and not codec.causal:
        raise InputError(
            f"model {codec.model_id or '(unnamed)'} is not causal: only causal models "
            "have streaming graphs"
        )
    directory = Path(directory)
    names = ["encoder", "decoder"] + (["stream_encoder", "stream_decoder"] * streaming)
    for path in [directory / MANIFEST_NAME] + [directory / f"{n}.onnx" for n in names]:
        check_output(path, force=force)
    manifest = _describe(codec, opset)
    # Tracing needs ordinary tensors, also when the caller is in inference mode.
    with torch.inference_mode(False), torch.no_grad():
        jobs = _offline_jobs(codec) + (_stream_jobs(codec) if streaming else [])
        for file, module, args, spec in jobs:
            _trace(module, args, directory / file, spec, opset, force)
            name = file.removesuffix(".onnx")
            manifest["graphs"][name] = {"file": file, **_finish(spec, directory / file)}
    with atomic_write(directory / MANIFEST_NAME, force=force) as fh:
        fh.write((json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _describe(codec: nn.Module, opset: int) -> dict[str, Any]:
    state = codec.state_dict()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "focalcodec_version": __version__,
        "torch_version": torch.__version__,
        "exporter": "torch.onnx.export (TorchScript tracer, dynamo=False)",
        "opset": opset,
        "model_id": codec.model_id,
        "config_hash": codec.config_hash(),
        "config": codec.config,
        "sample_rate_input": codec.sample_rate_input,
        "sample_rate_output": codec.sample_rate_output,
        "causal": codec.causal,
        "chunk_size": codec.chunk_size,
        "latency": codec.latency,
        "token_rate": codec.token_rate,
        "codebook_size": codec.codebook_size,
        "bits_per_token": codec.bits_per_token,
        "encoder_hop": codec.encoder.downsample_factor,
        "compressor_factor": codec.compressor.downsample_factor,
        "samples_per_token": round(codec.sample_rate_input / codec.token_rate),
        "output_samples_per_token": round(codec.sample_rate_output / codec.token_rate),
        "min_samples": min_samples(codec),
        "num_total_params": sum(v.numel() for v in state.values()),
        "params_per_component": {
            slot: sum(v.numel() for k, v in state.items() if k.startswith(f"{slot}."))
            for slot in SLOTS
        },
        "graphs": {},
    }


def _io(name: str, shape: list, dtype: str) -> dict[str, Any]:
    """A manifest entry; string dimensions are dynamic axes of that name."""
    return {"name": name, "shape": shape, "dtype": dtype}


def _offline_jobs(codec: nn.Module) -> list[tuple]:
    sig = torch.randn(2, _dummy_length(codec)) * 0.1
    toks = torch.randint(0, codec.codebook_size, (2, 50))
    sig_io = _io("sig", ["batch", "time"], "float32")
    toks_io = _io("toks", ["batch", "latent_time"], "int64")
    out_io = _io("sig", ["batch", "out_time"], "float32")
    return [
        (
            "encoder.onnx",
            OfflineEncoder(codec),
            (sig,),
            {"inputs": [sig_io], "outputs": [toks_io]},
        ),
        (
            "decoder.onnx",
            OfflineDecoder(codec),
            (toks,),
            {"inputs": [toks_io], "outputs": [out_io]},
        ),
    ]


def _stream_jobs(codec: nn.Module) -> list[tuple]:
    template = stream_template(codec)
    flat = template.flatten()
    tokens = chunk_tokens(codec)
    samples_out = tokens * round(codec.sample_rate_output / codec.token_rate)
    sig_io = _io("sig", ["batch", codec.chunk_size], "float32")
    toks_io = _io("toks", ["batch", tokens], "int64")
    out_io = _io("sig", ["batch", samples_out], "float32")
    jobs = []
    for file, step, x_io, y_io in [
        ("stream_encoder.onnx", StreamEncoderStep(codec, template), sig_io, toks_io),
        ("stream_decoder.onnx", StreamDecoderStep(codec, template), toks_io, out_io),
    ]:
        state = [_state_entry(name, flat[name]) for name in step.names]
        spec = {
            "inputs": [x_io, _io("first", [], "bool")],
            "outputs": [y_io],
            "state": state,
        }
        # Batch 2 so that no traced reshape can take the batch axis for a constant 1.
        x = torch.randn(2, x_io["shape"][1]) * 0.1
        if x_io["dtype"] == "int64":
            x = torch.randint(0, codec.codebook_size, (2, x_io["shape"][1]))
        zeros = [_zeros(entry, 2) for entry in state]
        jobs.append((file, step, (x, torch.tensor(True), *zeros), spec))
    return jobs


def _state_entry(name: str, tensor: Tensor) -> dict[str, Any]:
    return {
        "name": name,
        "input": f"state_in.{name}",
        "output": f"state_out.{name}",
        "shape": ["batch", *tensor.shape[1:]] if tensor.dim() else [],
        "dtype": str(tensor.dtype).removeprefix("torch."),
    }


def _zeros(entry: dict[str, Any], batch: int) -> Tensor:
    shape = [batch if dim == "batch" else dim for dim in entry["shape"]]
    return torch.zeros(shape, dtype=getattr(torch, entry["dtype"]))


def _trace(
    module: nn.Module, args: tuple, path: Path, spec: dict, opset, force
) -> None:
    state = spec.get("state", [])
    inputs = spec["inputs"] + [_io(e["input"], e["shape"], e["dtype"]) for e in state]
    outputs = spec["outputs"] + [
        _io(e["output"], e["shape"], e["dtype"]) for e in state
    ]
    axes = {
        entry["name"]: {
            i: dim for i, dim in enumerate(entry["shape"]) if isinstance(dim, str)
        }
        for entry in inputs + outputs
    }
    module.eval()
    with atomic_write(path, force=force) as fh, warnings.catch_warnings():
        # Tracer warnings name the branches frozen on purpose (see the module docstring);
        # the legacy-exporter notice and constant-folding notes are not actionable.
        for category in (torch.jit.TracerWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        torch.onnx.export(
            module,
            args,
            fh,
            dynamo=False,
            input_names=[entry["name"] for entry in inputs],
            output_names=[entry["name"] for entry in outputs],
            dynamic_axes={name: dims for name, dims in axes.items() if dims},
            opset_version=opset,
            do_constant_folding=True,
        )


def _finish(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """The manifest entry of a written graph.

    The exporter drops inputs that a graph never reads (the 1-frame placeholders of
    factor-1 Down/UpScales); their state entries get ``"input": null``.
    """
    import onnx

    read = {value.name for value in onnx.load(str(path)).graph.input}
    for entry in spec.get("state", []):
        if entry["input"] not in read:
            entry["input"] = None
    return spec
