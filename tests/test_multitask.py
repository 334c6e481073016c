"""Multi-task TD-MPC2: the padded multi-task env, task sets, action masking in the policy and the planner,
task embeddings (used only for their own task), per-task discounts, config rules, checkpoints and datasets,
and a tiny two-task training run end to end."""
import copy
import csv
import math
from pathlib import Path

import pytest
import torch

from common.buffer import Buffer, episode_step
from common.config import ConfigError, task_discounts, validate_for_env
from envs import make_env
from common.tasks import TASK_SETS, is_multitask, task_label, task_list
from common.spec import EnvSpec
from src import make_agent
from tests.conftest import TINY_TDMPC2, compose, run_train

# cheap Gymnasium tasks: Pendulum (obs 3, 1 action, 200 steps), Reacher (obs 10, 2 actions, 50 steps),
# MountainCarContinuous (obs 2, 1 action, 999 steps)
TWO = "task=[gym/Pendulum-v1,gym/Reacher-v5]"
THREE = "task=[gym/Pendulum-v1,gym/Reacher-v5,gym/MountainCarContinuous-v0]"


def _build(*overrides):
    torch.manual_seed(0)
    cfg = compose([*TINY_TDMPC2, "task_dim=8", *overrides])
    env, spec = make_env(cfg)
    validate_for_env(cfg, spec)
    return cfg, env, spec, make_agent(cfg, spec, torch.device("cpu"))


def _batch(spec, tasks: list[int], T: int = 3):
    """A (T+1, B) replay batch of random observations and actions, zero on each sample's padded dims."""
    B = len(tasks)
    task = torch.tensor(tasks)
    obs_mask = (torch.arange(spec.obs_shape[0]) < torch.tensor(spec.obs_dims)[task].unsqueeze(1)).float()  # (B, O)
    act_mask = (torch.arange(spec.action_dim) < torch.tensor(spec.action_dims)[task].unsqueeze(1)).float()  # (B, A)
    return {"obs": torch.randn(T + 1, B, spec.obs_shape[0]) * obs_mask,
            "action": (torch.rand(T + 1, B, spec.action_dim) * 2 - 1) * act_mask,
            "reward": torch.rand(T + 1, B, 1), "terminated": torch.zeros(T + 1, B, 1),
            "task": task.expand(T + 1, B)}


# ------------------------------------------------------------------------------------------ tasks and env
def test_task_sets_lists_and_labels():
    assert task_list("mt3-cartpole") == ["cartpole-balance", "cartpole-swingup", "pendulum-swingup"]
    assert task_list(["a", "b"]) == ["a", "b"] and task_list("cheetah-run") == ["cheetah-run"]
    assert is_multitask("mt3-cartpole") and is_multitask(["a", "b"]) and not is_multitask("cheetah-run")
    assert task_label("mt3-cartpole") == "mt3-cartpole"
    assert task_label(["gym/Pendulum-v1", "cartpole-balance"]) == "gym-Pendulum-v1+cartpole-balance"
    assert all(len(set(tasks)) == len(tasks) >= 2 for tasks in TASK_SETS.values())
    from envs import task_kind
    assert all(task_kind(t) == "dmc" for tasks in TASK_SETS.values() for t in tasks)  # every member exists


def test_single_task_spec_fills_the_per_task_fields():
    spec = EnvSpec(obs_shape=(3,), action_dim=1, discrete=False, episode_length=200, action_repeat=1,
                   episodic=True, task="gym/Pendulum-v1")
    assert not spec.multitask
    assert (spec.tasks, spec.obs_dims, spec.action_dims, spec.episode_lengths) == (("gym/Pendulum-v1",), (3,), (1,),
                                                                                    (200,))


