"""The agent contract (src/base.py), checked on every registered agent, and a toy agent that trains end to end
through train.py by registering it, with nothing else edited."""
import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import common.config
from common.config import AgentRules
from src import AGENTS, Agent, make_agent
from tests.conftest import ROOT, TINY_TDMPC2, compose, random_episode

# tiny settings of each registered agent; a newly registered agent must add its own (test_every_agent_has_a_case)
CASES = {
    "tdmpc2": ["task=gym/Pendulum-v1", *TINY_TDMPC2],
    "dreamer": ["agent=dreamer", "task=gym/Pendulum-v1", "model_size=XS", "batch_size=4", "seq_len=8",
                "horizon=4"],
    "worldmodels": ["agent=worldmodels", "trainer=onpolicy", "task=gym/CartPole-v1", "memory_dim=16",
                    "memory_layers=1", "memory_heads=2", "window=4", "controller_dims=[16,16]", "enc_dim=16",
                    "num_codes=2", "code_dim=4", "n_steps=4", "num_envs=2", "planning_horizon=2"],
}


def test_every_agent_has_a_case():
    assert set(AGENTS) == set(CASES)


def _build(name, seed=0):
    from envs import make_env
    torch.manual_seed(seed)
    cfg = compose(CASES[name])
    env, spec = make_env(cfg)
    common.config.validate_for_env(cfg, spec)
    return cfg, env, spec, make_agent(cfg, spec, torch.device("cpu"))


def _batch(cfg, env, spec, agent):
    """What the agent's trainer would pass to `update`: a replayed (L, B) batch, or an on-policy rollout."""
    if cfg.trainer == "onpolicy":
        from trainer.base import Progress
        from trainer.onpolicy_trainer import OnPolicyTrainer
        trainer = OnPolicyTrainer(cfg, env, spec, agent, None, None, "/tmp")
        trainer._reset()
        rollout, _ = trainer.rollout(Progress(1, 0, enabled=False))
        trainer.envs.close()
        return rollout
    from common.buffer import Buffer
    buffer = Buffer(10_000, agent.seq_len, agent.batch_size, cross_episodes=agent.sequences_cross_episodes)
    buffer.add(random_episode(env, spec))
    return buffer.sample()


def _eval_actions(agent, obs_list, seed=0):
    torch.manual_seed(seed)  # planners draw noise even in eval mode
    return torch.stack([agent.act(obs, t0=i == 0, eval_mode=True) for i, obs in enumerate(obs_list)])


def _observations(env, n=5):
    obs = [env.reset()]
    for _ in range(n - 1):
        obs.append(env.step(env.rand_act())[0])
    return obs


def _trainable(agent) -> dict:
    """Every trainable parameter of the agent's modules (attributes and dicts of modules), by identity."""
    params = {}
    for value in vars(agent).values():
        modules = value.values() if isinstance(value, dict) else [value]
        for module in modules:
            if isinstance(module, nn.Module):
                params.update({id(p): p for p in module.parameters() if p.requires_grad})
    return params


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request):
    """(cfg, env, spec, agent after one update, its metrics, the batch) of each registered agent."""
    cfg, env, spec, agent = _build(request.param)
    batch = _batch(cfg, env, spec, agent)
    metrics = agent.update(batch)
    yield cfg, env, spec, agent, metrics, batch
    env.close()


def test_agent_satisfies_the_protocol(trained):
    cfg, _, spec, agent, _, _ = trained
    assert isinstance(agent, Agent)
    assert agent.seq_len >= 1 and agent.batch_size >= 1 and agent.updates_per_step >= 0
    assert isinstance(agent.sequences_cross_episodes, bool)


def test_act_shapes_and_bounds(trained):
    _, env, spec, agent, _, _ = trained
    for eval_mode in (False, True):
        for i, obs in enumerate(_observations(env)):
            action = agent.act(obs, t0=i == 0, eval_mode=eval_mode)
            assert action.shape == (spec.action_dim,) and torch.isfinite(action).all()
            if spec.discrete:  # one-hot
                assert sorted(action.tolist()) == [0.0] * (spec.action_dim - 1) + [1.0]
            else:
                assert action.abs().max() <= 1


def test_update_returns_finite_scalar_metrics(trained):
    _, _, _, agent, metrics, _ = trained
    assert metrics and all(v.ndim == 0 and torch.isfinite(v) for v in metrics.values()), metrics


