import copy
import math

import pytest
import torch

from common.buffer import Buffer
from tests.conftest import random_episode


def _fill(env, spec, buffer, episodes=2):
    for _ in range(episodes):
        buffer.add(random_episode(env, spec))


def test_planner_actions_in_bounds_and_deterministic_under_seed(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    obs = env.reset()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        actions = [agent.act(obs, t0=t == 0) for t in range(5)]
        runs.append(torch.stack(actions))
    assert runs[0].shape == (5, spec.action_dim)
    assert (runs[0].abs() <= 1).all()
    assert torch.equal(runs[0], runs[1])
    eval_action = agent.act(obs, t0=True, eval_mode=True)
    assert eval_action.shape == (spec.action_dim,) and eval_action.abs().max() <= 1


def test_policy_prior_acting_without_planning(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2("mpc=false")
    obs = env.reset()
    a1, a2 = agent.act(obs, eval_mode=True), agent.act(obs, eval_mode=True)
    assert torch.equal(a1, a2)  # eval: the policy mean
    assert not torch.equal(agent.act(obs), agent.act(obs))  # training: sampled


def test_one_update_moves_expected_parameters_and_target_only_by_polyak(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = Buffer(5000, agent.seq_len, agent.batch_size)
    _fill(env, spec, buffer)
    model = agent.model
    before = copy.deepcopy(model.state_dict())
    metrics = agent.update(buffer.sample())
    after = model.state_dict()
    for name in ("encoder", "dynamics", "reward_head", "policy_prior", "q_ensemble"):
        moved = [k for k in before if k.startswith(name + ".") and not torch.equal(before[k], after[k])]
        assert moved, f"{name} did not change"
    for k in before:
        if k.startswith("target_q."):
            online = after["q_ensemble." + k[len("target_q."):]]
            expected = torch.lerp(before[k], online, cfg.tau)
            assert torch.allclose(after[k], expected, atol=1e-6), k
    assert all(torch.isfinite(v) for v in metrics.values())
    assert not any(p.requires_grad for p in model.target_q.parameters())


def test_model_loss_does_not_touch_policy_and_policy_loss_does_not_touch_model(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = Buffer(5000, agent.seq_len, agent.batch_size)
    _fill(env, spec, buffer)
    batch = buffer.sample()
    seen = {}
    original_step = agent.optim.step

    def record_step(*a, **k):  # gradients the world-model optimiser is about to apply
        seen["pi_grads"] = [p.grad for p in agent.model.policy_prior.parameters()]
        return original_step(*a, **k)
    agent.optim.step = record_step
    agent.update(batch)
    assert all(g is None for g in seen["pi_grads"])
    # the policy update leaves the Q ensemble's gradients empty (its weights are detached there)
    assert all(p.grad is None for p in agent.model.q_ensemble.parameters())


def test_termination_head_only_for_episodic_tasks(tiny_tdmpc2):
    _, _, spec, agent = tiny_tdmpc2()
    assert spec.episodic and agent.model.termination_head is not None
    _, _, spec, agent = tiny_tdmpc2("episodic=false")
    assert agent.model.termination_head is None


def test_state_dict_round_trip_restores_actions_and_optimizers(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = Buffer(5000, agent.seq_len, agent.batch_size)
    _fill(env, spec, buffer)
    agent.update(buffer.sample())
    state = copy.deepcopy(agent.state_dict())
    _, _, _, other = tiny_tdmpc2()
    other.load_state_dict(state)
    obs = env.reset()
    torch.manual_seed(5)
    a = agent.act(obs, t0=True, eval_mode=True)
    torch.manual_seed(5)
    b = other.act(obs, t0=True, eval_mode=True)
    assert torch.equal(a, b)
    assert other.optim.state_dict()["state"].keys() == agent.optim.state_dict()["state"].keys()
    assert torch.equal(other.scale.value, agent.scale.value)


def test_pixel_observations_use_the_conv_encoder(tiny_tdmpc2):
    import pytest
    try:
        cfg, env, spec, agent = tiny_tdmpc2("obs=rgb", "episodic=false", task="cartpole-balance")
    except Exception as e:  # no headless GL on this machine
        pytest.skip(f"MuJoCo cannot render here: {e}")
    assert spec.obs_shape == (9, 64, 64)
    obs = env.reset()
    assert obs.dtype == torch.uint8 and obs.shape == (9, 64, 64)
    buffer = Buffer(2000, agent.seq_len, agent.batch_size)
    _fill(env, spec, buffer, episodes=1)
    metrics = agent.update(buffer.sample())
    assert torch.isfinite(metrics["total_loss"])
    assert agent.act(obs, t0=True).shape == (spec.action_dim,)


def _constant_policy(agent, mean, raw_log_std):
    """The policy prior's output made state-independent: mean and raw (pre-squashing) log-std per action dim."""
    with torch.no_grad():
        last = agent.model.policy_prior[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([*mean, *raw_log_std]))


@pytest.mark.parametrize("form", ["scaled", "squashed", "scaled_tanh"])
def test_policy_entropy_forms_against_a_hand_case(tiny_tdmpc2, monkeypatch, form):
    """entropy=scaled: -(pre-tanh Gaussian log-prob) x action dim (the official scaled_entropy); squashed: minus the
    tanh-corrected log-prob; scaled_tanh: the scaled one minus the unscaled log(1 - tanh^2) (the 2023 release). pi
    gives all three; the policy loss uses the chosen one (Q is 0 at init, scale 1)."""
    cfg, env, spec, agent = tiny_tdmpc2(f"entropy={form}", "entropy_coef=0.5", "horizon=2", task="gym/Reacher-v5")
    mean, raw, eps = [0.3, -1.2], [-1.0, 0.5], [0.7, -1.5]
    _constant_policy(agent, mean, raw)
    monkeypatch.setattr(torch, "randn_like", lambda t: torch.tensor(eps).expand_as(t).clone())
    log_std = [-10 + 0.5 * 12 * (math.tanh(r) + 1) for r in raw]
    gaussian = sum(-0.5 * e * e - s - 0.5 * math.log(2 * math.pi) for e, s in zip(eps, log_std))
    pre_tanh = [m + e * math.exp(s) for m, e, s in zip(mean, eps, log_std)]
    tanh_term = sum(math.log(1 - math.tanh(u) ** 2 + 1e-6) for u in pre_tanh)
    expected = {"scaled": -2 * gaussian, "squashed": -(gaussian - tanh_term),
                "scaled_tanh": -(2 * gaussian - tanh_term)}
    zs = torch.randn(3, 4, cfg.latent_dim)  # (horizon + 1, B, latent)
    _, info = agent.model.pi(zs)
    torch.testing.assert_close(info["scaled_entropy"], torch.full((3, 4, 1), expected["scaled"]))
    torch.testing.assert_close(info["entropy"], torch.full((3, 4, 1), expected["squashed"]))
    torch.testing.assert_close(info["scaled_tanh_entropy"], torch.full((3, 4, 1), expected["scaled_tanh"]))
    values = sorted(expected.values())
    assert values[1] - values[0] > 1 and values[2] - values[1] > 1  # the three forms differ here
    pi_loss, _ = agent._update_pi(zs)
    rho = [cfg.rho ** t for t in range(3)]
    assert math.isclose(pi_loss.item(), -0.5 * expected[form] * sum(rho) / 3, rel_tol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_compiled_planning_then_compiled_update_on_cuda(tiny_tdmpc2):
    """compile=true on CUDA: the planner compiles with cudagraphs (mode="reduce-overhead"), and an update compiled
    after it must still run (the optimizer step is kept out of the compiled graph: common/optim.py) and give
    the eager update's losses on the same batch; planning after the update still runs."""
    import torch._inductor.config
    torch._inductor.config.fallback_random = True  # compiled code draws the same random numbers as eager
    results = []
    for compiled in ("false", "true"):
        cfg, env, spec, agent = tiny_tdmpc2(f"compile={compiled}", "dropout=0", device="cuda")
        buffer = Buffer(5000, agent.seq_len, agent.batch_size, device="cuda")
        torch.manual_seed(0)
        _fill(env, spec, buffer)
        obs = env.reset()
        agent.act(obs, t0=True)  # the planner's cudagraph tree exists before the first update
        agent.act(obs, eval_mode=True)
        torch.manual_seed(1)
        batches = [buffer.sample() for _ in range(2)]
        torch.manual_seed(2)
        results.append([agent.update(b) for b in batches])
        assert (agent.act(obs).abs() <= 1).all()
    for eager, compiled in zip(*results):
        for k in eager:
            assert torch.allclose(eager[k], compiled[k], rtol=1e-3, atol=1e-4), k