def test_env_pads_observations_slices_actions_and_rotates_tasks():
    cfg = compose([TWO, *TINY_TDMPC2])
    env, spec = make_env(cfg)
    assert spec.multitask and spec.task == "gym-Pendulum-v1+gym-Reacher-v5"
    assert spec.tasks == ("gym/Pendulum-v1", "gym/Reacher-v5")
    assert (spec.obs_shape, spec.action_dim, spec.obs_dims, spec.action_dims) == ((10,), 2, (3, 10), (1, 2))
    assert spec.episode_lengths == (200, 50) and spec.episode_length == 200 and spec.action_repeat == 1

    seen = []
    for _ in range(3):  # round robin: 0, 1, 0
        obs = env.reset()
        seen.append(env.task_id)
        assert obs.shape == (10,)
    assert seen == [0, 1, 0]
    assert (obs[3:] == 0).all() and (obs[:3] != 0).any()  # Pendulum's 3 dims, then zeros
    assert env.rand_act().shape == (2,) and env.rand_act()[1] == 0  # Pendulum: one action dim, one padded

    stepped = []
    original = env.envs[0].step
    env.envs[0].step = lambda a: (stepped.append(a), original(a))[1]
    obs, reward, done, info = env.step(torch.tensor([0.5, 0.9]))
    assert stepped[0].tolist() == [0.5] and obs.shape == (10,) and (obs[3:] == 0).all()

    obs = env.reset(task=1)  # evaluation picks a task without moving the rotation
    assert env.task_id == 1 and (obs[3:] != 0).any()
    env.reset()
    assert env.task_id == 1  # the rotation continues after task 0 with task 1


def test_online_trainer_restores_the_task_rotation_on_resume(tmp_path):
    from trainer.online_trainer import OnlineTrainer
    cfg, env, spec, agent = _build(THREE)
    trainer = OnlineTrainer(cfg, env, spec, agent, Buffer(1000, agent.seq_len, agent.batch_size), None, tmp_path)
    trainer.load_state({**trainer.state(), "episode": 7})
    env.reset()
    assert env.task_id == 7 % 3


# ------------------------------------------------------------------------------------------ masking
def test_padded_action_dims_are_exactly_zero_from_pi():
    cfg, env, spec, agent = _build(TWO)
    m = agent.model
    task = torch.tensor([0, 1, 0, 1])
    z = m.encode(torch.randn(5, 4, 10), task)  # (T, B, latent) with per-sample tasks
    action, info = m.pi(z, task)
    assert action.shape == (5, 4, 2)
    assert (action[:, task == 0, 1] == 0).all() and (info["mean"][:, task == 0, 1] == 0).all()
    assert (action[:, task == 1] != 0).all()  # Reacher uses both dims


def test_entropy_counts_only_the_tasks_own_action_dims():
    cfg, env, spec, agent = _build(TWO)
    m = agent.model
    task = torch.tensor([0, 1])
    z = m.encode(torch.randn(2, 10), task)
    torch.manual_seed(3)
    _, before = m.pi(z, task)
    with torch.no_grad():  # change the log-std output of action dim 1 (rows: [mean (A), log_std (A)])
        m.policy_prior[-1].bias[spec.action_dim + 1] += 1.0
    torch.manual_seed(3)
    _, after = m.pi(z, task)
    assert torch.equal(before["entropy"][0], after["entropy"][0])  # Pendulum: dim 1 is padding
    assert not torch.equal(before["entropy"][1], after["entropy"][1])  # Reacher: dim 1 is a real action dim
    assert torch.equal(before["scaled_entropy"][0], after["scaled_entropy"][0])  # so for the official form
    assert not torch.equal(before["scaled_entropy"][1], after["scaled_entropy"][1])


@pytest.mark.parametrize("mpc", ["true", "false"])
def test_padded_action_dims_are_exactly_zero_from_the_agent(mpc):
    cfg, env, spec, agent = _build(TWO, f"mpc={mpc}")
    obs = env.reset(task=0)
    for t in range(4):  # training mode: exploration noise is on
        action = agent.act(obs, t0=t == 0, task=0)
        assert action.shape == (2,) and action[1] == 0 and action[0] != 0
        obs, *_ = env.step(action)
    assert agent.act(obs, eval_mode=True, task=0)[1] == 0
    obs = env.reset(task=1)
    assert (agent.act(obs, t0=True, task=1) != 0).all()
    with pytest.raises(ValueError, match="pass the task ids"):
        agent.act(obs, t0=True)


def test_planner_samples_are_zero_on_padded_dims(monkeypatch):
    cfg, env, spec, agent = _build(TWO)
    seen = []
    original = agent._estimate_value

    def record(z, actions, task=None):
        seen.append(actions.clone())  # (H, N, A): policy and Gaussian samples of this iteration
        return original(z, actions, task)
    monkeypatch.setattr(agent, "_estimate_value", record)
    agent.act(env.reset(task=0), t0=True, task=0)
    assert len(seen) == cfg.iterations
    assert all((a[..., 1] == 0).all() and (a[..., 0] != 0).any() for a in seen)


