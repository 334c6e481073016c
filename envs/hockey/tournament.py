"""Round-robin hockey tournament with Bradley-Terry ratings.

    python -m envs.hockey.tournament weak strong random runs/a/latest.pt [--games 100] [--workers 2]

PLAYER is ``weak`` / ``strong`` (the BasicOpponents), ``random`` (uniform random actions), ``still`` (never
moves: the baseline an agent must beat to have learnt anything; it still wins a few games) or a checkpoint of
either agent (TD-MPC2 or Dreamer, training checkpoint or self-play snapshot; it acts deterministically).
Every pair plays ``--games`` games in NORMAL mode; game ``g`` puts the pair's first player on the left when ``g``
is even and the puck on the left player's half when ``g // 2`` is even, so every four games cover all
(side, puck half) combinations. Every game is the first episode of a freshly constructed game, seeded from
(``--seed``, pair, game): results do not depend on ``--workers`` or on which process played what.

Ratings: a Bradley-Terry model fitted by maximum likelihood on all games, a draw counting as half a win and
half a loss, plus one virtual draw per pair (a prior that keeps a rating finite when a player won every game
of a pair). Shown on the Elo scale (400 / ln 10 per logit, mean 0): a gap of 400 points means the stronger
player is expected to score ten times what the weaker does in their games. Intervals: 95% Wald intervals from
the Fisher information at the fit (each game a Bernoulli trial of the score; with many draws they are a little
wider than necessary).

Writes ``games.csv`` (every game), ``pairs.csv`` (W/D/L per pair) and ``ratings.csv`` to ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .hockey_env import HockeyEnv
from .opponents import BasicOpponent

__all__ = ["BASIC_PLAYERS", "play_games", "pair_table", "fit_ratings", "check_players", "write_csv", "main"]

BASIC_PLAYERS = ("weak", "strong", "random", "still")
ELO_PER_LOGIT = 400 / math.log(10)
# every game the first episode of a just-constructed game: no Box2D history, no possession carried over
_FRESH_GAME = ("fresh_world", "counters_reset")

_loaded: dict = {}  # per process: player name -> loaded checkpoint policy
_env: HockeyEnv | None = None


def _policy(player: str, seed: int):
    """The player's policy for one game: own-perspective observation -> 4 actions."""
    if player == "random":
        rng = np.random.default_rng(seed)
        return lambda obs: rng.uniform(-1, 1, 4)
    if player == "still":
        return lambda obs: np.zeros(4)
    if player in ("weak", "strong"):
        return BasicOpponent(weak=player == "weak", rng=np.random.RandomState(seed)).act
    import torch
    if player not in _loaded:
        from .selfplay import checkpoint_policy
        torch.set_num_threads(1)  # one core per game process
        _loaded[player] = checkpoint_policy(player)
    torch.manual_seed(seed)  # planners sample even when acting deterministically
    policy = _loaded[player]
    policy.reset()
    return policy


def _play(game: dict) -> dict:
    """Play one game (a dict from :func:`_schedule`); returns it with ``winner`` from the left player's view."""
    global _env
    if _env is None:
        _env = HockeyEnv(fix_bugs=_FRESH_GAME)
    env_seed, left_seed, right_seed = np.random.SeedSequence(game["seed"]).generate_state(3).tolist()
    left, right = _policy(game["left"], left_seed), _policy(game["right"], right_seed)
    obs, _ = _env.reset(one_starting=game["one_starts"], seed=env_seed)
    while True:
        action = np.concatenate([np.asarray(left(obs), np.float64).reshape(4),
                                 np.asarray(right(_env.obs_agent_two()), np.float64).reshape(4)])
        obs, _, terminated, truncated, info = _env.step(action)
        if terminated or truncated:
            return {**game, "winner": int(info["winner"])}


