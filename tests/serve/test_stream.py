"""Live streams through ``/v1/stream`` of a real server: equal to offline, batched,
and every rule of the protocol (``docs/serve.md``)."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import torch

from focalcodec.fcz import bitstream
from focalcodec.serve import protocol
from focalcodec.serve.client import stream_audio, stream_fcz
from focalcodec.serve.protocol import AUDIO as AUDIO_FRAME
from focalcodec.serve.protocol import CLOSE, END, frame
from support import AUDIO, CLIPS, NOISY, load_golden, run_cli, speech

CASE = "causal_wavenext_50hz"
TOL = 1e-4  # streamed audio against offline decoding (docs/streaming.md)


def offline(sig: np.ndarray, matching_set=None) -> tuple[np.ndarray, np.ndarray]:
    """Offline tokens (L,) and resynthesised audio (m,) of a 16 kHz signal."""
    codec = load_golden(CASE).codec
    with torch.inference_mode():
        toks = codec.sig_to_toks(torch.from_numpy(sig)[None])
        rec = codec.toks_to_sig(toks, matching_set=matching_set)[0]
    rec = rec[: codec.output_length(len(sig))]
    return toks[0].numpy(), rec.numpy()


def clips() -> list[np.ndarray]:
    """Four different 16 kHz signals of different lengths."""
    a, b = (speech(c) for c in CLIPS)
    return [a, b, a[4000:20000].copy(), b[::-1].copy()]


async def _staggered(url: str, signals, direction: str) -> list:
    async def one(i: int, sig: np.ndarray):
        await asyncio.sleep(0.15 * i)  # each joins while the others run
        return await stream_audio(
            url, sig, 16000, direction=direction, format="f32le", realtime=i % 2 == 0
        )

    return await asyncio.gather(*(one(i, s) for i, s in enumerate(signals)))


def test_concurrent_sessions_joining_at_different_times_equal_solo(server):
    signals = clips()
    results = asyncio.run(_staggered(f"{server.ws}/v1/stream", signals, "resynth"))
    for sig, got in zip(signals, results, strict=True):
        toks, rec = offline(sig)
        assert got.ok, got.error
        assert np.array_equal(got.toks, toks)
        assert got.audio.shape == rec.shape
        assert np.abs(got.audio - rec).max() < TOL
        container = bitstream.loads(got.fcz)
        assert np.array_equal(container.toks, toks)
        assert container.num_samples == len(sig)
        assert got.ready["model"] == CASE and got.sample_rate == 24000
    server.wait_idle()
    assert server.gauge() == 0 and not server.state.schedulers[CASE].members


def test_file_jobs_beside_live_streams_change_neither(server, tmp_path):
    # HTTP file jobs run the same model object in another thread than the streams.
    source = AUDIO / CLIPS[0]
    cli = tmp_path / "cli.fcz"
    assert run_cli("encode", source, "-o", cli, "-m", load_golden(CASE).path) == 0
    signals = clips()

    async def together():
        loop = asyncio.get_running_loop()
        body = source.read_bytes()
        posts = [
            loop.run_in_executor(None, server.post, f"/v1/encode?model={CASE}", body)
            for _ in range(3)
        ]
        streams = _staggered(f"{server.ws}/v1/stream", signals, "resynth")
        return await asyncio.gather(streams, *posts)

    streamed, *answers = asyncio.run(together())
    for status, body, _ in answers:
        assert status == 200 and body == cli.read_bytes()
    for sig, got in zip(signals, streamed, strict=True):
        toks, rec = offline(sig)
        assert got.ok, got.error
        assert np.array_equal(got.toks, toks)
        assert np.abs(got.audio - rec).max() < TOL


def test_encode_direction_and_s16le(server):
    sig = speech(CLIPS[1])
    got = asyncio.run(stream_audio(f"{server.ws}/v1/stream", sig, 16000))
    # s16le carries round(x * 32767) / 32768 (docs/serve.md): the offline reference too.
    heard = (np.round(np.clip(sig, -1, 1) * 32767) / 32768).astype(np.float32)
    assert got.ok and np.array_equal(got.toks, offline(heard)[0])
    assert len(got.audio) == 0


def test_the_streamed_fcz_decodes_with_the_cli(server, tmp_path):
    sig = speech(CLIPS[0])
    got = asyncio.run(
        stream_audio(f"{server.ws}/v1/stream", sig, 16000, format="f32le")
    )
    path = tmp_path / "stream.fcz"
    path.write_bytes(got.fcz)
    wav = tmp_path / "stream.wav"
    assert run_cli("decode", path, "-o", wav, "-m", server.state.config.models[0]) == 0
    import soundfile as sf

    audio, rate = sf.read(wav, dtype="float32")
    _, rec = offline(sig)
    assert rate == 24000 and audio.shape == rec.shape
    assert np.abs(audio - rec).max() <= 2**-15 + TOL  # a 16-bit WAV


@pytest.mark.parametrize("entropy", ["none", "adaptive"])
def test_a_48k_stream_gives_the_tokens_of_focalcodec_encode(server, tmp_path, entropy):
    source = AUDIO / NOISY
    cli = tmp_path / "cli.fcz"
    assert (
        run_cli("encode", source, "-o", cli, "-m", server.state.config.models[0]) == 0
    )
    sig = speech(NOISY)
    got = asyncio.run(
        stream_audio(
            f"{server.ws}/v1/stream", sig, 48000, format="f32le", entropy=entropy
        )
    )
    assert got.ok, got.error
    mine, theirs = bitstream.loads(got.fcz), bitstream.loads(cli.read_bytes())
    assert np.array_equal(mine.toks, theirs.toks)
    assert mine.num_samples == theirs.num_samples
    assert mine.header.source_sample_rate == 48000
    assert (mine.header.entropy != 0) == (entropy == "adaptive")


def test_decode_direction_gives_offline_audio(server, tmp_path):
    sig = speech(CLIPS[0])
    fcz = tmp_path / "a.fcz"
    source = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(source, sig, 16000, subtype="FLOAT")
    assert (
        run_cli("encode", source, "-o", fcz, "-m", server.state.config.models[0]) == 0
    )
    for per_frame in (1, 3):
        got = asyncio.run(
            stream_fcz(
                f"{server.ws}/v1/stream",
                fcz.read_bytes(),
                format="f32le",
                packets_per_frame=per_frame,
            )
        )
        _, rec = offline(sig)
        assert got.ok, got.error
        assert got.audio.shape == rec.shape and np.abs(got.audio - rec).max() < TOL


def test_a_voice_converts_like_offline(start_server, tmp_path):
    from focalcodec.pipeline.banks import matching_set_from_signals, save_bank

    codec = load_golden(CASE).codec
    bank = matching_set_from_signals(codec, [speech(CLIPS[1])], 16000)
    save_bank(tmp_path / "alice.safetensors", bank, codec)
    with start_server(banks={"alice": str(tmp_path / "alice.safetensors")}) as srv:
        sig = speech(CLIPS[0])
        url = f"{srv.ws}/v1/stream"
        got = asyncio.run(
            stream_audio(
                url, sig, 16000, direction="resynth", format="f32le", voice="alice"
            )
        )
        toks, rec = offline(sig, matching_set=bank)
        assert got.ok, got.error
        assert np.array_equal(got.toks, toks) and np.abs(got.audio - rec).max() < TOL
        bad = asyncio.run(
            stream_audio(url, sig, 16000, direction="resynth", voice="bob")
        )
        assert bad.close_code == CLOSE.POLICY and "bob" in bad.error


# -- the rules: refusals, caps, hostile frames -------------------------------------------


async def _raw(url: str, start: dict | str | None, frames=(), **options):
    """Send a start message and frames; return (close code, reason, events)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    events = []
    async with connect(url, proxy=None, compression=None, **options) as ws:
        try:
            if start is not None:
                await ws.send(start if isinstance(start, str) else json.dumps(start))
            for data in frames:
                await ws.send(data)
            async for data in ws:
                if isinstance(data, bytes) and data[:1] == bytes([protocol.EVENT]):
                    events.append(json.loads(data[1:]))
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, events


