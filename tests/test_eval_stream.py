"""eval_stream: whether evaluation episodes take their start states and sampling noise from the training
stream (shared, the official TD-MPC2 behaviour) or from a stream of their own (own), with a stub agent that
acts from the global torch generator, as the planner's noise does."""
import pytest
import torch

from common.buffer import Buffer
from envs import make_env
from tests.conftest import compose
from trainer.online_trainer import OnlineTrainer


class RecordingAgent:
    """Acts from the global torch generator and records the first observation of every training episode."""

    sequences_cross_episodes = True
    seq_len, batch_size, updates_per_step = 4, 2, 0.01  # few buffer samples: this test is about the env

    def __init__(self, action_dim):
        self.action_dim, self.training_starts, self.training_actions = action_dim, [], []

    def act(self, obs, t0=False, eval_mode=False, **_):
        action = torch.rand(self.action_dim) * 2 - 1
        if not eval_mode:
            if t0:
                self.training_starts.append(obs.clone())
            self.training_actions.append(action)
        return action

    def update(self, batch):
        return {"loss": torch.tensor(0.0)}

    def state_dict(self):
        return {}


# episodes: Pendulum-v1 200 steps, pendulum-swingup 1000 frames, hockey up to 251; seeding ends before the end
TASKS = {"gym/Pendulum-v1": ["steps=1000", "seed_steps=200", "eval_freq=200"],
         "pendulum-swingup": ["steps=2000", "seed_steps=250", "eval_freq=1000"],
         "hockey": ["steps=800", "seed_steps=251", "eval_freq=200", "hockey.opponent=weak"]}


def _train(tmp_path, task, *overrides):
    cfg = compose([f"task={task}", "agent=dreamer", "model_size=XS", *TASKS[task], "checkpoint_freq=100000",
                   "save_buffer=false", "logger.progress=false", *overrides])
    torch.manual_seed(cfg.seed)
    env, spec = make_env(cfg)
    agent = RecordingAgent(spec.action_dim)
    trainer = OnlineTrainer(cfg, env, spec, agent, Buffer(5000, agent.seq_len, agent.batch_size), None, tmp_path)
    trainer.logger = _NoLogger()
    trainer.train()
    return trainer, agent


class _NoLogger:
    def log(self, row, step, kind):
        self.last = row

    def row_counts(self):
        return {}


def _replay(trainer) -> torch.Tensor:
    steps, _ = trainer.buffer.stored_steps()
    return steps["obs"]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("task", list(TASKS))
def test_own_stream_keeps_training_the_same_whatever_the_evaluation_settings(tmp_path, task):
    one_trainer, one = _train(tmp_path / "1", task, "eval_stream=own", "eval_episodes=1")
    three_trainer, three = _train(tmp_path / "3", task, "eval_stream=own", "eval_episodes=3")
    assert len(one.training_starts) >= 1 and one.training_actions
    assert _same(one.training_starts, three.training_starts)  # start states
    assert _same(one.training_actions, three.training_actions)  # the agent's noise
    assert torch.equal(_replay(one_trainer), _replay(three_trainer))  # everything training stored, seeding too
    shared_one_trainer, shared_one = _train(tmp_path / "s1", task, "eval_episodes=1")
    shared_three_trainer, shared_three = _train(tmp_path / "s3", task, "eval_episodes=3")
    # shared: each evaluation episode takes a start and noise that training would have had
    assert not _same(shared_one.training_actions, shared_three.training_actions)
    assert not torch.equal(_replay(shared_one_trainer), _replay(shared_three_trainer))


def test_own_stream_continues_across_evaluations_and_a_resume(tmp_path):
    """Two evaluations play different starts, and a trainer rebuilt from the state at an evaluation's end
    evaluates from where the stream stood."""
    task, overrides = "gym/Pendulum-v1", ("eval_stream=own", "eval_episodes=2")
    trainer, _ = _train(tmp_path / "a", task, *overrides)
    state = {**trainer.state(), "env": trainer.env.rng_state()}
    first = trainer.evaluate()["episode_reward"]
    second = trainer.evaluate()["episode_reward"]
    assert first != second
    rebuilt, _ = _train(tmp_path / "b", task, *overrides)
    rebuilt.load_state(state)  # restores the env's stream too (load_common_state)
    assert rebuilt.evaluate()["episode_reward"] == first


def test_dmc_reset_with_a_seed_reseeds_its_start_states():
    cfg = compose(["task=pendulum-swingup", "agent=dreamer", "model_size=XS"])
    env, _ = make_env(cfg, seed=3)
    reseeded = env.env.unwrapped
    fresh = make_env(cfg, seed=5)[0].env.unwrapped
    reseeded.reset(seed=3)
    reseeded.reset()  # move its stream on
    obs_reseeded = reseeded.reset(seed=5)[0]
    assert (obs_reseeded == fresh.reset(seed=5)[0]).all()
