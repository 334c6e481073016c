"""Dreamer learns gym/CartPole-v1 with the XS preset on CPU, clearly beating random actions (~22 return).

About 1-3 minutes on one core: random seeding, then 20 updates per collected episode; every 100 updates three
deterministic evaluation episodes; it stops as soon as their mean reaches 100 (early-stopping keeps it short),
and fails if that never happens within 800 updates."""
import os

import numpy as np
import pytest
import torch

import common.config  # registers the preset resolver  # noqa: F401
from common.config import validate

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
OVERRIDES = ["agent=dreamer", "model_size=XS", "task=gym/CartPole-v1", "seq_len=32", "discount=0.99",
             "model_lr=1e-3", "actor_lr=3e-4", "critic_lr=3e-4", "seed=1"]


def _episode(env, spec, policy, buffer=None):
    from common.buffer import episode_step
    obs = env.reset()
    steps = [episode_step(obs, torch.zeros(spec.action_dim), 0.0, False, True)]
    done, ret, t = False, 0.0, 0
    while not done:
        action = policy(obs, t == 0)
        obs, reward, done, info = env.step(action)
        steps.append(episode_step(obs, action, reward, info["terminated"], False))
        ret, t = ret + reward, t + 1
    if buffer is not None:
        buffer.add(torch.stack(steps))
    return ret


@pytest.mark.heavy
def test_cartpole_beats_random():
    from hydra import compose, initialize_config_dir
    from common.buffer import Buffer
    from envs import make_env
    from src.dreamer.agent import Dreamer
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = validate(compose("config", overrides=OVERRIDES))
        torch.manual_seed(1)
        np.random.seed(1)
        env, spec = make_env(cfg)
        agent = Dreamer(cfg, spec, torch.device("cpu"))
        buffer = Buffer(50_000, agent.seq_len, agent.batch_size)
        random_returns = [_episode(env, spec, lambda o, t0: env.rand_act(), buffer) for _ in range(40)]
        random_mean = float(np.mean(random_returns))
        assert random_mean < 40  # CartPole's random baseline is ~22
        history, updates = [], 0
        while updates < 800:
            for _ in range(20):
                metrics = agent.update(buffer.sample())
                updates += 1
            assert all(torch.isfinite(v) for v in metrics.values())
            _episode(env, spec, lambda o, t0: agent.act(o, t0), buffer)
            if updates % 100 == 0:
                evals = [_episode(env, spec, lambda o, t0: agent.act(o, t0, eval_mode=True)) for _ in range(3)]
                history.append(float(np.mean(evals)))
                if history[-1] >= 100:
                    break
        assert max(history) >= 100 and max(history) > 4 * random_mean, \
            f"eval returns {history} after {updates} updates vs random {random_mean:.1f}"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_compiled_update_matches_contract():
    """compile=true: the compiled world-model / behaviour losses train (slow: inductor compiles on CPU)."""
    from hydra import compose, initialize_config_dir
    from tests.test_dreamer import fake_batch
    from common.spec import EnvSpec
    from src.dreamer.agent import Dreamer
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = validate(compose("config", overrides=["agent=dreamer", "model_size=XS", "compile=true", "seq_len=8"]))
    spec = EnvSpec(obs_shape=(5,), action_dim=2, discrete=False, episode_length=100, action_repeat=1,
                   episodic=True, task="test")
    agent = Dreamer(cfg, spec, torch.device("cpu"))
    before = [p.detach().clone() for p in agent.wm.parameters()]
    for _ in range(2):
        metrics = agent.update(fake_batch(spec, L=8, B=4))
    assert all(torch.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(p, q) for p, q in zip(agent.wm.parameters(), before))
