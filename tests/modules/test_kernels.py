"""Kernel backends: the private oneDNN operators, results of every backend, when the
plain path must run, packed weights, and how the backend is chosen."""

from __future__ import annotations

import copy
import gc
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from focalcodec import InputError
from focalcodec.modules import calibration, kernels
from focalcodec.modules.layers import Linear

# Relative error allowed against F.linear: float32 products of K <= 8192 terms differ
# by a few 1e-7 between kernels (summation order); 1e-5 is the bound the docs state.
REL = 1e-5
SHAPES = [(1, 96, 80), (4, 1024, 512), (7, 4096, 256), (300, 512, 768)]


@pytest.fixture(autouse=True)
def _fresh_choice(monkeypatch, tmp_path):
    """Each test starts from ``auto`` with an empty calibration cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(kernels.ENV, raising=False)
    kernels.set_backend(None)
    yield
    kernels.set_backend(None)
    kernels.release()


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _operands(rows: int, k: int, n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen) / k**0.5
    return x, w, torch.randn(n, generator=gen)


@pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN"
)
def test_private_onednn_operators_still_exist_and_agree() -> None:
    """Fails when a torch release renames, removes or changes the operators that
    modules/kernels.py calls: the package would then fall back to the plain path."""
    ops = kernels.onednn_ops()
    assert ops is not None, (
        f"torch {torch.__version__} lacks torch.ops.mkldnn._linear_pointwise, "
        "_reorder_linear_weight, _convolution_pointwise or _reorder_convolution_"
        "weight: update focalcodec/modules/kernels.py"
    )
    for rows, k, n in SHAPES:
        x, w, b = _operands(rows, k, n)
        want = F.linear(x, w, b)
        for weight in (w, ops.pack_linear(w, rows)):
            got = ops.linear(x, weight, b, "none", [], "")
            assert got.shape == want.shape and got.dtype == torch.float32
            assert _rel(got, want) < REL, (rows, k, n)
        three_d = ops.linear(x.view(1, rows, k), w, None, "none", [], "")
        assert _rel(three_d[0], F.linear(x, w)) < REL
    assert "onednn" in kernels.available(), kernels.unavailable()


@pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN"
)
@pytest.mark.parametrize(
    "channels, out, kernel, stride, groups, frames",
    [
        (64, 64, 512, 1, 64, 515),
        (64, 64, 7, 1, 64, 10),
        (128, 128, 16, 1, 16, 40),
        (32, 48, 3, 2, 1, 101),
    ],
)
def test_private_onednn_convolution_agrees(
    channels, out, kernel, stride, groups, frames
) -> None:
    ops = kernels.onednn_ops()
    gen = torch.Generator().manual_seed(frames)
    x = torch.randn(2, frames, channels, generator=gen)
    w = torch.randn(out, channels // groups, kernel, generator=gen)
    b = torch.randn(out, generator=gen)
    want = F.conv1d(x.transpose(1, 2), w, b, stride=stride, groups=groups)
    image = x.transpose(1, 2).unsqueeze(2)  # channels-last (B, C, 1, T)
    geometry = ([0, 0], [1, stride], [1, 1], groups)
    packed = ops.pack_conv(w.unsqueeze(2), *geometry, list(image.shape))
    for weight in (w.unsqueeze(2), packed):
        got = ops.conv(image, weight, b, *geometry, "none", [], "")
        assert got.shape == (2, out, 1, want.shape[-1])
        assert _rel(got[:, :, 0], want) < REL
        # The output keeps the channels-last layout: (B, T', C_out) in memory.
        assert got[:, :, 0].transpose(1, 2).is_contiguous()


@pytest.mark.parametrize("name", kernels.available())
@pytest.mark.parametrize("rows,k,n", SHAPES)
def test_every_backend_agrees_with_f_linear(name, rows, k, n, monkeypatch) -> None:
    monkeypatch.setattr(kernels, "SMALL_WEIGHT", 0)
    x, w, b = _operands(rows, k, n)
    want = F.linear(x.double(), w.double(), b.double()).float()
    with torch.inference_mode(), kernels.use(name):
        got = kernels.linear(x, w, b)
        no_bias = kernels.linear(x[None], w)
        strided = kernels.linear(x.T.contiguous().T, w.T.contiguous().T, b)
    assert got.shape == (rows, n) and no_bias.shape == (1, rows, n)
    assert _rel(got, want) < REL
    assert _rel(no_bias[0], want - b) < REL
    assert _rel(strided, want) < REL


def test_empty_inputs() -> None:
    layer = Linear(256, 512).eval()
    with torch.inference_mode(), kernels.use(kernels.available()[0]):
        assert layer(torch.randn(0, 256)).shape == (0, 512)
        assert layer(torch.randn(2, 0, 256)).shape == (2, 0, 512)


def test_training_takes_the_plain_path(monkeypatch) -> None:
    def refuse(*args):
        raise AssertionError("a backend ran under autograd")

    kernels.set_backend(kernels.available()[0])
    monkeypatch.setattr(kernels, "linear_on", refuse)
    layer = Linear(256, 512)
    x = torch.randn(3, 256)
    y = layer(x)
    y.sum().backward()
    assert torch.equal(y, F.linear(x, layer.weight, layer.bias))
    assert layer.weight.grad is not None
    # An input that needs gradients (e.g. a loss through a frozen network) as well.
    frozen = Linear(256, 512).requires_grad_(False)
    z = frozen(x.clone().requires_grad_())
    assert z.requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert frozen(x).dtype == torch.bfloat16
    assert frozen.double()(x.double()).dtype == torch.float64
    frozen.float()
    with pytest.raises(AssertionError, match="autograd"):
        with torch.no_grad():
            frozen(x)  # ... while inference does use the backend


def test_linear_keeps_nn_linear_keys_and_values() -> None:
    torch.manual_seed(0)
    ours = Linear(8, 4)
    torch.manual_seed(0)
    theirs = nn.Linear(8, 4)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)


@pytest.mark.skipif("onednn" not in kernels.available(), reason="no oneDNN here")
def test_packed_weights_follow_the_weight(monkeypatch) -> None:
    layer = Linear(1024, 512).eval()
    x = torch.randn(4, 1024)
    with torch.inference_mode(), kernels.use("onednn"):
        first = layer(x)
        assert kernels.release(layer) == 1  # a few-row product packed the weight
        layer(x)
        with torch.no_grad():
            layer.weight.mul_(2)  # in place: the packed copy is stale
        assert _rel(layer(x), F.linear(x, layer.weight, layer.bias)) < REL
        assert not torch.allclose(layer(x), first)
        layer.weight = nn.Parameter(torch.randn(512, 1024))  # new storage
        assert _rel(layer(x), F.linear(x, layer.weight, layer.bias)) < REL
        # A deep copy (as fast modes make) does not carry packed copies along.
        twin = copy.deepcopy(layer)
        assert _rel(twin(x), F.linear(x, layer.weight, layer.bias)) < REL
        # Many rows read the weight as it is: no packed copy.
        kernels.release()
        layer(torch.randn(64, 1024))
        assert kernels.release() == 0
    # Packed copies go with their weight.
    with torch.inference_mode(), kernels.use("onednn"):
        assert kernels.prepare(layer) == 1
    del layer, twin
    gc.collect()
    assert kernels.release() == 0


@pytest.mark.skipif("onednn" not in kernels.available(), reason="no oneDNN here")
def test_packed_up_to_widens_packing_in_this_thread_only() -> None:
    import threading

    layer = Linear(1024, 512).eval()
    x = torch.randn(48, 1024, generator=torch.Generator().manual_seed(3))
    want = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode(), kernels.use("onednn"):
        layer(x)
        assert kernels.release() == 0  # 48 rows: above FEW_ROWS, no packed copy
        with kernels.packed_up_to(kernels.MAX_PACKED_ROWS):
            seen = []
            other = threading.Thread(target=lambda: seen.append(layer(x)))
            other.start()
            other.join()
            assert kernels.release() == 0  # the other thread kept FEW_ROWS
            got = layer(x)
            assert kernels.release(layer) == 1  # this thread packed the weight
            # A stream's 4 rows get the numbers they get alone (batched streams rely
            # on it; measured bit for bit on oneDNN 3.x, AVX2 and AVX-512).
            blocks = torch.cat([layer(x[i : i + 4]) for i in range(0, 48, 4)])
            assert torch.equal(blocks, got)
            kernels.release()
        layer(x)
        assert kernels.release() == 0  # the limit is back after the block
    assert _rel(got, want) < REL and _rel(seen[0], want) < REL
    for rows in (0, kernels.MAX_PACKED_ROWS + 1):
        with pytest.raises(InputError, match="rows must be"):
            with kernels.packed_up_to(rows):
                pass


def test_prepare_packs_only_for_onednn() -> None:
    model = nn.Sequential(Linear(512, 512), nn.GELU(), Linear(512, 64))
    with kernels.use("plain"):
        assert kernels.prepare(model) == 0
    if "onednn" in kernels.available():
        with kernels.use("onednn"):
            assert kernels.prepare(model) == 2  # (64 x 512 = 2 ** 15 is not small)
        assert kernels.release(model) == 2


def test_environment_variable_chooses(monkeypatch) -> None:
    monkeypatch.setenv(kernels.ENV, "plain")
    kernels.set_backend(None)
    assert kernels.backend() == "plain"
    assert kernels.describe()["reason"] == f"{kernels.ENV}=plain"
    monkeypatch.setenv(kernels.ENV, "MKL")
    kernels.set_backend(None)
    assert kernels.backend() == "blas"
    # Python wins over the environment, and use() restores what was there.
    with kernels.use("plain"):
        assert kernels.backend() == "plain"
    assert kernels.backend() == "blas"
    monkeypatch.setenv(kernels.ENV, "fastest")
    kernels.set_backend(None)
    with pytest.raises(InputError, match="FOCALCODEC_KERNELS: 'fastest' is not"):
        kernels.backend()


def test_unknown_or_missing_backend_is_refused(monkeypatch) -> None:
    with pytest.raises(InputError, match="not a kernel backend"):
        kernels.set_backend("cudnn")
    monkeypatch.setattr(kernels, "_self_check", lambda: "no oneDNN (test)")
    kernels.set_backend(None)
    assert kernels.available() == ["blas", "plain"]
    with pytest.raises(InputError, match=r"not available here: no oneDNN \(test\)"):
        kernels.set_backend("onednn")
    monkeypatch.setenv(kernels.ENV, "onednn")
    kernels.set_backend(None)
    with pytest.raises(InputError, match="FOCALCODEC_KERNELS=onednn"):
        kernels.backend()


def _record(scores: dict[str, float]) -> dict:
    rates = {
        name: {"many_rows_gflops": 1.0, "few_rows_gflops": 1.0, "score": s}
        for name, s in scores.items()
    }
    return {"date": "2026-12-07T00:00:00+00:00", "machine": "test", "rates": rates}


def test_auto_calibrates_once_and_keeps_the_result(monkeypatch) -> None:
    names = kernels.available()
    scores = {name: 1.0 for name in names} | {"blas": 1.5}
    calls = []

    def measure(asked, product):
        calls.append(list(asked))
        record = _record(scores)
        return record | {"backend": calibration.fastest(record, asked)}

    monkeypatch.setattr(calibration, "measure", measure)
    assert kernels.backend() == "blas"
    assert calls == [names]
    stored = json.loads(calibration.cache_path().read_text())
    assert (
        stored["machines"][calibration.machine_key()]["rates"]["blas"]["score"] == 1.5
    )
    kernels.set_backend(None)
    assert kernels.backend() == "blas"  # from the file: no second calibration
    assert len(calls) == 1
    assert kernels.describe()["calibration"]["rates"]["blas"]["score"] == 1.5


def test_calibration_is_kept_per_machine(monkeypatch) -> None:
    assert calibration.save(_record({"plain": 1.0, "blas": 9.0}))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)  # another machine key
    assert calibration.load() is None


def test_auto_prefers_plain_unless_clearly_faster() -> None:
    assert (
        calibration.fastest(_record({"plain": 1.0, "blas": 1.02}), ["blas", "plain"])
        == "plain"
    )
    assert (
        calibration.fastest(_record({"plain": 1.0, "onednn": 2.0}), ["onednn", "plain"])
        == "onednn"
    )


def test_real_calibration_measures_every_backend() -> None:
    record = kernels.calibrate()
    assert set(record["rates"]) == set(kernels.available())
    for rates in record["rates"].values():
        assert rates["many_rows_gflops"] > 0 and rates["few_rows_gbps"] > 0
    assert record["backend"] in kernels.available()
    # Kept unless the machine was too busy (then used, not kept).
    assert (calibration.load() == record) == calibration.trustworthy(record)


def test_calibration_on_a_busy_machine_is_not_kept(monkeypatch) -> None:
    monkeypatch.setattr(calibration.os, "getloadavg", lambda: (1e3, 1e3, 1e3))
    monkeypatch.setattr(calibration, "MANY_ROWS", ((16, 256, 256),))
    monkeypatch.setattr(calibration, "FEW_ROWS_SHAPES", ((4, 256, 256),))
    record = kernels.calibrate()
    assert record["load_average"] == 1e3 and not calibration.trustworthy(record)
    assert calibration.load() is None
    assert kernels.describe()["calibration"] == record


def test_describe_names_the_machine() -> None:
    with kernels.use("plain"):
        info = kernels.describe()
    assert info["backend"] == "plain" and info["reason"] == "set from Python"
    for flag in ("avx2", "avx512", "avx512_vnni", "amx"):
        assert isinstance(info["cpu"][flag], bool)
    assert info["cpu"]["model"] and info["torch"] == torch.__version__
    json.dumps(info)


def test_tracing_records_the_plain_operator() -> None:
    layer = Linear(256, 512).eval()
    with kernels.use(kernels.available()[0]), torch.no_grad():
        graph = torch.jit.trace(layer, torch.randn(4, 256)).graph
    kinds = {node.kind() for node in graph.nodes()}
    assert "aten::linear" in kinds and not any("mkldnn" in k for k in kinds)