# ------------------------------------------------------------------------------------------ embeddings
def test_task_embedding_gradient_reaches_only_rows_of_tasks_in_the_batch():
    cfg, env, spec, agent = _build(THREE)
    emb = agent.model.task_emb
    assert emb.weight.shape == (3, 8) and emb.max_norm == 1
    before = emb.weight.detach().clone()
    seen = {}
    original_step = agent.optim.step

    def record_step(*a, **k):  # the world-model gradients, before the optimiser applies them
        seen["grad"] = emb.weight.grad.clone()
        return original_step(*a, **k)
    agent.optim.step = record_step
    agent.update(_batch(spec, [0, 2, 0, 2, 2, 0]))
    grad = seen["grad"]
    assert grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
    assert (grad[1] == 0).all()
    after = emb.weight.detach()
    assert not torch.equal(after[0], before[0]) and not torch.equal(after[2], before[2])
    assert torch.equal(after[1], before[1])  # Adam moves nothing that had no gradient yet


def test_each_sample_reads_only_its_own_tasks_embedding():
    cfg, env, spec, agent = _build(THREE)
    m = agent.model.eval()
    task = torch.tensor([0, 1, 2])
    obs = torch.randn(3, 10)
    action = torch.zeros(3, 2)

    def outputs():
        z = m.encode(obs, task)
        return torch.cat([z, m.next(z, action, task), m.reward(z, action, task), m.pi(z, task)[1]["mean"],
                          m.Q(z, action, task=task)[0]], -1)  # (3, ...)
    before = outputs()
    with torch.no_grad():
        m.task_emb.weight[1] += 0.3
    after = outputs()
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.allclose(before[1], after[1])


def test_single_task_model_has_no_embedding_or_masks():
    cfg = compose(["task=gym/Pendulum-v1", *TINY_TDMPC2])
    env, spec = make_env(cfg)
    agent = make_agent(cfg, spec, torch.device("cpu"))
    assert agent.model.task_emb is None and agent.model.action_mask(None) is None
    assert "action_masks" not in agent.model.state_dict() and agent.task_discounts is None


# ------------------------------------------------------------------------------------------ discounts
def test_per_task_discounts_by_hand():
    cfg, env, spec, agent = _build(THREE)
    # clip((L/5 - 1) / (L/5), 0.95, 0.995): L=200 -> 39/40; L=50 -> 0.9, clipped to 0.95; L=999 -> 1 - 5/999
    expected = [0.975, 0.95, 1 - 5 / 999]
    assert task_discounts(cfg, spec) == pytest.approx(expected)
    assert agent.task_discounts.tolist() == pytest.approx(expected)
    assert task_discounts(compose([THREE, "discount=0.9"]), spec) == [0.9, 0.9, 0.9]
    from common.config import primary_discount
    with pytest.raises(ValueError, match="task_discounts"):
        primary_discount(cfg, spec)


def test_td_targets_use_each_samples_task_discount(monkeypatch):
    cfg, env, spec, agent = _build(THREE)
    m = agent.model
    original_q, original_ce = m.Q, m.two_hot.ce
    seen = []

    def q(z, action, return_type="all", target=False, detach=False, task=None):
        if target:  # bootstrap V(s') = 1 everywhere: the TD target is then r + gamma (1 - terminated)
            return torch.ones(*z.shape[:-1], 1)
        return original_q(z, action, return_type, target, detach, task)

    def ce(logits, target):
        if logits.dim() == 4:  # the value loss: (num_q, T, B, bins) against the TD target (1, T, B, 1)
            seen.append(target)
        return original_ce(logits, target)
    monkeypatch.setattr(m, "Q", q)
    monkeypatch.setattr(m.two_hot, "ce", ce)
    tasks = [0, 1, 2, 1]
    batch = _batch(spec, tasks)
    batch["reward"].zero_()
    agent.update(batch)
    td_target = seen[0][0, :, :, 0]  # (T, B)
    expected = torch.tensor([0.975, 0.95, 1 - 5 / 999])[tasks]
    assert torch.allclose(td_target, expected.expand_as(td_target))


