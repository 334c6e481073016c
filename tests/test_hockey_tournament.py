"""The hockey round-robin tournament (envs/hockey/tournament.py): the Bradley-Terry fit against hand cases,
the basic opponents' ranking, independence of the worker count, checkpoint players and input errors."""
import csv
import math

import numpy as np
import pytest
import torch

from common import checkpoint
from envs.hockey import tournament
from envs.hockey.tournament import ELO_PER_LOGIT, fit_ratings, pair_table, play_games
from tests.conftest import TINY_TDMPC2, compose


def _pair(a, b, wins, draws, losses):
    return {"a": a, "b": b, "games": wins + draws + losses, "a_wins": wins, "draws": draws, "b_wins": losses}


def test_bradley_terry_two_players_closed_form():
    # two players: the fit is saturated, so the gap is the log-odds of the score (virtual draw included) and
    # the Fisher variance of the gap is 1 / (n p (1 - p)), split equally between the mean-zero ratings
    x, y = fit_ratings(["x", "y"], [_pair("x", "y", 30, 10, 10)])
    score, n = 30 + 5 + 0.5, 50 + 1
    assert x["rating"] - y["rating"] == pytest.approx(400 * math.log10(score / (n - score)), rel=1e-9)
    assert x["rating"] == pytest.approx(-y["rating"], abs=1e-9)
    p = score / n
    assert x["se"] == pytest.approx(0.5 / math.sqrt(n * p * (1 - p)) * ELO_PER_LOGIT, rel=1e-9)
    assert x["ci95_low"] == pytest.approx(x["rating"] - 1.96 * x["se"])
    assert (x["wins"], x["draws"], x["losses"], x["score"]) == (30, 10, 10, 0.7)


def test_bradley_terry_stays_finite_when_a_player_wins_everything():
    pairs = [_pair("x", "y", 20, 0, 0), _pair("x", "z", 20, 0, 0), _pair("y", "z", 10, 0, 10)]
    ratings = {r["player"]: r for r in fit_ratings(["x", "y", "z"], pairs)}
    assert math.isfinite(ratings["x"]["rating"]) and ratings["x"]["rating"] > 300
    assert ratings["y"]["rating"] == pytest.approx(ratings["z"]["rating"], abs=1e-6)  # symmetric
    assert sum(r["rating"] for r in ratings.values()) == pytest.approx(0, abs=1e-6)
    # the fit is the maximum of the likelihood: moving any rating lowers it (the gradient vanishes)
    # -> x's expected score over its 42 (incl. virtual) games equals its actual score 40 + 2 * 0.5
    expected = sum(21 / (1 + 10 ** ((ratings[o]["rating"] - ratings["x"]["rating"]) / 400)) for o in "yz")
    assert expected == pytest.approx(41, rel=1e-9)


def test_basic_opponents_tournament_writes_tables(tmp_path, capsys):
    ratings = tournament.main(["weak", "strong", "random", "--games", "48", "--workers", "1",
                               "--out", str(tmp_path)])
    by_name = {r["player"]: r for r in ratings}
    pairs = {(row["a"], row["b"]): row for row in csv.DictReader(open(tmp_path / "pairs.csv"))}
    games = list(csv.DictReader(open(tmp_path / "games.csv")))
    printed = capsys.readouterr().out
    assert "| weak | random |" in printed and "| player | rating | 95% interval | W/D/L | score |" in printed
    assert len(games) == 3 * 48
    # sides alternate: each player of a pair starts on the left in half of its games
    assert sum(g["left"] == "weak" for g in games if (g["a"], g["b"]) == ("weak", "random")) == 24
    # measured (seed 0, 48 games per pair, W/D/L): weak-random 19/21/8, strong-random 19/21/8 (different
    # games, same counts), weak-strong 5/26/17; ratings strong 56 [8, 103], weak -2, random -53
    weak_random, strong_random = pairs[("weak", "random")], pairs[("strong", "random")]
    assert int(weak_random["a_wins"]) > 2 * int(weak_random["b_wins"])
    assert int(strong_random["a_wins"]) > 2 * int(strong_random["b_wins"])
    assert by_name["weak"]["rating"] > by_name["random"]["rating"]
    assert by_name["strong"]["rating"] > by_name["random"]["rating"]
    assert by_name["strong"]["ci95_low"] > by_name["random"]["rating"]
    rows = list(csv.DictReader(open(tmp_path / "ratings.csv")))
    assert [r["player"] for r in rows] == [r["player"] for r in ratings]
    assert float(rows[0]["rating"]) == pytest.approx(ratings[0]["rating"])


def test_results_do_not_depend_on_the_worker_count():
    one = play_games(["weak", "random"], 8, workers=1, seed=3)
    two = play_games(["weak", "random"], 8, workers=2, seed=3)
    assert one == two
    assert [r["left"] for r in one] == ["weak", "random"] * 4
    assert [r["one_starts"] for r in one] == [True, True, False, False] * 2
    assert pair_table(one)[0]["games"] == 8


