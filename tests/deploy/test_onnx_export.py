"""ONNX export of every golden model, run in ONNX Runtime against eager PyTorch.

References: our eager model (tests/test_golden.py ties it to the original package) and
the golden outputs of the original package itself (``output.solo0.toks``,
``output.sig_from_toks``, ``output.stream.*``). Tokens must be identical; audio within
AUDIO_TOL, the tolerance documented in docs/deployment.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.deploy import onnx_graphs
from focalcodec.deploy.onnx_export import export_onnx, min_samples
from focalcodec.deploy.onnx_graphs import (
    DFTISTFTHead,
    inverse_rdft_basis,
    stream_template,
)
from focalcodec.errors import InputError
from focalcodec.files.atomic import OutputExistsError
from focalcodec.modules.attention import GatedRelativeAttention
from focalcodec.streaming.steps import decode_step, encode_step
from support import AUDIO_TOL, CAUSAL, GOLDEN_CASES, exported, load_golden, max_abs

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _session(out: Path, manifest: dict, graph: str):
    path = out / manifest["graphs"][graph]["file"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- the inverse DFT that replaces irfft ----------------------------------------------


@pytest.mark.parametrize("n", [16, 15, 640, 1024])
def test_inverse_rdft_basis_matches_torch_irfft(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    spec = torch.randn(3, n // 2 + 1, dtype=torch.complex128, generator=gen)
    ours = torch.cat([spec.real, spec.imag], -1) @ inverse_rdft_basis(n)
    ref = torch.fft.irfft(spec, n=n, dim=-1)
    assert torch.allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("case", ["noncausal_vocos_50hz", "causal_vocos_25hz_postnorm"])
def test_dft_head_matches_vocos_head(golden_dir: Path, case: str) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / case).eval()
    head = codec.decoder.head
    x = torch.randn(
        2, 37, head.proj.in_features, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ref, ours = head(x), DFTISTFTHead(head)(x)
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) <= AUDIO_TOL * max(
        1.0, float(ref.abs().max())
    )


# -- offline graphs ------------------------------------------------------------------


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_offline_graphs_match_eager_at_several_lengths(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    codec, out, manifest = exported(tmp_path_factory, golden_dir, case)
    encoder = _session(out, manifest, "encoder")
    decoder = _session(out, manifest, "decoder")
    gen = torch.Generator().manual_seed(1)
    # The traced length is about 2 s; these differ from it, odd ones included, down to
    # the shortest input the graph supports.
    for n in [manifest["min_samples"], 4321, 12345, 40000]:
        sig = 0.1 * torch.randn(3, n, generator=gen)
        with torch.no_grad():
            toks = codec.sig_to_toks(sig)
            audio = codec.toks_to_sig(toks)
        (onnx_toks,) = encoder.run(None, {"sig": sig.numpy()})
        assert np.array_equal(onnx_toks, toks.numpy()), f"{case}: tokens at N={n}"
        (onnx_audio,) = decoder.run(None, {"toks": toks.numpy()})
        assert max_abs(onnx_audio, audio) <= AUDIO_TOL, f"{case}: audio at N={n}"


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_offline_graphs_match_original_package(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    _, out, manifest = exported(tmp_path_factory, golden_dir, case)
    io = load_golden(case).io
    # Item 0 is the unpadded one: its batch tokens are the original's solo tokens.
    (toks,) = _session(out, manifest, "encoder").run(
        None, {"sig": io["input.sig"][:1].numpy()}
    )
    assert np.array_equal(toks[0], io["output.solo0.toks"].numpy())
    (audio,) = _session(out, manifest, "decoder").run(
        None, {"toks": io["output.toks"].numpy()}
    )
    assert max_abs(audio, io["output.sig_from_toks"]) <= 1e-4


def test_min_samples_is_where_the_core_stops_padding(golden_dir: Path) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz")
    # 400 samples = the WavLM receptive field; shorter inputs need the core's padding.
    assert min_samples(codec) == 400
    causal = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz")
    assert min_samples(causal) == causal.encoder.downsample_factor


# -- streaming graphs ----------------------------------------------------------------


def _stream_feed(spec: dict, state: dict, x: np.ndarray, first: bool, name: str):
    feed = {name: x, "first": np.array(first)}
    for entry in spec["state"]:
        if entry["input"] is not None:
            feed[entry["input"]] = state[entry["name"]]
    return feed


def _zero_state(spec: dict, batch: int) -> dict:
    return {
        e["name"]: np.zeros(
            [batch if d == "batch" else d for d in e["shape"]], dtype=e["dtype"]
        )
        for e in spec["state"]
    }


@pytest.mark.parametrize("case", CAUSAL)
def test_stream_graphs_match_eager_chunk_by_chunk(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    codec, out, manifest = exported(tmp_path_factory, golden_dir, case)
    specs = manifest["graphs"]
    enc, dec = (
        _session(out, manifest, g) for g in ("stream_encoder", "stream_decoder")
    )
    chunks = 12  # 48 encoder frames: the golden attention windows (16, 20) roll over
    sig = 0.1 * torch.randn(
        2, chunks * codec.chunk_size, generator=torch.Generator().manual_seed(2)
    )
    enc_state = _zero_state(specs["stream_encoder"], 2)
    dec_state = _zero_state(specs["stream_decoder"], 2)
    state = None
    for i, piece in enumerate(sig.split(codec.chunk_size, dim=1)):
        with torch.no_grad():
            toks, codes, state = encode_step(codec, piece, state)
            audio, state = decode_step(codec, codes, state)
        spec = specs["stream_encoder"]
        res = enc.run(None, _stream_feed(spec, enc_state, piece.numpy(), i == 0, "sig"))
        assert np.array_equal(res[0], toks.numpy()), f"tokens of chunk {i}"
        enc_state = {e["name"]: r for e, r in zip(spec["state"], res[1:])}
        spec = specs["stream_decoder"]
        res = dec.run(None, _stream_feed(spec, dec_state, res[0], i == 0, "toks"))
        assert max_abs(res[0], audio) <= AUDIO_TOL, f"audio of chunk {i}"
        dec_state = {e["name"]: r for e, r in zip(spec["state"], res[1:])}
        # The state tensors are the eager ones, name for name.
        flat = state.flatten()
        for name, value in {**enc_state, **dec_state}.items():
            assert max_abs(value, flat[name]) <= AUDIO_TOL, f"state {name}, chunk {i}"


@pytest.mark.parametrize("case", CAUSAL)
def test_stream_graphs_match_original_package(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    codec, out, manifest = exported(tmp_path_factory, golden_dir, case)
    io = load_golden(case).io
    specs = manifest["graphs"]
    enc, dec = (
        _session(out, manifest, g) for g in ("stream_encoder", "stream_decoder")
    )
    sig = io["input.sig"].numpy()
    enc_state = _zero_state(specs["stream_encoder"], 2)
    dec_state = _zero_state(specs["stream_decoder"], 2)
    toks, audio = [], []
    for i in range(sig.shape[1] // codec.chunk_size):
        piece = sig[:, i * codec.chunk_size : (i + 1) * codec.chunk_size]
        spec = specs["stream_encoder"]
        res = enc.run(None, _stream_feed(spec, enc_state, piece, i == 0, "sig"))
        enc_state = {e["name"]: r for e, r in zip(spec["state"], res[1:])}
        toks.append(res[0])
        spec = specs["stream_decoder"]
        res = dec.run(None, _stream_feed(spec, dec_state, toks[-1], i == 0, "toks"))
        dec_state = {e["name"]: r for e, r in zip(spec["state"], res[1:])}
        audio.append(res[0])
    assert np.array_equal(np.concatenate(toks, 1), io["output.stream.toks"].numpy())
    assert max_abs(np.concatenate(audio, 1), io["output.stream.sig"]) <= 1e-4
    for name, value in {**enc_state, **dec_state}.items():
        ref = io.get(f"output.stream.final_state.{name}")
        if ref is not None:
            assert max_abs(value, ref) <= 1e-4, name


@pytest.mark.parametrize("case", CAUSAL)
def test_first_flag_ignores_the_given_state(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    _, out, manifest = exported(tmp_path_factory, golden_dir, case)
    for graph, name, x in [
        (
            "stream_encoder",
            "sig",
            0.1 * np.random.default_rng(0).standard_normal((1, 1280)),
        ),
        (
            "stream_decoder",
            "toks",
            np.arange(manifest["graphs"]["stream_decoder"]["inputs"][0]["shape"][1])[
                None
            ],
        ),
    ]:
        spec = manifest["graphs"][graph]
        session = _session(out, manifest, graph)
        x = x.astype(spec["inputs"][0]["dtype"])
        zeros = _zero_state(spec, 1)
        noise = {k: np.asarray(v + 3, dtype=v.dtype) for k, v in zeros.items()}
        a = session.run(None, _stream_feed(spec, zeros, x, True, name))
        b = session.run(None, _stream_feed(spec, noise, x, True, name))
        c = session.run(None, _stream_feed(spec, noise, x, False, name))
        assert all(np.array_equal(p, q) for p, q in zip(a, b)), graph
        assert not np.array_equal(a[0], c[0]), (
            f"{graph}: first=False must use the state"
        )


@pytest.mark.parametrize("case", CAUSAL)
def test_manifest_describes_the_stream_graphs(
    tmp_path_factory, golden_dir: Path, case: str
) -> None:
    codec, out, manifest = exported(tmp_path_factory, golden_dir, case)
    assert manifest["sample_rate_input"] == codec.sample_rate_input
    assert manifest["sample_rate_output"] == codec.sample_rate_output
    assert manifest["chunk_size"] == codec.chunk_size
    assert manifest["config_hash"] == codec.config_hash()
    names = list(stream_template(codec).flatten())
    listed = []
    for graph in ("stream_encoder", "stream_decoder"):
        spec = manifest["graphs"][graph]
        session = _session(out, manifest, graph)
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        for entry in spec["state"]:
            listed.append(entry["name"])
            assert entry["output"] in outputs
            if entry["input"] is not None:
                shape = inputs[entry["input"]].shape
                assert [d if isinstance(d, int) else "batch" for d in shape] == entry[
                    "shape"
                ]
        assert set(inputs) == {
            "sig" if graph == "stream_encoder" else "toks",
            "first",
        } | {e["input"] for e in spec["state"] if e["input"] is not None}
    assert listed == names


# -- behaviour of the exporter -------------------------------------------------------


def test_export_refuses_to_overwrite_and_restores_the_core(
    tmp_path: Path, golden_dir: Path
) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        export_onnx(codec, tmp_path)
    assert (tmp_path / "manifest.json").read_text() == "{}"
    assert not (tmp_path / "encoder.onnx").exists()
    with pytest.raises(InputError, match="not causal"):
        export_onnx(codec, tmp_path / "other", streaming=True)


def test_export_leaves_the_model_untouched(tmp_path: Path, golden_dir: Path) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "causal_vocos_25hz_postnorm").eval()
    modules = [(name, type(m)) for name, m in codec.named_modules()]
    weights = {k: v.clone() for k, v in codec.state_dict().items()}
    export_onnx(codec, tmp_path)
    assert [(name, type(m)) for name, m in codec.named_modules()] == modules
    for name, value in codec.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_trace_view_swaps_modules_of_a_copy_that_shares_the_weights(
    golden_dir: Path,
) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz").eval()
    flag = onnx_graphs.StartFlag()
    view = onnx_graphs.trace_view(codec, flag)
    layer, original = (
        model.encoder.encoder.layers[0].attention for model in (view, codec)
    )
    # The trace runs the core attention code: a subclass with only ``heads`` replaced.
    assert type(layer) is onnx_graphs.GraphCacheAttention
    assert isinstance(layer, GatedRelativeAttention)
    assert type(original) is GatedRelativeAttention
    assert layer.qkv_proj.weight is original.qkv_proj.weight
    swapped = [m for m in view.modules() if isinstance(m, onnx_graphs.PlainConv)]
    weights = {id(p) for p in codec.parameters()}
    assert swapped and all(id(m.conv.weight) in weights for m in swapped)
    # Eagerly, the view's step gives the model's own step at the start of a stream.
    template = stream_template(codec)
    step = onnx_graphs.StreamEncoderStep(codec, template)
    sig = 0.1 * torch.randn(
        2, codec.chunk_size, generator=torch.Generator().manual_seed(4)
    )
    flat = template.flatten()
    inputs = [
        torch.zeros(
            (2, *flat[n].shape[1:]) if flat[n].dim() else (), dtype=flat[n].dtype
        )
        for n in step.names
    ]
    with torch.no_grad():
        toks, *_ = step(sig, torch.tensor(True), *inputs)
        ref, _, _ = encode_step(codec, sig)
    assert torch.equal(toks, ref)


@pytest.mark.slow
def test_full_size_model_exports_and_matches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = FocalCodec.from_config("focalcodec_50hz").eval()
    export_onnx(codec, tmp_path)
    from focalcodec.cli.export import verify

    report = verify(codec, tmp_path, seconds=2.0)
    assert report["tokens_equal"]
    assert report["audio_max_abs"] <= AUDIO_TOL


def test_cli_exports_verifies_and_refuses_to_overwrite(
    tmp_path: Path, golden_dir: Path, capsys
) -> None:
    from focalcodec.cli import main

    model = str(golden_dir / "noncausal_vocos_12_5hz_legacy")
    out = tmp_path / "exported"
    assert main(["export", "--model", model, "--format", "onnx", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tokens identical" in printed and "manifest.json" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["graphs"]) == ["decoder", "encoder"]
    assert main(["export", "--model", model, "-o", str(out), "--no-verify"]) == 1
    assert "--force" in capsys.readouterr().err
