"""The one road for files: audio -> ``.fcz``, ``.fcz`` -> audio, audio -> audio.

Every job that turns a file into another file runs here, so the command line, the
server and Python callers produce the same bytes:

* :func:`encode_file` / :func:`encode_files`: audio of any length, rate and channel count
  -> a ``.fcz`` file, plainly packed or entropy-coded;
* :func:`decode_file`: a ``.fcz`` file -> audio of exactly the original duration;
* :func:`resynth_file` / :func:`resynth_files`: audio (or a ``.fcz`` file) -> tokens ->
  audio, with a ``matching_set`` for kNN voice conversion (:func:`convert_file`).

Sources are paths or binary file objects; pipes and other streams that cannot seek are
spooled to a temporary file first (:mod:`focalcodec.files.sources`). Destinations are
paths, written atomically (never an input, never an existing file without ``force``), or
binary file objects (a stream that cannot seek receives the bytes once they are
complete). Memory stays bounded in the input's length: inputs up to
:data:`~focalcodec.pipeline.longaudio.WHOLE_SECONDS` go through the model in one call,
longer ones piece by piece (:mod:`focalcodec.pipeline.longaudio`). ``progress`` is
called with the fraction done; input clipping is warned about
(:class:`~focalcodec.errors.ClippingWarning`) and reported in the :class:`FileReport`.

The road of one short file through ``encode``::

    source --seekable()--> AudioReader (decode, downmix, resample to 16 kHz)
        --encode_batch()--> toks --tokens_to_bytes()--> .fcz bytes --output_file()--> dest

Example
-------
>>> from focalcodec.pipeline.files import decode_file, encode_file
>>> encode_file("speech.flac", "speech.fcz", codec, entropy="adaptive")  # doctest: +SKIP
>>> decode_file("speech.fcz", "speech.wav", codec)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import AudioError, ClippingWarning
from ..fcz import bitstream
from ..fcz.bitstream import MAGIC
from ..fcz.entropy import EntropyModel
from ..files.atomic import output_file
from ..files.audio import AudioReader, audio_format, check_writable
from ..files.sources import Source, peek, seekable, source_name
from ..identity import header_for
from ..protocol import Codec
from .compress import (
    CodecSource,
    coder_for,
    encode_batch,
    prepare_signal,
    resolve_codec,
    tokens_to_bytes,
)
from .longaudio import fits_whole, iter_decode, iter_encode, write_fcz, write_pieces

__all__ = [
    "Dest",
    "FileReport",
    "Job",
    "Progress",
    "convert_file",
    "compress_file",
    "decode_file",
    "decode_files",
    "decompress_file",
    "encode_file",
    "encode_files",
    "resynth_file",
    "resynth_files",
]

Dest = str | os.PathLike | BinaryIO
Progress = Callable[[float], None]  # called with the fraction done, in [0, 1]
Entropy = str | EntropyModel | None
OutRate = int | str | None  # Hz, "source" (the input's own rate), None (model's)


@dataclass
class Job:
    """One file to process: where it comes from and where its result goes.

    Attributes
    ----------
    source
        Path or binary file object.
    dest
        Path or binary file object.
    name
        How messages call the source (default: its path, or ``<stream>``).
    protect
        More paths the output must never be (references, banks): they are inputs.
    progress
        Called with the fraction of this file done.
    """

    source: Source
    dest: Dest
    name: str | None = None
    protect: tuple = ()
    progress: Progress | None = None

    @property
    def label(self) -> str:
        return source_name(self.source, self.name)

    def inputs(self) -> tuple:
        own = (self.source,) if isinstance(self.source, (str, os.PathLike)) else ()
        return own + tuple(self.protect)


@dataclass
class FileReport:
    """What a job did.

    Attributes
    ----------
    name
        The source's name.
    seconds
        Duration of the audio, from the input's sample count.
    num_samples
        Input samples at the model's input rate.
    source_rate
        The input's own sample rate (0 when unknown).
    num_tokens
        Tokens encoded or decoded.
    size
        Bytes written to the destination.
    clipping
        Why the input looks clipped, or None.
    """

    name: str
    seconds: float
    num_samples: int
    source_rate: int
    num_tokens: int
    size: int = 0
    clipping: str | None = None


@dataclass
class _Tokens:
    """The tokens of one source, before they are written anywhere."""

    toks: np.ndarray
    num_samples: int
    source_rate: int
    clipping: str | None = None
    sig: np.ndarray | None = field(default=None, repr=False)  # short audio to encode


# ---------------------------------------------------------------------------------------
# Audio -> .fcz
# ---------------------------------------------------------------------------------------


def encode_file(
    source: Source,
    dest: Dest,
    codec: Codec,
    *,
    entropy: Entropy = None,
    force: bool = False,
    progress: Progress | None = None,
    name: str | None = None,
) -> FileReport:
    """Encode an audio file of any length into a ``.fcz`` file.

    Parameters
    ----------
    source
        Audio file (any format soundfile reads, any rate and channel count): a path or
        binary file object.
    dest
        Output path (atomic; refused if it exists, unless ``force``; never the input),
        or a binary file object.
    codec
        The codec (any :class:`~focalcodec.protocol.Codec`), ready for inference.
    entropy
        None or ``"none"`` (plain packing), ``"adaptive"``, or an entropy model such as
        ``focalcodec.lm.LMEntropyModel(DIR)``.
    force
        Overwrite an existing output file.
    progress
        Called with the fraction done.
    name
        How messages call the source.
    """
    job = Job(source, dest, name, progress=progress)
    return _one(encode_files([job], codec, entropy=entropy, force=force))


def encode_files(
    jobs: Sequence[Job], codec: Codec, *, entropy: Entropy = None, force: bool = False
) -> list[FileReport | Exception]:
    """Encode several audio files; short ones of equal length share forward passes.

    Returns, per job, its report or the exception that stopped it (the others go on).
    Each file's bytes are those :func:`encode_file` writes for it alone.
    """

    def long(job: Job, reader: AudioReader) -> FileReport:
        return _encode_long(job, reader, codec, entropy, force)

    results = _tokens_of(jobs, codec, long)
    for i, (job, got) in enumerate(zip(jobs, results, strict=True)):
        if isinstance(got, _Tokens):
            results[i] = _attempt(_write_fcz, job, got, codec, entropy, force)
    return results


def _encode_long(
    job: Job, reader: AudioReader, codec: Codec, entropy: Entropy, force: bool
) -> FileReport:
    """A long input, with bounded memory: plain files are written packet by packet as
    the model gives tokens; entropy-coded ones once all tokens are there (8 bytes
    each), so that a coded file is kept only when it is smaller than the plain one."""
    pieces = iter_encode(codec, reader, job.progress)
    if entropy is not None and entropy != "none":
        toks = np.concatenate(list(pieces))
        got = _Tokens(toks, reader.num_samples, reader.source_rate)
        got.clipping = _clipping(job, reader)
        return _write_fcz(job, got, codec, entropy, force)
    header = header_for(codec, reader.source_rate)
    with output_file(job.dest, force=force, inputs=job.inputs()) as out:
        count = write_fcz(out.file, header, pieces, reader.num_samples)
    return FileReport(
        job.label,
        reader.num_samples / codec.sample_rate_input,
        reader.num_samples,
        reader.source_rate,
        count,
        out.size,
        _clipping(job, reader),
    )


def _write_fcz(
    job: Job, got: _Tokens, codec: Codec, entropy: Entropy, force: bool
) -> FileReport:
    header = header_for(codec, got.source_rate)
    data = tokens_to_bytes(got.toks, got.num_samples, header, entropy)
    with output_file(job.dest, force=force, inputs=job.inputs()) as out:
        out.file.write(data)
    if job.progress is not None:
        job.progress(1.0)
    return _report(job, got, codec, out.size)


# ---------------------------------------------------------------------------------------
# .fcz -> audio
# ---------------------------------------------------------------------------------------


def decode_file(
    source: Source,
    dest: Dest,
    codec: CodecSource = None,
    *,
    entropy: Entropy = None,
    force: bool = False,
    sample_rate: OutRate = None,
    format: str | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    protect: Sequence = (),
    matching_set: torch.Tensor | None = None,
    topk: int = 4,
) -> FileReport:
    """Decode a ``.fcz`` file of any length into an audio file, with bounded memory.

    Parameters
    ----------
    source
        The ``.fcz`` file: a path or binary file object.
    dest
        Output path (atomic; format from its suffix unless ``format``) or binary file
        object (WAV unless ``format``).
    codec
        The codec that made the file; a loader ``loader(header) -> codec``; or None for
        the packaged or Hub model named in the header (never a local path).
    entropy
        The token LM of a file entropy-coded with one (other files need nothing).
    force
        Overwrite an existing output file (never the input).
    sample_rate
        Rate of the output in Hz, ``"source"`` for the rate of the audio that was
        encoded, or None for the model's output rate.
    format
        Output format: ``wav``, ``flac``, ``ogg``, ``mp3`` (or a soundfile name).
    progress
        Called with the fraction done.
    name
        How messages call the source.
    protect
        More paths the output must never be.
    matching_set, topk
        kNN voice conversion, as in ``codec.toks_to_sig``.
    """
    job = Job(source, dest, name, tuple(protect), progress)
    fmt = _format(dest, format)
    with seekable(source, name=job.label) as fileobj:
        got, model = _read_fcz(fileobj, job.label, codec, entropy)
    return _write_audio(job, got, model, fmt, sample_rate, force, matching_set, topk)


def decode_files(
    jobs: Sequence[Job], codec: CodecSource = None, **options: Any
) -> list[FileReport | Exception]:
    """:func:`decode_file` for each job (``options`` as there); returns, per job, its
    report or the exception that stopped it."""
    return [_attempt(_decode_job, job, codec, options) for job in jobs]


def _decode_job(job: Job, codec: CodecSource, options: dict) -> FileReport:
    return decode_file(
        job.source,
        job.dest,
        codec,
        progress=job.progress,
        name=job.name,
        protect=job.protect,
        **options,
    )


def _read_fcz(
    source: Any, name: str, codec: CodecSource, entropy: Entropy = None
) -> tuple[_Tokens, Codec]:
    """Tokens of a ``.fcz`` file (every packet checked) and the codec to decode them."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fileobj:
            return _read_fcz(fileobj, name, codec, entropy)
    reader = bitstream.Reader(source)
    # The model is checked before the payload is read, so a mismatch is reported first.
    model = resolve_codec(reader.header, codec, where=name)
    reader.attach(coder_for(reader.header, entropy))
    container = reader.read_all()
    rate = container.header.source_sample_rate
    return _Tokens(container.toks, container.num_samples, rate), model


