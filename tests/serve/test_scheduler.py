"""The continuous-batching scheduler, without a network: one batched call per tick."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from support import CLIPS, load_golden, speech

pytest.importorskip("prometheus_client", reason="needs the serve extra")

from focalcodec.serve.metrics import Metrics  # noqa: E402
from focalcodec.serve.protocol import Start, samples_to_pcm  # noqa: E402
from focalcodec.serve.scheduler import Scheduler  # noqa: E402
from focalcodec.serve.sessions import LiveStream  # noqa: E402

CASE = "causal_wavenext_50hz"


class Sink:
    """Collects a stream's results; ``room`` frames fit before it is not ready."""

    def __init__(self, room: int = 1000) -> None:
        self.toks, self.sigs, self.room = [], [], room
        self.done = asyncio.Event()
        self.num_samples = None
        self.failure = None

    def ready(self) -> bool:
        return self.room > 0

    def tokens(self, toks):
        self.toks.append(toks)
        self.room -= 1

    def final(self, num_samples, toks):
        self.toks.append(toks)
        self.num_samples = num_samples

    def audio(self, sig):
        self.sigs.append(sig)

    def stats(self, fields):
        pass

    def end(self):
        self.done.set()

    def fail(self, code, reason):
        self.failure = (code, reason)
        self.done.set()


def _stream(key, codec, sink, audio_out=True):
    start = Start(direction="resynth" if audio_out else "encode", format="f32le")
    return LiveStream(key, codec, start, sink, audio_in=True, audio_out=audio_out)


def _run(codec, signals, max_batch, rooms=None):
    """Run the scheduler over streams whose audio is all there from the start;
    returns the sinks and the rows of every encode call."""
    rows = []

    async def main():
        scheduler = Scheduler(
            CASE, codec, max_streams=8, max_batch=max_batch, metrics=Metrics()
        )
        encode = scheduler.batch.encode

        def counting(blocks):
            rows.append(len(blocks))
            return encode(blocks)

        scheduler.batch.encode = counting
        sinks = [Sink(room) for room in (rooms or [1000] * len(signals))]
        for key, (sig, sink) in enumerate(zip(signals, sinks, strict=True)):
            stream = _stream(key, codec, sink, audio_out=key % 2 == 0)
            scheduler.join(stream)
            stream.add_audio(samples_to_pcm(sig, "f32le"))
            stream.end()
        scheduler.start()
        for sink in sinks[: 1 if rooms else None]:
            await asyncio.wait_for(sink.done.wait(), 120)
        await scheduler.stop()
        return sinks

    return asyncio.run(main()), rows


def test_every_ready_stream_goes_in_one_call_and_equals_solo():
    codec = load_golden(CASE).codec
    a, b = (speech(c) for c in CLIPS)
    signals = [a, b, a[:16000].copy(), b[::-1].copy()]
    sinks, rows = _run(codec, signals, max_batch=64)
    blocks = [len(s) // codec.chunk_size for s in signals]
    # All audio was there at the first tick: every tick steps every stream with a block.
    assert rows == [sum(n > i for n in blocks) for i in range(max(blocks))]
    for key, (sig, sink) in enumerate(zip(signals, sinks, strict=True)):
        with torch.inference_mode():
            toks = codec.sig_to_toks(torch.from_numpy(sig)[None])[0].numpy()
            rec = codec.sig_to_sig(torch.from_numpy(sig)[None])[0].numpy()
        assert sink.failure is None
        assert np.array_equal(np.concatenate(sink.toks), toks)
        assert sink.num_samples == len(sig)
        if key % 2 == 0:
            audio = np.concatenate(sink.sigs)
            assert audio.shape == rec.shape and np.abs(audio - rec).max() < 1e-4
        else:
            assert not sink.sigs


def test_max_batch_caps_the_rows_and_the_rest_go_next():
    codec = load_golden(CASE).codec
    sig = speech(CLIPS[1])
    signals = [sig, sig[::-1].copy(), sig * 0.5, sig[2000:].copy(), sig * 0.25]
    sinks, rows = _run(codec, signals, max_batch=2)
    assert max(rows) == 2 and sum(rows) == sum(len(s) // 1280 for s in signals)
    for sig_i, sink in zip(signals, sinks, strict=True):
        with torch.inference_mode():
            toks = codec.sig_to_toks(torch.from_numpy(sig_i)[None])[0].numpy()
        assert np.array_equal(np.concatenate(sink.toks), toks)


def test_a_stream_whose_client_does_not_read_waits_without_stalling_others():
    codec = load_golden(CASE).codec
    sig = speech(CLIPS[1])
    # Stream 1 takes 3 blocks of results, then its client reads nothing.
    sinks, rows = _run(codec, [sig, sig.copy()], max_batch=64, rooms=[1000, 3])
    assert sinks[0].done.is_set() and not sinks[1].done.is_set()
    assert len(sinks[1].toks) == 3
    assert rows[:3] == [2, 2, 2] and set(rows[3:]) == {1}
