"""The original package's own self-checks, restated for this package's FocalCodec.

The original ``codec.py`` ends with ``test_model`` (the compiled model gives the eager
model's outputs), ``test_batch_invariance`` (a batch gives what its items give alone) and
``test_causality`` (a chunk-by-chunk run of the compiled model with threaded states gives
the offline run). Here they run on the golden models instead of a downloaded checkpoint,
with this package's tolerances, which are tighter than the original ones (it allowed two
differing tokens per batch, audio within 1, and streamed audio within 1e-2).
"""

from __future__ import annotations

from pathlib import Path

import torch

from focalcodec import FocalCodec

TOL = 1e-4


def _model(case_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(case_dir).eval()


@torch.no_grad()
def test_model(golden_case: Path) -> None:
    model = _model(golden_case)
    sig = torch.randn(
        3, model.sample_rate_input, generator=torch.Generator().manual_seed(0)
    )
    toks, codes, rec = model(sig)
    toks_jit, codes_jit, rec_jit = model.jit()(sig)
    assert torch.equal(toks, toks_jit)
    assert torch.equal(codes, codes_jit)
    assert torch.allclose(rec, rec_jit, atol=1e-6)


@torch.no_grad()
def test_batch_invariance(golden_case: Path) -> None:
    model = _model(golden_case)
    sig = torch.randn(
        3, model.sample_rate_input, generator=torch.Generator().manual_seed(1)
    )
    batch = model(sig)
    alone = [model(sig[i][None]) for i in range(3)]
    assert torch.equal(batch.toks, torch.cat([a.toks for a in alone]))
    assert torch.equal(batch.codes, torch.cat([a.codes for a in alone]))
    rec = torch.cat([a.sig for a in alone])
    assert float((batch.sig - rec).abs().max()) <= TOL


@torch.no_grad()
def test_causality(golden_case: Path) -> None:
    model = _model(golden_case)
    if not model.causal:
        # The original skips non-causal models too; they have no streaming state.
        assert model.forward(torch.ones(1, 4000), return_state=True)[3:] == (None,) * 4
        return
    chunk = model.chunk_size
    # 20 chunks: longer than every attention and focal window of the golden models, so
    # the caches roll (the original used 512 chunks of the 50 Hz release models).
    sig = torch.ones(3, 20 * chunk)
    model = model.jit()
    toks, codes, rec = model(sig)
    state: list = []
    parts: list[tuple] = []
    for i in range(0, sig.shape[1], chunk):
        toks_i, codes_i, rec_i, *state = model(
            sig[:, i : i + chunk], *state, return_state=True
        )
        parts.append((toks_i, codes_i, rec_i))
    assert torch.equal(toks, torch.cat([p[0] for p in parts], dim=1))
    assert torch.equal(codes, torch.cat([p[1] for p in parts], dim=1))
    streamed = torch.cat([p[2] for p in parts], dim=1)
    assert float((rec - streamed).abs().max()) <= TOL
