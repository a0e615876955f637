"""Relay rooms: one sender, many listeners, slow ones skipping whole packets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import numpy as np
import torch

from focalcodec.fcz import bitstream
from focalcodec.serve import protocol
from focalcodec.serve.client import listen, stream_audio, stream_fcz
from focalcodec.serve.protocol import CLOSE
from support import CLIPS, load_golden, speech

CASE = "causal_wavenext_50hz"


def _offline(sig: np.ndarray):
    codec = load_golden(CASE).codec
    with torch.inference_mode():
        toks = codec.sig_to_toks(torch.from_numpy(sig)[None])
        rec = codec.toks_to_sig(toks)[0, : codec.output_length(len(sig))]
    return toks[0].numpy(), rec.numpy()


async def _room(server, name: str, send, listeners: list[dict]):
    """Start the sender, then (once the room exists) the listeners; gather them."""
    url = f"{server.ws}/v1/rooms/{name}"
    sender = asyncio.ensure_future(send(url))
    for _ in range(400):
        if server.state.rooms.get(name) is not None:
            break
        await asyncio.sleep(0.01)
    heard = [asyncio.ensure_future(listen(url, **options)) for options in listeners]
    return await sender, await asyncio.gather(*heard)


def _is_whole_packets_of(part: np.ndarray, whole: np.ndarray, block: int) -> bool:
    """Whether ``part`` is made of whole blocks of ``whole``, in order."""
    blocks = [tuple(whole[i : i + block]) for i in range(0, len(whole), block)]
    at = 0
    for i in range(0, len(part), block):
        piece = tuple(part[i : i + block])
        while at < len(blocks) and blocks[at] != piece:
            at += 1
        if at == len(blocks):
            return False
        at += 1
    return True


def test_listeners_hear_the_sender_from_when_they_joined(server):
    sig = speech(CLIPS[0])
    toks, rec = _offline(sig)

    def send(url):
        return stream_audio(url, sig, 16000, format="f32le", room=True, realtime=True)

    sent, (both, audio_only, packets_only) = asyncio.run(
        _room(
            server,
            "demo",
            send,
            [
                {"format": "f32le"},
                {"receive": ["audio"], "format": "f32le"},
                {"receive": ["packets"]},
            ],
        )
    )
    assert sent.ok, sent.error
    for heard in (both, audio_only, packets_only):
        assert heard.ok and heard.ready["model"] == CASE
        assert not [e for e in heard.events if e["event"] == "skipped"]
    for heard in (both, packets_only):
        container = bitstream.loads(heard.fcz)  # a valid file from its join on
        assert len(container.toks) > len(toks) // 2
        assert np.array_equal(container.toks, toks[-len(container.toks) :])
    for heard in (both, audio_only):
        assert len(heard.audio) > len(rec) // 2
        assert np.abs(heard.audio - rec[-len(heard.audio) :]).max() < 1e-4
    assert not len(packets_only.audio) and not audio_only.fcz
    server.wait_idle()
    assert server.state.rooms.get("demo") is None
    assert server.gauge("room") == 0 and server.gauge("listener") == 0


def test_a_slow_listener_skips_whole_packets_and_is_told(server):
    # 42 s of audio, sent as fast as the server takes it, heard as f32le (4 MB): more
    # than the socket buffers hold while the slow listener reads nothing.
    sig = np.tile(speech(CLIPS[0]), 20)
    toks, _ = _offline(sig)

    async def both():
        url = f"{server.ws}/v1/rooms/busy"
        sender = asyncio.ensure_future(
            stream_audio(url, sig, 16000, format="f32le", room=True)
        )
        while server.state.rooms.get("busy") is None:
            await asyncio.sleep(0.01)
        fast = asyncio.ensure_future(listen(url, receive=["packets"]))
        slow = asyncio.ensure_future(_slow_listener(url, sender))
        return await sender, await fast, await slow

    sent, fast, (events, fcz) = asyncio.run(both())
    assert sent.ok and fast.ok
    skipped = [e for e in events if e["event"] == "skipped"]
    assert skipped and skipped[-1]["total"] >= sum(e["packets"] for e in skipped) > 0
    assert events[-1]["event"] != "error"
    container = bitstream.loads(fcz)  # still one valid chain
    assert _is_whole_packets_of(container.toks, toks, 4)
    assert len(container.toks) < len(bitstream.loads(fast.fcz).toks)
    assert np.array_equal(bitstream.loads(fast.fcz).toks, toks[-len(fast.toks) :])
    assert server.state.metrics.skipped._value.get() > 0


async def _slow_listener(url: str, sender: asyncio.Future):
    """A listener that reads nothing until ``sender`` is done (a plain socket with a
    small receive buffer: nothing reads ahead for it), so that the server's queue for
    it fills up. Returns its events and .fcz bytes."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(1)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    start = json.dumps({"version": 1, "role": "listen", "format": "f32le"}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(start))
    sock.sendall(bytes([0x81, 0x80 | len(start)]) + mask + masked)
    await asyncio.wait_for(asyncio.shield(sender), 300)
    return await asyncio.to_thread(_read_frames, sock)


