"""The golden cases on every kernel backend this machine has.

Each backend runs every product of the tiny golden models (the small-weight shortcut to
``F.linear`` is turned off), once with products over many rows (weights read as they
are) and once as if every product had few rows (packed oneDNN weights, the weight on the
left for BLAS). Tokens must equal the reference's, floats stay within ``TOL`` as in
``tests/test_golden.py``, padded batch items equal solo items, and streaming equals
offline processing.
"""

from __future__ import annotations

import pytest
import torch

from focalcodec.modules import kernels
from focalcodec.streaming.steps import decode_step, encode_step
from support import CAUSAL, GOLDEN_CASES, PARITY_REPORT, load_golden

TOL = 2e-5  # as tests/test_golden.py
REGIMES = {"many-rows": 0, "few-rows": 10**9}


@pytest.fixture(params=list(REGIMES))
def backend(request, monkeypatch):
    """Every product through the backend, in the regime named by the parameter."""
    monkeypatch.setattr(kernels, "SMALL_WEIGHT", 0)
    monkeypatch.setattr(kernels, "FEW_ROWS", REGIMES[request.param])
    monkeypatch.setattr(kernels, "BLAS_FEW_ROWS", REGIMES[request.param])
    yield request.param
    kernels.release()


def _close(name: str, key: tuple, ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape, f"{name}: {ours.shape} vs {ref.shape}"
    if not ref.is_floating_point():
        assert torch.equal(ours, ref), f"{name}: {int((ours != ref).sum())} differ"
        return
    err = float((ours.float() - ref).abs().max()) if ref.numel() else 0.0
    # Printed with the golden cases' errors at the end of the run (conftest.py).
    PARITY_REPORT.setdefault(f"kernels {key[0]} {key[1]}", {})[name] = err
    assert err <= TOL, f"{name}: max abs error {err:.2e} > {TOL}"


@pytest.mark.parametrize("name", kernels.available())
@pytest.mark.parametrize("case", GOLDEN_CASES)
@torch.inference_mode()
def test_golden_offline_on_every_backend(name, case, backend) -> None:
    model, io, *_ = load_golden(case)
    key = (name, backend)
    sig, length = io["input.sig"], io["input.length"]
    with kernels.use(name):
        for what in ("feats", "lats", "toks", "codes", "qfeats"):
            ours = getattr(model, f"sig_to_{what}")(sig, length=length)
            _close(what, key, ours[0], io[f"output.{what}"][0])
            for i in range(sig.shape[0] if what != "lats" else 0):
                solo = io[f"output.solo{i}.{what}"]  # padded item == item alone
                _close(f"solo{i}.{what}", key, ours[i, : solo.shape[0]], solo)
        sig_out = model.toks_to_sig(io["output.toks"])
    _close("sig_from_toks", key, sig_out, io["output.sig_from_toks"])


@pytest.mark.parametrize("name", kernels.available())
@pytest.mark.parametrize("case", CAUSAL)
@torch.inference_mode()
def test_golden_streaming_on_every_backend(name, case, backend) -> None:
    model, io, meta, *_ = load_golden(case)
    key = (name, backend)
    sig, chunk = io["input.sig"], int(meta["chunk_size"])
    state, toks, rec = None, [], []
    with kernels.use(name):
        for start in range(0, sig.shape[1], chunk):
            t, c, state = encode_step(model, sig[:, start : start + chunk], state)
            s, state = decode_step(model, c, state)
            toks.append(t)
            rec.append(s)
        offline = model.sig_to_toks(sig)
    _close("stream.toks", key, torch.cat(toks, 1), io["output.stream.toks"])
    _close("stream.sig", key, torch.cat(rec, 1), io["output.stream.sig"])
    _close("stream.toks=offline", key, torch.cat(toks, 1), offline)
