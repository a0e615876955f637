"""append_time: concatenation views over an append-only buffer that never rewrites."""

from __future__ import annotations

import torch

from focalcodec.deploy.tape import append_time


def _chunks(count: int, frames: int = 3, channels: int = 5) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(count)
    return [torch.randn(2, frames, channels, generator=gen) for _ in range(count)]


def test_matches_concatenation_over_many_calls() -> None:
    # 200 calls of 3 frames with 7 kept frames also cross several buffer refills.
    past = torch.zeros(2, 7, 5)
    ref = past
    for x in _chunks(200):
        both, past = append_time(past, x, 1, 7)
        full = torch.cat([ref, x], 1)
        assert torch.equal(both, full)
        ref = full[:, -7:]
        assert torch.equal(past, ref)


def test_appends_in_place_after_the_tip() -> None:
    x1, x2 = _chunks(2)
    _, kept1 = append_time(torch.zeros(2, 4, 5), x1, 1, 4)
    _, kept2 = append_time(kept1, x2, 1, 4)
    # Same storage: the second call wrote after the first one's frames.
    assert kept2.untyped_storage().data_ptr() == kept1.untyped_storage().data_ptr()


def test_earlier_states_never_change() -> None:
    # A caller may resume from any earlier state (as StreamingSession does when it
    # redoes a step); the states it kept and their continuations must stay valid.
    xs = _chunks(6)
    past = torch.zeros(2, 4, 5)
    states = [past]
    for x in xs[:4]:
        _, past = append_time(past, x, 1, 4)
        states.append(past)
    saved = [s.clone() for s in states]
    # Resume from an older state twice with different inputs, then from the newest.
    both_a, branch_a = append_time(states[2], xs[4], 1, 4)
    both_b, branch_b = append_time(states[2], xs[5], 1, 4)
    _, newest = append_time(states[-1], xs[5], 1, 4)
    for state, copy in zip(states, saved):
        assert torch.equal(state, copy)
    assert torch.equal(both_a, torch.cat([saved[2], xs[4]], 1))
    assert torch.equal(both_b, torch.cat([saved[2], xs[5]], 1))
    assert torch.equal(branch_a, torch.cat([saved[2], xs[4]], 1)[:, -4:])
    assert torch.equal(newest, torch.cat([saved[-1], xs[5]], 1)[:, -4:])


def test_other_time_dimension_and_growing_context() -> None:
    # The attention cache layout: (2, B, H, P, d), time on dim 3, P growing to a cap.
    gen = torch.Generator().manual_seed(0)
    past = torch.zeros(2, 1, 3, 0, 4)
    ref = past
    for _ in range(12):
        x = torch.randn(2, 1, 3, 2, 4, generator=gen)
        both, past = append_time(past, x, 3, min(ref.shape[3] + 2, 9))
        full = torch.cat([ref, x], 3)
        assert torch.equal(both, full)
        ref = full[:, :, :, -past.shape[3] :]
        assert torch.equal(past, ref)
    assert past.shape[3] == 9
