"""Entropy-coded .fcz (version 2): lossless, deterministic, never much larger than plain."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcodec.errors import FormatError, InputError, ModelMismatchError
from focalcodec.fcz import bitstream as bs
from focalcodec.fcz.entropy import (
    ENTROPY_ADAPTIVE,
    ENTROPY_LM,
    AdaptiveModel,
    resolve_entropy,
)
from focalcodec.lm import LMConfig, LMEntropyModel, TokenLM, save_lm
from focalcodec.pipeline.compress import coder_for, tokens_to_bytes
from support import varint

pytest.importorskip("constriction")

CODEC_HASH = bytes.fromhex("6253212b33678f07")
# Header field of version 2: the entropy model id, plus the LM hash for an LM.
ADAPTIVE_EXTRA, LM_EXTRA = 1, 1 + bs.HASH_SIZE


def header(bits: int) -> bs.Header:
    return bs.Header(bits, CODEC_HASH, "", 16000, 16000, 320)


def write_lm(folder: Path, bits: int, seed: int, **arch) -> Path:
    torch.manual_seed(seed)
    cfg = LMConfig(
        codebook_size=2**bits,
        dim=arch.get("dim", 16),
        num_layers=arch.get("num_layers", 1),
        num_heads=2,
        context=arch.get("context", 8),
        codec_hash=CODEC_HASH.hex(),
    )
    model = TokenLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)  # sharp, non-uniform predictions
    save_lm(folder, cfg, model.state_dict())
    return folder


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return write_lm(tmp_path_factory.mktemp("lm") / "lm", bits=4, seed=0)


def own_samples(folder: Path, count: int) -> np.ndarray:
    """Tokens drawn from the LM itself: it predicts them well, so coding pays off."""
    from focalcodec.lm import load_lm
    from focalcodec.lm.sampling import SamplingConfig, sample_tokens

    return sample_tokens(
        load_lm(folder), np.zeros(0, np.int64), count, SamplingConfig()
    )


@pytest.fixture(scope="module")
def lm_text(lm_dir) -> np.ndarray:
    return own_samples(lm_dir, 200)


def roundtrip(data: bytes, entropy=None) -> np.ndarray:
    reader = bs.Reader(io.BytesIO(data))
    reader.attach(coder_for(reader.header, entropy))
    return reader.read_all().toks


def packets_bytes(toks: np.ndarray, bits: int, cuts: list[int], model) -> bytes:
    """A stream written packet by packet (as a streaming encoder does)."""
    head = header(bits)
    coder = None
    if model is not None:
        head = dataclasses.replace(
            head, entropy=model.entropy, entropy_hash=model.entropy_hash
        )
        coder = model.coder(bits, CODEC_HASH)
    buf = io.BytesIO()
    writer = bs.Writer(buf, head, coder)
    edges = sorted({0, len(toks), *[c % (len(toks) + 1) for c in cuts]})
    for a, b in zip(edges[:-1], edges[1:]):
        writer.write(toks[a:b])
    writer.finish(len(toks) * 320)
    return buf.getvalue()


token_streams = st.integers(1, 16).flatmap(
    lambda bits: st.tuples(
        st.just(bits),
        st.one_of(
            st.lists(st.integers(0, 2**bits - 1), max_size=200),
            # Runs of repeated tokens, as in silence and steady tones.
            st.lists(
                st.tuples(st.integers(0, 2**bits - 1), st.integers(1, 40)), max_size=10
            ).map(lambda runs: [t for t, n in runs for _ in range(n)]),
        ).map(lambda xs: np.array(xs, dtype=np.int64)),
    )
)


@settings(max_examples=150, deadline=None)
@given(token_streams, st.lists(st.integers(0, 400), max_size=4))
def test_adaptive_roundtrip_is_lossless(stream, cuts):
    bits, toks = stream
    whole = tokens_to_bytes(toks, len(toks) * 320, header(bits), "adaptive")
    assert np.array_equal(roundtrip(whole), toks)
    split = packets_bytes(toks, bits, cuts, AdaptiveModel())
    assert np.array_equal(roundtrip(split), toks)
    plain = packets_bytes(toks, bits, cuts, None)
    # Fallback: coded never exceeds plain by more than the header field, and a whole
    # file written at once never exceeds it at all.
    assert len(split) <= len(plain) + ADAPTIVE_EXTRA
    assert len(whole) <= len(tokens_to_bytes(toks, len(toks) * 320, header(bits)))


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(0, 15), max_size=60).map(lambda x: np.array(x, np.int64)),
        # Stretches of the LM's own samples (coded), with a few tokens changed.
        st.tuples(
            st.integers(0, 199),
            st.integers(0, 200),
            st.lists(st.tuples(st.integers(0, 199), st.integers(0, 15)), max_size=3),
        ),
    ),
    st.lists(st.integers(0, 80), max_size=3),
)
def test_lm_roundtrip_is_lossless(lm_dir, lm_text, toks, cuts):
    if isinstance(toks, tuple):
        start, size, edits = toks
        text = lm_text.copy()
        for pos, tok in edits:
            text[pos] = tok
        toks = text[start : start + size]
    model = LMEntropyModel(lm_dir)
    data = packets_bytes(toks, 4, cuts, model)
    assert np.array_equal(roundtrip(data, model), toks)
    plain = packets_bytes(toks, 4, cuts, None)
    assert len(data) <= len(plain) + LM_EXTRA


def test_predictable_tokens_are_coded(lm_dir, lm_text):
    model = LMEntropyModel(lm_dir)
    plain = tokens_to_bytes(lm_text, len(lm_text) * 320, header(4))
    coded = tokens_to_bytes(lm_text, len(lm_text) * 320, header(4), model)
    assert len(coded) < len(plain) - 10
    assert bs.Reader(io.BytesIO(coded)).skim().coded_packets == 1
    assert np.array_equal(roundtrip(coded, model), lm_text)


def test_repetitive_tokens_compress():
    toks = np.repeat(np.array([3, 9, 3, 700, 12], np.int64), 200)  # 1000 tokens
    plain = tokens_to_bytes(toks, len(toks) * 320, header(10))
    coded = tokens_to_bytes(toks, len(toks) * 320, header(10), "adaptive")
    assert len(coded) < 0.1 * len(plain)
    info = bs.Reader(io.BytesIO(coded))
    stats = info.skim()
    assert stats.coded_packets == 1 and info.header.version == 2


def test_incompressible_tokens_fall_back_to_packing(lm_dir):
    toks = np.random.default_rng(0).integers(0, 16, 3000)
    plain = tokens_to_bytes(toks, len(toks) * 320, header(4))
    for model, extra in (
        ("adaptive", ADAPTIVE_EXTRA),
        (LMEntropyModel(lm_dir), LM_EXTRA),
    ):
        # Packet by packet (streaming): at most the header field more than plain.
        streamed = packets_bytes(toks, 4, [1000, 2000], resolve_entropy(model))
        assert len(streamed) <= len(packets_bytes(toks, 4, [1000, 2000], None)) + extra
        assert np.array_equal(roundtrip(streamed, model), toks)
        # At once: the plain file itself when coding saves nothing.
        assert tokens_to_bytes(toks, len(toks) * 320, header(4), model) == plain


def test_wrong_lm_is_refused(lm_dir, lm_text, tmp_path):
    toks = lm_text
    right = LMEntropyModel(lm_dir)
    data = tokens_to_bytes(toks, len(toks) * 320, header(4), right)
    assert bs.Reader(io.BytesIO(data)).header.entropy_hash == right.entropy_hash
    # Same architecture, other weights: another hash, refused before any decoding.
    other = LMEntropyModel(write_lm(tmp_path / "other", bits=4, seed=1))
    assert other.entropy_hash != right.entropy_hash
    with pytest.raises(ModelMismatchError, match="entropy-coded with lm"):
        roundtrip(data, other)
    with pytest.raises(FormatError, match="pass that LM"):
        roundtrip(data)
    # An LM of another codebook or codec cannot even start a coder.
    with pytest.raises(ModelMismatchError, match="16 tokens"):
        right.coder(5, CODEC_HASH)
    with pytest.raises(ModelMismatchError, match="trained on tokens of codec"):
        right.coder(4, bytes(8))


def test_adaptive_file_needs_no_model_and_ignores_an_lm(lm_dir):
    toks = np.tile(np.arange(16), 10)
    data = tokens_to_bytes(toks, len(toks) * 320, header(4), "adaptive")
    assert np.array_equal(roundtrip(data), toks)
    assert np.array_equal(roundtrip(data, LMEntropyModel(lm_dir)), toks)


def test_header_v2_fields_and_checks(lm_dir):
    model = LMEntropyModel(lm_dir)
    h = bs.Header(
        4, CODEC_HASH, "x", 16000, 16000, 320, 0, ENTROPY_LM, model.entropy_hash
    )
    raw = h.to_bytes()
    assert raw[3] == bs.ENTROPY_VERSION == 2
    assert len(raw) == len(header(4).to_bytes()) + 1 + LM_EXTRA  # + name "x"
    adaptive = bs.Header(4, CODEC_HASH, "", 16000, 16000, 320, 0, ENTROPY_ADAPTIVE)
    assert len(adaptive.to_bytes()) == len(header(4).to_bytes()) + ADAPTIVE_EXTRA
    assert bs.Reader(io.BytesIO(adaptive.to_bytes())).header == adaptive
    assert bs.Reader(io.BytesIO(raw + b"")).header == h
    assert header(4).version == bs.VERSION == 1  # plain files stay version 1
    with pytest.raises(FormatError, match="entropy model"):
        bs.Header(4, CODEC_HASH, "", 16000, 16000, 320, 0, 7)
    with pytest.raises(FormatError, match="zeros unless an LM"):
        bs.Header(4, CODEC_HASH, "", 16000, 16000, 320, 0, ENTROPY_ADAPTIVE, b"\1" * 8)
    # A version-2 header naming no or an unknown entropy model is refused.
    body = bytearray(h.to_bytes()[:-4])
    for kind in (0, 9):
        body[-9] = kind
        crc = zlib.crc32(bytes(body)).to_bytes(4, "big")
        with pytest.raises(FormatError, match="unknown entropy model"):
            bs.Reader(io.BytesIO(bytes(body) + crc))
    # A writer refuses a header without its coder, and a coder of another model.
    with pytest.raises(FormatError, match="pass its coder"):
        bs.Writer(io.BytesIO(), h)
    with pytest.raises(ModelMismatchError):
        bs.Writer(io.BytesIO(), h, AdaptiveModel().coder(4))


def test_coded_packet_in_a_plain_file_is_rejected():
    plain = bs.dumps(header(4), np.arange(16), 16 * 320)
    head_len = len(header(4).to_bytes())
    body = bytearray(plain[head_len:-4])
    body[0] |= bs.KIND_CODED
    crc = zlib.crc32(bytes(body), zlib.crc32(plain[: head_len - 4]))
    with pytest.raises(FormatError, match="unknown packet kind"):
        bs.loads(plain[:head_len] + bytes(body) + crc.to_bytes(4, "big"))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupted_coded_files_raise_format_errors(draw):
    toks = np.repeat(np.arange(8), 9)
    data = bytearray(tokens_to_bytes(toks, len(toks) * 320, header(4), "adaptive"))
    pos = draw.draw(st.integers(0, len(data) - 1))
    data[pos] ^= draw.draw(st.integers(1, 255))
    with pytest.raises(FormatError):
        roundtrip(bytes(data))


def test_resolve_entropy():
    assert resolve_entropy(None) is None and resolve_entropy("none") is None
    assert resolve_entropy("adaptive").entropy == ENTROPY_ADAPTIVE
    with pytest.raises(InputError, match="LMEntropyModel"):
        resolve_entropy("lm:somewhere")


_CHILD = """
import json, sys
import numpy as np
from focalcodec.fcz import bitstream as bs
from focalcodec.pipeline.compress import tokens_to_bytes
from focalcodec.lm import LMEntropyModel
args = json.loads(sys.argv[1])
h = bs.Header(args["bits"], bytes.fromhex(args["codec"]), "", 16000, 16000, 320)
out = {}
for name in ("adaptive", "lm"):
    toks = np.array(args[name], dtype=np.int64)
    model = "adaptive" if name == "adaptive" else LMEntropyModel(args["folder"])
    out[name] = tokens_to_bytes(toks, len(toks) * 320, h, model).hex()
