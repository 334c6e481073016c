"""Tests of the framework bridge ``envs.hockey.task.make_hockey_env`` and the ``play`` entry point."""

import importlib
import sys

import numpy as np
import pytest
import torch

from common.config import ConfigError
from envs import make_env
from envs.hockey import task as task_mod
from envs.hockey.hockey_env import HockeyEnv, Mode
from envs.hockey.task import SHAPING_WEIGHTS, make_hockey_env
from tests.conftest import compose


def _run_episode(env, policy=None, seed=None):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    steps, total, infos = 0, 0.0, []
    while True:
        a = rng.uniform(-1, 1, 4) if policy is None else policy(obs)
        obs, r, term, trunc, info = env.step(a)
        steps += 1
        total += r
        infos.append(info)
        if term or trunc:
            return obs, steps, total, infos


def test_spaces_and_episode_length():
    env = make_hockey_env(opponent="weak", seed=0)
    assert env.action_space.shape == (4,) and env.observation_space.shape == (18,)
    assert env.max_episode_steps == 251
    obs, info = env.reset()
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert make_hockey_env(mode="shooting", opponent="none").max_episode_steps == 81
    with pytest.raises(ValueError):
        make_hockey_env(mode="fast")
    with pytest.raises(ValueError):
        make_hockey_env(opponent="clever")


def test_side_alternation_and_puck_side_cycle():
    env = make_hockey_env(opponent="none", side="alternate", seed=1)
    seen = []
    for ep in range(8):
        obs, info = env.reset()
        game = env.game
        if ep % 2 == 0:
            assert info["side"] == "left" and env.learner_left
            np.testing.assert_array_equal(obs, game._get_obs().astype(np.float32))
        else:
            assert info["side"] == "right" and not env.learner_left
            np.testing.assert_array_equal(obs, game.obs_agent_two().astype(np.float32))
        # the learner always sees itself at (-3, 0)
        assert tuple(obs[:2]) == (-3.0, 0.0)
        seen.append((info["side"], bool(obs[12] < 0)))  # puck on the learner's half?
    assert seen[:4] == [("left", True), ("right", True), ("left", False), ("right", False)]
    assert seen[4:] == seen[:4]
    left = make_hockey_env(opponent="none", side="left", seed=1)
    sides = [left.reset()[0][12] < 0 for _ in range(4)]
    assert sides == [False, True, False, True]  # the original's schedule
    # the drills are for player one
    assert make_hockey_env(mode="defense", side="alternate", opponent="none").side == "left"


def test_learner_acts_in_its_own_frame_on_both_sides():
    env = make_hockey_env(opponent="none", side="alternate", seed=2)
    for _ in range(2):
        env.reset()
        for _ in range(5):
            obs, *_ = env.step(np.array([1.0, 1.0, 1.0, 0.0]))
        # +fx towards the opponent, +fy "up" in the own frame, +torque counter-clockwise
        assert obs[3] > 1 and obs[4] > 1 and obs[5] > 1
        assert obs[0] > -3 and obs[1] > 0
        # the opponent (zero action) did not move
        assert tuple(obs[6:8]) == (3.0, 0.0)


def test_winner_and_goals_from_the_learner_perspective():
    # defense drill, learner idle: it concedes; as in the game, reward -10 + closeness at the end
    env = make_hockey_env(opponent="none", mode="defense", seed=3)
    _, steps, total, infos = _run_episode(env, policy=lambda o: np.zeros(4))
    last = infos[-1]
    assert last["winner"] == -1 and last["goals_against"] == 1 and last["goals_for"] == 0
    assert last["success"] == 0.0
    assert all(i["winner"] == 0 and i["goals_against"] == 0 for i in infos[:-1])
    # learner on the right against a (left) opponent that scores into... find a conceded and a won game
    env = make_hockey_env(opponent="strong", side="alternate", seed=4)
    outcomes = {}
    for _ in range(30):
        obs, steps, total, infos = _run_episode(env)
        last = infos[-1]
        g = env.game
        # the game's own winner is from player one's view; the task flips it when the learner is right
        expect = g.winner if last["side"] == "left" else -g.winner
        assert last["winner"] == expect
        assert last["goals_for"] == int(expect == 1) and last["goals_against"] == int(expect == -1)
        outcomes.setdefault(last["side"], set()).add(expect)
    assert -1 in outcomes["left"] and -1 in outcomes["right"]