def test_state_round_trip_gives_identical_actions_and_updates(trained):
    cfg, env, spec, agent, _, batch = trained
    obs = _observations(env)
    state = copy.deepcopy(agent.state_dict())
    _, other_env, _, other = _build(cfg.agent, seed=1)  # other initial weights
    other_env.close()
    if not spec.discrete:  # (one-hot actions of two small nets may well agree)
        assert not torch.equal(_eval_actions(other, obs), _eval_actions(agent, obs))
    other.load_state_dict(state)
    assert torch.equal(_eval_actions(other, obs), _eval_actions(agent, obs))
    # optimiser states and counters came along: the same update on the same batch gives the same metrics
    torch.manual_seed(4)
    mine = agent.update(batch)
    torch.manual_seed(4)
    theirs = other.update(batch)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert torch.equal(_eval_actions(other, obs), _eval_actions(agent, obs))


def test_policy_state_loads_for_opponents(trained):
    cfg, env, spec, agent, _, _ = trained
    obs = _observations(env)
    _, other_env, _, opponent = _build(cfg.agent, seed=2)
    other_env.close()
    opponent.load_policy_state(copy.deepcopy(agent.policy_state()))
    assert torch.equal(_eval_actions(opponent, obs), _eval_actions(agent, obs))
    optimisers = [k for k, v in vars(agent).items() if isinstance(v, torch.optim.Optimizer)]
    assert optimisers and not set(optimisers) & set(agent.policy_state()), "no optimiser state in a policy"


def test_parameter_counts_add_up(trained):
    _, _, _, agent, _, _ = trained
    counts = agent.parameter_counts()
    parts = {k: v for k, v in counts.items() if k != "total"}
    assert parts and all(v > 0 for v in parts.values())
    assert counts["total"] == sum(parts.values())
    # every trainable parameter is counted once (target and slow copies are not trainable)
    assert counts["total"] == sum(p.numel() for p in _trainable(agent).values())


def test_every_trainable_parameter_is_in_exactly_one_optimiser_group(trained):
    _, _, _, agent, _, _ = trained
    seen = {}
    for name, value in vars(agent).items():
        if isinstance(value, torch.optim.Optimizer):
            for i, group in enumerate(value.param_groups):
                for p in group["params"]:
                    seen.setdefault(id(p), []).append(f"{name}[{i}]")
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, twice
    trainable = _trainable(agent)
    assert set(trainable) == set(seen), f"{len(set(trainable) - set(seen))} trainable parameters in no optimiser"


def test_a_head_added_to_the_tdmpc2_model_is_optimised():
    """The optimiser is built from the model's parameters: a head no list names is still trained."""
    from src.tdmpc2 import agent as tdmpc2_agent
    original = tdmpc2_agent.WorldModel

    class WithExtraHead(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra_head = nn.Linear(3, 1)

    tdmpc2_agent.WorldModel = WithExtraHead
    try:
        agent = _build("tdmpc2")[3]
    finally:
        tdmpc2_agent.WorldModel = original
    grouped = {id(p) for group in agent.optim.param_groups for p in group["params"]}
    assert all(id(p) in grouped for p in agent.model.extra_head.parameters())


@pytest.mark.parametrize("name, agent_keys", [("tdmpc2", ("tasks", "multi_gamma")), ("dreamer", ("updates",))])
def test_version_1_checkpoints_are_migrated(tmp_path, name, agent_keys):
    """A format-version-1 file of earlier code, without the entries added since, loads and resumes its agent."""
    from common import checkpoint
    cfg, env, spec, agent = _build(name)
    env.close()
    path = tmp_path / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0})
    payload = torch.load(path, weights_only=False)
    payload["format_version"] = 1
    for key in agent_keys:
        del payload["agent"][key]
    torch.save(payload, path)
    loaded = checkpoint.load(path, cfg)
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded["trainer"] == {"step": 0, "trainer": "online", "finished": False, "env": None}
    assert all(key in loaded["agent"] for key in agent_keys)
    _build(name, seed=1)[3].load_state_dict(loaded["agent"])


def test_version_2_checkpoints_get_their_buffer_count(tmp_path):
    """A format-2 file of earlier code saved a buffer state without `written`: such a buffer never wrapped, so
    the count is the stored length, and the buffer loads and replays as saved."""
    from common import checkpoint
    from common.buffer import Buffer
    cfg, env, spec, agent = _build("tdmpc2")
    buffer = Buffer(10_000, agent.seq_len, agent.batch_size)
    for _ in range(2):
        buffer.add(random_episode(env, spec))
    env.close()
    path = tmp_path / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": len(buffer)}, buffer)
    payload = torch.load(path, weights_only=False)
    payload["format_version"] = 2
    del payload["buffer_state"]["written"]
    torch.save(payload, path)
    loaded = checkpoint.load(path, cfg)
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded["buffer_state"] == buffer.state_dict()
    copy = Buffer(10_000, agent.seq_len, agent.batch_size)
    copy.load(str(checkpoint.buffer_path(path, loaded)), loaded["buffer_state"])
    torch.manual_seed(3)
    a = buffer.sample()
    torch.manual_seed(3)
    assert torch.equal(a["obs"], copy.sample()["obs"])