print(json.dumps(out))
"""


def test_two_processes_write_identical_bytes(tmp_path):
    """A child process with other BLAS thread settings writes the same bytes."""
    lm = write_lm(tmp_path / "lm", bits=6, seed=3, dim=32, num_layers=2, context=16)
    streams = {
        "lm": own_samples(lm, 300),
        "adaptive": np.repeat(np.random.default_rng(0).integers(0, 64, 30), 10),
    }
    args = {"bits": 6, "codec": CODEC_HASH.hex(), "folder": str(lm)}
    args.update({k: v.tolist() for k, v in streams.items()})
    env = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    theirs = json.loads(child.stdout)
    h = header(6)
    ours = {
        "adaptive": tokens_to_bytes(
            streams["adaptive"], len(streams["adaptive"]) * 320, h, "adaptive"
        ),
        "lm": tokens_to_bytes(
            streams["lm"], len(streams["lm"]) * 320, h, LMEntropyModel(lm)
        ),
    }
    for name, data in ours.items():
        assert bytes.fromhex(theirs[name]) == data, name
        assert bs.Reader(io.BytesIO(data)).skim().coded_packets == 1, name
        model = LMEntropyModel(lm) if name == "lm" else None
        assert np.array_equal(roundtrip(data, model), streams[name])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.binary(max_size=40), st.integers(1, 13))
def test_crafted_coded_payloads_with_valid_checksums(count, payload, bits):
    """Arbitrary coded bytes behind a correct CRC: tokens in range, or FormatError."""
    head = bs.Header(bits, CODEC_HASH, "", 16000, 16000, 320, 0, ENTROPY_ADAPTIVE)
    raw = head.to_bytes()
    body = bytes([bs.KIND_FINAL | bs.KIND_CODED]) + varint(count) + varint(count * 320)
    body += varint(len(payload)) + payload
    crc = zlib.crc32(body, int.from_bytes(raw[-4:], "big")).to_bytes(4, "big")
    try:
        toks = roundtrip(raw + body + crc)
    except FormatError:
        return
    assert len(toks) == count and toks.min() >= 0 and toks.max() < 2**bits
