"""The online trainer's update schedule, counted with a stub agent: pretraining on the seed data gives
`seed_steps * updates_per_step` updates when seeding ends, then `updates_per_step` per agent step (Dreamer's
train_ratio, or train_every when set)."""
import pytest
import torch

from common.buffer import Buffer
from common.logger import Logger
from envs import make_env
from tests.conftest import compose
from trainer.online_trainer import OnlineTrainer


class CountingAgent:
    """Acts at random and counts update() calls."""

    sequences_cross_episodes = True
    seq_len, batch_size = 8, 4

    def __init__(self, env, updates_per_step):
        self.env, self.updates_per_step, self.calls = env, updates_per_step, 0

    def act(self, obs, t0=False, eval_mode=False):
        return self.env.rand_act()

    def update(self, batch):
        assert batch["obs"].shape[:2] == (self.seq_len, self.batch_size)
        self.calls += 1
        return {"loss": torch.tensor(0.0)}

    def state_dict(self):
        return {}


def _run(tmp_path, *overrides):
    cfg = compose(["task=gym/Pendulum-v1", "agent=dreamer", "model_size=XS", "steps=1400", "seed_steps=1000",
                   "eval_freq=100000", "eval_episodes=1", "checkpoint_freq=100000", "save_buffer=false",
                   "logger.progress=false", *overrides])
    env, spec = make_env(cfg)
    from src.dreamer.agent import Dreamer
    rate = Dreamer(cfg, spec, torch.device("cpu")).updates_per_step  # the real agent's schedule
    agent = CountingAgent(env, rate)
    buffer = Buffer(5000, agent.seq_len, agent.batch_size, cross_episodes=True)
    trainer = OnlineTrainer(cfg, env, spec, agent, buffer, Logger(tmp_path, cfg), tmp_path)
    trainer.train()
    return rate, agent.calls, trainer.updates


@pytest.mark.parametrize("overrides,rate,pretrain", [
    (["train_every=5"], 0.2, 200),  # DreamerV2's schedule: 1000 seed steps / 5
    (["train_ratio=16", "batch_size=4", "seq_len=8"], 0.5, 500),  # 16 / (4 * 8): one every second step
])
def test_pretraining_and_per_step_update_counts(tmp_path, overrides, rate, pretrain):
    """Pendulum: 200-step episodes, 1400 steps, seeding ends at step 1000 -> `pretrain` updates there, then
    400 more steps at `rate` updates each."""
    got_rate, calls, counted = _run(tmp_path, *overrides)
    assert got_rate == pytest.approx(rate)
    assert calls == counted == pretrain + round(400 * rate)
