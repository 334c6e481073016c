"""Hockey self-play: the opponent pool (sampling, PFSP, bounds, state), snapshots of both agent types, the
selfplay.* config rules and a tiny self-play training run."""
import csv
import math

import numpy as np
import pytest
import torch

from common import checkpoint
from common.config import ConfigError, validate_for_env
from envs.hockey.selfplay import PFSP_FLOOR, OpponentPool, checkpoint_policy, learner_score, pfsp_weight
from envs.hockey.task import make_hockey_env
from tests.conftest import TINY_TDMPC2, compose, run_train

PROBS = {"weak": 0.2, "strong": 0.3, "pool": 0.5}


class FakePolicy:
    """Stands in for a loaded checkpoint: a constant action, counting calls and resets."""

    def __init__(self, path):
        self.path, self.calls, self.resets = path, 0, 0

    def reset(self):
        self.resets += 1

    def __call__(self, obs):
        self.calls += 1
        return np.array([-1.0, 0.0, 0.0, 0.0])


def _pool(members=(), probs=PROBS, **kwargs):
    pool = OpponentPool(probs, kwargs.pop("pool_size", 10), seed=kwargs.pop("seed", 0), load_policy=FakePolicy,
                        **kwargs)
    for name in members:
        pool.add(f"/nowhere/{name}.pt")
    return pool


def _name(opponent) -> str:
    return opponent if isinstance(opponent, str) else opponent.path.rsplit("/", 1)[-1][:-3]


def _frequencies(pool, n: int) -> dict:
    counts = {}
    for _ in range(n):
        name = _name(pool.sample())
        counts[name] = counts.get(name, 0) + 1
    return {k: v / n for k, v in counts.items()}


def _assert_binomial(freq: dict, expected: dict, n: int):
    """Each observed frequency within 4 binomial standard deviations of its probability."""
    assert set(freq) == {k for k, p in expected.items() if p > 0}
    for key, p in expected.items():
        assert abs(freq.get(key, 0.0) - p) <= 4 * math.sqrt(p * (1 - p) / n), (key, freq, expected)


def _record(pool, member_index: int, outcomes):
    for outcome in outcomes:
        pool.current = pool.members[member_index]
        pool.record(outcome)


# ---------------------------------------------------------------------------------------------- sampling
def test_sampling_frequencies_match_the_probabilities():
    n = 20000
    pool = _pool(["a", "b", "c"])
    expected = {"weak": 0.2, "strong": 0.3, "a": 0.5 / 3, "b": 0.5 / 3, "c": 0.5 / 3}
    _assert_binomial(_frequencies(pool, n), expected, n)
    # an empty pool's share goes to the BasicOpponents in proportion to theirs
    _assert_binomial(_frequencies(_pool(), n), {"weak": 0.4, "strong": 0.6}, n)
    # a kind with probability 0 never plays
    _assert_binomial(_frequencies(_pool(["a"], probs={"weak": 0, "strong": 0, "pool": 1}), 500), {"a": 1.0}, 500)
    with pytest.raises(RuntimeError, match="nobody to play"):
        _pool(probs={"weak": 0, "strong": 0, "pool": 1}).sample()


