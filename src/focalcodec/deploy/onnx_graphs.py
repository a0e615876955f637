"""The modules that :mod:`focalcodec.deploy.onnx_export` traces, built by module swaps.

Tracing records the operations of one call at a dummy shape, so the core's Python
choices that depend on shapes or on the stream position would be frozen. Instead of
editing the core's functions, the exporter traces a :func:`trace_view` of the model: a
copy of its module tree (sharing every weight, see
:func:`focalcodec.deploy.swap.shallow_tree`) where a few modules are swapped:

* every convolution is behind :class:`PlainConv`, so that
  :func:`focalcodec.modules.layers.conv_time` runs the plain convolution instead of
  choosing a kernel from the input shape;
* for the step graphs, the modules that keep a left context select, with the boolean
  graph input ``first``, between the given context and the start-of-stream past that
  PyTorch invents when the state is None (a graph has no None inputs):
  :class:`FlaggedContext` around the modules whose context pads their own input, and
  subclasses overriding the ``extend_context`` hook of focal modulation and of the
  ConvNeXt backbone;
* WavLM's attention layers become :class:`GraphCacheAttention`, which overrides the
  ``heads`` hook (how the heads meet the key/value cache) to write the cache at a row
  given as a tensor. Everything else in a layer (projections, gate, biased attention,
  feed-forward) is the core's code.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modules.attention import GatedRelativeAttention
from ..modules.convnext import ConvNeXtBackbone
from ..modules.focalnet import DownScale, FocalModulation, UpScale
from ..modules.wavlm import ConvBlock, PositionalConv, WavLM, WavLMState
from ..streaming.steps import StreamState, decode_step, encode_step
from .swap import rebuild, replace_modules, shallow_tree

__all__ = [
    "DFTISTFTHead",
    "OfflineDecoder",
    "OfflineEncoder",
    "StreamDecoderStep",
    "StreamEncoderStep",
    "encoder_step",
    "inverse_rdft_basis",
    "state_names",
    "stream_template",
    "trace_view",
]

# Components of StreamState in flatten() numbering, with the prefix of their subtree.
ENCODER_PARTS = (("encoder", "0"), ("compressor", "1.0"))
DECODER_PARTS = (("decompressor", "2.0"), ("decoder", "3.0"))


# ---------------------------------------------------------------------------------------
# Swapped modules
# ---------------------------------------------------------------------------------------


class PlainConv(nn.Module):
    """A convolution on channel-last (B, T, C) input, always through the plain kernel."""

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class StartFlag:
    """The ``first`` input of a step graph, shared by the modules that read it."""

    value: Tensor | None = None

    def start(self, context: Tensor, invented: Tensor) -> Tensor:
        """``invented`` (the start-of-stream past) when ``first``, else ``context``."""
        return torch.where(self.value, invented, context)


class FlaggedContext(nn.Module):
    """A module whose left context pads its own input (B, T, C), with ``first``.

    Wraps ConvBlock, PositionalConv, DownScale and UpScale, which are called as
    ``module(x, context, ...)`` and at the start of a stream repeat the first frame of
    ``x`` ``size`` times.
    """

    def __init__(self, module: nn.Module, size: int, flag: StartFlag) -> None:
        super().__init__()
        self.module = module
        self.size = size
        self.flag = flag

    def forward(self, x: Tensor, context: Tensor, *args, **kwargs):
        invented = x[:, :1].expand(-1, self.size, -1)
        return self.module(x, self.flag.start(context, invented), *args, **kwargs)


class FlaggedFocalModulation(FocalModulation):
    """Focal modulation whose causal levels select their past with ``first``."""

    flag: StartFlag

    def extend_context(
        self, ctx: Tensor, past: Tensor | None, size: int
    ) -> tuple[Tensor, Tensor]:
        past = self.flag.start(past, ctx[:, :1].expand(-1, size, -1))
        return super().extend_context(ctx, past, size)


class FlaggedBackbone(ConvNeXtBackbone):
    """The ConvNeXt backbone, whose convolutions select their past with ``first``."""

    flag: StartFlag

    def extend_context(
        self, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        size = self.kernel_size - 1
        if self.causal_pad == "replicate":
            invented = x[:, :1].expand(-1, size, -1)
        else:
            invented = torch.zeros_like(context)
        return super().extend_context(x, self.flag.start(context, invented))


class GraphCacheAttention(GatedRelativeAttention):
    """WavLM attention over a cache of a fixed ``W`` rows, written at a tensor row.

    The eager streaming step slices its cache at Python integers derived from the
    stream position, which a trace would freeze. Here ``cache_start`` is the position as
    an int64 0-dim tensor ``p`` (0 <= p <= W - c): the step's keys and values go to
    rows ``p .. p + c - 1`` through a row mask, attention runs over all ``W`` rows (the
    caller masks the unwritten ones), and the returned cache is rolled left by the
    tensor ``cache_shift``, as in the eager layout (see ``modules/attention.py``).
    """

    def heads(
        self,
        qkv: Tensor,
        cache: Tensor | None,
        cache_start: Any,
        cache_shift: Any,
        cache_rows: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        if cache is None:
            return super().heads(qkv, None, 0, 0, None)
        batch, frames, _ = qkv.shape
        qkv = qkv.view(batch, frames, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)
        rows = torch.arange(cache.shape[1])
        offset = rows - cache_start
        written = ((offset >= 0) & (offset < frames))[None, :, None, None, None]
        fresh = torch.stack([k, v], dim=-1).index_select(1, offset.clamp(0, frames - 1))
        cache = torch.where(written, fresh, cache)
        keys, values = cache.unbind(-1)
        rolled = cache.index_select(
            1, torch.remainder(rows + cache_shift, rows.numel())
        )
        return q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), rolled


def trace_view(codec: nn.Module, flag: StartFlag | None = None) -> nn.Module:
    """A copy of ``codec``'s module tree, sharing its weights, ready for tracing.

    Convolutions are behind :class:`PlainConv`. With a ``flag`` (step graphs), the
    context modules select their start-of-stream past with it and the attention layers
    are :class:`GraphCacheAttention`. ``codec`` itself is not changed.
    """
    view = shallow_tree(codec)

    def build(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            return PlainConv(module)
        if flag is None:
            return None
        if isinstance(module, (FocalModulation, ConvNeXtBackbone)):
            cls = FlaggedFocalModulation
            if isinstance(module, ConvNeXtBackbone):
                cls = FlaggedBackbone
            new = rebuild(cls, module)
            new.flag = flag
            replace_modules(new, build)
            return new
        if isinstance(module, GatedRelativeAttention):
            return rebuild(GraphCacheAttention, module)
        size = _context_size(module)
        if size:
            replace_modules(module, build)
            return FlaggedContext(module, size, flag)
        return None

    replace_modules(view, build)
    return view


def _context_size(module: nn.Module) -> int:
    """Frames of left context a module pads its input with (0: none, or not such a
    module)."""
    if isinstance(module, (ConvBlock, PositionalConv)):
        return module.kernel_size - 1
    if isinstance(module, (DownScale, UpScale)):
        return module.factor - 1
    return 0


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
# Offline graphs
# ---------------------------------------------------------------------------------------


class OfflineEncoder(nn.Module):
    """Waveform (B, N) at ``sample_rate_input`` -> tokens (B, L), as ``sig_to_toks``."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = trace_view(codec)

    def forward(self, sig: Tensor) -> Tensor:
        feats, _ = self.codec.encoder(sig, need_state=False)
        return self.codec.feats_to_toks(feats)