START = {"version": 1, "direction": "encode", "format": "s16le"}
GOOD_AUDIO = frame(AUDIO_FRAME, np.zeros(1280, "<i2").tobytes())


@pytest.mark.parametrize(
    "start, frames, code, words",
    [
        ("not json", (), CLOSE.POLICY, "not JSON"),
        ({**START, "version": 9}, (), CLOSE.POLICY, "version"),
        ({**START, "colour": "red"}, (), CLOSE.POLICY, "colour"),
        ({**START, "model": "../../etc"}, (), CLOSE.POLICY, "not served"),
        ({**START, "direction": "sideways"}, (), CLOSE.POLICY, "direction"),
        ({**START, "sample_rate": 7}, (), CLOSE.POLICY, "sample_rate"),
        (START, (b"",), CLOSE.INVALID, "empty"),
        (START, (b"\x7f123",), CLOSE.INVALID, "unknown frame kind"),
        (START, ("text",), CLOSE.UNSUPPORTED, "binary"),
        (START, (frame(AUDIO_FRAME, b"abc"),), CLOSE.INVALID, "whole number"),
        (START, (frame(protocol.PACKET, b"\x01\x02"),), CLOSE.INVALID, "audio"),
        (START, (GOOD_AUDIO, frame(END), GOOD_AUDIO), CLOSE.INVALID, "after END"),
        (
            {**START, "format": "f32le"},
            (frame(AUDIO_FRAME, np.full(4, np.nan, "<f4").tobytes()),),
            CLOSE.INVALID,
            "NaN",
        ),
        (  # finite but far beyond full scale: ends this stream, not the tick
            {**START, "format": "f32le"},
            (frame(AUDIO_FRAME, np.full(1280, 1e6, "<f4").tobytes()),),
            CLOSE.INVALID,
            "must lie in [-1, 1]",
        ),
        (
            {**START, "direction": "decode"},
            (frame(protocol.HEADER, b"FCZ\x01" + bytes(40)),),
            CLOSE.INVALID,
            "",
        ),
        (
            {**START, "direction": "decode"},
            (frame(protocol.PACKET, b"\x01\x04"),),
            CLOSE.INVALID,
            "before the HEADER",
        ),
    ],
)
def test_a_hostile_frame_closes_only_its_session(server, start, frames, code, words):
    url = f"{server.ws}/v1/stream"

    async def both():
        good = stream_audio(url, speech(CLIPS[1]), 16000, format="f32le", realtime=True)
        return await asyncio.gather(_raw(url, start, frames), good)

    (got_code, reason, events), good = asyncio.run(both())
    assert got_code == code, reason
    assert words in reason or any(words in e.get("message", "") for e in events)
    assert good.ok and np.array_equal(good.toks, offline(speech(CLIPS[1]))[0])
    server.wait_idle()
    assert server.gauge() == 0
    # The refused stream's batch row is gone too (not held until the server stops).
    assert asyncio.run(_until(lambda: len(server.state.schedulers[CASE].batch) == 0))