def test_pfsp_favours_the_member_the_learner_loses_to():
    n = 20000
    pool = _pool(["hard", "easy", "new"], probs={"weak": 0, "strong": 0, "pool": 1}, pfsp=True)
    _record(pool, 0, [-1] * 20)  # the learner lost all 20 games against "hard"
    _record(pool, 1, [1] * 20)  # and won all 20 against "easy"
    # hand-computed: scores (0 + 1) / 22, (20 + 1) / 22 and 1/2 (unplayed); weights (1 - s)^2 with the floor
    assert learner_score(pool.members[0].outcomes) == pytest.approx(1 / 22)
    assert learner_score(pool.members[2].outcomes) == 0.5
    weights = np.array([(21 / 22) ** 2, PFSP_FLOOR, 0.25])
    np.testing.assert_allclose(pool.member_probs(), weights / weights.sum())
    assert pfsp_weight(21 / 22) == PFSP_FLOOR  # (1/22)^2 is below the floor: "easy" still plays sometimes
    freq = _frequencies(pool, n)
    _assert_binomial(freq, dict(zip(["hard", "easy", "new"], weights / weights.sum())), n)
    assert freq["hard"] > freq["new"] > freq["easy"] > 0
    # draws count half: a member always drawn against sits between the two
    _record(pool, 2, [0] * 20)
    assert learner_score(pool.members[2].outcomes) == pytest.approx(0.5)
    # without PFSP the same records change nothing
    pool.pfsp = False
    np.testing.assert_allclose(pool.member_probs(), [1 / 3] * 3)


def test_pool_bound_drops_the_oldest_or_the_weakest():
    oldest = _pool(["a", "b"], pool_size=2)
    dropped = oldest.add("/nowhere/c.pt", step=30)
    assert [_name(m) for m in dropped] == ["a"] and [_name(m) for m in oldest.members] == ["b", "c"]
    assert oldest.members[-1].step == 30

    weakest = _pool(["a", "b", "c"], pool_size=3, drop="weakest")
    _record(weakest, 0, [-1, -1])  # the learner loses to a,
    _record(weakest, 1, [1, 1, 1])  # beats b (the weakest member),
    _record(weakest, 2, [1, 0])  # and scores 0.625 against c
    dropped = weakest.add("/nowhere/d.pt")
    assert [_name(m) for m in dropped] == ["b"] and [_name(m) for m in weakest.members] == ["a", "c", "d"]
    # the member just added is never the one dropped, even when it scores best (1/2 against older losses):
    _record(weakest, 1, [-1] * 4)  # c: (1 + 0.5 + 1) / 8 = 0.3125
    _record(weakest, 2, [-1] * 4)  # d: 1 / 6; a: 1 / 4
    weakest.add("/nowhere/e.pt")
    assert [_name(m) for m in weakest.members] == ["a", "d", "e"]  # c was the weakest of the others


def test_record_stats_and_evaluation_opponent():
    pool = _pool(["a"], probs={"weak": 0.5, "strong": 0, "pool": 0.5}, eval_opponent="strong")
    assert pool.stats() == {"pool_size": 1}  # no games yet: no win rates
    played = {"weak": [], "pool": []}
    for i in range(40):
        pool.reset()
        kind = "pool" if not isinstance(pool.current, str) else pool.current
        played[kind].append([1, 0, -1][i % 3])
        pool.record(played[kind][-1])
    stats = pool.stats()
    for kind in ("weak", "pool"):
        assert stats[f"win_rate/{kind}"] == pytest.approx(played[kind].count(1) / len(played[kind]))
    assert "win_rate/strong" not in stats and stats["pool_size"] == 1
    assert list(pool.members[0].outcomes) == played["pool"]
    with pytest.raises(RuntimeError):  # each game is recorded once
        pool.record(1)
    with pool.evaluating():
        for _ in range(20):
            pool.reset()
            assert pool.current == "strong"
        with pytest.raises(RuntimeError):  # evaluation games are not recorded
            pool.record(1)
    pool.reset()
    assert pool.current in ("weak", pool.members[0])


def test_pool_plays_inside_the_hockey_task():
    pool = _pool(["a"], probs={"weak": 0, "strong": 0, "pool": 1})
    env = make_hockey_env(opponent="selfplay", opponent_policy=pool, seed=0)
    member = pool.members[0].policy
    for episode in range(2):
        env.reset()
        for _ in range(5):
            obs, *_ = env.step(np.zeros(4))
        assert member.resets == episode + 1 and member.calls == 5 * (episode + 1)
        assert obs[9] > 0  # the member's constant action: it moves away from the learner
    pool.probs = {"weak": 1.0, "strong": 0.0, "pool": 0.0}
    env.reset()
    env.step(np.zeros(4))
    assert member.calls == 10 and pool.current == "weak"  # the BasicOpponent played
    with pytest.raises(ValueError, match="selfplay"):
        make_hockey_env(opponent="selfplay")