def test_version_2_migration_fills_in_only_the_tasks_own_entries(tmp_path):
    """The task's hooks migrate their entries (envs/__init__.py registers them): hockey's game outcomes,
    next snapshot and the pool's BasicOpponent states; other tasks' states and policy-only files are left alone."""
    import envs  # noqa: F401  (registers the task migrations)
    from common import checkpoint

    def version_2(task, **extra):
        pool = {"members": [], "recent": {}, "rng": None}
        return {"format_version": 2, "config": {"task": task}, "trainer": {"step": 300, "selfplay": pool}, **extra}
    hockey = checkpoint.migrate(version_2("hockey"), tmp_path)
    assert hockey["format_version"] == checkpoint.FORMAT_VERSION
    assert hockey["trainer"] == {"step": 300, "outcomes": [], "next_snapshot": 300,
                                 "selfplay": {"members": [], "recent": {}, "rng": None, "basic": {}}}
    for other in (version_2("gym/Pendulum-v1"), version_2("hockey", policy_only=True)):
        assert checkpoint.migrate(copy.deepcopy(other), tmp_path)["trainer"] == other["trainer"]


# ---------------------------------------------------------------------------------- a toy agent, end to end
class ToyAgent:
    """A linear tanh policy that regresses onto replayed actions weighted by their rewards' softmax: no world
    model, just enough to drive every part of the contract through the online trainer."""

    sequences_cross_episodes = False
    seq_len, updates_per_step = 2, 1.0

    def __init__(self, cfg, spec, device):
        self.batch_size = int(cfg.batch_size)
        self.policy = nn.Linear(spec.obs_shape[0], spec.action_dim).to(device)
        self.optim = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)

    def act(self, obs, t0=False, eval_mode=False):
        with torch.no_grad():
            action = torch.tanh(self.policy(obs))
        return action if eval_mode else (action + 0.3 * torch.randn_like(action)).clamp(-1, 1)

    def update(self, batch):
        obs, action, reward = batch["obs"][0], batch["action"][1], batch["reward"][1, :, 0]
        weight = torch.softmax(reward, 0)
        loss = (weight * (torch.tanh(self.policy(obs)) - action).pow(2).sum(-1)).sum()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return {"toy_loss": loss.detach()}

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state):
        self.policy.load_state_dict(state["policy"])
        self.optim.load_state_dict(state["optim"])

    def policy_state(self):
        return {"policy": self.policy.state_dict()}

    def load_policy_state(self, state):
        self.policy.load_state_dict(state["policy"])

    def parameter_counts(self):
        n = sum(p.numel() for p in self.policy.parameters())
        return {"policy": n, "total": n}


def _toy_config_rules(r):
    r.positive_int("batch_size")
    r.number("lr", 0, low_open=True)


def _toy_env_rules(r, spec):
    r.check(not spec.discrete and len(spec.obs_shape) == 1, "task", "the toy agent needs vectors in and out")


TOY_RULES = AgentRules(_toy_config_rules, _toy_env_rules, auto_discount=lambda cfg, length: 0.99)


def register_toy():
    from src import register_agent
    register_agent("toy", ToyAgent, TOY_RULES)


def test_toy_agent_trains_through_train_py(tmp_path):
    """conf/agent/toy.yaml lives in the test's own config directory (hydra.searchpath); train.py runs as
    `python train.py ...` does, after one register_agent call."""
    (tmp_path / "conf" / "agent").mkdir(parents=True)
    (tmp_path / "conf" / "agent" / "toy.yaml").write_text("# @package _global_\nagent: toy\nlr: 0.01\n"
                                                         "batch_size: 8\n")
    args = ["threads=1", "logger.progress=false", "task=gym/Pendulum-v1", "agent=toy", "steps=400",
            "seed_steps=200", "eval_freq=200", "checkpoint_freq=200", "eval_episodes=1",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    script = textwrap.dedent(f"""
        import runpy, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_contract import register_toy
        register_toy()
        sys.argv = [{str(ROOT / "train.py")!r}, *{args!r}]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "toy on gym/Pendulum-v1" in proc.stdout and "policy 4, total 4" in proc.stdout, proc.stdout
    run_dir = next((tmp_path / "runs").rglob("metrics")).parent
    train_rows = (run_dir / "metrics" / "train.csv").read_text().splitlines()
    assert "toy_loss" in train_rows[0] and len(train_rows) == 3  # header + 2 episodes of 200 steps
    assert len((run_dir / "metrics" / "eval.csv").read_text().splitlines()) == 4  # header, steps 0, 200, 400
    payload = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert payload["config"]["agent"] == "toy" and set(payload["agent"]) == {"policy", "optim"}
