"""Audio and ``.fcz`` files of any length through a codec, piece by piece.

Memory stays flat in the length of the input: audio is read, resampled and written in
pieces (:class:`~focalcodec.files.audio.AudioReader`, :class:`~focalcodec.files.audio.
AudioWriter`), a ``.fcz`` file is written packet by packet, and the model sees at most
:data:`WINDOW_SECONDS` of audio per call:

* an input of up to :data:`WHOLE_SECONDS` goes through the model in one call, exactly as
  :func:`focalcodec.pipeline.compress.compress` does;
* a longer one goes to a causal model through its streaming session
  (:mod:`focalcodec.streaming.session`, exactly the offline tokens), and to a non-causal
  model through long-form windows with cross-fades
  (:mod:`focalcodec.streaming.longform`), whose effect on the tokens is measured in
  ``docs/streaming.md``.

Files of any length are encoded and decoded through these pieces by
:mod:`focalcodec.pipeline.files` (``encode_file``, ``decode_file``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch

from ..errors import FormatError
from ..fcz import bitstream
from ..files.audio import AudioReader, AudioWriter
from ..runtime import release_free_memory

if TYPE_CHECKING:
    from ..codec import FocalCodec

__all__ = [
    "OVERLAP_SECONDS",
    "WHOLE_SECONDS",
    "WINDOW_SECONDS",
    "fits_whole",
    "iter_decode",
    "iter_encode",
    "write_fcz",
]

# Inputs up to this long go through the model in one call (bounded: at most this much).
WHOLE_SECONDS = 30.0
# Long inputs: audio per model call, and context on each side of a non-causal window.
WINDOW_SECONDS = 30.0
OVERLAP_SECONDS = 2.0

Progress = Callable[[float], None]  # called with the fraction done, in [0, 1]


def fits_whole(codec: FocalCodec, num_samples: int) -> bool:
    """Whether ``num_samples`` (at the model's input rate) go through in one call."""
    return num_samples <= WHOLE_SECONDS * codec.sample_rate_input


def _steps(codec: FocalCodec) -> int:
    """Streaming blocks per model call for long inputs (:data:`WINDOW_SECONDS`)."""
    return max(1, round(WINDOW_SECONDS * codec.sample_rate_input / codec.chunk_size))


def iter_encode(
    codec: FocalCodec, reader: AudioReader, progress: Progress | None = None
) -> Iterator[np.ndarray]:
    """Tokens of a long input, in pieces (l_i,) int64, with bounded memory.

    Parameters
    ----------
    codec
        The codec, in eval mode.
    reader
        The input, at ``codec.sample_rate_input``.
    progress
        Called with the fraction done after every model call.
    """
    if reader.sample_rate != codec.sample_rate_input:
        raise FormatError(
            f"{reader.name}: read at {reader.sample_rate} Hz, the model needs "
            f"{codec.sample_rate_input} Hz"
        )
    if not isinstance(codec, torch.nn.Module):
        yield from _encode_cut(codec, reader, progress)
        return
    if codec.causal:
        yield from _encode_stream(codec, reader, progress)
        return
    from ..streaming.longform import encode_long

    def windows(done: int, total: int) -> None:
        release_free_memory()
        if progress is not None:
            progress(done / total)

    toks = encode_long(codec, reader, WINDOW_SECONDS, OVERLAP_SECONDS, progress=windows)
    yield toks[0].to("cpu", torch.int64).numpy()


def _encode_stream(
    codec: FocalCodec, reader: AudioReader, progress: Progress | None
) -> Iterator[np.ndarray]:
    from ..streaming.session import StreamEncoder

    stream = StreamEncoder(codec, 1, pad="none", chunks_per_step=_steps(codec))
    done = 0
    # The stream enters inference mode for each model call itself: a context held
    # across the yields here would leak into the caller.
    for block in reader.blocks(stream.step_size):
        toks = stream.encode(torch.from_numpy(block)[None])
        release_free_memory()
        done += len(block)
        if progress is not None:
            progress(done / reader.num_samples)
        yield toks[0].to("cpu", torch.int64).numpy()
    yield stream.flush()[0].to("cpu", torch.int64).numpy()


def _windows(codec, num_tokens: int):
    """Windows of :data:`WINDOW_SECONDS` with :data:`OVERLAP_SECONDS` of context."""
    from ..streaming.longform import plan_windows

    rate = codec.token_rate
    core = max(1, round(WINDOW_SECONDS * rate))
    return plan_windows(num_tokens, core, round(OVERLAP_SECONDS * rate))


def _encode_cut(codec, reader: AudioReader, progress: Progress | None):
    """Windows cut at token boundaries, for models that offer only ``sig_to_toks``
    (ONNX exports): each window keeps the tokens of its core, computed with context."""
    hop, total = int(codec.hop_length), reader.num_samples
    windows = _windows(codec, -(-total // hop))  # as streaming.longform plans them
    for k, w in enumerate(windows):
        last = k == len(windows) - 1
        stop = total if last else min(total, (w.stop + 1) * hop)
        toks = codec.sig_to_toks(reader[:, w.start * hop : stop])[0]
        keep = toks[w.core_start - w.start : None if last else w.core_stop - w.start]
        if progress is not None:
            progress((k + 1) / len(windows))
        yield np.asarray(keep, dtype=np.int64)


def _decode_cut(codec, toks: np.ndarray, output_length: int, progress):
    """Audio of windows cut at token boundaries (ONNX exports), fitted to length."""
    per_token = int(codec.output_hop_length)
    windows = _windows(codec, len(toks))
    done, last = 0, None
    for k, w in enumerate(windows):
        sig = np.asarray(codec.toks_to_sig(toks[None, w.start : w.stop]))[0]
        lo = (w.core_start - w.start) * per_token
        hi = None if k == len(windows) - 1 else (w.core_stop - w.start) * per_token
        piece = sig[lo:hi][: max(output_length - done, 0)]
        done += len(piece)
        last = piece[-1:] if len(piece) else last
        if progress is not None:
            progress((k + 1) / len(windows))
        yield piece.astype(np.float32)
    if done < output_length and last is not None:
        yield np.repeat(last, output_length - done).astype(np.float32)


def iter_decode(
    codec: FocalCodec,
    toks: np.ndarray,
    output_length: int,
    *,
    matching_set: torch.Tensor | None = None,
    topk: int = 4,
    progress: Progress | None = None,
) -> Iterator[np.ndarray]:
    """Audio of tokens (L,), in pieces (m_i,) float32 totalling ``output_length``.

    Up to :data:`WHOLE_SECONDS` of audio is decoded in one call; longer token streams
    through a causal model's stream or non-causal windows, with bounded memory.
    ``matching_set`` and ``topk`` give kNN voice conversion, as in ``toks_to_sig``.
    """
    if not len(toks):
        raise FormatError("no tokens, so there is no audio to decode")
    batch = torch.from_numpy(np.asarray(toks, dtype=np.int64))[None]
    if fits_whole(codec, len(toks) * int(codec.hop_length)):
        with torch.inference_mode():
            sig = codec.toks_to_sig(
                batch.to(codec.device),
                output_length=output_length,
                **_knn(matching_set, topk),
            )
        if progress is not None:
            progress(1.0)
        yield sig[0].to("cpu", torch.float32).numpy()
        return
    if not isinstance(codec, torch.nn.Module):
        if matching_set is not None:
            raise FormatError("kNN voice conversion needs the PyTorch model")
        yield from _decode_cut(codec, toks, output_length, progress)
        return
    from ..streaming.longform import iter_decode_long

    done = 0
    pieces = iter_decode_long(
        codec,
        batch,
        WINDOW_SECONDS,
        OVERLAP_SECONDS,
        matching_set,
        topk,
        output_length,
    )
    for piece in pieces:  # each window or stream step runs in inference mode
        release_free_memory()
        done += piece.shape[1]
        if progress is not None:
            progress(done / max(output_length, 1))
        yield piece[0].to("cpu", torch.float32).numpy()


def _knn(matching_set: torch.Tensor | None, topk: int) -> dict:
    return {} if matching_set is None else {"matching_set": matching_set, "topk": topk}


def write_fcz(
    fileobj: BinaryIO,
    header: bitstream.Header,
    pieces: Iterable[np.ndarray],
    num_samples: Callable[[], int] | int,
) -> int:
    """Write a container packet by packet: one packet per non-empty piece.

    ``num_samples`` may be a function, called after the last piece (when a stream only
    knows its length at the end). Returns the number of tokens written.
    """
    writer = bitstream.Writer(fileobj, header)
    for toks in pieces:
        writer.write(toks)
    writer.finish(num_samples() if callable(num_samples) else num_samples)
    return writer.num_tokens


def write_pieces(
    fileobj: BinaryIO,
    pieces: Iterable[np.ndarray],
    rate: int,
    out_rate: int | None = None,
    format: str = "WAV",
) -> int:
    """Write audio pieces (m_i,) at ``rate`` to an open seekable file as ``format``,
    resampled to ``out_rate``; returns the frames written."""
    writer = AudioWriter(fileobj, rate, out_rate, format=format)
    try:
        for piece in pieces:
            writer.write(piece)
    finally:
        writer.close()
    return writer.frames