class OfflineDecoder(nn.Module):
    """Tokens (B, L) -> waveform (B, L * up * hop), as ``toks_to_sig`` without trimming."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = trace_view(codec)
        self.head = _export_head(codec.decoder)

    def forward(self, toks: Tensor) -> Tensor:
        # quantizer.toks_to_codes, not codec.toks_to_codes: its range check would be
        # traced as a constant; the runtime checks the range instead.
        codes = self.codec.quantizer.toks_to_codes(toks)
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


def state_names(template: StreamState, parts) -> list[str]:
    """Flat state names (``StreamState.flatten`` keys) of the given components."""
    prefixes = tuple(prefix.split(".")[0] + "." for _, prefix in parts)
    return [name for name in template.flatten() if name.startswith(prefixes)]


def stream_template(codec: nn.Module) -> StreamState:
    """A full stream state after one chunk (batch 1): gives names, shapes and dtypes."""
    with torch.inference_mode():
        sig = torch.zeros(1, codec.chunk_size)
        _, codes, state = encode_step(codec, sig)
        _, state = decode_step(codec, codes, state)
    return state


class _StepBase(nn.Module):
    """Shared bookkeeping of the two step graphs: state names and their template."""

    parts: tuple[tuple[str, str], ...] = ()

    def __init__(self, codec: nn.Module, template: StreamState) -> None:
        super().__init__()
        self.flag = StartFlag()
        self.codec = trace_view(codec, self.flag)
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


class StreamEncoderStep(_StepBase):
    """One encoder chunk: (sig (B, chunk_size), first, *state) -> (toks (B, l), *state)."""

    parts = ENCODER_PARTS

    def forward(self, sig: Tensor, first: Tensor, *tensors: Tensor) -> tuple:
        self.flag.value = first
        state = self.unpack(tensors)
        feats, enc = encoder_step(self.codec.encoder, sig, state["encoder"], first)
        lats, comp = self.codec.compressor(feats, state["compressor"])
        toks = self.codec.quantizer.lats_to_toks(F.normalize(lats, dim=-1))
        return (toks, *self.pack(StreamState(encoder=enc, compressor=comp)))


class StreamDecoderStep(_StepBase):
    """One decoder chunk: (toks (B, l), first, *state) -> (sig (B, n_out), *state)."""

    parts = DECODER_PARTS

    def __init__(self, codec: nn.Module, template: StreamState) -> None:
        super().__init__(codec, template)
        self.head = _export_head(codec.decoder)

    def forward(self, toks: Tensor, first: Tensor, *tensors: Tensor) -> tuple:
        self.flag.value = first
        state = self.unpack(tensors)
        codes = self.codec.quantizer.toks_to_codes(toks)
        qfeats, dec = self.codec.decompressor(codes, state["decompressor"])
        x, voc = self.codec.decoder.backbone(qfeats, state["decoder"])
        sig = self.head(x)
        return (sig, *self.pack(StreamState(decompressor=dec, decoder=voc)))


def encoder_step(wavlm: WavLM, sig: Tensor, state: WavLMState, first: Tensor):
    """WavLM on one chunk (B, chunk_size) -> features (B, c, dim) and the next state.

    The layers of :meth:`WavLM.forward` (front-end, projection, positional convolution,
    transformer layers), with the stream position as a tensor: the cache rows, the
    position bias and the mask of unwritten rows are computed from it.
    """
    x, cnn = wavlm.feature_extractor(sig.unsqueeze(-1), state.contexts[:-1], True)
    x = wavlm.dropout(wavlm.feature_proj(wavlm.norm(x)))
    enc = wavlm.encoder
    x, pos_context = enc.positional_embedding(x, state.contexts[-1], causal=True)
    x = enc.dropout(x)
    position = torch.where(first, torch.zeros_like(state.position), state.position)
    frames, window = x.shape[1], state.kv_caches[0].shape[1]
    chunk = 1 + wavlm.lookahead_size
    rows = torch.arange(window)
    queries = position + torch.arange(frames)
    # The core's bucket arithmetic, for query positions given as a tensor: (H, c, W).
    relative = enc.relative_embedding
    buckets = relative.buckets(rows[None, :] - queries[:, None])
    bias = F.embedding(buckets, relative.weight).permute(2, 0, 1)
    mask = torch.zeros(frames, window).masked_fill(
        rows[None, :] >= position + frames, float("-inf")
    )
    # Same shift as the eager step: the next chunk's rows must start at W - chunk.
    shift = (position + frames + chunk - window).clamp(min=0)
    caches = []
    for layer, cache in zip(enc.layers, state.kv_caches):
        cache = torch.where(first, torch.zeros_like(cache), cache)
        x, cache = layer(
            x, bias, mask, cache=cache, cache_start=position, cache_shift=shift
        )
        caches.append(cache)
    position = (position + frames).clamp(max=window - chunk)
    return x, WavLMState(position, [*cnn, pos_context], caches)
