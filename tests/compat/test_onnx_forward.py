"""``FocalCodec.onnx()``: the original single-graph export, run with ONNX Runtime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec, InputError
from support import load_golden

ort = pytest.importorskip("onnxruntime")

# ONNX Runtime's kernels (and the DFT form of the Vocos head) round differently.
AUDIO_TOL = 1e-5


def _session(model: FocalCodec, **kwargs) -> ort.InferenceSession:
    buffer = io.BytesIO()
    model.onnx(buffer, **kwargs)
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    "case", ["noncausal_vocos_12_5hz_legacy", "causal_wavenext_50hz"]
)
@torch.no_grad()
def test_offline_graph_gives_forward(golden_dir: Path, case: str) -> None:
    model = FocalCodec.from_pretrained(golden_dir / case).eval()
    session = _session(model)
    assert [i.name for i in session.get_inputs()] == ["sig"]
    assert [o.name for o in session.get_outputs()] == ["toks", "codes", "rec_sig"]
    data = load_golden(case).io
    noise = torch.randn(3, 7777, generator=torch.Generator().manual_seed(0)) * 0.1
    # Dynamic batch and length: the golden batch, then 3 items of another length.
    for sig in (data["input.sig"], noise):
        toks, codes, rec = session.run(None, {"sig": sig.numpy()})
        eager = model(sig)
        assert np.array_equal(toks, eager.toks.numpy())
        assert np.array_equal(codes, eager.codes.numpy())
        assert rec.shape == tuple(eager.sig.shape)
        assert np.abs(rec - eager.sig.numpy()).max() <= AUDIO_TOL


def test_fixed_sizes_and_file_output(golden_dir: Path, tmp_path: Path) -> None:
    model = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz").eval()
    path = tmp_path / "model.onnx"
    assert model.onnx(str(path), batch_size=1, chunk_size=8000) is None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 8000]
    sig = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    toks, _, rec = session.run(None, {"sig": sig.numpy()})
    with torch.no_grad():
        assert np.array_equal(toks, model.sig_to_toks(sig).numpy())
    assert rec.shape == (1, 8000)
    assert model.training is False and not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize("case", ["causal_wavenext_50hz", "causal_vocos_25hz_postnorm"])
def test_streaming_graph_from_zero_states_reproduces_reference(golden_dir, case):
    model = FocalCodec.from_pretrained(golden_dir / case).eval()
    session = _session(model, return_state=True)
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    assert outputs[:3] == ["toks", "codes", "rec_sig"]
    data = load_golden(case).io
    sig, chunk = data["input.sig"], model.chunk_size
    # All-zero states start the stream, as when the state inputs are fresh buffers.
    feed = {
        name: np.zeros(
            [2 if d == "batch" else d for d in spec.shape],
            dtype=np.int64 if spec.type == "tensor(int64)" else np.float32,
        )
        for name, spec in inputs.items()
        if name != "sig"
    }
    toks, rec = [], []
    for i in range(0, sig.shape[1], chunk):
        feed["sig"] = sig[:, i : i + chunk].numpy()
        result = dict(zip(outputs, session.run(None, feed)))
        toks.append(result["toks"]), rec.append(result["rec_sig"])
        for name in feed:
            if name.startswith("input_state."):
                feed[name] = result["output_state." + name.split(".", 1)[1]]
    assert np.array_equal(np.concatenate(toks, 1), data["output.stream.toks"].numpy())
    err = np.abs(np.concatenate(rec, 1) - data["output.stream.sig"].numpy()).max()
    assert err <= 1e-4


def test_streaming_export_needs_a_causal_model_and_its_chunk(golden_dir: Path) -> None:
    offline = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz")
    with pytest.raises(InputError, match="needs a causal model") as info:
        offline.onnx(io.BytesIO(), return_state=True)
    assert isinstance(info.value, ValueError)  # what the original raised
    causal = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz")
    with pytest.raises(InputError, match="chunk_size"):
        causal.onnx(io.BytesIO(), chunk_size=640, return_state=True)
