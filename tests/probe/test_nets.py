"""The probe network: code-initialised embedding, masking of padded frames."""

from __future__ import annotations

import torch

from focalcodec.probe.nets import ProbeNet, masked_mean_std


def codebook(bits=4):
    ids = torch.arange(2**bits)
    signs = ((ids[:, None] >> torch.arange(bits - 1, -1, -1)) & 1) * 2 - 1
    return signs.float() / bits**0.5


def test_embedding_starts_from_the_binary_codes():
    codes = codebook()
    net = ProbeNet(3, pooled=True, codebook=codes, hidden=8, layers=1)
    assert torch.equal(net.embedding.weight.data, codes)
    assert net.embedding.weight.requires_grad


def test_masked_mean_std_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [2.0], [2.0]]])
    out = masked_mean_std(x, torch.tensor([2, 3]))
    assert torch.allclose(out[:, 0], torch.tensor([2.0, 2.0]))
    assert torch.allclose(out[:, 1], torch.tensor([1.0, 1e-4]), atol=1e-6)


def test_padding_does_not_change_any_output():
    torch.manual_seed(0)
    for pooled in (True, False):
        net = ProbeNet(5, pooled, codebook=codebook(), hidden=8, layers=2).eval()
        toks = torch.randint(0, 16, (2, 9))
        lengths = torch.tensor([9, 5])
        batch = net(toks, lengths)
        alone = net(toks[1:, :5], lengths[1:])
        expected = alone[0] if pooled else alone[0, :5]
        got = batch[1] if pooled else batch[1, :5]
        assert torch.allclose(got, expected, atol=1e-6)


def test_feature_input_shapes():
    net = ProbeNet(7, pooled=False, feature_dim=12, hidden=8, layers=1)
    out = net(torch.randn(3, 10, 12), torch.tensor([10, 4, 1]))
    assert out.shape == (3, 10, 7)