def _snapshot(tmp_path) -> str:
    from envs import make_env
    from src import make_agent
    cfg = compose(["task=hockey", "agent=dreamer", "model_size=XS"])  # acts fast; TD-MPC2 plans (~40 ms a step)
    env, spec = make_env(cfg)
    torch.manual_seed(0)
    path = tmp_path / "snapshot.pt"
    checkpoint.save(path, cfg, spec, make_agent(cfg, spec, torch.device("cpu")), {"step": 0}, policy_only=True)
    return str(path)


def test_a_checkpoint_plays(tmp_path):
    path = _snapshot(tmp_path)
    records = play_games([path, "random"], 2, workers=1, seed=0)
    assert [(r["left"], r["right"]) for r in records] == [(path, "random"), ("random", path)]
    assert records == play_games([path, "random"], 2, workers=1, seed=0)  # acts deterministically


@pytest.mark.slow  # each spawned process imports torch and loads the checkpoint: ~15 s CPU, 45 s on a busy CI box
def test_a_checkpoint_plays_in_worker_processes(tmp_path):
    path = _snapshot(tmp_path)
    assert play_games([path, "random"], 4, workers=2, seed=0) == play_games([path, "random"], 4, workers=1, seed=0)


@pytest.mark.parametrize("argv, message", [
    (["weak"], "PLAYER=weak: a tournament needs at least two players"),
    (["weak", "weak"], "PLAYER=weak: given more than once"),
    (["weak", "nobody"], "PLAYER=nobody: must be one of weak, strong, random, still or an existing checkpoint file"),
    (["weak", "random", "--games", "0"], "games=0: must be >= 1"),
    (["weak", "random", "--workers", "0"], "workers=0: must be >= 1"),
])
def test_bad_input_is_rejected_before_any_game(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        tournament.main([*argv, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_another_task_is_rejected(tmp_path):
    from envs import make_env
    from src import make_agent
    cfg = compose(["task=gym/Pendulum-v1", *TINY_TDMPC2])
    env, spec = make_env(cfg)
    checkpoint.save(tmp_path / "p.pt", cfg, spec, make_agent(cfg, spec, torch.device("cpu")), {"step": 0},
                    policy_only=True)
    with pytest.raises(SystemExit, match=r"PLAYER=.*p\.pt: .*cannot play hockey"):
        tournament.main([str(tmp_path / "p.pt"), "weak", "--out", str(tmp_path / "out")])
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match=r"PLAYER=.*junk\.pt: .*not a checkpoint"):
        tournament.main(["weak", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_win_rate_curve_of_a_runs_snapshots(tmp_path, capsys):
    """python -m envs.hockey.curve RUN_DIR: every snapshot against weak and strong, in step order; a snapshot's
    games do not depend on which other snapshots are played."""
    from envs.hockey import curve
    run = tmp_path / "run"
    (run / "selfplay").mkdir(parents=True)
    for step, seed in ((10000, 1), (0, 0)):
        torch.manual_seed(seed)
        (run / "selfplay" / f"step_{step}.pt").write_bytes(open(_snapshot(tmp_path), "rb").read())
    rows = curve.main([str(run), "--games", "4", "--workers", "1"])
    assert [(r["step"], r["opponent"]) for r in rows] == [(0, "weak"), (0, "strong"), (10000, "weak"),
                                                          (10000, "strong")]
    for r in rows:
        assert r["wins"] + r["draws"] + r["losses"] == r["games"] == 4
        assert r["win_ci95_low"] <= r["win_rate"] <= r["win_ci95_high"]
    saved = list(csv.DictReader(open(run / "curve" / "curve.csv")))
    assert [int(r["wins"]) for r in saved] == [r["wins"] for r in rows]
    assert (run / "curve" / "curve.png").stat().st_size > 0
    (run / "selfplay" / "step_10000.pt").unlink()
    alone = curve.main([str(run), "--games", "4", "--workers", "1", "--out", str(tmp_path / "alone")])
    assert alone == rows[:2]
    with pytest.raises(SystemExit, match="no selfplay/step_<N>.pt snapshots"):
        curve.main([str(tmp_path / "empty")])


def test_still_player_never_moves_and_loses_to_strong(tmp_path):
    """`still` is the do-nothing baseline: zero actions, yet it wins a few games (400 games, seed 0: W/D/L
    32/272/96 against strong); strong must beat it."""
    assert np.array_equal(tournament._policy("still", 0)(np.ones(18)), np.zeros(4))
    tournament.check_players(["still", "strong"])  # a known player: no exit
    rows = tournament.pair_table(tournament.play_games(["still", "strong"], 48, workers=1))
    (row,) = rows
    assert (row["a"], row["b"]) == ("still", "strong") and row["games"] == 48
    assert row["b_wins"] > 2 * row["a_wins"]
