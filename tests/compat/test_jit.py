"""``FocalCodec.jit()``: traced TorchScript networks with the eager model's outputs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec, InputError
from focalcodec.deploy.scripted import TracedNetwork
from focalcodec.modules.wavlm import WavLM
from support import load_golden

NETWORKS = ("encoder", "compressor", "decompressor", "decoder")
# The graphs run the eager model's ATen kernels in the same order; allow for rounding.
AUDIO_TOL = 1e-6


def _pair(case_dir: Path) -> tuple[FocalCodec, FocalCodec, dict]:
    model = FocalCodec.from_pretrained(case_dir).eval()
    return model, model.jit(), load_golden(case_dir.name).io


def _same_audio(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= AUDIO_TOL


# Every case's forward is compared in test_reference_selftests.py::test_model.
@pytest.mark.parametrize(
    "case", ["noncausal_vocos_12_5hz_legacy", "causal_wavenext_50hz"]
)
@torch.no_grad()
def test_jit_outputs_equal_eager_outputs(golden_dir: Path, case: str) -> None:
    model, jitted, data = _pair(golden_dir / case)
    assert all(isinstance(getattr(jitted, n), TracedNetwork) for n in NETWORKS)
    assert not any(isinstance(getattr(model, n), TracedNetwork) for n in NETWORKS)
    sig, length = data["input.sig"], data["input.length"]
    for args in [(sig,), (sig[:1, :7001],)]:
        ours, eager = jitted(*args), model(*args)
        assert torch.equal(ours.toks, eager.toks) and torch.equal(
            ours.codes, eager.codes
        )
        _same_audio(ours.sig, eager.sig)
    # Padded items take the per-item path, which traces each item's length.
    padded = jitted.sig_to_toks(sig, length=length)
    assert torch.equal(padded, model.sig_to_toks(sig, length=length))
    toks = data["output.toks"]
    _same_audio(jitted.toks_to_sig(toks), model.toks_to_sig(toks))
    bank = data["output.matching_set"]
    _same_audio(
        jitted.toks_to_sig(toks, matching_set=bank),
        model.toks_to_sig(toks, matching_set=bank),
    )
    assert set(jitted.state_dict()) == set(model.state_dict())
    assert jitted.info()["num_total_params"] == model.info()["num_total_params"]


@pytest.mark.parametrize("case", ["causal_wavenext_50hz", "causal_vocos_25hz_postnorm"])
@torch.no_grad()
def test_jit_streams_like_eager(golden_dir: Path, case: str) -> None:
    model, jitted, data = _pair(golden_dir / case)
    sig, chunk = data["input.sig"], model.chunk_size
    ours: list = []
    eager: list = []
    outs = []
    for i in range(0, sig.shape[1], chunk):
        piece = sig[:, i : i + chunk]
        toks, _, out, *ours = jitted(piece, *ours, return_state=True)
        toks_e, _, out_e, *eager = model(piece, *eager, return_state=True)
        assert torch.equal(toks, toks_e), f"chunk {i // chunk}"
        _same_audio(out, out_e)
        outs.append(toks)
    assert torch.equal(torch.cat(outs, 1), data["output.stream.toks"])
    # Continuing encoder steps run the position-as-tensor step graph.
    assert any(key[0] == "step" for key in jitted.encoder.graphs)


@torch.no_grad()
def test_graphs_are_torchscript_and_really_run(golden_dir: Path, monkeypatch) -> None:
    model, jitted, data = _pair(golden_dir / "noncausal_vocos_50hz")
    sig = data["input.sig"]
    first = jitted.sig_to_toks(sig)
    ((graph, _),) = jitted.encoder.graphs.values()
    assert isinstance(graph, torch.jit.ScriptModule)
    buffer = io.BytesIO()
    torch.jit.save(graph, buffer)
    buffer.seek(0)
    assert isinstance(torch.jit.load(buffer), torch.jit.ScriptModule)

    def eager_is_gone(*args, **kwargs):
        raise AssertionError("the eager encoder ran")

    monkeypatch.setattr(jitted.encoder.net, "forward", eager_is_gone)
    assert torch.equal(jitted.sig_to_toks(sig), first)  # same shape: the graph runs
    with pytest.raises(AssertionError, match="eager encoder ran"):
        jitted.sig_to_toks(sig[:, :9000])  # a new shape is traced from the eager code


def test_jit_classes_selects_networks(golden_dir: Path) -> None:
    model = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz").eval()
    plain = model.jit(classes=())
    assert plain is not model
    assert not any(isinstance(getattr(plain, n), TracedNetwork) for n in NETWORKS)
    only = model.jit(classes=[WavLM])
    assert isinstance(only.encoder, TracedNetwork)
    assert not isinstance(only.decoder, TracedNetwork)
    with pytest.raises(InputError, match="traces whole networks"):
        model.jit(classes=[torch.nn.Linear])
    again = model.jit().jit()
    assert isinstance(again.encoder, TracedNetwork)
    assert not isinstance(again.encoder.net, TracedNetwork)


def test_jit_runs_under_inference_mode(golden_dir: Path) -> None:
    model, jitted, data = _pair(golden_dir / "causal_vocos_25hz_postnorm")
    with torch.inference_mode():
        sig = data["input.sig"][:, :5120].clone()
        assert torch.equal(jitted.sig_to_toks(sig), model.sig_to_toks(sig))


@pytest.mark.gpu
@torch.no_grad()
def test_jit_on_cuda_matches_eager(golden_dir: Path) -> None:
    model, _, data = _pair(golden_dir / "causal_wavenext_50hz")
    model = model.cuda()
    jitted = model.jit()
    sig = data["input.sig"].cuda()
    assert torch.equal(jitted(sig).toks, model(sig).toks)
    ours: list = []
    eager: list = []
    for i in range(0, sig.shape[1], model.chunk_size):
        piece = sig[:, i : i + model.chunk_size]
        toks, _, out, *ours = jitted(piece, *ours, return_state=True)
        toks_e, _, out_e, *eager = model(piece, *eager, return_state=True)
        assert torch.equal(toks, toks_e)
        assert float((out - out_e).abs().max()) <= 1e-4