def test_over_capacity_is_refused_with_1013(start_server):
    with start_server(max_sessions=2) as srv:
        url = f"{srv.ws}/v1/stream"

        async def scenario():
            from websockets.asyncio.client import connect

            held = [await connect(url, proxy=None) for _ in range(2)]
            for ws in held:
                await ws.send(json.dumps(START))
                await ws.recv()  # ready: admitted
            refused = await _raw(url, START)
            for ws in held:
                await ws.close()
            await asyncio.sleep(0.3)
            again = await stream_audio(url, speech(CLIPS[1]), 16000)
            return refused, again

        (code, reason, _), again = asyncio.run(scenario())
        assert code == CLOSE.TRY_LATER and "full" in reason
        assert again.ok
        assert srv.state.metrics.refused.labels("capacity")._value.get() == 1


def test_idle_and_too_long_sessions_are_closed(start_server):
    with start_server(idle_seconds=0.4, max_session_seconds=1.5) as srv:
        url = f"{srv.ws}/v1/stream"
        code, reason, _ = asyncio.run(_raw(url, START))
        assert code == CLOSE.IDLE and "nothing received" in reason
        sig = np.zeros(16000 * 4, np.float32)  # 4 s sent in real time: past 1.5 s
        got = asyncio.run(stream_audio(url, sig, 16000, realtime=True))
        assert got.close_code == CLOSE.TOO_LONG
        srv.wait_idle()
        assert srv.gauge() == 0


def test_frames_over_the_size_cap_are_refused(start_server):
    with start_server(max_message_kb=1) as srv:
        big = frame(AUDIO_FRAME, bytes(4000))
        code, _, _ = asyncio.run(_raw(f"{srv.ws}/v1/stream", START, (big,)))
        assert code == CLOSE.TOO_BIG