def test_pool_state_round_trip_continues_identically():
    pool = _pool(["a", "b"], pfsp=True)
    _record(pool, 0, [1, -1, 0])
    for _ in range(7):
        pool.reset()
        pool.record(1)
    state = pool.state_dict()
    copy = _pool(seed=123, pfsp=True)  # another seed, no members: the rest comes from the state
    copy.load_state_dict(state)
    assert [m.path for m in copy.members] == [m.path for m in pool.members]
    assert [list(m.outcomes) for m in copy.members] == [list(m.outcomes) for m in pool.members]
    assert copy.stats() == pool.stats()
    assert [_name(pool.sample()) for _ in range(50)] == [_name(copy.sample()) for _ in range(50)]


# ---------------------------------------------------------------------------------------------- snapshots
def _hockey_agent(*overrides):
    from envs import make_env
    from src import make_agent
    torch.manual_seed(0)
    cfg = compose(["task=hockey", *overrides])
    env, spec = make_env(cfg)
    validate_for_env(cfg, spec)
    return cfg, spec, make_agent(cfg, spec, torch.device("cpu"))


def _actions(act, observations) -> torch.Tensor:
    """Deterministic actions along a sequence; the seed before each step fixes TD-MPC2's planner samples."""
    out = []
    for t, obs in enumerate(observations):
        torch.manual_seed(t)
        out.append(torch.as_tensor(act(obs, t == 0)))
    return torch.stack(out)


@pytest.mark.parametrize("agent_overrides", [TINY_TDMPC2, ["agent=dreamer", "model_size=XS"]],
                         ids=["tdmpc2", "dreamer"])
def test_snapshot_save_load_plays_identical_actions(agent_overrides, tmp_path):
    cfg, spec, agent = _hockey_agent(*agent_overrides)
    env = make_hockey_env(opponent="weak", seed=1)
    observations = [env.reset()[0]] + [env.step(np.random.default_rng(t).uniform(-1, 1, 4))[0] for t in range(7)]
    original = _actions(lambda o, t0: agent.act(torch.as_tensor(o), t0=t0, eval_mode=True), observations)

    path = tmp_path / "step_100.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 100, "trainer": "online"}, policy_only=True)
    payload = checkpoint.load(path)
    assert payload["policy_only"] and payload["trainer"]["step"] == 100
    assert not any("opt" in key for key in payload["agent"])  # no optimiser state
    torch.manual_seed(123)  # the rebuilt agent starts from other weights than the saved one
    policy = checkpoint_policy(path)

    def play(o, t0):
        if t0:
            policy.reset()
        return policy(o)
    np.testing.assert_array_equal(_actions(play, observations).numpy(), original.numpy())
    from src import make_agent  # a fresh agent acts differently, so the comparison above can fail
    fresh = make_agent(cfg, spec, torch.device("cpu"))
    assert not torch.equal(_actions(lambda o, t0: fresh.act(torch.as_tensor(o), t0=t0, eval_mode=True),
                                    observations), original)

    # a training checkpoint (whole agent, optimisers included) plays the same
    full = tmp_path / "latest.pt"
    checkpoint.save(full, cfg, spec, agent, {"step": 100, "trainer": "online"})
    from src.policy import CheckpointPolicy
    policy = CheckpointPolicy(full)
    np.testing.assert_array_equal(_actions(play, observations).numpy(), original.numpy())
    # a snapshot is no checkpoint to train from
    from common.run import restore
    with pytest.raises(checkpoint.CheckpointError, match="self-play snapshot"):
        restore(path, cfg, agent, None, None, None, tmp_path, "cpu")


