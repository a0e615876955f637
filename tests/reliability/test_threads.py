"""One streaming session, two threads: the second call is refused, never interleaved.

A session keeps one stream's state between calls; used from two threads at once it
returned wrong token counts without an error. Now a call made while another thread is
inside the session raises StreamingError at once (a lock taken without waiting).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.errors import StreamingError

MODEL = "causal_wavenext_50hz"


@pytest.fixture(scope="module")
def codec(golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / MODEL).eval()


@pytest.mark.parametrize("second", ["encode", "decode", "process", "flush", "reset"])
def test_a_second_thread_is_refused_while_the_first_is_inside(codec, second):
    session = codec.streaming()
    inside, release = threading.Event(), threading.Event()
    original = session.encoder.encode

    def slow_encode(*args, **kwargs):
        inside.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    session.encoder.encode = slow_encode  # holds thread 1 inside encode()
    piece = 0.1 * torch.randn(1, 4 * codec.chunk_size)
    out: dict[str, torch.Tensor] = {}
    first = threading.Thread(target=lambda: out.update(toks=session.encode(piece)))
    with torch.inference_mode():
        first.start()
        assert inside.wait(30)
        args = {
            "encode": (piece,),
            "decode": (torch.zeros(1, 2, dtype=torch.long),),
            "process": (piece,),
            "flush": (),
            "reset": (),
        }[second]
        with pytest.raises(StreamingError, match="another thread"):
            getattr(session, second)(*args)
        release.set()
        first.join(30)
    # The first call finished undisturbed: all four blocks' tokens.
    assert out["toks"].shape == (1, 4 * codec.chunk_tokens)
    session.encoder.encode = original
    with torch.inference_mode():
        session.encode(piece)  # the lock is free again
        session.close()


def test_calls_from_threads_one_after_another_are_fine(codec):
    session = codec.streaming()
    piece = 0.1 * torch.randn(1, codec.chunk_size)
    counts = []

    def call():
        with torch.inference_mode():
            counts.append(session.encode(piece).shape[1])

    for _ in range(3):
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(30)
    assert counts == [codec.chunk_tokens] * 3