# ---------------------------------------------------------------------------------------
# Audio -> tokens -> audio
# ---------------------------------------------------------------------------------------


def resynth_file(
    source: Source,
    dest: Dest,
    codec: Codec,
    *,
    force: bool = False,
    sample_rate: OutRate = None,
    format: str | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    matching_set: torch.Tensor | None = None,
    topk: int = 4,
) -> FileReport:
    """Encode and decode one file (audio, or the tokens of a ``.fcz`` file).

    Parameters are those of :func:`decode_file`; ``matching_set`` (M, D) converts the
    voice towards the speaker it was computed from (:func:`convert_file`).
    """
    job = Job(source, dest, name, progress=progress)
    return _one(
        resynth_files(
            [job],
            codec,
            force=force,
            sample_rate=sample_rate,
            format=format,
            matching_set=matching_set,
            topk=topk,
        )
    )


def resynth_files(
    jobs: Sequence[Job],
    codec: Codec,
    *,
    force: bool = False,
    sample_rate: OutRate = None,
    format: str | None = None,
    matching_set: torch.Tensor | None = None,
    topk: int = 4,
) -> list[FileReport | Exception]:
    """:func:`resynth_file` for several jobs; short audio of equal length shares
    forward passes. Returns, per job, its report or the exception that stopped it."""
    fmts = [_attempt(_format, job.dest, format) for job in jobs]
    todo = [i for i, fmt in enumerate(fmts) if not isinstance(fmt, Exception)]
    results: list[Any] = list(fmts)
    rate = int(codec.sample_rate_output)
    # A source rate is known once the input is open: checked before the model runs.
    checks = [partial(_writable, fmts[i], sample_rate, rate) for i in todo]
    made = _tokens_of([jobs[i] for i in todo], codec, checks=checks)
    for i, got in zip(todo, made, strict=True):
        if isinstance(got, Exception):
            results[i] = got
            continue
        results[i] = _attempt(
            _write_audio, jobs[i], got, codec, fmts[i], sample_rate, force,
            matching_set, topk,
        )  # fmt: skip
    return results


