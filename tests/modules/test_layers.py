"""conv_time on every kernel backend, in-place GELU, and the blocked WavLM front-end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.modules import kernels, wavlm
from focalcodec.modules.layers import conv_time, gelu_temp
from focalcodec.modules.wavlm import FeatureExtractor

REL = 1e-5  # as tests/modules/test_kernels.py

# (C_in, C_out, kernel, stride, groups, frames): the codec's convolution shapes,
# narrowed, over many frames (offline) and few (a streaming step).
CONVS = [
    (256, 256, 3, 2, 1, 801),  # WavLM front-end
    (256, 256, 3, 2, 1, 20),
    (256, 256, 2, 2, 1, 301),
    (256, 128, 7, 1, 1, 300),  # decoder embedding
    (256, 128, 7, 1, 1, 10),
    (256, 256, 1, 1, 1, 50),  # context projections
    (256, 256, 64, 1, 16, 300),  # WavLM positional convolution
    (256, 256, 64, 1, 16, 67),
    (256, 256, 512, 1, 256, 700),  # causal global level
    (256, 256, 512, 1, 256, 515),
    (256, 256, 14, 1, 256, 400),  # focal levels
]


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("name", kernels.available())
@pytest.mark.parametrize("c_in, c_out, k, stride, groups, frames", CONVS)
def test_conv_time_on_every_backend(name, c_in, c_out, k, stride, groups, frames):
    gen = torch.Generator().manual_seed(frames + k)
    conv = nn.Conv1d(c_in, c_out, k, stride, groups=groups).eval()
    x = torch.randn(2, frames, c_in, generator=gen)
    with torch.inference_mode():
        want = F.conv1d(
            x.transpose(1, 2).double(),
            conv.weight.double(),
            conv.bias.double(),
            stride=stride,
            groups=groups,
        ).transpose(1, 2)
        with kernels.use(name):
            got = conv_time(conv, x)
            again = conv_time(conv, x)  # with whatever the first call kept
    assert got.shape == want.shape
    assert _rel(got, want.float()) < REL
    assert torch.equal(got, again)


@pytest.mark.parametrize("name", kernels.available())
@pytest.mark.parametrize("k, frames", [(1, 40), (1, 3), (2, 40)])
def test_transposed_conv_time_on_every_backend(name, k, frames) -> None:
    conv = nn.ConvTranspose1d(256, 192, k, k).eval()
    x = torch.randn(1, frames, 256, generator=torch.Generator().manual_seed(k))
    with torch.inference_mode(), kernels.use(name):
        got = conv_time(conv, x)
        want = conv(x.transpose(1, 2)).transpose(1, 2)
    assert _rel(got, want) < REL


def test_conv_time_keeps_gradients_on_every_path() -> None:
    conv = nn.Conv1d(256, 256, 3, 2)
    x = torch.randn(1, 300, 256, requires_grad=True)
    with kernels.use(kernels.available()[0]):
        conv_time(conv, x).sum().backward()
    want = torch.autograd.grad(conv(x.transpose(1, 2)).sum(), conv.weight)[0]
    torch.testing.assert_close(conv.weight.grad, want)


def test_gelu_temp_is_gelu_in_place_only_without_autograd() -> None:
    x = torch.randn(1000, 64)
    want = F.gelu(x)
    tmp = x.clone()
    with torch.no_grad():
        out = gelu_temp(tmp)
    assert torch.equal(out, want) and out.data_ptr() == tmp.data_ptr()
    leaf = x.clone().requires_grad_()
    out = gelu_temp(leaf)
    assert out.data_ptr() != leaf.data_ptr() and torch.equal(leaf.detach(), x)
    out.sum().backward()
    assert leaf.grad is not None


def _front_end() -> FeatureExtractor:
    torch.manual_seed(0)
    dims, kernel_sizes, strides = (32,) * 7, (10, 3, 3, 3, 3, 2, 2), (5,) + (2,) * 6
    return FeatureExtractor(dims, kernel_sizes, strides, 0.0).eval()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("samples", [2 * 40960 + 1, 3 * 40960 + 12345, 200000])
def test_front_end_blocks_equal_one_pass(causal, samples) -> None:
    fe = _front_end()
    assert fe.stride == 320 and wavlm.FRONT_END_BLOCK * fe.stride == 40960
    sig = torch.randn(2, samples, 1, generator=torch.Generator().manual_seed(samples))
    with torch.no_grad():
        whole, whole_ctx = fe._stack(sig, None, causal)
        blocked, blocked_ctx = fe(sig, None, causal)
    assert blocked.shape == whole.shape
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6)
    if causal:  # the contexts a stream continues from are the same too
        for a, b in zip(blocked_ctx, whole_ctx, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    else:
        assert fe.out_frames(samples) == whole.shape[1]


def test_front_end_block_spans_cover_their_frames() -> None:
    fe = _front_end()
    assert fe.in_span(0, 1) == (0, 400)  # WavLM's receptive field: 400 samples
    assert fe.in_span(128, 256) == (128 * 320, 255 * 320 + 400)
