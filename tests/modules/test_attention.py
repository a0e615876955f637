"""The relative position bias built block by block, and attention in query blocks."""

from __future__ import annotations

import pytest
import torch

from focalcodec.modules import attention
from focalcodec.modules.attention import GatedRelativeAttention, RelativePositionBias


@pytest.mark.parametrize(
    "start, queries, keys, rows",
    [(0, 300, 300, [(0, 300), (0, 1), (293, 300), (3, 40)]), (100, 50, 150, [(7, 50)])],
)
def test_bias_blocks_are_the_bias_rows(start, queries, keys, rows) -> None:
    torch.manual_seed(0)
    bias = RelativePositionBias(320, 800, 16)
    whole = bias(start, queries, keys)  # (H, queries, keys)
    blocks = bias.rows(start, queries, keys)
    for first, stop in rows:
        block = blocks.block(first, stop)
        assert torch.equal(block, whole[:, first:stop])
        # Row-major, as attention wants its mask (else it copies every block again).
        assert block.is_contiguous()
    # Each value is the bias of its distance key - query, computed directly.
    query, key = 17, 123
    distance = torch.tensor([key - (start + query)])
    direct = bias.weight[bias.buckets(distance)][0]
    assert torch.equal(whole[:, query, key], direct)


@pytest.mark.parametrize("batch", [1, 2])
def test_attention_in_query_blocks_equals_one_block(batch, monkeypatch) -> None:
    torch.manual_seed(0)
    layer = GatedRelativeAttention(64, 4).eval()
    x = torch.randn(batch, 90, 64)
    bias = RelativePositionBias(320, 800, 4)
    with torch.no_grad():
        whole, _ = layer(x, bias(0, 90, 90))
        monkeypatch.setattr(attention, "BLOCK_BYTES", 4 * 4 * 90 * batch * 7)
        rows = bias.rows(0, 90, 90)
        blocked, _ = layer(x, rows)
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6)
