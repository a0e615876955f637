"""Leaner streaming steps for the fast modes, as subclasses of the core modules.

Each class here overrides one or two named hook methods of a core module and is built
from the exact module by ``from_exact`` (:func:`focalcodec.deploy.swap.rebuild`: built
by its constructor, the weights are shared, the exact module is untouched).
:func:`prepare_streaming` sets them on their parents in a model. The values computed
are those of the exact model (up to float rounding in the folded attention gate); what
changes is how much is copied:

* :class:`TapeCacheAttention` (``heads``, ``new_cache``, ``gate``): the key/value cache
  grows in place, keys and values apart, and the gate's two sums of four projections
  are folded into its weights;
* :class:`AppendFocalModulation` (``extend_context``): the causal levels' contexts grow
  in place instead of being concatenated whole at every step;
* :class:`LeanChunkFeedForward` (``padding``): the refiner skips the block of zeros that
  the checkpoint's layout adds when a step fills whole blocks (its rows are discarded);
* :class:`MemoPositionBias` (``layer_bias``): the relative position bias of a step is
  kept for the next step with the same positions (every step once the window is full).

And one stand-in: :class:`ItemwiseFrontEnd` runs the int8 modes' WavLM front-end
convolutions (:class:`~focalcodec.deploy.int8.ChannelsLastConv`) over the few frames of
a step item by item, so that a stream's tokens in a batch of streams
(:class:`focalcodec.streaming.batch.StreamBatch`) are those it gets alone.

The in-place contexts and caches make states that are not interchangeable with the exact
model's; a state is never changed by a later step (see :func:`~.tape.append_time`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..modules import layers
from ..modules.attention import BiasRows, GatedRelativeAttention, RelativePositionBias
from ..modules.focalnet import FocalModulation
from ..modules.layers import ChunkFeedForward
from .int8 import ChannelsLastConv
from .swap import rebuild, replace_modules
from .tape import append_time

__all__ = [
    "AppendFocalModulation",
    "ItemwiseFrontEnd",
    "LeanChunkFeedForward",
    "MemoPositionBias",
    "TapeCacheAttention",
    "prepare_streaming",
]

# Largest position bias a memo keeps (a streaming step's is 128 KB).
MEMO_BYTES = 2**20


class TapeCacheAttention(GatedRelativeAttention):
    """:class:`GatedRelativeAttention` with a planar cache that grows in place.

    It overrides the hooks ``new_cache`` and ``heads`` (how heads meet the cache) and
    ``gate``. The cache holds only the valid past rows, keys and values apart, shape
    (2, B, H, P, d), as a view of an append-only buffer
    (:func:`~focalcodec.deploy.tape.append_time`). A step then writes only its own
    rows and attends over contiguous per-head keys, where the original layout
    (B, rows, H, d, 2) costs a copy of the whole cache and strided reads per call. The
    values attended to are the same; states are not interchangeable with the exact
    model's.
    """

    # The folded gate: (weight key, (d, 2) weight, (2,) bias), built on first use.
    _gate_fold: tuple | None = None

    @classmethod
    def from_exact(cls, module: GatedRelativeAttention) -> TapeCacheAttention:
        return rebuild(cls, module)

    def gate(self, x: Tensor) -> Tensor:
        """As :meth:`GatedRelativeAttention.gate`, with the two sums of four
        projections folded into the weights: one small product, 2 outputs per head."""
        batch, frames, _ = x.shape
        weight, bias = self._folded_gate()
        heads = x.reshape(batch * frames * self.num_heads, self.head_dim)
        g = torch.sigmoid(torch.addmm(bias, heads, weight))
        g = g.view(batch, frames, self.num_heads, 2).transpose(1, 2)
        a, b = g[..., 0:1], g[..., 1:2]
        return a * (b * self.gru_rel_pos_const.to(x.dtype) - 1.0) + 2.0

    def _folded_gate(self) -> tuple[Tensor, Tensor]:
        """(d, 2) weight and (2,) bias, built on first use: fast-mode models are frozen
        for inference (rebuilt only if the projection's weights are replaced)."""
        linear = self.gru_rel_pos_linear
        key = (linear.weight.data_ptr(), linear.weight.device)
        folded = self._gate_fold
        if folded is None or folded[0] != key:
            # Normal tensors even when first used under inference mode, so that later
            # calls with autograd on can use them too.
            with torch.inference_mode(False), torch.no_grad():
                weight = linear.weight.view(2, 4, -1).sum(1).T.contiguous()
                bias = linear.bias.view(2, 4).sum(1)
            folded = self._gate_fold = (key, weight, bias)
        return folded[1], folded[2]

    def cache_with(self, keys: Tensor, values: Tensor, rows: int) -> Tensor:
        """The planar cache holding past keys and values (B, H, P, d): (2, B, H, P, d)."""
        return torch.stack([keys, values])

    def new_cache(self, x: Tensor) -> Tensor:
        """No past rows yet: shape (2, B, H, 0, d)."""
        return x.new_zeros((2, x.shape[0], self.num_heads, 0, self.head_dim))

    def heads(
        self,
        qkv: Tensor,
        cache: Tensor | None,
        cache_start: int,
        cache_shift: int,
        cache_rows: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """As :meth:`GatedRelativeAttention.heads`, with the planar cache."""
        if cache is None:
            return super().heads(qkv, None, cache_start, cache_shift, cache_rows)
        batch, frames, _ = qkv.shape
        qkv = qkv.view(batch, frames, 3, self.num_heads, self.head_dim)
        # The rows a step keeps are those the exact cache keeps before its junk rows.
        keep = cache_start + frames - cache_shift
        if cache_rows is not None and keep > cache_rows:
            raise ValueError(f"cannot keep {keep} rows in a {cache_rows}-row cache")
        fresh = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)  # (2, B, H, T, d)
        past = cache if cache.shape[3] == cache_start else cache[:, :, :, :cache_start]
        kv, kept = append_time(past, fresh, 3, keep)
        return qkv[:, :, 0].transpose(1, 2), kv[0], kv[1], kept


class AppendFocalModulation(FocalModulation):
    """:class:`FocalModulation` whose causal contexts grow in place (``extend_context``)."""

    @classmethod
    def from_exact(cls, module: FocalModulation) -> AppendFocalModulation:
        return rebuild(cls, module)

    def extend_context(
        self, ctx: Tensor, past: Tensor | None, size: int
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`FocalModulation.extend_context`, through :func:`append_time`."""
        if past is not None and not isinstance(past, Tensor):
            # Many streams' contexts (a layers.SharedContext) keep their own layout.
            return super().extend_context(ctx, past, size)
        if past is None:
            past = ctx[:, :1].expand(-1, size, -1)
        return append_time(past, ctx, 1, size)


class LeanChunkFeedForward(ChunkFeedForward):
    """The causal refiner without the discarded block of zeros (``padding``)."""

    @classmethod
    def from_exact(cls, module: ChunkFeedForward) -> LeanChunkFeedForward:
        return rebuild(cls, module)

    def padding(self, size: int, block: int) -> int:
        """Zeros up to whole blocks only: none when the input fills whole blocks."""
        return super().padding(size, block) % block


class MemoPositionBias(RelativePositionBias):
    """Relative position bias that keeps the last small bias (``layer_bias``).

    Only under inference mode: its tensors must not meet autograd in a later call. The
    memo is keyed by positions and by the weight's storage, so new weights are seen.
    """

    memo: dict

    @classmethod
    def from_exact(cls, module: RelativePositionBias) -> MemoPositionBias:
        new = rebuild(cls, module)
        new.memo = {}
        return new

    def layer_bias(
        self, query_start: int, num_queries: int, num_keys: int
    ) -> Tensor | BiasRows:
        if not torch.is_inference_mode_enabled():
            return super().layer_bias(query_start, num_queries, num_keys)
        key = (query_start, num_queries, num_keys, self.weight.data_ptr())
        # One dict operation per access: a server's file jobs call the model from
        # another thread than its streams, and a test-then-read could miss.
        bias = self.memo.get(key)
        if bias is not None:
            return bias
        bias = super().layer_bias(query_start, num_queries, num_keys)
        if torch.is_tensor(bias) and bias.numel() * bias.element_size() <= MEMO_BYTES:
            self.memo = {key: bias}
        return bias


class ItemwiseFrontEnd(nn.Module):
    """A front-end convolution whose products over few frames run item by item.

    Over the few frames of a streaming step, :class:`ChannelsLastConv` multiplies with
    the weight on the left, an order whose float rounding in MKL depends on how many
    columns (batch items times frames) the product has. Here each batch item gets its
    own product there, as it would alone; longer inputs (offline, or the first layers
    of a step) go through ``conv`` as they are. Input (B, T, C_in), output (B, T',
    C_out), as ``conv_time`` expects.
    """

    def __init__(self, conv: ChannelsLastConv) -> None:
        super().__init__()
        self.conv = conv
        # What code that walks the front-end reads of a convolution.
        self.kernel_size, self.stride = conv.conv.kernel_size, conv.conv.stride

    def forward(self, x: Tensor) -> Tensor:
        inner = self.conv.conv
        (k,), (stride,) = inner.kernel_size, inner.stride
        frames = (x.shape[1] - k) // stride + 1
        if x.shape[0] == 1 or not 1 <= frames <= layers._FEW_FRAMES:
            return self.conv(x)
        return torch.cat([self.conv(item) for item in x.split(1)])


# Core class -> its streaming subclass.
_LEAN = {
    GatedRelativeAttention: TapeCacheAttention,
    FocalModulation: AppendFocalModulation,
    ChunkFeedForward: LeanChunkFeedForward,
    RelativePositionBias: MemoPositionBias,
}


def prepare_streaming(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Set the streaming subclasses on their parents under the ``prefixes`` of ``model``.

    Modules are matched by exact class, so preparing twice changes nothing. Returns the
    number of modules replaced.
    """

    def build(name: str, module: nn.Module) -> nn.Module | None:
        lean = _LEAN.get(type(module))
        return None if lean is None else lean.from_exact(module)

    def skip(name: str, _: nn.Module) -> bool:
        return not name.startswith(prefixes)

    def itemwise(name: str, module: nn.Module) -> nn.Module | None:
        return ItemwiseFrontEnd(module) if type(module) is ChannelsLastConv else None

    def done(name: str, module: nn.Module) -> bool:
        return skip(name, module) or isinstance(module, ItemwiseFrontEnd)

    return replace_modules(model, build, skip) + replace_modules(model, itemwise, done)