def convert_file(
    source: Source,
    dest: Dest,
    codec: Codec,
    matching_set: torch.Tensor,
    *,
    topk: int = 4,
    **options: Any,
) -> FileReport:
    """kNN voice conversion of one file towards the voice of ``matching_set`` (M, D)
    (a speaker bank, :mod:`focalcodec.pipeline.banks`); ``options`` as for
    :func:`resynth_file`."""
    return resynth_file(
        source, dest, codec, matching_set=matching_set, topk=topk, **options
    )


def _write_audio(
    job: Job,
    got: _Tokens,
    codec: Codec,
    fmt: str,
    sample_rate: OutRate,
    force: bool,
    matching_set: torch.Tensor | None,
    topk: int,
) -> FileReport:
    """Decode tokens into the job's audio output, piece by piece."""
    rate = int(codec.sample_rate_output)
    out_rate = _out_rate(sample_rate, rate, got.source_rate)
    check_writable(fmt, out_rate)
    length = codec.output_length(got.num_samples)
    pieces = iter_decode(
        codec,
        got.toks,
        length,
        matching_set=matching_set,
        topk=topk,
        progress=job.progress,
    )
    with output_file(job.dest, force=force, inputs=job.inputs()) as out:
        write_pieces(out.file, pieces, rate, out_rate, fmt)
    return _report(job, got, codec, out.size)


