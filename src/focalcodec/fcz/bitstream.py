"""The ``.fcz`` container: a header, then packets of bit-packed tokens.

The byte layout is specified in ``docs/format.md``. In short::

    header  = "FCZ" | version | bits | model hash (8) | name | rates (varints)
              | [entropy model (1) | its hash (8)]  (version 2) | CRC32
    packet  = kind | n_tokens (varint) | [num_samples (varint)] | payload | CRC32
    payload = packed tokens, or (coded kinds) size (varint) | entropy-coded bytes

Every packet's CRC32 is seeded with the CRC32 of what came before it (the header's CRC for
the first packet), so a file is one checksum chain: a changed byte, a dropped, duplicated or
reordered packet, or a missing end is always reported. A stream ends with exactly one
``FINAL`` packet, which carries the length of the original signal; anything after it is an
error.

The writer emits a packet per :meth:`Writer.write` call, so a streaming encoder can produce
a file incrementally, and :meth:`Reader.packets` yields the tokens of each packet as soon as
its checksum is verified, so decoding can start before the end of the file.

Version 2 adds entropy coding (``docs/entropy.md``): the header names the entropy model,
and a packet is stored coded (by a :class:`~focalcodec.fcz.entropy.PacketCoder`) when that
is smaller than packing it. This module only frames the coder's bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

import numpy as np

from ..errors import ChecksumError, FormatError, TruncatedError
from . import entropy as coding
from .entropy import ENTROPY_NONE, PacketCoder, PacketStats
from .limits import HASH_SIZE, MAX_NAME_BYTES, check_length, check_rates

__all__ = [
    "MAGIC",
    "VERSION",
    "ENTROPY_VERSION",
    "MAX_PACKET_TOKENS",
    "ChecksumError",
    "TruncatedError",
    "Header",
    "Container",
    "PacketCoder",
    "PacketStats",
    "Writer",
    "Reader",
    "pack_tokens",
    "unpack_tokens",
    "dumps",
    "loads",
]

MAGIC = b"FCZ"
FCZ_SUFFIX = ".fcz"  # the file name suffix of containers
VERSION = 1  # files without entropy coding (every reader of this format reads them)
ENTROPY_VERSION = 2  # files with an entropy model in the header and coded packets
MIN_BITS, MAX_BITS = 1, 32
# One packet holds at most 2**20 tokens (about 5.8 h at 50 Hz, 4 MiB at 32 bits), so a
# corrupted length can never make the reader allocate more than that.
MAX_PACKET_TOKENS = 1 << 20
# 9 varint bytes hold 63 bits: enough for any sample count, small enough for int64.
MAX_VARINT_BYTES = 9

KIND_DATA = 0x01
KIND_FINAL = 0x02
KIND_CODED = 0x10  # flag on DATA/FINAL: the payload is entropy-coded (version 2)
NO_HASH = bytes(HASH_SIZE)
_CRC = struct.Struct(">I")


@dataclass(frozen=True)
class Header:
    """What a decoder needs to know before the first token.

    Parameters
    ----------
    bits_per_token
        Width of each token on disk; the codebook has ``2 ** bits_per_token`` entries.
    model_hash
        The first 8 bytes of the model's config hash: the identity that decoding checks.
    model_name
        A name to load the model by (packaged name or Hub id), or ``""`` when there is none.
    sample_rate_input
        The model's input rate in Hz; ``num_samples`` counts samples at this rate.
    sample_rate_output
        The rate in Hz of the decoded waveform.
    hop_length
        Input samples per token, so the token rate is ``sample_rate_input / hop_length``.
    source_sample_rate
        The rate of the audio before it was resampled for the model (0 when unknown).
    entropy, entropy_hash
        The entropy model of coded packets (``ENTROPY_NONE``: a version-1 file) and,
        for ``ENTROPY_LM`` only, the first 8 bytes of the LM's hash (zeros otherwise).
    """

    bits_per_token: int
    model_hash: bytes
    model_name: str
    sample_rate_input: int
    sample_rate_output: int
    hop_length: int
    source_sample_rate: int = 0
    entropy: int = ENTROPY_NONE
    entropy_hash: bytes = NO_HASH

    def __post_init__(self) -> None:
        if not MIN_BITS <= self.bits_per_token <= MAX_BITS:
            raise FormatError(
                f"bits per token must be in [{MIN_BITS}, {MAX_BITS}], "
                f"got {self.bits_per_token}"
            )
        if len(self.model_hash) != HASH_SIZE:
            raise FormatError(
                f"model hash must be {HASH_SIZE} bytes, got {len(self.model_hash)}"
            )
        if len(self.model_name.encode("utf-8")) > MAX_NAME_BYTES:
            raise FormatError(f"model name is longer than {MAX_NAME_BYTES} bytes")
        if not self.model_name.isprintable():
            raise FormatError(
                f"model name {self.model_name!r} holds control characters"
            )
        check_rates(self)
        if self.entropy not in coding.ENTROPY_NAMES:
            raise FormatError(f"unknown entropy model {self.entropy}")
        if len(self.entropy_hash) != HASH_SIZE or (
            self.entropy != coding.ENTROPY_LM and self.entropy_hash != NO_HASH
        ):
            raise FormatError(
                f"entropy model hash must be {HASH_SIZE} bytes, zeros unless an LM"
            )

    @property
    def version(self) -> int:
        """Format version of this header: 2 with entropy coding, else 1."""
        return VERSION if self.entropy == ENTROPY_NONE else ENTROPY_VERSION

    @property
    def token_rate(self) -> float:
        """Tokens per second."""
        return self.sample_rate_input / self.hop_length

    @property
    def bitrate(self) -> float:
        """Nominal payload bitrate in bits per second."""
        return self.token_rate * self.bits_per_token

    def to_bytes(self) -> bytes:
        """Serialise the header, CRC32 included."""
        name = self.model_name.encode("utf-8")
        body = b"".join(
            [
                MAGIC,
                bytes([self.version, self.bits_per_token]),
                self.model_hash,
                bytes([len(name)]),
                name,
                _varint(self.sample_rate_input),
                _varint(self.sample_rate_output),
                _varint(self.hop_length),
                _varint(self.source_sample_rate),
                bytes([self.entropy]) if self.version > 1 else b"",
                self.entropy_hash if self.entropy == coding.ENTROPY_LM else b"",
            ]
        )
        return body + _CRC.pack(zlib.crc32(body))


class Container(NamedTuple):
    """A whole decoded container.

    Attributes
    ----------
    header
        The file header.
    toks
        Token ids, shape (L,), int64.
    num_samples
        Length of the original signal, in samples at ``header.sample_rate_input``.
    """

    header: Header
    toks: np.ndarray
    num_samples: int


# ---------------------------------------------------------------------------------------
# Bit packing
# ---------------------------------------------------------------------------------------


def pack_tokens(toks: np.ndarray, bits: int) -> bytes:
    """Pack token ids into a big-endian bit string, ``bits`` bits per token.

    Parameters
    ----------
    toks
        Token ids, shape (L,), each in ``[0, 2 ** bits)``.
    bits
        Width of one token.

    Returns
    -------
        ``ceil(L * bits / 8)`` bytes; the unused low bits of the last byte are zero.
    """
    toks = np.asarray(toks)
    if toks.ndim != 1:
        raise ValueError(f"toks must be 1-D, got shape {toks.shape}")
    if toks.size and (toks.min() < 0 or int(toks.max()) >> bits):
        raise ValueError(f"token ids must be in [0, {2**bits}) to fit in {bits} bits")
    # One row of bits per token, most significant first, then one flat bit string.
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    bit_rows = (toks.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)
    return np.packbits(bit_rows.astype(np.uint8).reshape(-1)).tobytes()


def unpack_tokens(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_tokens`.

    Parameters
    ----------
    data
        Exactly ``ceil(count * bits / 8)`` bytes.
    count
        Number of tokens to read.
    bits
        Width of one token.

    Returns
    -------
        Token ids, shape (count,), int64.
    """
    if len(data) != _payload_size(count, bits):
        raise FormatError(
            f"payload of {count} tokens x {bits} bits needs "
            f"{_payload_size(count, bits)} bytes, got {len(data)}"
        )
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if flat[count * bits :].any():
        raise FormatError("non-zero padding bits after the last token")
    bit_rows = flat[: count * bits].reshape(count, bits).astype(np.int64)
    weights = np.left_shift(np.int64(1), np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_rows @ weights


def _payload_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


# ---------------------------------------------------------------------------------------
# Varints (unsigned LEB128: 7 bits per byte, low group first, high bit = "more follows")
# ---------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0 or value >= 1 << (7 * MAX_VARINT_BYTES):
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Source:
    """Reads exact byte counts from a file object and records them for the CRC."""

    def __init__(self, fileobj: BinaryIO, what: str) -> None:
        self.fileobj = fileobj
        self.what = what
        self.taken = bytearray()

    def take(self, size: int) -> bytes:
        data = _read_exact(self.fileobj, size, self.what)
        self.taken += data
        return data

    def varint(self, field: str) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise FormatError(
                        f"{self.what}: {field} has a non-minimal encoding"
                    )
                return value
        raise FormatError(
            f"{self.what}: {field} is longer than {MAX_VARINT_BYTES} bytes"
        )

    def check_crc(self, seed: int) -> int:
        expected = zlib.crc32(self.taken, seed)
        (stored,) = _CRC.unpack(_read_exact(self.fileobj, _CRC.size, self.what))
        if stored != expected:
            raise ChecksumError(
                f"{self.what}: checksum mismatch (stored {stored:08x}, computed "
                f"{expected:08x}); the file is corrupted"
            )
        return expected


def _read_exact(fileobj: BinaryIO, size: int, what: str) -> bytes:
    chunks = []
    missing = size
    while missing:
        chunk = fileobj.read(missing)
        if not chunk:
            raise TruncatedError(
                f"{what}: unexpected end of file ({size - missing} of {size} bytes); "
                "the file is truncated"
            )
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------
# Writer and reader
# ---------------------------------------------------------------------------------------


class Writer:
    """Write a container packet by packet.

    The header is written on construction. Call :meth:`write` any number of times, then
    :meth:`finish` exactly once. A stream that is never finished reads back as truncated,
    which is what a crashed or interrupted encoder should leave behind.

    Parameters
    ----------
    fileobj
        Binary file object opened for writing (it need not be seekable).
    header
        The header to write.
    coder
        The entropy coder of the model the header names; None for plain packing.
    """

    def __init__(
        self, fileobj: BinaryIO, header: Header, coder: PacketCoder | None = None
    ) -> None:
        if header.entropy != ENTROPY_NONE and coder is None:
            raise FormatError("the header names an entropy model: pass its coder")
        coding.check_coder(header.entropy, header.entropy_hash, coder)
        self.fileobj = fileobj
        self.header = header
        self.coder = coder
        self.stats = PacketStats()
        data = header.to_bytes()
        self._crc = _CRC.unpack(data[-_CRC.size :])[0]
        self.num_tokens = 0
        self.finished = False
        fileobj.write(data)

    def write(self, toks: np.ndarray) -> None:
        """Append tokens, shape (L,), as one packet (or more when L is very large)."""
        toks = _as_token_array(toks)
        for start in range(0, len(toks), MAX_PACKET_TOKENS):
            self._packet(KIND_DATA, toks[start : start + MAX_PACKET_TOKENS], None)

    def finish(self, num_samples: int, toks: np.ndarray | None = None) -> None:
        """Write the final packet.

        Parameters
        ----------
        num_samples
            Length of the original signal at ``header.sample_rate_input``.
        toks
            Optional last tokens, shape (L,), carried by the final packet itself, which
            saves the few bytes of a separate packet.
        """
        if self.finished:
            raise FormatError("this container was already finished")
        toks = _as_token_array(np.zeros(0) if toks is None else toks)
        check_length(self.header, self.num_tokens + len(toks), num_samples)
        while len(toks) > MAX_PACKET_TOKENS:
            self._packet(KIND_DATA, toks[:MAX_PACKET_TOKENS], None)
            toks = toks[MAX_PACKET_TOKENS:]
        self._packet(KIND_FINAL, toks, num_samples)
        self.finished = True

    def _packet(self, kind: int, toks: np.ndarray, num_samples: int | None) -> None:
        if self.finished:
            raise FormatError("cannot write after finish()")
        if kind == KIND_DATA and not len(toks):
            return
        payload = pack_tokens(toks, self.header.bits_per_token)
        if self.coder is not None and len(toks):
            # The coder advances either way; a packet is stored coded only when that
            # is smaller, so coding never costs more than the header field.
            data = self.coder.encode(toks)
            framed = _varint(len(data)) + data
            if len(framed) < len(payload):
                kind, payload = kind | KIND_CODED, framed
        parts = [bytes([kind]), _varint(len(toks))]
        if num_samples is not None:
            parts.append(_varint(num_samples))
        parts.append(payload)
        body = b"".join(parts)
        self.stats.add(len(payload), bool(kind & KIND_CODED))
        self._crc = zlib.crc32(body, self._crc)
        self.fileobj.write(body + _CRC.pack(self._crc))
        self.num_tokens += len(toks)


class Reader:
    """Read a container packet by packet, verifying each checksum as it arrives.

    Parameters
    ----------
    fileobj
        Binary file object opened for reading (it need not be seekable).
    coder
        The entropy coder for a coded file (or :meth:`attach` it once the header is
        known); coded packets cannot be decoded without it.

    Raises
    ------
    FormatError
        (or its subclasses :class:`TruncatedError`, :class:`ChecksumError`) when the
        header is not a valid version-1 or version-2 ``.fcz`` header.
    """

    def __init__(self, fileobj: BinaryIO, coder: PacketCoder | None = None) -> None:
        self.fileobj = fileobj
        self.header, self._crc = _read_header(fileobj)
        self.num_samples: int | None = None
        self.num_tokens = 0
        self.coder: PacketCoder | None = None
        self.stats = PacketStats()
        if coder is not None:
            self.attach(coder)

    def attach(self, coder: PacketCoder | None) -> None:
        """Use ``coder`` for coded packets (call before reading any packet)."""
        if self.stats.packets:
            raise FormatError("attach the entropy coder before reading packets")
        coding.check_coder(self.header.entropy, self.header.entropy_hash, coder)
        self.coder = coder

    def skim(self) -> PacketStats:
        """Read and check every remaining packet without decoding coded payloads."""
        while self.num_samples is None:
            self._read_packet(decode=False)
        return self.stats

    def packets(self) -> Iterator[np.ndarray]:
        """Yield the tokens of each packet, shape (L_i,) int64, after checking it.

        After the final packet, ``num_samples`` is set, and the reader checks that the file
        ends there.
        """
        while self.num_samples is None:
            toks = self._read_packet(decode=True)
            if len(toks):
                yield toks

    def read_all(self) -> Container:
        """Read every remaining packet and return the whole container."""
        parts = list(self.packets())
        toks = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        assert self.num_samples is not None
        return Container(self.header, toks, self.num_samples)

    def _read_packet(self, decode: bool) -> np.ndarray:
        """Read one packet; returns its tokens (empty when a coded one is skimmed)."""
        index = f"packet at token {self.num_tokens}"
        src = _Source(self.fileobj, index)
        kind = src.take(1)[0]
        coded = bool(kind & KIND_CODED)
        if kind & ~KIND_CODED not in (KIND_DATA, KIND_FINAL) or (
            coded and self.header.entropy == ENTROPY_NONE
        ):
            raise FormatError(f"{index}: unknown packet kind 0x{kind:02x}")
        count = src.varint("token count")
        if count > MAX_PACKET_TOKENS:
            raise FormatError(f"{index}: {count} tokens exceed {MAX_PACKET_TOKENS}")
        final = kind & ~KIND_CODED == KIND_FINAL
        num_samples = src.varint("sample count") if final else None
        size = _payload_size(count, self.header.bits_per_token)
        start = len(src.taken)
        if coded:
            # The writer codes a packet only when that is smaller than packing it.
            size = src.varint("coded size")
            if size >= _payload_size(count, self.header.bits_per_token):
                raise FormatError(f"{index}: coded payload is not smaller than packed")
        payload = src.take(size)
        self._crc = src.check_crc(self._crc)
        self.stats.add(len(src.taken) - start, coded)
        toks = self._tokens(index, payload, count, coded, decode)
        self.num_tokens += count
        if final:
            if self.fileobj.read(1):
                raise FormatError("unexpected data after the final packet")
            check_length(self.header, self.num_tokens, num_samples)
            self.num_samples = num_samples
        return toks

    def _tokens(
        self, index: str, payload: bytes, count: int, coded: bool, decode: bool
    ) -> np.ndarray:
        bits = self.header.bits_per_token
        if coded:
            if not decode:
                return np.zeros(0, dtype=np.int64)
            return coding.decode_packet(self.coder, payload, count, bits, index)
        toks = unpack_tokens(payload, count, bits)
        if self.coder is not None and decode:
            self.coder.observe(toks)
        return toks


def _read_header(fileobj: BinaryIO) -> tuple[Header, int]:
    src = _Source(fileobj, "header")
    magic = src.take(1)
    if magic != MAGIC[:1]:
        raise FormatError("not a FocalCodec .fcz file (bad magic bytes)")
    if src.take(len(MAGIC) - 1) != MAGIC[1:]:
        raise FormatError("not a FocalCodec .fcz file (bad magic bytes)")
    version = src.take(1)[0]
    if not VERSION <= version <= ENTROPY_VERSION:
        raise FormatError(
            f"unsupported .fcz version {version}; this focalcodec reads versions "
            f"{VERSION} to {ENTROPY_VERSION}"
        )
    bits = src.take(1)[0]
    model_hash = src.take(HASH_SIZE)
    name = src.take(src.take(1)[0])
    rates = [src.varint(f) for f in ("input rate", "output rate", "hop", "source rate")]
    kind, kind_hash = ENTROPY_NONE, NO_HASH
    if version >= ENTROPY_VERSION:
        kind = src.take(1)[0]
        if kind not in set(coding.ENTROPY_NAMES) - {ENTROPY_NONE}:
            raise FormatError(f"header: unknown entropy model {kind}")
        if kind == coding.ENTROPY_LM:
            kind_hash = src.take(HASH_SIZE)
    crc = src.check_crc(0)
    try:
        header = Header(bits, model_hash, name.decode("utf-8"), *rates, kind, kind_hash)
    except UnicodeDecodeError as exc:
        raise FormatError("header: model name is not valid UTF-8") from exc
    return header, crc


def _as_token_array(toks: np.ndarray) -> np.ndarray:
    arr = np.asarray(toks)
    if arr.ndim != 1:
        raise ValueError(f"toks must have shape (L,), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"toks must be integers, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def dumps(
    header: Header,
    toks: np.ndarray,
    num_samples: int,
    coder: PacketCoder | None = None,
) -> bytes:
    """Serialise a whole container.

    Parameters
    ----------
    header
        The header.
    toks
        Token ids, shape (L,).
    num_samples
        Length of the original signal at ``header.sample_rate_input``.
    coder
        The entropy coder of the model the header names (None for plain packing).

    Returns
    -------
        The container bytes: header plus a single final packet for up to
        ``MAX_PACKET_TOKENS`` tokens.
    """
    buf = io.BytesIO()
    Writer(buf, header, coder).finish(num_samples, toks)
    return buf.getvalue()


def loads(data: bytes, coder: PacketCoder | None = None) -> Container:
    """Parse a whole container from bytes (raises :class:`FormatError` when invalid)."""
    return Reader(io.BytesIO(data), coder).read_all()
