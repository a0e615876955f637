"""Module swaps (:mod:`focalcodec.deploy.swap`): built by constructors, no forwarding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import focalcodec.deploy
from focalcodec import FocalCodec
from focalcodec.deploy import lean
from focalcodec.deploy.swap import (
    NETWORKS,
    NetworkWrapper,
    rebuild,
    shallow_tree,
    wrap,
)
from focalcodec.modules.attention import GatedRelativeAttention
from focalcodec.modules.layers import ChunkFeedForward


@pytest.fixture(scope="module")
def codec(golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz").eval()


class _Hooked(GatedRelativeAttention):
    """A hook-overriding subclass, as the fast modes and the exporter write them."""

    def new_cache(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_ones(1)


def test_rebuild_constructs_the_subclass_and_shares_the_state() -> None:
    exact = GatedRelativeAttention(16, 4).eval()
    new = rebuild(_Hooked, exact)
    assert type(new) is _Hooked and not new.training
    assert dict(new.named_parameters()).keys() == dict(exact.named_parameters()).keys()
    for (_, ours), (_, theirs) in zip(
        new.named_parameters(), exact.named_parameters(), strict=True
    ):
        assert ours is theirs  # shared, not copied; nothing left on the meta device
    assert new.qkv_proj is exact.qkv_proj
    assert (new.num_heads, new.head_dim, new.dropout) == (4, 4, 0.0)
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(4, 3, 3)
    assert torch.equal(new(x, bias)[0], exact(x, bias)[0])
    assert torch.equal(new.new_cache(x), torch.ones(1))
    # Swapping a child of the new module in its own registry leaves the exact one alone.
    new.out_proj = nn.Identity()
    assert isinstance(exact.out_proj, nn.Linear)


def test_rebuild_refuses_what_it_cannot_build() -> None:
    exact = ChunkFeedForward(2, 4, 8)
    with pytest.raises(TypeError, match="not a subclass"):
        rebuild(lean.TapeCacheAttention, exact)
    exact.extra = nn.Linear(1, 1)  # a child set after construction is shared too
    assert rebuild(lean.LeanChunkFeedForward, exact).extra is exact.extra
    del exact.in_proj  # the constructor makes a child the module does not have
    with pytest.raises(TypeError, match="does not rebuild"):
        rebuild(lean.LeanChunkFeedForward, exact)


def test_shallow_tree_copies_modules_but_not_tensors(codec) -> None:
    view = shallow_tree(codec)
    pairs = list(zip(view.modules(), codec.modules(), strict=True))
    assert all(ours is not theirs for ours, theirs in pairs)
    ours, theirs = dict(view.named_parameters()), dict(codec.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[name] is theirs[name] for name in ours)
    view.decoder.head = nn.Identity()
    assert not isinstance(codec.decoder.head, nn.Identity)


def test_a_wrapper_offers_only_its_call_and_is_invisible_in_checkpoints(codec) -> None:
    model = shallow_tree(codec)
    wrap(model, lambda name, net: NetworkWrapper(net))
    assert all(isinstance(getattr(model, name), NetworkWrapper) for name in NETWORKS)
    assert not hasattr(model.encoder, "chunk_size")  # nothing is forwarded
    # The facade read its facts when it was built.
    assert model.info() == codec.info()
    assert model.chunk_tokens == codec.chunk_tokens
    state = model.state_dict()
    assert list(state) == list(codec.state_dict())
    assert "encoder" in state._metadata and "encoder.net" not in state._metadata
    model.load_state_dict(codec.state_dict())  # strict, both ways
    codec.load_state_dict(state)
    # Wrappers nest (jit() of a fast model) and stay invisible.
    wrap(model, lambda name, net: NetworkWrapper(net), ["decoder"])
    assert list(model.state_dict()) == list(codec.state_dict())
    model.load_state_dict(codec.state_dict())
    sig = 0.1 * torch.randn(1, 4 * codec.chunk_size, generator=torch.Generator())
    with torch.inference_mode():
        assert torch.equal(model.sig_to_toks(sig), codec.sig_to_toks(sig))
        assert torch.equal(
            model.sig_to_toks_padded(sig, [sig.shape[1]])[0], codec.sig_to_toks(sig)
        )


def test_deploy_pretends_nothing() -> None:
    # No attribute forwarding, no instances made without their constructor, no class
    # or forward assigned from outside: the swaps above are the only mechanism.
    folder = Path(focalcodec.deploy.__file__).parent
    banned = ("__getattr__", "__new__", "__dict__", "__class__ =", ".forward =")
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not [word for word in banned if word in text], path.name