def test_checkpoint_of_another_task_cannot_join_the_pool(tmp_path):
    from envs import make_env
    from src import make_agent
    cfg = compose(["task=gym/Pendulum-v1", *TINY_TDMPC2])
    env, spec = make_env(cfg)
    checkpoint.save(tmp_path / "p.pt", cfg, spec, make_agent(cfg, spec, torch.device("cpu")), {"step": 0},
                    policy_only=True)
    with pytest.raises(ValueError, match="cannot play hockey"):
        checkpoint_policy(tmp_path / "p.pt")


# ---------------------------------------------------------------------------------------------- config
def _error(*overrides) -> str:
    with pytest.raises(ConfigError) as e:
        compose(["task=hockey", "hockey.opponent=selfplay", *overrides])
    return str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["selfplay.probs.weak=0.5"], "selfplay.probs={'weak': 0.5, 'strong': 0.3, 'pool': 0.5}: must sum to 1"),
    (["selfplay.probs.weak=-0.1", "selfplay.probs.strong=0.6"], "selfplay.probs.weak=-0.1: must be a number"),
    (["selfplay.drop=newest"], "selfplay.drop='newest': must be one of oldest, weakest"),
    (["selfplay.pool_size=0"], "selfplay.pool_size=0: must be a positive integer"),
    (["selfplay.snapshot_every=-5"], "selfplay.snapshot_every=-5: must be a non-negative integer"),
    (["selfplay.pfsp=maybe"], "selfplay.pfsp='maybe': must be true or false"),
    (["selfplay.snapshot_every=0"], "selfplay.probs.pool=0.5: > 0 needs snapshots"),
    (["selfplay.pool=[/no/such/file.pt]"], "selfplay.pool[0]='/no/such/file.pt': must be an existing checkpoint"),
    (["hockey.mode=defense"], "hockey.mode='defense': hockey.opponent=selfplay plays full games"),
])
def test_config_errors(overrides, message):
    assert message in _error(*overrides)


def test_config_errors_outside_hockey_and_pool_bound(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b""), b.write_bytes(b"")
    assert "selfplay.pool=" in _error(f"selfplay.pool=['{a}','{b}']", "selfplay.pool_size=1")
    with pytest.raises(ConfigError, match="selfplay needs one hockey task"):
        compose(["task=gym/Pendulum-v1", "hockey.opponent=selfplay"])
    with pytest.raises(ConfigError, match="is only used with hockey.opponent=selfplay"):
        compose(["task=hockey", f"selfplay.pool=['{a}']"])
    # valid: BasicOpponents only, no snapshots
    cfg = compose(["task=hockey-strong", "hockey.opponent=selfplay", "selfplay.snapshot_every=0",
                   "selfplay.probs.weak=0.5", "selfplay.probs.strong=0.5", "selfplay.probs.pool=0"])
    assert cfg.selfplay.probs.pool == 0