def _schedule(players: list[str], games: int, seed: int, pairs: list[tuple[int, int]] | None = None
              ) -> list[dict]:
    """The games of each pair (i, j) of player indices (default: all i < j); a game's seed names the pair
    by its indices, so a pair plays the same games whichever other pairs are scheduled."""
    if pairs is None:
        pairs = [(i, j) for i in range(len(players)) for j in range(i + 1, len(players))]
    out = []
    for i, j in pairs:
        for g in range(games):
            a_left = g % 2 == 0
            out.append({"a": players[i], "b": players[j], "game": g,
                        "left": players[i] if a_left else players[j],
                        "right": players[j] if a_left else players[i],
                        "one_starts": (g // 2) % 2 == 0, "seed": [seed, i, j, g]})
    return out


def play_games(players: list[str], games: int, workers: int = 2, seed: int = 0,
               pairs: list[tuple[int, int]] | None = None) -> list[dict]:
    """All games of the round robin (or of the given `pairs` of player indices); each record has ``a, b`` (the
    pair in player order), ``left, right``, ``winner`` (+1 left scored, -1 right scored, 0 draw) and
    ``result`` (the same from ``a``'s view).

    With ``workers > 1`` the games run in spawned processes, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard."""
    schedule = _schedule(players, games, seed, pairs)
    if workers == 1:
        records = [_play(game) for game in schedule]
    else:  # spawn: no forked torch state; each process loads the checkpoints it meets once
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            records = list(pool.map(_play, schedule, chunksize=max(1, len(schedule) // (4 * workers))))
    for r in records:
        r["result"] = r["winner"] if r["left"] == r["a"] else -r["winner"]
    return records


def pair_table(records: list[dict]) -> list[dict]:
    """W/D/L per pair, from the first-named player's view."""
    rows = {}
    for r in records:
        row = rows.setdefault((r["a"], r["b"]), {"a": r["a"], "b": r["b"], "games": 0, "a_wins": 0, "draws": 0,
                                                 "b_wins": 0})
        row["games"] += 1
        row[{1: "a_wins", 0: "draws", -1: "b_wins"}[r["result"]]] += 1
    for row in rows.values():
        row["a_score"] = (row["a_wins"] + 0.5 * row["draws"]) / row["games"]
    return list(rows.values())


def fit_ratings(players: list[str], pairs: list[dict], virtual_draws: float = 1.0) -> list[dict]:
    """Bradley-Terry ratings (Elo scale, mean 0) with 95% Fisher-information intervals; see the module doc.

    Newton's method on the (convex) negative log-likelihood; its Hessian is the graph Laplacian with weights
    n p (1 - p), whose pseudo-inverse is the covariance of the mean-zero ratings (the round robin connects all
    players, so the Laplacian's only null direction is the common shift the mean-zero gauge removes)."""
    index = {p: k for k, p in enumerate(players)}
    n = len(players)
    i = np.array([index[row["a"]] for row in pairs])
    j = np.array([index[row["b"]] for row in pairs])
    games = np.array([row["games"] for row in pairs], dtype=float) + virtual_draws
    score = np.array([row["a_wins"] + 0.5 * row["draws"] for row in pairs], dtype=float) + 0.5 * virtual_draws
    r = np.zeros(n)

    def nll(r):
        d = r[i] - r[j]  # (pairs,) logit of a's expected score per game
        return float(np.sum(score * np.logaddexp(0, -d) + (games - score) * np.logaddexp(0, d)))

    def gradient_hessian(r):
        p = 1 / (1 + np.exp(r[j] - r[i]))  # (pairs,) a's expected score per game
        g = np.zeros(n)  # gradient of the negative log-likelihood
        np.add.at(g, i, games * p - score)
        np.add.at(g, j, score - games * p)
        w = games * p * (1 - p)
        h = np.zeros((n, n))
        np.add.at(h, (i, j), -w)
        np.add.at(h, (j, i), -w)
        h[np.diag_indices(n)] = -h.sum(axis=1)
        return g, h

    for _ in range(100):
        g, h = gradient_hessian(r)
        step = np.linalg.pinv(h) @ g
        while nll(r - step) > nll(r) and np.abs(step).max() > 1e-12:  # backtrack if Newton overshoots
            step = step / 2
        r = r - step
        r -= r.mean()
        if np.abs(step).max() < 1e-10:
            break
    _, h = gradient_hessian(r)
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(h)), 0, None)) * ELO_PER_LOGIT
    out = []
    for p, k in index.items():
        mine = [row for row in pairs if p in (row["a"], row["b"])]
        wins = sum(row["a_wins"] if row["a"] == p else row["b_wins"] for row in mine)
        losses = sum(row["b_wins"] if row["a"] == p else row["a_wins"] for row in mine)
        draws = sum(row["draws"] for row in mine)
        total = wins + draws + losses
        rating, half = float(r[k] * ELO_PER_LOGIT), float(1.96 * se[k])
        out.append({"player": p, "rating": rating, "ci95_low": rating - half, "ci95_high": rating + half,
                    "se": float(se[k]), "games": total, "wins": wins, "draws": draws,
                    "losses": losses, "score": (wins + 0.5 * draws) / total})
    return sorted(out, key=lambda row: -row["rating"])


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_players(players: list[str]) -> None:
    """Clear errors before any game: unknown names, duplicates, checkpoints that cannot play hockey."""
    if len(players) < 2:
        sys.exit(f"PLAYER={' '.join(players)}: a tournament needs at least two players")
    for p in players:
        if players.count(p) > 1:
            sys.exit(f"PLAYER={p}: given more than once")
        if p in BASIC_PLAYERS:
            continue
        if not Path(p).is_file():
            sys.exit(f"PLAYER={p}: must be one of {', '.join(BASIC_PLAYERS)} or an existing checkpoint file")
        from common.checkpoint import CheckpointError
        from .selfplay import checkpoint_policy
        try:
            _loaded[p] = checkpoint_policy(p)  # games in this process (workers=1) reuse it
        except (CheckpointError, ValueError) as e:
            sys.exit(f"PLAYER={p}: {e}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("players", nargs="+", metavar="PLAYER", help="weak, strong, random or a checkpoint path")
    p.add_argument("--games", type=int, default=100, help="games per pair (a multiple of 4 balances sides)")
    p.add_argument("--workers", type=int, default=2, help="game processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/tournament/<time>)")
    args = p.parse_args(argv)
    if args.games < 1:
        sys.exit(f"games={args.games}: must be >= 1")
    if args.workers < 1:
        sys.exit(f"workers={args.workers}: must be >= 1")
    check_players(args.players)
    out = Path(args.out or f"runs/tournament/{_dt.datetime.now():%Y-%m-%d_%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)

    records = play_games(args.players, args.games, args.workers, args.seed)
    pairs = pair_table(records)
    ratings = fit_ratings(args.players, pairs)
    write_csv(out / "games.csv", [{**r, "seed": "-".join(map(str, r["seed"]))} for r in records])
    write_csv(out / "pairs.csv", pairs)
    write_csv(out / "ratings.csv", ratings)

    print(f"{len(records)} games, {args.games} per pair, sides alternating\n")
    print("| player A | player B | A wins | draws | B wins | A score |")
    print("|---|---|---:|---:|---:|---:|")
    for row in pairs:
        print(f"| {row['a']} | {row['b']} | {row['a_wins']} | {row['draws']} | {row['b_wins']} | "
              f"{row['a_score']:.3f} |")
    print("\nBradley-Terry rating (Elo scale, mean 0; draws count half; 95% Fisher-information interval)\n")
    print("| player | rating | 95% interval | W/D/L | score |")
    print("|---|---:|---|---|---:|")
    for row in ratings:
        print(f"| {row['player']} | {row['rating']:.0f} | [{row['ci95_low']:.0f}, {row['ci95_high']:.0f}] | "
              f"{row['wins']}/{row['draws']}/{row['losses']} | {row['score']:.3f} |")
    print(f"\nwritten: {out / 'games.csv'}, {out / 'pairs.csv'}, {out / 'ratings.csv'}")
    return ratings


if __name__ == "__main__":
    main()