# ---------------------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------------------


def _tokens_of(
    jobs: Sequence[Job],
    codec: Codec,
    long: Callable[[Job, AudioReader], FileReport] | None = None,
    checks: Sequence[Callable[[int], None]] | None = None,
) -> list[Any]:
    """Per job, its :class:`_Tokens`, or what ``long`` made of a long input, or the
    exception that stopped it. ``.fcz`` sources give their tokens (checked against
    ``codec``); short audio of equal length is encoded in one batch. ``checks[i]``
    is called with job ``i``'s source rate as soon as its audio is opened."""
    checks = checks or [None] * len(jobs)
    results: list[Any] = [
        _attempt(_read, job, codec, long, check)
        for job, check in zip(jobs, checks, strict=True)
    ]
    short = [
        i
        for i, got in enumerate(results)
        if isinstance(got, _Tokens) and got.sig is not None
    ]
    try:
        toks = encode_batch([results[i].sig for i in short], codec) if short else []
    except Exception as exc:  # the whole batch failed: so did each of its items
        for i in short:
            results[i] = exc
        return results
    for i, row in zip(short, toks, strict=True):
        results[i].toks, results[i].sig = row, None
    return results


def _read(
    job: Job,
    codec: Codec,
    long: Callable[[Job, AudioReader], FileReport] | None,
    check: Callable[[int], None] | None = None,
) -> Any:
    """Open a source once: a ``.fcz`` file's tokens, short audio (to be batched), or a
    long input through ``long`` (or piece by piece into tokens)."""
    with seekable(job.source, name=job.label) as source:
        if peek(source, len(MAGIC)) == MAGIC:
            return _read_fcz(source, job.label, codec)[0]
        with AudioReader(
            source, int(codec.sample_rate_input), name=job.label
        ) as reader:
            if check is not None:
                check(reader.source_rate)
            _check_length(reader, codec)
            if fits_whole(codec, reader.num_samples):
                sig = reader.read_all()
                clipping = _clipping(job, reader)
                sig = prepare_signal(sig, reader.sample_rate, codec, job.label)
                empty = np.zeros(0, dtype=np.int64)
                return _Tokens(empty, len(sig), reader.source_rate, clipping, sig)
            if long is not None:
                return long(job, reader)
            toks = np.concatenate(list(iter_encode(codec, reader, job.progress)))
            return _Tokens(
                toks, reader.num_samples, reader.source_rate, _clipping(job, reader)
            )


def _check_length(reader: AudioReader, codec: Codec) -> None:
    need = int(codec.min_samples)
    if reader.num_samples < need:
        rate = codec.sample_rate_input
        raise AudioError(
            f"{reader.name}: too short ({reader.num_samples} samples at {rate} Hz); "
            f"this model needs at least {need} samples ({1000 * need / rate:.0f} ms)"
        )


def _clipping(job: Job, reader: AudioReader) -> str | None:
    """The reader's clipping report, also warned about (once per file)."""
    if reader.clipping:
        warnings.warn(f"{job.label}: {reader.clipping}", ClippingWarning, stacklevel=3)
    return reader.clipping


def _format(dest: Dest, format: str | None) -> str:
    """The soundfile format of an audio output: ``format``, the path's suffix, or WAV."""
    if format:
        return audio_format(f"x.{format.lower().lstrip('.')}")
    if isinstance(dest, (str, os.PathLike)):
        return audio_format(dest)
    return "WAV"


def _writable(fmt: str, wanted: OutRate, model_rate: int, source_rate: int) -> None:
    check_writable(fmt, _out_rate(wanted, model_rate, source_rate))


def _out_rate(wanted: OutRate, model_rate: int, source_rate: int) -> int:
    if wanted is None:
        return model_rate
    if wanted == "source":
        return int(source_rate or model_rate)
    return int(wanted)


def _report(job: Job, got: _Tokens, codec: Codec, size: int) -> FileReport:
    return FileReport(
        job.label,
        got.num_samples / codec.sample_rate_input,
        got.num_samples,
        got.source_rate,
        len(got.toks),
        size,
        got.clipping,
    )


def _attempt(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)``, or the exception it raised (batches go on past a bad file)."""
    try:
        return work(*args)
    except Exception as exc:  # reported per file by the caller; the batch goes on
        return exc


def _one(results: list) -> FileReport:
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]


# The names of earlier releases (``focalcodec.io.longaudio``): the same functions.
compress_file = encode_file
decompress_file = decode_file