def _read_frames(sock: socket.socket) -> tuple[list, bytes]:
    """Read server frames (unmasked, unfragmented) until the close frame."""

    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed without a close frame"
            data += chunk
        return data

    events, fcz = [], []
    while True:
        first, second = exact(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(exact(2), "big")
        elif size == 127:
            size = int.from_bytes(exact(8), "big")
        payload = exact(size)
        if first & 0x0F == 0x8:  # close
            sock.close()
            return events, b"".join(fcz)
        if first & 0x0F == 0x2 and payload[0] == protocol.EVENT:
            events.append(json.loads(payload[1:]))
        elif first & 0x0F == 0x2 and payload[0] in (protocol.HEADER, protocol.PACKET):
            fcz.append(payload[1:])


def test_a_packet_sender_is_decoded_once_for_its_listeners(server):
    sig = speech(CLIPS[1])
    toks, rec = _offline(sig)
    data = bitstream.dumps(
        bitstream.loads(_encoded(server, sig)).header, toks, len(sig)
    )

    def send(url):
        return stream_fcz(url, data, room=True, realtime=True, format="f32le")

    sent, (heard,) = asyncio.run(_room(server, "relay", send, [{"format": "f32le"}]))
    assert sent.ok and heard.ok
    assert (
        len(heard.audio) and np.abs(heard.audio - rec[-len(heard.audio) :]).max() < 1e-4
    )


def _encoded(server, sig) -> bytes:
    got = asyncio.run(
        stream_audio(f"{server.ws}/v1/stream", sig, 16000, format="f32le")
    )
    return got.fcz


def test_rooms_refuse_what_cannot_work(server):
    async def scenario():
        from websockets.asyncio.client import connect

        url = f"{server.ws}/v1/rooms/solo"
        missing = await listen(f"{server.ws}/v1/rooms/nobody")
        sender = await connect(url, proxy=None)
        await sender.send(json.dumps({"version": 1, "role": "send"}))
        await sender.recv()
        second = await stream_audio(url, np.zeros(1280, np.float32), 16000, room=True)
        bad_name = await listen(f"{server.ws}/v1/rooms/..")
        listener = asyncio.ensure_future(listen(url))
        await asyncio.sleep(0.3)
        await sender.close()  # the room ends with its sender
        return missing, second, bad_name, await listener

    missing, second, bad_name, ended = asyncio.run(scenario())
    assert missing.close_code == CLOSE.NO_ROOM and "nobody" in missing.error
    assert second.close_code == CLOSE.ROOM_TAKEN
    assert bad_name.close_code in (CLOSE.POLICY, CLOSE.NO_ROOM) or bad_name.ok is False
    assert ended.ok and any(e["event"] == "room_ended" for e in ended.events)
