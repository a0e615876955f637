"""The original package's call forms, on the golden cases it produced.

Each streaming method is driven the way the original README and demo drive it: states
start empty and every call's returned states go into the next call. Concatenated over
chunks, the outputs must equal the stored reference outputs (tokens and codes exactly,
floats within 1e-4). The signatures themselves are compared with the original ones,
written down here as data.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec, StreamingError
from focalcodec.streaming.steps import StreamState
from support import load_golden

TOL = 1e-4
CAUSAL = ["causal_wavenext_50hz", "causal_vocos_25hz_postnorm"]
NONCAUSAL = ["noncausal_vocos_50hz", "noncausal_vocos_12_5hz_legacy"]
E = inspect.Parameter.empty

# The original signatures (v0.0.2): positional parameters after ``self``, with defaults.
_SIG_STATES = [("encoder_state", ()), ("compressor_state", ())]
_DECODE = [("matching_set", None), ("topk", 4), ("num_splits", 1)]
_DECODE += [("output_length", None), ("return_state", False)]
REFERENCE = {
    "forward": [
        ("sig", E),
        *_SIG_STATES,
        ("decompressor_state", ()),
        ("decoder_state", ()),
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_feats": [
        ("sig", E),
        ("encoder_state", ()),
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_lats": [
        ("sig", E),
        *_SIG_STATES,
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_toks": [
        ("sig", E),
        *_SIG_STATES,
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_codes": [
        ("sig", E),
        *_SIG_STATES,
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_qfeats": [
        ("sig", E),
        *_SIG_STATES,
        ("decompressor_state", ()),
        ("length", None),
        ("return_state", False),
    ],
    "sig_to_sig": [
        ("sig", E),
        *_SIG_STATES,
        ("decompressor_state", ()),
        ("decoder_state", ()),
        ("length", None),
        ("return_state", False),
    ],
    "feats_to_lats": [("feats", E), ("compressor_state", ()), ("return_state", False)],
    "feats_to_toks": [("feats", E), ("compressor_state", ()), ("return_state", False)],
    "feats_to_codes": [("feats", E), ("compressor_state", ()), ("return_state", False)],
    "feats_to_qfeats": [
        ("feats", E),
        ("compressor_state", ()),
        ("decompressor_state", ()),
        ("return_state", False),
    ],
    "feats_to_sig": [("feats", E), ("decoder_state", ()), *_DECODE],
    "lats_to_toks": [("lats", E)],
    "lats_to_codes": [("lats", E)],
    "lats_to_qfeats": [
        ("lats", E),
        ("decompressor_state", ()),
        ("return_state", False),
    ],
    "toks_to_codes": [("toks", E)],
    "toks_to_qfeats": [
        ("toks", E),
        ("decompressor_state", ()),
        ("return_state", False),
    ],
    "toks_to_sig": [
        ("toks", E),
        ("decompressor_state", ()),
        ("decoder_state", ()),
        *_DECODE,
    ],
    "codes_to_toks": [("codes", E)],
    "codes_to_qfeats": [
        ("codes", E),
        ("decompressor_state", ()),
        ("return_state", False),
    ],
    "codes_to_sig": [
        ("codes", E),
        ("decompressor_state", ()),
        ("decoder_state", ()),
        *_DECODE,
    ],
    "knn": [("input", E), ("matching_set", E), ("topk", 4), ("num_splits", 1)],
    "jit": [("classes", None)],
    "onnx": [("f", E), ("batch_size", None), ("chunk_size", None)]
    + [("return_state", False)],
    "to_config": [("config", E), ("pretrained", False)],
    "to_pretrained": [("config", E)],
    "info": [],
}
REFERENCE_CLASSMETHODS = {
    "from_config": [("config", E), ("pretrained", False), ("overrides", None)],
    "from_pretrained": [("config", E), ("overrides", None)],
}


def _close(name: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape, f"{name}: {tuple(ours.shape)} vs {tuple(ref.shape)}"
    if not ref.is_floating_point():
        assert torch.equal(ours, ref), f"{name}: {(ours != ref).sum()} values differ"
        return
    err = float((ours - ref).abs().max())
    assert err <= TOL, f"{name}: max abs error {err:.2e}"


def _positional(params) -> list[tuple[str, object]]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
    return [(p.name, p.default) for p in params if p.kind in kinds]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_method_signatures_are_the_originals(name: str) -> None:
    params = list(inspect.signature(getattr(FocalCodec, name)).parameters.values())
    assert params[0].name == "self"
    assert _positional(params[1:]) == REFERENCE[name]
    # Additions of this package are keyword-only, so positional calls keep their meaning.
    extra = [p for p in params[1:] if (p.name, p.default) not in REFERENCE[name]]
    assert all(
        p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
        for p in extra
    ), name


@pytest.mark.parametrize("name", sorted(REFERENCE_CLASSMETHODS))
def test_loading_signatures_are_the_originals(name: str) -> None:
    params = list(inspect.signature(getattr(FocalCodec, name)).parameters.values())
    assert _positional(params) == REFERENCE_CLASSMETHODS[name]
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD  # Hub keyword arguments


def test_original_attributes_and_properties(golden_dir: Path) -> None:
    model, _, meta, *_ = load_golden("causal_wavenext_50hz")
    config = json.loads(
        (golden_dir / "causal_wavenext_50hz" / "config.json").read_text()
    )
    for slot in ("encoder", "compressor", "quantizer", "decompressor", "decoder"):
        assert getattr(model, f"{slot}_name") == config[f"{slot}_name"]
        assert getattr(model, f"{slot}_config") == config[f"{slot}_config"]
    assert isinstance(FocalCodec.__version__, str) and model.__version__
    info = json.loads(meta["info"])
    assert set(info) <= set(model.info())
    for key in ("sample_rate_input", "sample_rate_output", "causal", "chunk_size"):
        assert getattr(model, key) == info[key]
    assert model.latency == info["latency"]
    with pytest.raises(RuntimeError):  # 16 kHz in, 24 kHz out: undefined, as there
        _ = model.sample_rate
    codebook = model.codebook
    assert codebook.shape == (4096, 12)
    codebook.zero_()  # a copy
    assert model.codebook.abs().sum() > 0


# -- streaming: every method, states threaded by hand ---------------------------------

# (method, input, input unit, expected output, number of states, extra keywords)
STREAMED = [
    ("sig_to_feats", "input.sig", "sig", "output.feats", 1),
    ("sig_to_lats", "input.sig", "sig", "output.lats", 2),
    ("sig_to_toks", "input.sig", "sig", "output.toks", 2),
    ("sig_to_codes", "input.sig", "sig", "output.codes", 2),
    ("sig_to_qfeats", "input.sig", "sig", "output.qfeats", 3),
    ("sig_to_sig", "input.sig", "sig", "output.forward.sig", 4),
    ("feats_to_lats", "output.feats", "feats", "output.lats", 1),
    ("feats_to_toks", "output.feats", "feats", "output.toks", 1),
    ("feats_to_codes", "output.feats", "feats", "output.codes", 1),
    ("feats_to_qfeats", "output.feats", "feats", "output.qfeats", 2),
    ("feats_to_sig", "output.feats", "feats", "output.sig_from_feats", 1),
    ("lats_to_qfeats", "output.lats", "toks", "output.qfeats", 1),
    ("toks_to_qfeats", "output.toks", "toks", "output.qfeats", 1),
    ("codes_to_qfeats", "output.codes", "toks", "output.qfeats", 1),
    ("toks_to_sig", "output.toks", "toks", "output.sig_from_toks", 2),
    ("codes_to_sig", "output.codes", "toks", "output.sig_from_toks", 2),
]


def _step(model: FocalCodec, unit: str) -> int:
    """Items per chunk of ``chunk_size`` samples, in samples, frames or tokens."""
    frames = model.chunk_size // model.encoder.downsample_factor
    return {
        "sig": model.chunk_size,
        "feats": frames,
        "toks": frames // model.compressor.downsample_factor,
    }[unit]


def _stream(method, x: torch.Tensor, step: int, count: int, **kwargs) -> torch.Tensor:
    state: list = []
    outs = []
    for i in range(0, x.shape[1], step):
        out, *state = method(x[:, i : i + step], *state, return_state=True, **kwargs)
        assert len(state) == count
        outs.append(out)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("case", CAUSAL)
@pytest.mark.parametrize(("name", "src", "unit", "ref", "count"), STREAMED)
@torch.no_grad()
def test_streamed_method_matches_reference(
    golden_dir: Path, case: str, name: str, src: str, unit: str, ref: str, count: int
) -> None:
    model, io, _, *_ = load_golden(case)
    out = _stream(getattr(model, name), io[src], _step(model, unit), count)
    _close(f"{case} {name}", out, io[ref])


@pytest.mark.parametrize("case", CAUSAL)
@torch.no_grad()
def test_streamed_voice_conversion_matches_reference(golden_dir: Path, case: str):
    model, io, _, *_ = load_golden(case)
    out = _stream(
        model.codes_to_sig,
        io["output.codes"],
        _step(model, "toks"),
        2,
        matching_set=io["output.matching_set"],
        topk=4,
    )
    _close(f"{case} knn", out, io["output.knn_sig"])


def _flat(state: list) -> dict[str, torch.Tensor]:
    return StreamState(*state).flatten()


def _stored_state(io: dict, which: str) -> dict[str, torch.Tensor]:
    prefix = f"output.stream.{which}."
    return {k[len(prefix) :]: v for k, v in io.items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", CAUSAL)
@torch.no_grad()
def test_forward_loop_reproduces_reference_stream_and_states(golden_dir, case):
    model, io, _, *_ = load_golden(case)
    sig, chunk = io["input.sig"], model.chunk_size
    state: list = []
    toks, codes, outs = [], [], []
    for i in range(0, sig.shape[1], chunk):
        t, c, s, *state = model(sig[:, i : i + chunk], *state, return_state=True)
        assert len(state) == 4
        assert s.shape[1] == int(
            chunk * model.sample_rate_output / model.sample_rate_input
        )
        toks.append(t), codes.append(c), outs.append(s)
        if i == 0:
            stored, ours = _stored_state(io, "state_after_chunk0"), _flat(state)
            assert ours.keys() == stored.keys()
            for key in stored:
                _close(f"chunk 0 state {key}", ours[key], stored[key])
    _close("stream.toks", torch.cat(toks, 1), io["output.stream.toks"])
    _close("stream.codes", torch.cat(codes, 1), io["output.stream.codes"])
    _close("stream.sig", torch.cat(outs, 1), io["output.stream.sig"])
    stored, ours = _stored_state(io, "final_state"), _flat(state)
    assert ours.keys() == stored.keys()
    for key in stored:
        _close(f"final state {key}", ours[key], stored[key])


@pytest.mark.parametrize("case", CAUSAL)
@torch.no_grad()
def test_split_loop_of_the_demo(golden_dir: Path, case: str) -> None:
    """sig_to_toks + toks_to_sig with two states each, as the original demo streams."""
    model, io, _, *_ = load_golden(case)
    sig, chunk = io["input.sig"], model.chunk_size
    enc, comp, dec, voc = [], [], [], []
    toks, outs = [], []
    for i in range(0, sig.shape[1], chunk):
        t, enc, comp = model.sig_to_toks(sig[:, i : i + chunk], enc, comp, None, True)
        s, dec, voc = model.toks_to_sig(t, dec, voc, return_state=True)
        toks.append(t), outs.append(s)
    _close("stream_split.toks", torch.cat(toks, 1), io["output.stream_split.toks"])
    # The reference's split signal was bit-identical to its forward stream.
    _close("stream_split.sig", torch.cat(outs, 1), io["output.stream.sig"])


@pytest.mark.parametrize("case", CAUSAL)
@torch.no_grad()
def test_forward_loop_equals_streaming_session_chunk_by_chunk(golden_dir, case):
    model, io, _, *_ = load_golden(case)
    sig, chunk = io["input.sig"], model.chunk_size
    state: list = []
    with model.streaming(batch_size=2) as session:
        for i in range(0, sig.shape[1], chunk):
            piece = sig[:, i : i + chunk]
            toks, codes, out, *state = model(piece, *state, return_state=True)
            session_toks = session.encode(piece)
            assert torch.equal(toks, session_toks), f"chunk {i // chunk}"
            session_out = session.decode(session_toks)
            assert session_out.shape == out.shape
            assert float((session_out - out).abs().max()) <= TOL


@pytest.mark.parametrize("case", CAUSAL)
@torch.no_grad()
def test_states_can_be_given_without_asking_for_new_ones(golden_dir, case):
    model, io, _, *_ = load_golden(case)
    sig, chunk = io["input.sig"], model.chunk_size
    _, enc, comp = model.sig_to_toks(sig[:, :chunk], return_state=True)
    second = model.sig_to_toks(sig[:, chunk : 2 * chunk], enc, comp)
    assert torch.is_tensor(second)
    assert torch.equal(
        second, io["output.toks"][:, second.shape[1] : 2 * second.shape[1]]
    )


@pytest.mark.parametrize("case", NONCAUSAL)
@torch.no_grad()
def test_noncausal_models_return_offline_results_and_no_state(golden_dir, case):
    model, io, _, *_ = load_golden(case)
    sig, length = io["input.sig"], io["input.length"]
    toks, codes, out, *state = model(sig, length=length, return_state=True)
    assert state == [None] * 4
    plain = model(sig, length=length)
    assert torch.equal(toks, plain.toks) and torch.equal(codes, plain.codes)
    assert torch.equal(out, plain.sig)
    _close("forward.toks[0]", toks[0], io["output.forward.toks"][0])
    feats, enc = model.sig_to_feats(sig, (), length, True)
    assert enc is None
    _close("feats[0]", feats[0], io["output.feats"][0])


@torch.no_grad()
def test_earlier_positional_forms_still_work(golden_dir: Path) -> None:
    model, io, _, *_ = load_golden("noncausal_vocos_50hz")
    sig, length, bank = io["input.sig"], io["input.length"], io["output.matching_set"]
    assert torch.equal(
        model.sig_to_toks(sig, length), model.sig_to_toks(sig, (), (), length)
    )
    toks = io["output.toks"]
    keyword = model.toks_to_sig(toks, matching_set=bank, topk=2)
    assert torch.equal(model.toks_to_sig(toks, bank, 2), keyword)
    assert torch.equal(model.toks_to_sig(toks, None, 4), model.toks_to_sig(toks))
    feats = io["output.feats"][:1]
    assert torch.equal(
        model.feats_to_sig(feats, bank), model.feats_to_sig(feats, (), bank)
    )
    codes = io["output.codes"]
    qfeats = model.codes_to_qfeats(codes, torch.tensor([1.0, 0.5]))
    assert torch.equal(
        qfeats, model.codes_to_qfeats(codes, length=torch.tensor([1.0, 0.5]))
    )


def test_a_foreign_state_is_refused_in_one_line(golden_dir: Path) -> None:
    model, io, _, *_ = load_golden("causal_wavenext_50hz")
    chunk = io["input.sig"][:, : model.chunk_size]
    with pytest.raises(StreamingError, match="encoder_state must be") as info:
        model.sig_to_toks(chunk, [torch.zeros(1)], (), return_state=True)
    assert isinstance(info.value, RuntimeError)
