"""The bytes of the live protocol: frames, PCM, start messages, packet framing."""

from __future__ import annotations

import numpy as np
import pytest

from focalcodec.errors import ChecksumError, FormatError, InputError
from focalcodec.fcz import bitstream
from focalcodec.fcz.bitstream import Header
from focalcodec.pipeline.compress import coder_for
from focalcodec.serve import protocol
from focalcodec.serve.sessions import Framer, PacketInbox

HEADER = Header(12, b"\x01" * 8, "demo", 16000, 24000, 320, 48000)


def test_frames_round_trip_and_unknown_kinds_are_refused():
    assert protocol.parse_frame(protocol.frame(protocol.PACKET, b"abc")) == (3, b"abc")
    assert protocol.parse_frame(bytes([protocol.END])) == (protocol.END, b"")
    event = protocol.parse_frame(protocol.event_frame("stats", step_ms=1.5))
    assert protocol.parse_event(event.payload) == {"event": "stats", "step_ms": 1.5}
    for bad in (b"", b"\x00", b"\x06x", bytes([protocol.END]) + b"x"):
        with pytest.raises(InputError):
            protocol.parse_frame(bad)
    with pytest.raises(InputError):
        protocol.parse_event(b'["no", "object"]')


def test_pcm_formats():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)
    s16 = protocol.samples_to_pcm(x, "s16le")
    assert np.frombuffer(s16, "<i2").tolist() == [
        0,
        16384,
        -16384,
        32767,
        -32767,
        32767,
    ]
    back = protocol.pcm_to_samples(s16, "s16le")
    assert back.tolist() == [
        0.0,
        0.5,
        -0.5,
        32767 / 32768,
        -32767 / 32768,
        32767 / 32768,
    ]
    f32 = protocol.samples_to_pcm(x, "f32le")
    assert np.array_equal(protocol.pcm_to_samples(f32, "f32le"), x)
    with pytest.raises(InputError, match="whole number"):
        protocol.pcm_to_samples(b"\x00\x00\x00", "s16le")
    with pytest.raises(InputError, match="NaN"):
        protocol.pcm_to_samples(np.array([np.inf], "<f4").tobytes(), "f32le")


def test_start_messages():
    start = protocol.parse_start('{"version": 1}')
    assert (start.direction, start.format, start.entropy) == (
        "resynth",
        "s16le",
        "none",
    )
    room = protocol.parse_start('{"version": 1, "role": "listen"}', room=True)
    assert room.receive == ["packets", "audio"]
    for bad in (
        "[]",
        '{"version": 2}',
        '{"version": 1, "sample_rate": "16000"}',
        '{"version": 1, "sample_rate": true}',
        '{"version": 1, "receive": []}',
        '{"version": 1, "format": "mp3"}',
    ):
        with pytest.raises(InputError):
            protocol.parse_start(bad)
    with pytest.raises(InputError, match="role"):
        protocol.parse_start('{"version": 1}', room=True)


def test_framed_packets_make_a_file_and_parse_back():
    toks = np.arange(40) * 97 % 4096
    framer = Framer(HEADER)
    pieces = [framer.header_bytes]
    pieces += [framer.packet(toks[i : i + 4]) for i in range(0, 36, 4)]
    pieces.append(framer.final(40 * 320 - 5, toks[36:]))
    container = bitstream.loads(b"".join(pieces))
    assert np.array_equal(container.toks, toks) and container.num_samples == 12795
    inbox = PacketInbox()
    assert inbox.header(pieces[0]) == HEADER
    got = [inbox.packet(p) for p in pieces[1:-2]]
    got.append(inbox.packet(pieces[-2] + pieces[-1]))  # two packets in one frame
    assert np.array_equal(np.concatenate(got), toks) and inbox.num_samples == 12795
    with pytest.raises(FormatError, match="after the FINAL"):
        inbox.packet(pieces[1])


def test_a_changed_or_reordered_packet_is_refused():
    framer = Framer(HEADER)
    packets = [framer.packet(np.full(4, i)) for i in range(3)]
    inbox = PacketInbox()
    inbox.header(framer.header_bytes)
    inbox.packet(packets[0])
    with pytest.raises(ChecksumError):
        inbox.packet(packets[2])  # packet 1 was dropped: the CRC chain breaks
    tampered = PacketInbox()
    tampered.header(framer.header_bytes)
    with pytest.raises(ChecksumError):
        tampered.packet(packets[0][:-1] + bytes([packets[0][-1] ^ 1]))


def test_adaptive_framing_is_a_version_2_file():
    toks = np.zeros(400, np.int64)  # silence-like: the adaptive model codes it small
    framer = Framer(HEADER, "adaptive")
    data = framer.header_bytes + b"".join(
        framer.packet(toks[i : i + 4]) for i in range(0, 396, 4)
    )
    data += framer.final(400 * 320, toks[396:])
    container = bitstream.loads(data, coder_for(framer.header))
    assert container.header.version == 2 and np.array_equal(container.toks, toks)
    plain = Framer(HEADER)
    same = plain.header_bytes + b"".join(
        plain.packet(toks[i : i + 4]) for i in range(0, 396, 4)
    )
    assert len(data) < len(same + plain.final(400 * 320, toks[396:]))  # coded smaller
    inbox = PacketInbox()  # a client attaches the adaptive coder itself
    inbox.header(data[: len(framer.header_bytes)])
    assert np.array_equal(inbox.packet(data[len(framer.header_bytes) :]), toks)