def test_planning_discounts_with_the_tasks_discount(monkeypatch):
    cfg, env, spec, agent = _build(THREE)
    m = agent.model
    # no reward, never terminating, value 1 after the horizon: the return is gamma_task ** horizon
    monkeypatch.setattr(m, "reward", lambda z, a, task=None: torch.zeros(*z.shape[:-1], cfg.num_bins))
    monkeypatch.setattr(m, "termination", lambda z, task=None: -torch.ones(*z.shape[:-1], 1))
    monkeypatch.setattr(m, "Q", lambda z, a, return_type="all", target=False, detach=False, task=None:
                        torch.ones(*z.shape[:-1], 1))
    z = torch.zeros(4, cfg.latent_dim)
    actions = torch.zeros(cfg.horizon, 4, spec.action_dim)
    for task, gamma in enumerate([0.975, 0.95, 1 - 5 / 999]):
        value = agent._estimate_value(z, actions, torch.tensor(task))
        assert torch.allclose(value, torch.full((4, 1), gamma ** cfg.horizon), atol=1e-6), task


# ------------------------------------------------------------------------------------------ config
def _error(*overrides) -> str:
    with pytest.raises(ConfigError) as e:
        compose(list(overrides))
    return str(e.value)


@pytest.mark.parametrize("overrides,key,rule", [
    (["task=[cartpole-balance]"], "task=['cartpole-balance']", "at least 2 tasks"),
    (["task=[cartpole-balance,cartpole-balance]"], "task=", "duplicate tasks ['cartpole-balance']"),
    (["task=[cartpole-balance,cartpole-foo]"], "task=", "unknown member 'cartpole-foo'"),
    (["task=[gym/Pendulum-v1,gym/CartPole-v1]"], "task=", "member 'gym/CartPole-v1' has discrete actions"),
    (["task=[hockey,pendulum-swingup]"], "task=", "member 'hockey': hockey tasks cannot"),
    (["task=mt3-cartpole", "obs=rgb"], "obs='rgb'", "several tasks need state observations"),
    (["task=mt3-cartpole", "agent=dreamer"], "agent='dreamer'", "several tasks need agent=tdmpc2"),
    (["task=mt3-cartpole", "multi_gamma.enabled=true"], "multi_gamma.enabled=True", "single-task only"),
    (["task=[gym/Pendulum-v1,pendulum-swingup]"], "action_repeat='auto'", "different action repeats"),
    (["task=mt3-cartpole", "task_dim=0"], "task_dim=0", "positive integer"),
])
def test_config_errors_name_key_and_rule(overrides, key, rule):
    msg = _error(*overrides)
    assert key in msg and rule in msg, msg


def test_valid_multitask_configs():
    assert compose(["task=mt3-cartpole"]).task == "mt3-cartpole"
    compose(["task=[gym/Pendulum-v1,pendulum-swingup]", "action_repeat=2"])  # mixed kinds with one repeat


# ------------------------------------------------------------------------------------------ checkpoints, data
def test_state_of_another_task_list_does_not_load():
    _, _, _, agent = _build(TWO)
    _, _, _, other = _build("task=[gym/Reacher-v5,gym/Pendulum-v1]")  # same shapes, other task ids
    with pytest.raises(ValueError, match="trained on tasks"):
        other.load_state_dict(copy.deepcopy(agent.state_dict()))
    with pytest.raises(ValueError, match="trained on tasks"):
        other.load_policy_state(agent.policy_state())
    _, _, _, same = _build(TWO)
    same.load_state_dict(copy.deepcopy(agent.state_dict()))


def test_checkpoint_config_check_compares_task_lists(tmp_path):
    from common import checkpoint

    class NoAgent:
        def state_dict(self):
            return {}
    spec = EnvSpec(obs_shape=(5,), action_dim=1, discrete=False, episode_length=500, action_repeat=2,
                   episodic=False, task="mt3-cartpole")
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, compose(["task=mt3-cartpole"]), spec, NoAgent(), {"step": 0})
    checkpoint.load(path, compose(["task=[cartpole-balance,cartpole-swingup,pendulum-swingup]"]))  # the same list
    with pytest.raises(checkpoint.CheckpointError, match="task: checkpoint"):
        checkpoint.load(path, compose(["task=[cartpole-swingup,cartpole-balance,pendulum-swingup]"]))
    with pytest.raises(checkpoint.CheckpointError, match="task_dim"):
        checkpoint.load(path, compose(["task=mt3-cartpole", "task_dim=32"]))
    checkpoint.load(path, compose(["task=mt3-cartpole", "task_dim=96"]))


