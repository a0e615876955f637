"""The Codec protocol: one owner per rate, and callers that need nothing else.

Expected rates are the released models' published figures (tokens per second, 16 kHz
in; 24 kHz out for the causal WaveNeXt models), not values computed by the code under
test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.pipeline.compress import compress, decompress
from focalcodec.pretrained import skeleton
from focalcodec.protocol import Codec
from focalcodec.streaming.session import StreamingSession

# name: (token_rate, sample_rate_output, hop_length, output_hop_length, chunk_tokens)
RATES = {
    "focalcodec_50hz": (50.0, 16000, 320, 320, 4),
    "focalcodec_25hz": (25.0, 16000, 640, 640, 2),
    "focalcodec_12_5hz": (12.5, 16000, 1280, 1280, 1),
    "focalcodec_50hz_2k_causal": (50.0, 24000, 320, 480, 4),
    "focalcodec_50hz_65k_causal": (50.0, 24000, 320, 480, 4),
}
MEMBERS = sorted(
    set(Codec.__annotations__) | {n for n in vars(Codec) if not n.startswith("_")}
)


class OnlyTheProtocol:
    """A codec that offers the members of :class:`Codec`, forwarded, and nothing else:
    no ``parameters()``, ``eval()``, ``encoder``... as a third backend would."""

    def __init__(self, codec: FocalCodec) -> None:
        self._codec = codec

    def __getattr__(self, name: str):
        if name in MEMBERS:
            return getattr(self.__dict__["_codec"], name)
        raise AttributeError(f"{name} is not a member of the Codec protocol")


@pytest.mark.parametrize("name", sorted(RATES))
def test_rates_of_the_released_models(name: str) -> None:
    codec = skeleton(FocalCodec, name)
    token_rate, rate_out, hop, hop_out, chunk_tokens = RATES[name]
    assert codec.sample_rate_input == 16000
    assert codec.token_rate == token_rate
    assert codec.sample_rate_output == rate_out
    assert codec.hop_length == hop
    assert codec.output_hop_length == hop_out
    assert codec.chunk_tokens == chunk_tokens
    assert codec.chunk_size == 1280
    assert isinstance(codec, Codec)


def test_members_are_listed() -> None:
    for name in ("hop_length", "encode_step", "decode_step", "new_stream_state"):
        assert name in MEMBERS
    for name in ("device", "supports_partial_steps", "training", "chunk_tokens"):
        assert name in MEMBERS
    assert "parameters" not in MEMBERS and "encoder" not in MEMBERS


def test_a_session_needs_nothing_but_the_protocol(golden_dir: Path) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz").eval()
    sig = 0.1 * torch.randn(2, 5 * codec.chunk_size + 321)

    def stream(model) -> tuple[torch.Tensor, torch.Tensor]:
        toks, out = [], []
        with StreamingSession(model, batch_size=2) as session:
            for piece in sig.split(700, dim=1):
                toks.append(session.encode(piece))
                out.append(session.decode(toks[-1]))
            tail = session.flush()
        return torch.cat([*toks, tail.toks], 1), torch.cat([*out, tail.sig], 1)

    ref_toks, ref_sig = stream(codec)
    toks, out = stream(OnlyTheProtocol(codec))
    assert torch.equal(toks, ref_toks) and torch.equal(out, ref_sig)
    assert ref_toks.shape[1] == codec.sig_to_toks(sig).shape[1]


def test_the_file_format_needs_nothing_but_the_protocol(golden_dir: Path) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz").eval()
    sig = 0.1 * torch.randn(8000, generator=torch.Generator().manual_seed(1))
    data = compress(sig, 16000, codec)
    assert compress(sig, 16000, OnlyTheProtocol(codec)) == data
    ref, rate = decompress(data, codec)
    out, out_rate = decompress(data, OnlyTheProtocol(codec))
    assert out_rate == rate == codec.sample_rate_output
    assert torch.equal(out, ref)


def test_the_core_never_imports_deploy() -> None:
    code = (
        "import sys, focalcodec, focalcodec.streaming.session, "
        "focalcodec.streaming.longform, focalcodec.pipeline.compress, focalcodec.protocol; "
        "print([m for m in sys.modules if m.startswith('focalcodec.deploy')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
