"""Audio and ``.fcz`` files of any length through a codec, piece by piece.

Memory stays flat in the length of the input: audio is read, resampled and written in
pieces (:class:`~focalcodec.io.audio.AudioReader`, :class:`~focalcodec.io.audio.
AudioWriter`), a ``.fcz`` file is written packet by packet, and the model sees at most
:data:`WINDOW_SECONDS` of audio per call:

* an input of up to :data:`WHOLE_SECONDS` goes through the model in one call, exactly as
  :func:`focalcodec.io.compress.compress` does;
* a longer one goes to a causal model through its streaming session
  (:mod:`focalcodec.streaming.session`, exactly the offline tokens), and to a non-causal
  model through long-form windows with cross-fades
  (:mod:`focalcodec.streaming.longform`), whose effect on the tokens is measured in
  ``docs/streaming.md``.

Example
-------
>>> from focalcodec.io.longaudio import compress_file, decompress_file
>>> compress_file("hour.flac", "hour.fcz", codec)  # doctest: +SKIP
>>> decompress_file("hour.fcz", "hour.wav", codec)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch

from ..errors import FormatError
from ..runtime import release_free_memory
from . import bitstream
from .atomic import atomic_write
from .audio import AudioReader, AudioWriter, audio_format
from .compress import coder_for, header_for, min_samples, resolve_codec

if TYPE_CHECKING:
    from ..codec import FocalCodec

__all__ = [
    "OVERLAP_SECONDS",
    "WHOLE_SECONDS",
    "WINDOW_SECONDS",
    "compress_file",
    "decompress_file",
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


def _hop(codec) -> int:
    return round(codec.sample_rate_input / codec.token_rate)


def _encode_cut(codec, reader: AudioReader, progress: Progress | None):
    """Windows cut at token boundaries, for models that offer only ``sig_to_toks``
    (ONNX exports): each window keeps the tokens of its core, computed with context."""
    hop, total = _hop(codec), reader.num_samples
    windows = _windows(codec, -(-total // hop))
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
    per_token = round(codec.sample_rate_output / codec.token_rate)
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
    hop = codec.sample_rate_input / codec.token_rate
    if fits_whole(codec, int(len(toks) * hop)):
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


def compress_file(
    source: str | os.PathLike | BinaryIO,
    dest: str | os.PathLike | BinaryIO,
    codec: FocalCodec,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> int:
    """Encode an audio file of any length into a ``.fcz`` file, with bounded memory.

    Parameters
    ----------
    source
        Audio file (any format soundfile reads, any rate and channel count).
    dest
        Output path, written atomically (refused if it exists, unless ``force``; never
        the input, even with ``force``), or a writable binary file object.
    codec
        The codec, in eval mode.
    force
        Overwrite an existing output file.
    progress
        Called with the fraction done.

    Returns
    -------
        The number of samples encoded, at ``codec.sample_rate_input``.
    """
    inputs = (source,) if isinstance(source, (str, os.PathLike)) else ()
    with AudioReader(source, codec.sample_rate_input) as reader:
        if reader.num_samples < min_samples(codec):
            raise FormatError(
                f"{reader.name}: too short ({reader.num_samples} samples at "
                f"{codec.sample_rate_input} Hz); this model needs at least "
                f"{min_samples(codec)}"
            )
        header = header_for(codec, reader.source_rate)
        pieces = _encode_pieces(codec, reader, progress)
        if isinstance(dest, (str, os.PathLike)):
            with atomic_write(dest, force=force, inputs=inputs) as fileobj:
                write_fcz(fileobj, header, pieces, reader.num_samples)
        else:
            write_fcz(dest, header, pieces, reader.num_samples)
        return reader.num_samples


def _encode_pieces(
    codec: FocalCodec, reader: AudioReader, progress: Progress | None
) -> Iterator[np.ndarray]:
    if not fits_whole(codec, reader.num_samples):
        yield from iter_encode(codec, reader, progress)
        return
    from .compress import encode_batch, prepare_signal

    sig = prepare_signal(reader.read_all(), reader.sample_rate, codec, reader.name)
    yield encode_batch([sig], codec)[0]
    if progress is not None:
        progress(1.0)


def decompress_file(
    source: str | os.PathLike | BinaryIO,
    dest: str | os.PathLike | BinaryIO,
    codec=None,
    *,
    force: bool = False,
    sample_rate: int | None = None,
    format: str | None = None,
    progress: Progress | None = None,
    entropy=None,
) -> int:
    """Decode a ``.fcz`` file of any length into an audio file, with bounded memory.

    Parameters
    ----------
    source
        The ``.fcz`` file (path or binary file object).
    dest
        Output path, written atomically (format from its suffix unless ``format``), or
        a writable seekable binary file object (then ``format`` defaults to WAV).
    codec
        As for :func:`focalcodec.io.compress.decompress`: a codec, a loader, or None
        for the packaged or Hub model named in the header (never a local path).
    force
        Overwrite an existing output file (never the input).
    sample_rate
        Rate of the output file; None: the model's output rate.
    format
        soundfile format name (``"WAV"``, ``"FLAC"``, ...).
    progress
        Called with the fraction done.
    entropy
        The token LM of a file entropy-coded with one (other files need nothing).

    Returns
    -------
        The number of samples written, at ``sample_rate``.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fileobj:
            return decompress_file(
                fileobj,
                dest,
                codec,
                force=force,
                sample_rate=sample_rate,
                format=format,
                progress=progress,
                entropy=entropy,
            )
    reader = bitstream.Reader(source)
    model = resolve_codec(reader.header, codec)
    reader.attach(coder_for(reader.header, entropy))
    container = reader.read_all()
    out_len = output_length(container)
    pieces = iter_decode(model, container.toks, out_len, progress=progress)
    rate = int(model.sample_rate_output)
    inputs = (source.name,) if isinstance(getattr(source, "name", None), str) else ()
    if isinstance(dest, (str, os.PathLike)):
        fmt = format or audio_format(dest)
        with atomic_write(dest, force=force, inputs=inputs) as fileobj:
            return write_pieces(fileobj, pieces, rate, sample_rate, fmt)
    return write_pieces(dest, pieces, rate, sample_rate, format or "WAV")


def output_length(container: bitstream.Container) -> int:
    """Samples the decoded audio has, at the header's output rate."""
    header = container.header
    return int(
        container.num_samples * header.sample_rate_output / header.sample_rate_input
    )


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