def test_reward_sparse_is_the_game_reward_and_shaped_adds_terms():
    sparse = make_hockey_env(opponent="weak", reward="sparse", seed=5, side="alternate")
    shaped = make_hockey_env(opponent="weak", reward="shaped", seed=5, side="alternate")
    for ep in range(2):
        sparse.reset()
        shaped.reset()
        rng = np.random.default_rng(ep)
        while True:
            a = rng.uniform(-1, 1, 4)
            o1, r1, t1, _, i1 = sparse.step(a)
            o2, r2, t2, _, i2 = shaped.step(a)
            np.testing.assert_array_equal(o1, o2)
            g = sparse.game
            if sparse.learner_left:
                gi = g._get_info()
                expect = g.get_reward(gi)
            else:
                gi = g.get_info_agent_two()
                expect = g.get_reward_agent_two(gi)
            assert r1 == expect == i1["sparse_reward"]
            assert r2 == pytest.approx(r1 + SHAPING_WEIGHTS["touch"] * i1["reward_touch_puck"]
                                       + SHAPING_WEIGHTS["direction"] * i1["reward_puck_direction"])
            if t1:
                break


def test_opponent_none_and_opponent_policy():
    calls = []

    def policy(obs):
        calls.append(np.array(obs))
        return np.array([-1.0, 0.0, 0.0, 0.0])  # retreat towards its own goal

    policy.reset = lambda: calls.append("reset")
    env = make_hockey_env(opponent="weak", opponent_policy=policy, side="alternate", seed=6)
    for ep in range(2):
        env.reset()
        assert calls[-1] == "reset"
        obs, *_ = env.step(np.zeros(4))
        seen = calls[-1]
        # the opponent sees itself at its own-frame start position and the learner at (3, 0)
        assert tuple(seen[:2]) == (-3.0, 0.0) and tuple(seen[6:8]) == (3.0, 0.0)
        assert obs[9] > 0  # learner sees the opponent moving away (towards +x in the learner frame)
    none = make_hockey_env(opponent="none", seed=0)
    none.reset()
    for _ in range(10):
        obs, *_ = none.step(np.zeros(4))
    assert tuple(obs[6:12]) == (3.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_seeded_runs_are_reproducible():
    a = make_hockey_env(opponent="weak", seed=9)
    b = make_hockey_env(opponent="weak", seed=9)
    for _ in range(3):
        oa, sa, ta, _ = _run_episode(a)
        ob, sb, tb, _ = _run_episode(b)
        np.testing.assert_array_equal(oa, ob)
        assert sa == sb and ta == tb
    c = make_hockey_env(opponent="weak", seed=10)
    assert not np.array_equal(c.reset()[0], make_hockey_env(opponent="weak", seed=9).reset()[0])


def test_timeout_option():
    env = make_hockey_env(opponent="none", mode="shooting", timeout="truncated", seed=0)
    env.reset()
    flags = [env.step(np.zeros(4))[2:4] for _ in range(81)]
    assert flags[-1] == (False, True) and not any(any(f) for f in flags[:-1])
    env = make_hockey_env(opponent="none", mode="shooting", seed=0)
    env.reset()
    flags = [env.step(np.zeros(4))[2:4] for _ in range(81)]
    assert flags[-1] == (True, False)


@pytest.mark.parametrize("timeout, flags", [("terminated", (True, False)), ("truncated", (False, True))])
def test_timeout_key_reaches_the_stored_termination(timeout, flags):
    """`hockey.timeout` decides whether the draw at the time limit is stored as terminal (what TD targets read)."""
    env, spec = make_env(compose(["task=hockey-shooting", "hockey.opponent=none", f"hockey.timeout={timeout}"]))
    env.reset()
    for step in range(1, 82):  # 80 steps and the final one
        _, _, done, info = env.step(torch.zeros(spec.action_dim))
        assert done == (step == 81) and info["winner"] == 0
    assert (info["terminated"], info["truncated"]) == flags


def test_timeout_key_is_checked():
    with pytest.raises(ConfigError, match=r"hockey.timeout='never': must be one of"):
        compose(["task=hockey", "hockey.timeout=never"])


def test_backends(monkeypatch):
    monkeypatch.setitem(sys.modules, "hockey", None)  # make the original package unimportable
    monkeypatch.setitem(sys.modules, "hockey.hockey_env", None)
    with pytest.raises(ImportError, match="original"):
        make_hockey_env(backend="original")
    env = make_hockey_env(backend="auto", opponent="none")
    assert env.backend_name == "ours" and isinstance(env.game, HockeyEnv)
    with pytest.raises(ValueError):
        make_hockey_env(backend="mine")
    # a stand-in module with the original's API is picked up by backend="original"/"auto"
    fake = importlib.import_module("envs.hockey.hockey_env")
    monkeypatch.setitem(sys.modules, "hockey", type(sys)("hockey"))
    monkeypatch.setitem(sys.modules, "hockey.hockey_env", fake)
    env = make_hockey_env(backend="auto", opponent="weak", seed=0)
    _run_episode(env)


def test_policy_opponent():
    with pytest.raises(ValueError):
        make_hockey_env(opponent="checkpoint")
    env = make_hockey_env(opponent="checkpoint", opponent_policy=lambda obs: np.zeros(4), seed=0)
    assert env.opponent_name == "policy"
    env.reset()
    env.step(np.zeros(4))


def test_env_kwargs_reach_the_game_and_render(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = make_hockey_env(opponent="none", env_kwargs={"fix_bugs": ["counters_reset"]}, seed=0)
    assert "counters_reset" in env.game.fixes
    env.reset()
    img = env.render()
    assert img.shape == (480, 600, 3) and img.dtype == np.uint8


def test_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    with pytest.warns(UserWarning):  # unbounded Box observation space warnings
        check_env(make_hockey_env(opponent="weak", seed=0), skip_render_check=True)


def test_play_module_imports_without_display_and_parses():
    sys.modules.pop("envs.hockey.play", None)
    play = importlib.import_module("envs.hockey.play")
    args = play.parse_args(["--opponent", "strong", "--side", "right",
                            "--opponent-policy", "envs.hockey.opponents:BasicOpponent"])
    assert args.opponent == "strong" and args.side == "right"
    pol = play.load_callable(args.opponent_policy)
    assert hasattr(pol, "act")
    with pytest.raises(ValueError):
        play.load_callable("no_colon")


def test_mode_names():
    assert set(task_mod.MODES) == {"normal", "shooting", "defense"}
    env = make_hockey_env(mode="defense", opponent="none")
    assert env.game.mode == Mode.TRAIN_DEFENSE


def test_reward_outcome_is_win_loss_only_at_the_end():
    """Scripted episodes: the strong BasicOpponent's controller as the learner against an idle keeper (wins and
    draws at the time limit in the shooting drill), and an idle learner in the defense drill (a loss).
    Only the final step is rewarded: +1, 0 or -1."""
    from envs.hockey.opponents import BasicOpponent

    def episode(env, policy):
        obs, _ = env.reset()
        rewards = []
        while True:
            obs, r, term, trunc, info = env.step(policy(obs))
            rewards.append(r)
            if term or trunc:
                return rewards, info

    shooter = BasicOpponent(weak=False, rng=np.random.RandomState(0))
    env = make_hockey_env(opponent="none", mode="shooting", reward="outcome", seed=0, side="left")
    results = {}  # winner -> the episode's rewards
    for _ in range(8):
        rewards, info = episode(env, shooter.act)
        results[info["winner"]] = rewards
    idle = make_hockey_env(opponent="none", mode="defense", reward="outcome", seed=3)
    rewards, info = episode(idle, lambda o: np.zeros(4))
    results[info["winner"]] = rewards
    assert info["sparse_reward"] != -1  # the game's own reward (-10 plus closeness shaping) is still in info
    assert set(results) == {1, 0, -1}
    for winner, rewards in results.items():
        assert rewards[:-1] == [0.0] * (len(rewards) - 1) and rewards[-1] == float(winner)
    with pytest.raises(ValueError, match="'sparse', 'shaped' or 'outcome'"):
        make_hockey_env(reward="goals")


def _drill_starts(drills, episodes, seed=3):
    """(mode, side, puck x in the learner's frame at reset, episode length) of `episodes` zero-action episodes."""
    env = make_hockey_env(opponent="weak", seed=seed, drills=drills)
    out = []
    for _ in range(episodes):
        obs, _ = env.reset()
        puck_x, steps, info = obs[12], 0, {}
        while True:
            _, _, term, trunc, info = env.step(np.zeros(4))
            steps += 1
            if term or trunc:
                break
        out.append((info["mode"], info["side"], float(puck_x), steps))
    return out


def test_drills_replace_some_full_games_and_never_evaluation_games():
    """hockey.drills: drills start as their game mode does (learner on the left; shooting: the puck on its half,
    still; defense: the puck on the far half and shot at its goal) and end by step 81; the rest are full games
    on the usual side schedule; within evaluating() every episode is a full game."""
    drills = task_mod.Drills(shooting=0.4, defense=0.3)
    starts = _drill_starts(drills, 60)
    modes = [m for m, *_ in starts]
    assert 12 <= modes.count("shooting") <= 36 and 8 <= modes.count("defense") <= 30 and modes.count("normal") >= 8
    for mode, side, puck_x, steps in starts:
        if mode != "normal":
            assert side == "left" and steps <= 81
            assert (puck_x < 0) if mode == "shooting" else (puck_x > 0)
    assert {side for mode, side, *_ in starts if mode == "normal"} == {"left", "right"}
    assert max(steps for mode, _, _, steps in starts if mode == "normal") > 81  # full games run past a drill's end

    env = make_hockey_env(opponent="none", seed=3, drills=drills)
    while env.reset() and env.episode_mode != "defense":
        pass
    assert env.step(np.zeros(4))[0][14] < -10  # the drill's shot: puck v_x towards the learner's goal (x < 0)
    with drills.evaluating():
        assert {m for m, *_ in _drill_starts(drills, 8)} == {"normal"}
    assert {m for m, *_ in _drill_starts(drills, 8)} != {"normal"}  # paused only within the block
    assert _drill_starts(task_mod.Drills(shooting=0.4, defense=0.3), 10) == starts[:10]  # seeded


def test_drills_are_checked():
    with pytest.raises(ValueError, match="sum to at most 1"):
        task_mod.Drills(shooting=0.7, defense=0.5)
    with pytest.raises(ValueError, match="need mode='normal'"):
        make_hockey_env(mode="shooting", opponent="none", drills=task_mod.Drills(shooting=0.5))
    for overrides, message in [(["hockey.drills.shooting=1.5"], r"drills.shooting=1.5: must be a number in \[0, 1\]"),
                               (["hockey.drills.shooting=0.6", "hockey.drills.defense=0.6"], "at most 1"),
                               (["task=hockey-defense", "hockey.drills.shooting=0.2"], "need mode normal, not defense"),
                               (["hockey.drills=none"], "must be a mapping")]:
        with pytest.raises(ConfigError, match=message):
            compose(["task=hockey", *overrides])
    assert make_env(compose(["task=hockey"]))[0].task_hooks.drills is None  # no drills unless asked


def test_drill_games_are_counted_apart_and_the_hooks_pause_them():
    """The training hooks count full games in win/draw/loss_rate and drills in their own rates, and their
    evaluating() (the trainer's evaluation, evaluate.py) plays full games only."""
    env, spec = make_env(compose(["task=hockey", "hockey.drills.shooting=0.5"]))
    hooks = env.task_hooks
    assert isinstance(hooks.drills, task_mod.Drills)
    assert hooks.episode_stats({"winner": 1, "mode": "normal"})["win_rate"] == 1.0
    stats = hooks.episode_stats({"winner": 1, "mode": "shooting"})
    assert stats == {"drill_win_rate/shooting": 1.0, "drill_loss_rate/shooting": 0.0}
    stats = hooks.episode_stats({"winner": 0, "mode": "normal"})
    assert stats["win_rate"] == 0.5 and stats["draw_rate"] == 0.5  # the drill is not a game
    state = hooks.state_dict()
    assert state["drill_outcomes"]["shooting"] == [1]
    rng = np.random.default_rng(0)
    with hooks.evaluating():
        assert {hooks.drills.mode(rng) for _ in range(20)} == {"normal"}
    assert "shooting" in {hooks.drills.mode(rng) for _ in range(20)}
