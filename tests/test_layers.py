import torch

from common.layers import EnsembleMLP, SimNorm, mish


def test_simnorm_groups_sum_to_one():
    x = torch.randn(4, 7, 32)
    y = SimNorm(8)(x)
    groups = y.view(4, 7, 4, 8)
    assert torch.allclose(groups.sum(-1), torch.ones(4, 7, 4), atol=1e-6)
    assert (y >= 0).all()


def test_fast_mish_matches_reference_and_gradient():
    x = (torch.randn(2000, dtype=torch.float64) * 8).requires_grad_()
    assert torch.allclose(mish(x), torch.nn.functional.mish(x), atol=1e-6)
    assert torch.autograd.gradcheck(mish, (x[:64].detach().requires_grad_(),))


def test_ensemble_shapes_and_member_subset():
    torch.manual_seed(0)
    ens = EnsembleMLP(5, 10, [16, 16], 3).eval()
    x = torch.randn(7, 2, 10)
    out = ens(x)
    assert out.shape == (5, 7, 2, 3)
    members = torch.tensor([3, 1])
    assert torch.allclose(ens(x, members=members), out[members], atol=1e-6)
    # members are independent networks: different outputs for the same input
    assert not torch.allclose(out[0], out[1])


def test_ensemble_detach_blocks_weight_gradients_only():
    ens = EnsembleMLP(2, 4, [8], 1)
    x = torch.randn(3, 4, requires_grad=True)
    ens(x, detach=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in ens.parameters())