# ---------------------------------------------------------------------------------------------- end to end
def test_selfplay_training_run_snapshots_and_logs_the_pool(tmp_path):
    # a Dreamer snapshot (the other agent type) seeds the pool of a TD-MPC2 run
    cfg, spec, dreamer = _hockey_agent("agent=dreamer", "model_size=XS")
    seed_member = tmp_path / "dreamer.pt"
    checkpoint.save(seed_member, cfg, spec, dreamer, {"step": 0}, policy_only=True)
    proc = run_train(["task=hockey", "hockey.opponent=selfplay", "selfplay.snapshot_every=100",
                      f"selfplay.pool=['{seed_member}']", "selfplay.probs.weak=0", "selfplay.probs.strong=0",
                      "selfplay.probs.pool=1", *TINY_TDMPC2, "steps=400", "seed_steps=1000", "eval_episodes=1",
                      "eval_freq=100000", "checkpoint_freq=100000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = next((tmp_path / "runs" / "hockey").rglob("metrics")).parent
    snapshots = sorted((run / "selfplay").glob("step_*.pt"), key=lambda p: int(p.stem[5:]))
    assert snapshots[0].name == "step_0.pt" and len(snapshots) >= 2
    rows = list(csv.DictReader(open(run / "metrics" / "train.csv")))
    assert all(int(r["pool_size"]) >= 2 for r in rows) and "win_rate/pool" in rows[0]
    assert "win_rate/weak" not in rows[0]  # probs.weak = 0: the weak BasicOpponent never played
    state = checkpoint.load(run / "checkpoints" / "latest.pt")["trainer"]["selfplay"]
    assert [m["path"] for m in state["members"]] == [str(seed_member.resolve())] + [str(p.resolve())
                                                                                    for p in snapshots]
    assert sum(len(m["outcomes"]) for m in state["members"]) == len(rows)
    eval_rows = list(csv.DictReader(open(run / "metrics" / "eval.csv")))
    assert len(eval_rows) == 2  # evaluated at the start and the end, against the task's weak BasicOpponent


@pytest.mark.slow
def test_selfplay_pool_survives_resume(tmp_path):
    args = ["task=hockey", "hockey.opponent=selfplay", "selfplay.snapshot_every=100", "selfplay.pool_size=3",
            *TINY_TDMPC2, "seed_steps=1000", "eval_episodes=1", "eval_freq=100000", "checkpoint_freq=100000",
            "buffer_size=1500"]
    first = run_train([*args, "steps=400"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    old = checkpoint.load(next((tmp_path / "runs").rglob("latest.pt")))["trainer"]["selfplay"]
    second = run_train([*args, "steps=900", "resume=true"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    ckpts = sorted((tmp_path / "runs").rglob("latest.pt"), key=lambda p: p.stat().st_mtime)
    new = checkpoint.load(ckpts[-1])["trainer"]["selfplay"]
    old_paths = [m["path"] for m in old["members"]]
    new_paths = [m["path"] for m in new["members"]]
    # the resumed run kept the newest earlier snapshots (the oldest leave a full pool) and added its own
    assert len(new_paths) == 3
    kept = [p for p in new_paths if p in old_paths]
    added = [p for p in new_paths if p not in old_paths]
    assert kept == old_paths[len(old_paths) - len(kept):] and kept and added
    assert all(str(ckpts[-1].parent.parent) in p for p in added)
    for path in kept:  # their game records continued
        before = next(m for m in old["members"] if m["path"] == path)["outcomes"]
        after = next(m for m in new["members"] if m["path"] == path)["outcomes"]
        assert after[:len(before)] == before


def test_load_agent_overrides_how_it_acts_not_its_weights(tmp_path):
    """evaluate.py mpc=false: the planner's checkpoint acts with its policy prior (the prior's mean, which a
    planning agent's first action is not); a key the agent lacks is a CheckpointError."""
    from src.policy import load_agent
    cfg, spec, agent = _hockey_agent(*TINY_TDMPC2)
    assert agent.cfg.mpc
    path = tmp_path / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0, "trainer": "online"}, policy_only=True)
    prior, prior_cfg, _ = load_agent(path, overrides={"mpc": False})
    assert prior_cfg.mpc is False
    obs = torch.as_tensor(make_hockey_env(opponent="weak", seed=1).reset()[0])
    expected = agent.model.pi(agent.model.encode(obs.unsqueeze(0)))[1]["mean"].reshape(-1)
    torch.testing.assert_close(prior.act(obs, t0=True, eval_mode=True), expected)
    torch.manual_seed(0)
    assert not torch.allclose(load_agent(path)[0].act(obs, t0=True, eval_mode=True), expected)

    dreamer_cfg, dreamer_spec, dreamer = _hockey_agent("agent=dreamer", "model_size=XS")
    checkpoint.save(tmp_path / "dreamer.pt", dreamer_cfg, dreamer_spec, dreamer, {"step": 0}, policy_only=True)
    with pytest.raises(checkpoint.CheckpointError, match="no `mpc` to override"):
        load_agent(tmp_path / "dreamer.pt", overrides={"mpc": False})


def test_play_takes_a_checkpoint_as_opponent(tmp_path):
    """python -m envs.hockey.play --opponent-checkpoint PATH: the saved agent's deterministic actions."""
    from envs.hockey import play
    cfg, spec, agent = _hockey_agent("agent=dreamer", "model_size=XS")
    path = tmp_path / "step_0.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0}, policy_only=True)
    opponent = play.make_opponent(play.parse_args(["--opponent-checkpoint", str(path)]))
    env = make_hockey_env(opponent="weak", seed=1)
    observations = [env.reset()[0]] + [env.step(np.random.default_rng(t).uniform(-1, 1, 4))[0] for t in range(3)]

    def play_from_start(o, t0):
        if t0:
            opponent.reset()
        return opponent(o)
    expected = _actions(lambda o, t0: agent.act(torch.as_tensor(o), t0=t0, eval_mode=True), observations)
    np.testing.assert_array_equal(_actions(play_from_start, observations).numpy(), expected.numpy())
    basic = play.make_opponent(play.parse_args(["--opponent", "strong"]))
    assert np.asarray(basic(observations[0])).shape == (4,)
    with pytest.raises(SystemExit, match="not both"):
        play.make_opponent(play.parse_args(["--opponent-checkpoint", str(path), "--opponent-policy", "a:b"]))


def test_export_writes_a_small_policy_that_acts_identically(tmp_path):
    """python -m src.policy export: a training checkpoint's policy-only copy, without optimiser state."""
    from src.policy import main as policy_cli
    cfg, spec, agent = _hockey_agent("agent=dreamer", "model_size=XS")
    full = tmp_path / "latest.pt"
    checkpoint.save(full, cfg, spec, agent, {"step": 7, "trainer": "online"})
    policy_cli(["export", str(full), str(tmp_path / "small.pt")])
    small = checkpoint.load(tmp_path / "small.pt")
    assert small["policy_only"] and small["trainer"]["step"] == 7
    assert (tmp_path / "small.pt").stat().st_size < full.stat().st_size
    env = make_hockey_env(opponent="weak", seed=1)
    observations = [env.reset()[0]] + [env.step(np.random.default_rng(t).uniform(-1, 1, 4))[0] for t in range(3)]
    expected = _actions(lambda o, t0: agent.act(torch.as_tensor(o), t0=t0, eval_mode=True), observations)
    policy = checkpoint_policy(tmp_path / "small.pt")

    def play(o, t0):
        if t0:
            policy.reset()
        return policy(o)
    np.testing.assert_array_equal(_actions(play, observations).numpy(), expected.numpy())
    with pytest.raises(SystemExit, match="Cannot export"):
        policy_cli(["export", str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")])


def test_a_saved_config_is_validated_before_the_agent_is_rebuilt(tmp_path):
    """An opponent or evaluation checkpoint whose saved config breaks its agent's rules fails naming the key,
    not deep inside the agent; so does an acting override of the wrong type."""
    from src.policy import load_agent
    cfg, spec, agent = _hockey_agent(*TINY_TDMPC2)
    path = tmp_path / "p.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0}, policy_only=True)
    payload = torch.load(path, weights_only=False)
    payload["config"]["num_samples"] = -3
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(checkpoint.CheckpointError, match="(?s)saved config does not hold.*num_samples=-3: must be a positive integer"):
        checkpoint_policy(tmp_path / "edited.pt")
    with pytest.raises(checkpoint.CheckpointError, match="(?s)saved config does not hold.*mpc"):
        load_agent(path, overrides={"mpc": "sometimes"})