def test_clients_that_vanish_mid_stream_leave_nothing_behind(server):
    url = f"{server.ws}/v1/stream"

    async def vanish():
        from websockets.asyncio.client import connect

        for direction in ("encode", "resynth", "decode"):
            ws = await connect(url, proxy=None)
            await ws.send(json.dumps({**START, "direction": direction}))
            await ws.recv()
            if direction != "decode":
                for _ in range(10):
                    await ws.send(GOOD_AUDIO)
            ws.transport.abort()  # no closing handshake: the client is just gone
        await asyncio.sleep(0.5)

    asyncio.run(vanish())
    server.wait_idle()
    scheduler = server.state.schedulers[CASE]
    assert server.gauge() == 0 and server.state.sessions == 0
    deadline = asyncio.run(_until(lambda: len(scheduler.batch) == 0))
    assert deadline and not scheduler.members
    got = asyncio.run(stream_audio(url, speech(CLIPS[1]), 16000, format="f32le"))
    assert got.ok and np.array_equal(got.toks, offline(speech(CLIPS[1]))[0])


async def _until(condition, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def test_origins_and_keys(start_server):
    key = "s3cret-key-0123456789"
    with start_server(api_key=key, allow_origins=["https://app.example.org"]) as srv:
        url = f"{srv.ws}/v1/stream"
        own = f"http://127.0.0.1:{srv.port}"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_raw(url, START, origin="https://evil.example"))
        assert refused.value.response.status_code == 403
        code, reason, _ = asyncio.run(_raw(url, START, origin=own))
        assert code == CLOSE.POLICY and "API key" in reason
        with_key = {**START, "api_key": key}
        sig = speech(CLIPS[1])
        for origin in (own, "https://app.example.org", None):
            code, _, events = asyncio.run(
                _raw(url, with_key, (GOOD_AUDIO, frame(END)), origin=origin)
            )
            assert code == CLOSE.NORMAL and events[0]["event"] == "ready"
        got = asyncio.run(stream_audio(url, sig, 16000, api_key=key))  # subprotocol
        assert got.ok
        wrong = asyncio.run(stream_audio(url, sig, 16000, api_key="x" * 21))
        assert wrong.close_code == CLOSE.POLICY
        metrics = srv.state.metrics.refused
        assert metrics.labels("origin")._value.get() == 1
        assert metrics.labels("auth")._value.get() == 2


def test_an_int8_server_streams_what_its_model_gives_alone(start_server, model_dir):
    from focalcodec.pipeline.models import load_codec

    with start_server(fast="int8") as srv:
        signals = clips()[:3]
        results = asyncio.run(_staggered(f"{srv.ws}/v1/stream", signals, "resynth"))
        codec = srv.state.codecs[CASE]
    solo = load_codec(model_dir, "cpu", fast="int8")  # the same fast mode, alone
    for sig, got in zip(signals, results, strict=True):
        with solo.streaming() as stream:
            toks = torch.cat(
                [stream.encode(torch.from_numpy(sig)), stream.flush().toks], 1
            )
        assert got.ok, got.error
        assert np.array_equal(got.toks, toks[0].numpy())
        assert len(got.audio) == codec.output_length(len(sig))


def test_several_blocks_per_packet_cost_less_framing(server):
    sig = speech(CLIPS[0])
    url = f"{server.ws}/v1/stream"
    one = asyncio.run(stream_audio(url, sig, 16000, format="f32le"))
    five = asyncio.run(
        stream_audio(url, sig, 16000, format="f32le", blocks_per_packet=5)
    )
    assert one.ok and five.ok
    assert np.array_equal(one.toks, five.toks)
    assert np.array_equal(bitstream.loads(five.fcz).toks, offline(sig)[0])
    blocks = len(sig) // 1280
    # 26 whole blocks: 26 packets and the FINAL one; in fives, 5 packets and the FINAL.
    assert (len(one.latencies), blocks) == (blocks, 26)
    reader = bitstream.Reader(io.BytesIO(five.fcz))
    assert (
        reader.skim().packets == 6
        and bitstream.Reader(io.BytesIO(one.fcz)).skim().packets == 27
    )
    assert len(five.fcz) < len(one.fcz) - 20 * 6  # 21 packets fewer, >= 6 bytes each