def test_multitask_dataset_must_hold_the_configs_tasks(tmp_path):
    from common.dataset import DatasetError, load_buffer, write_dataset
    cfg, env, spec, agent = _build(TWO)
    buf = Buffer(1000, seq_len=4, batch_size=8)
    for task in (0, 1, 0):
        steps = [episode_step(torch.zeros(10), torch.zeros(2), 0.0, False, True, task=task)]
        steps += [episode_step(torch.ones(10), torch.ones(2), 1.0, False, False, task=task) for _ in range(6)]
        buf.add(torch.stack(steps))
    import dataclasses
    manifest = write_dataset(*buf.stored_steps(), tmp_path / "d", spec=dataclasses.asdict(spec), config={},
                             source={})
    assert manifest["tasks"] == ["gym/Pendulum-v1", "gym/Reacher-v5"]
    loaded, _ = load_buffer([str(tmp_path / "d")], spec, 4, 8)
    assert set(loaded.sample()["task"].reshape(-1).tolist()) <= {0, 1}
    reversed_spec = dataclasses.replace(spec, tasks=spec.tasks[::-1])
    with pytest.raises(DatasetError, match="holds tasks"):
        load_buffer([str(tmp_path / "d")], reversed_spec, 4, 8)


# ------------------------------------------------------------------------------------------ end to end
def test_two_task_training_run_logs_per_task_evaluation(tmp_path):
    # Pendulum (200 steps) then Reacher (50 steps): learning starts in the Reacher episode (seed_steps=150)
    proc = run_train([TWO, *TINY_TDMPC2, "task_dim=8", "steps=250", "seed_steps=150", "eval_freq=250",
                      "eval_episodes=1", "checkpoint_freq=250", "exp_name=mt"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gym/Reacher-v5 10 obs, 2 actions, episode 50, discount 0.9500" in proc.stdout
    run_dir = next((tmp_path / "runs" / "gym-Pendulum-v1+gym-Reacher-v5" / "tdmpc2" / "mt" / "seed1").iterdir())
    with open(run_dir / "metrics" / "eval.csv", newline="") as f:
        evals = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in evals] == [0, 250]
    for row in evals:
        per_task = [float(row["episode_reward/gym/Pendulum-v1"]), float(row["episode_reward/gym/Reacher-v5"])]
        assert all(math.isfinite(r) for r in per_task)
        assert float(row["episode_reward"]) == pytest.approx(sum(per_task) / 2, rel=1e-4)
    with open(run_dir / "metrics" / "train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    assert [int(r["episode_length"]) for r in train] == [200, 50] and float(train[-1]["updates"]) > 150
    assert (tmp_path / "results" / "runs" / "gym-Pendulum-v1+gym-Reacher-v5" / "tdmpc2-mt-seed1.csv").exists()
    from common import checkpoint
    payload = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["agent"]["tasks"] == ["gym/Pendulum-v1", "gym/Reacher-v5"]
    assert tuple(payload["spec"]["action_dims"]) == (1, 2)
    assert Path(checkpoint.buffer_path(run_dir / "checkpoints" / "latest.pt", payload)).is_dir()


def test_evaluate_reports_each_task_of_a_multitask_checkpoint(tmp_path):
    import json
    import subprocess
    import sys
    from common import checkpoint
    from tests.conftest import ROOT
    cfg, env, spec, agent = _build(TWO, "mpc=false")  # an untrained agent is enough to check the bookkeeping
    path = tmp_path / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0})
    ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"checkpoint={path}", "eval_episodes=2",
                         "threads=1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads(next((tmp_path / "runs" / "evaluate").glob("*/evaluation.json")).read_text())
    assert result["task"] == ["gym/Pendulum-v1", "gym/Reacher-v5"]
    assert [len(result["tasks"][t]["returns"]) for t in result["task"]] == [2, 2]
    assert result["mean_return"] == pytest.approx(sum(t["mean_return"] for t in result["tasks"].values()) / 2)
