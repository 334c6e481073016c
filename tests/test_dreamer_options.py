"""Dreamer's DreamerV1/V2 options (seeds 002, 004) and seed 000's advantage switch: the critic that bootstraps
the returns, the KL-to-uninformative-prior regulariser, the plain Gaussian clipped by the env wrapper, AdamW
weight decay, train_every, advantage normalisation, and the simplified hockey Dreamer."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from common.config import ConfigError
from tests.test_dreamer import fake_batch, make_agent, make_cfg


def _imagined(agent, n=6):
    """An imagined rollout (features (H+1, N, F), raw actions) from random deterministic start states."""
    torch.manual_seed(0)
    start = agent.wm.rssm.initial(n, "cpu")
    start = (torch.randn_like(start[0]), start[1])
    with torch.no_grad():
        return agent.behavior.imagine(agent.wm, start, agent.cfg.horizon)


# ---------------------------------------------------------------------------------------------- critic_target
@pytest.mark.parametrize("target", ["online", "slow"])
def test_critic_target_picks_the_bootstrap_source(target):
    """Online critic 0, slow critic 5, zero rewards, no termination: the returns are 0 when the online critic
    bootstraps; with the slow one R_{H-1} = gamma * 5 = 4.5 and R_{H-2} = gamma (0.05 * 5 + 0.95 * 4.5)."""
    agent, _ = make_agent("critic_head=mse", f"critic_target={target}", "discount=0.9", episodic=False)
    b = agent.behavior
    with torch.no_grad():
        b.critic_slow.net[-1].bias.fill_(5.0)  # both output layers are zero-initialised: biases set the values
    feat, raw = _imagined(agent)
    _, (_, returns, _), metrics = b.actor_loss(agent.wm, feat, raw, torch.ones(6, 1), episodic=False)
    if target == "online":
        assert torch.allclose(returns, torch.zeros_like(returns), atol=1e-6)
    else:
        assert torch.allclose(returns[-1], torch.full((6, 1), 4.5))
        assert torch.allclose(returns[-2], torch.full((6, 1), 0.9 * (0.05 * 5 + 0.95 * 4.5)))


def test_critic_target_slow_keeps_critic_training_on_those_returns():
    agent, spec = make_agent("critic_target=slow")
    metrics = agent.update(fake_batch(spec))
    assert torch.isfinite(metrics["critic_loss"]) and torch.isfinite(metrics["imag_return"])


# ---------------------------------------------------------------------------------------------- actor_reg
def test_kl_uniform_hand_case_for_the_plain_gaussian():
    """KL(N(mu, s^2) || N(0, 1/3)) = 0.5 ln(1/3) - ln s + (s^2 + mu^2) / (2/3) - 1/2, summed over dims:
    mu=0.5, s=0.2 gives 0.995132; mu=0, s=1/sqrt(3) (the prior itself) gives 0."""
    agent, _ = make_agent("actor_dist=normal_clip", "actor_reg=kl_uniform")
    actor = agent.behavior.actor
    mean = torch.tensor([[0.5, 0.0]], requires_grad=True)
    std = torch.tensor([[0.2, 1 / math.sqrt(3)]])
    actor._params = lambda feat: (mean, std)
    raw = torch.tensor([[0.3, -0.1]])
    logp, entropy = actor.log_prob_entropy(None, raw)
    normal = torch.distributions.Normal(mean, std)
    assert torch.allclose(logp, normal.log_prob(raw).sum(-1, keepdim=True))
    assert torch.allclose(entropy, normal.entropy().sum(-1, keepdim=True))
    kl = actor.kl_uniform(None, entropy)
    assert kl.item() == pytest.approx(0.5 * math.log(1 / 3) - math.log(0.2) + 0.29 * 1.5 - 0.5, abs=1e-5)
    assert kl.item() == pytest.approx(0.995132, abs=1e-5)
    kl.sum().backward()
    # unlike the entropy bonus (no gradient on the mean) the KL pulls the mean back: d/dmu = mu / (1/3)
    assert mean.grad[0].tolist() == pytest.approx([1.5, 0.0], abs=1e-6)


@pytest.mark.parametrize("discrete,dist", [(True, "tanh_normal"), (False, "tanh_normal")])
def test_kl_uniform_is_the_entropy_bonus_up_to_a_constant_elsewhere(discrete, dist):
    agent, _ = make_agent(f"actor_dist={dist}", action_dim=3, discrete=discrete)
    entropy = torch.tensor([[0.7]])
    const = math.log(3) if discrete else 3 * math.log(2)
    assert agent.behavior.actor.kl_uniform(None, entropy).item() == pytest.approx(const - 0.7)


def test_actor_reg_changes_the_actor_loss_only_through_the_regulariser():
    losses = {}
    for reg in ("entropy", "kl_uniform"):
        agent, _ = make_agent("actor_dist=normal_clip", f"actor_reg={reg}", "actor_entropy=1.0",
                              "actor_grad=reinforce")
        feat, raw = _imagined(agent)
        torch.manual_seed(1)
        loss, _, metrics = agent.behavior.actor_loss(agent.wm, feat, raw, torch.ones(6, 1), episodic=True)
        losses[reg] = loss.item()
    assert losses["entropy"] != pytest.approx(losses["kl_uniform"])


# ---------------------------------------------------------------------------------------------- actor_dist
def test_normal_clip_actor_samples_unbounded_and_the_env_wrapper_clips():
    agent, spec = make_agent("actor_dist=normal_clip", "actor_min_std=0.9", "actor_max_std=1.0")
    feat = torch.randn(2000, agent.wm.rssm.feat_dim)
    action, raw = agent.behavior.actor(feat)
    assert torch.equal(action.detach(), raw)  # no squashing: the Gaussian sample itself
    assert action.abs().max() > 1.5  # std ~1: many samples outside [-1, 1]
    tanh_agent, _ = make_agent()
    assert tanh_agent.behavior.actor(feat)[0].abs().max() < 1

    from envs.wrappers import TorchEnv

    class Recorder(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (3,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.sent = np.asarray(action)
            return np.zeros(1, np.float32), 0.0, False, False, {}

    env = TorchEnv(Recorder(), action_repeat=1, seed=0)
    env.reset()
    env.step(torch.tensor([3.0, -2.5, 0.25]))
    assert env.env.unwrapped.sent.tolist() == [1.0, -1.0, 0.25]


def test_normal_clip_updates_and_acts():
    agent, spec = make_agent("actor_dist=normal_clip", "actor_reg=kl_uniform")
    metrics = agent.update(fake_batch(spec))
    assert all(torch.isfinite(v) for v in metrics.values())
    a = agent.act(torch.randn(5), t0=True, eval_mode=True)
    assert a.shape == (2,)


# ---------------------------------------------------------------------------------------------- optimisers
def test_weight_decay_moves_weights_with_zero_gradient():
    """AdamW with a zero gradient: the moments stay 0, so the only change is p <- p (1 - lr * wd)."""
    agent, _ = make_agent("model_weight_decay=0.1", "model_lr=0.01", "ac_weight_decay=0.5", "actor_lr=0.02")
    for module, opt, factor in ((agent.wm, agent.model_opt, 1 - 0.01 * 0.1),
                                (agent.behavior.actor, agent.actor_opt, 1 - 0.02 * 0.5)):
        before = [p.detach().clone() for p in module.parameters()]
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for p, q in zip(module.parameters(), before):
            assert torch.allclose(p, q * factor, rtol=0, atol=1e-7)
    plain, _ = make_agent()  # default 0: Adam, weights untouched by a zero gradient
    before = [p.detach().clone() for p in plain.wm.parameters()]
    for p in plain.wm.parameters():
        p.grad = torch.zeros_like(p)
    plain.model_opt.step()
    assert all(torch.equal(p, q) for p, q in zip(plain.wm.parameters(), before))


def test_train_every_wins_over_train_ratio():
    agent, _ = make_agent("train_ratio=512", "batch_size=16", "seq_len=64")
    assert agent.updates_per_step == pytest.approx(0.5)
    agent, _ = make_agent("train_ratio=512", "train_every=5")
    assert agent.updates_per_step == pytest.approx(0.2)


@pytest.mark.parametrize("override,needle", [
    ("train_every=0", "train_every=0: must be null (train_ratio decides) or a positive integer"),
    ("actor_reg=kl", "actor_reg='kl': must be one of entropy, kl_uniform"),
    ("actor_dist=beta", "actor_dist='beta': must be one of tanh_normal, normal_clip"),
    ("critic_target=ema", "critic_target='ema': must be one of online, slow"),
    ("advantage_norm=std", "advantage_norm='std': must be one of retnorm, batch, none"),
    ("model_weight_decay=-1", "model_weight_decay=-1: must be a number in [0, inf]"),
])
def test_option_validation(override, needle):
    with pytest.raises(ConfigError) as e:
        make_cfg(override)
    assert needle in str(e.value)


# ---------------------------------------------------------------------------------------------- advantage_norm
def test_advantage_norm_modes():
    """A return scale of 4 in the normaliser: retnorm divides the advantages by 4, none leaves them, batch
    standardises them (mean 0, std 1); the metric is the mean absolute advantage the actor used."""
    expected = {"retnorm": lambda a: a / 4, "none": lambda a: a, "batch": lambda a: (a - a.mean()) / a.std()}
    for mode, transform in expected.items():
        agent, _ = make_agent("critic_head=mse", "reward_head=mse", f"advantage_norm={mode}", "actor_grad=reinforce")
        b = agent.behavior
        with torch.no_grad():
            torch.nn.init.normal_(agent.wm.reward_head[-1].weight, std=0.5)
            torch.nn.init.normal_(b.critic.net[-1].weight, std=0.5)
            b.retnorm.value.fill_(4.0)
        b.retnorm.update = lambda returns: None  # keep the scale fixed at 4 for the comparison
        feat, raw = _imagined(agent)
        loss, (_, returns, _), metrics = b.actor_loss(agent.wm, feat, raw, torch.ones(6, 1), episodic=False)
        adv = (returns - b.critic.value(feat)[:-1]).detach()
        assert adv.abs().mean() > 0.1  # a real signal to normalise
        assert metrics["imagination/advantage_abs_mean"].item() == pytest.approx(
            transform(adv).abs().mean().item(), rel=1e-4), mode


def test_hockey_aux_experiment_turns_normalisation_off():
    from tests.conftest import compose
    assert compose(["+experiment=hockey_dreamer_aux"]).advantage_norm == "none"


# ---------------------------------------------------------------------------------------------- seed 002
def test_hockey_dreamer_simple_composes_with_the_plans_numbers_and_updates():
    from envs import make_env
    from src import make_agent as build
    from tests.conftest import compose
    cfg = compose(["+experiment=hockey_dreamer_simple"])
    expected = {"agent": "dreamer", "task": "hockey", "latent": "gaussian", "stoch": 64, "hidden": 256, "deter": 256,
                "reward_head": "mse", "critic_head": "mse", "seq_len": 50, "batch_size": 16, "model_lr": 3e-4,
                "model_grad_clip": 100, "actor_lr": 3e-5, "critic_lr": 3e-5, "buffer_size": 1_000_000,
                "seed_steps": 1000, "horizon": 15, "discount": 0.997, "critic_ema": 0.02}
    assert {k: cfg[k] for k in expected} == expected and cfg.hockey.reward == "outcome"
    env, spec = make_env(cfg)
    torch.manual_seed(0)
    agent = build(cfg, spec, torch.device("cpu"))
    assert agent.wm.rssm.feat_dim == 256 + 64
    # one update on an (L=8, B=4) batch of hockey-shaped data: every part learns, nothing is NaN
    batch = fake_batch(spec)
    before = [p.detach().clone() for p in agent.behavior.actor.parameters()]
    metrics = agent.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(p, q) for p, q in zip(agent.behavior.actor.parameters(), before))
    action = agent.act(env.reset(), t0=True)
    assert action.shape == (4,) and action.abs().max() <= 1
