"""The token LM: cache, window, exact engine, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from focalcodec.errors import CheckpointError, ConfigError
from focalcodec.lm import (
    ExactLM,
    LMConfig,
    TokenLM,
    lm_hash,
    load_lm,
    read_lm_folder,
    save_lm,
)
from focalcodec.lm.exact import exp2_poly
from focalcodec.lm.sampling import SamplingConfig, filter_logits


def tiny(context: int = 16, scale: float = 5.0, seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    cfg = LMConfig(codebook_size=64, dim=32, num_layers=2, num_heads=4, context=context)
    model = TokenLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def weights(model: TokenLM) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_cache_gives_the_same_logits_as_one_pass():
    model = tiny()
    toks = torch.randint(0, 65, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(toks)
        cache, parts = None, []
        for chunk in toks.split([1, 7, 16, 16], dim=1):
            out, cache = model(chunk, cache)
            parts.append(out)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-4)
    assert cache.keys[0].shape[2] == model.cfg.context - 1


def test_positions_see_exactly_their_window():
    model = tiny(context=8)
    toks = torch.randint(0, 64, (1, 40), generator=torch.Generator().manual_seed(2))
    changed = toks.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 64
    with torch.no_grad():
        a, _ = model(toks)
        b, _ = model(changed)
    diff = (a - b).abs().amax(-1)[0]
    # Each layer looks 7 tokens back, two layers 14: positions 10..24 may change.
    assert torch.all(diff[:10] == 0) and torch.all(diff[25:] == 0)
    assert diff[10] > 0 and diff[24] > 0


def test_exact_engine_chunked_equals_incremental_bitwise():
    model = tiny(context=12)
    engine = ExactLM(model.cfg, weights(model))
    toks = np.random.default_rng(3).integers(0, 65, 50)
    whole = engine.feed(toks)
    engine.reset()
    steps = np.concatenate([engine.feed(toks[i : i + 1]) for i in range(len(toks))])
    engine.reset()
    mixed = np.concatenate(
        [engine.feed(toks[:5]), engine.feed(toks[5:31]), engine.feed(toks[31:])]
    )
    assert np.array_equal(whole, steps) and np.array_equal(whole, mixed)
    twin = engine.clone()
    assert np.array_equal(twin.feed(toks), whole)  # shares weights, not the context


def test_exact_engine_matches_the_float_model():
    model = tiny(context=12)
    engine = ExactLM(model.cfg, weights(model))
    toks = np.random.default_rng(4).integers(0, 64, 40)
    probs = engine.feed(toks)
    probs /= probs.sum(1, keepdims=True)
    with torch.no_grad():
        logits, _ = model.double()(torch.from_numpy(toks)[None])
    ref = torch.softmax(logits[0, :, :64], -1).numpy()
    kl = np.sum(ref * np.log(ref / probs), axis=1)
    assert kl.max() < 1e-4, kl.max()


def test_exp2_poly():
    y = -np.linspace(0, 59, 100_001)
    assert np.abs(exp2_poly(y) / np.exp2(y) - 1).max() < 1e-7
    assert exp2_poly(np.array([-1e9]))[0] == 2.0**-60  # clamped: never subnormal


def test_files_roundtrip_and_hash(tmp_path):
    model = tiny()
    digest = save_lm(tmp_path / "a", model.cfg, model.state_dict())
    loaded = load_lm(tmp_path / "a")
    assert loaded.lm_hash == digest
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    cfg, w = read_lm_folder(tmp_path / "a")
    assert cfg == model.cfg and lm_hash(cfg, w) == digest
    w["head.weight"][0, 0] += 1e-3
    assert lm_hash(cfg, w) != digest
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["format"] == "focalcodec-lm" and meta["config"]["context"] == 16


def test_bad_folders_and_configs(tmp_path):
    with pytest.raises(CheckpointError, match="not a token-LM folder"):
        read_lm_folder(tmp_path)
    model = tiny()
    save_lm(tmp_path / "a", model.cfg, model.state_dict())
    (tmp_path / "a" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="not a focalcodec-lm config"):
        read_lm_folder(tmp_path / "a")
    with pytest.raises(ConfigError, match="num_heads"):
        LMConfig(codebook_size=64, dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="unknown LM config keys: width"):
        LMConfig.from_dict({"codebook_size": 8, "width": 3})


def test_sampling_filters():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0])
    top2 = filter_logits(logits, SamplingConfig(top_k=2))
    assert torch.isinf(top2[:2]).all() and torch.isfinite(top2[2:]).all()
    # p = softmax -> [0.03, 0.09, 0.24, 0.64]: top_p 0.7 keeps the last two.
    nucleus = filter_logits(logits, SamplingConfig(top_p=0.7))
    assert torch.isinf(nucleus[:2]).all() and torch.isfinite(nucleus[2:]).all()
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, SamplingConfig(top_p=0.0))


def test_exports_to_onnx_with_a_dynamic_length(tmp_path):
    onnx = pytest.importorskip("onnxruntime")
    model = tiny()

    class Logits(torch.nn.Module):
        def __init__(self, lm: TokenLM) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, toks: torch.Tensor) -> torch.Tensor:
            return self.lm(toks)[0]

    path = tmp_path / "lm.onnx"
    toks = torch.randint(0, 64, (1, 12))
    torch.onnx.export(
        Logits(model),
        (toks,),
        str(path),
        input_names=["toks"],
        output_names=["logits"],
        dynamic_axes={"toks": {1: "time"}},
        dynamo=False,
    )
    session = onnx.InferenceSession(str(path))
    for length in (12, 20):
        toks = torch.randint(0, 64, (1, length))
        got = session.run(None, {"toks": toks.numpy()})[0]
        with torch.no_grad():
            want = model(toks)[0].numpy()
        assert np.abs(got - want).max() < 1e-4
