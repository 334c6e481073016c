import math

import torch

from common.math import TwoHot, discount_from_episode_length, soft_ce, symexp, symlog, wilson_interval


def test_symlog_symexp_are_inverse():
    x = torch.tensor([-1e4, -3.5, -1.0, 0.0, 0.5, 2.0, 1e3])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    assert symlog(torch.tensor(math.e - 1)).item() == torch.tensor(1.0).item()  # log(1 + (e - 1)) = 1


def test_two_hot_round_trip_and_mass():
    th = TwoHot(101, -10, 10)
    x = torch.tensor([[-500.0], [-1.3], [0.0], [0.7], [42.0], [2e4]])
    enc = th.encode(x)
    assert enc.shape == (6, 101)
    assert torch.allclose(enc.sum(-1), torch.ones(6))
    assert (enc > 0).sum(-1).le(2).all()  # at most two neighbouring bins
    # decoding the two-hot distribution itself (as logits of its log) returns the value
    assert torch.allclose(th.decode(enc.clamp_min(1e-30).log()), x, rtol=1e-4, atol=1e-5)


def test_two_hot_hand_case():
    th = TwoHot(5, -2, 2)  # bins at -2, -1, 0, 1, 2 in symlog space
    x = symexp(torch.tensor([[0.25]]))  # symlog value 0.25: 75% on bin 0, 25% on bin 1
    assert torch.allclose(th.encode(x), torch.tensor([[0.0, 0.0, 0.75, 0.25, 0.0]]))
    top = symexp(torch.tensor([[2.0]]))  # the top bin exactly
    assert torch.allclose(th.encode(top), torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]))


def test_soft_ce_hand_case():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    target = torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.allclose(soft_ce(logits, target), torch.tensor([[math.log(4)]]))
    target = torch.tensor([[0.5, 0.5, 0.0]])
    assert torch.allclose(soft_ce(logits, target), torch.tensor([[0.5 * math.log(2) + 0.5 * math.log(4)]]))


def test_discount_heuristic():
    assert discount_from_episode_length(500) == 0.99  # DMC with action repeat 2
    assert discount_from_episode_length(250) == 0.98  # hockey
    assert discount_from_episode_length(10) == 0.95  # clipped below
    assert discount_from_episode_length(100000) == 0.995  # clipped above


def test_wilson_interval_hand_cases():
    """Published 95% Wilson intervals: 0/10 -> [0, 0.2775], 5/10 -> [0.2366, 0.7634], 10/10 -> [0.7225, 1]."""
    for (k, n), (low, high) in {(0, 10): (0.0, 0.2775), (5, 10): (0.2366, 0.7634), (10, 10): (0.7225, 1.0)}.items():
        got = wilson_interval(k, n)
        assert abs(got[0] - low) < 1e-4 and abs(got[1] - high) < 1e-4, (k, n, got)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no games: nothing known
