"""A hockey run's win-rate curve against both BasicOpponents, from its policy snapshots.

    python -m envs.hockey.curve RUN_DIR [--games 100] [--workers 2] [--out DIR]

Plays every ``RUN_DIR/selfplay/step_<N>.pt`` (written every ``selfplay.snapshot_every`` frames; the
``+experiment=hockey_*`` recipes write one every 10k frames without playing them) plus, when given,
``--checkpoint`` files, ``--games`` games each against ``weak`` and ``strong`` with sides and puck halves
alternating, using the tournament's games (envs/hockey/tournament.py: every game a fresh env seeded from the
pair and the game number, so a snapshot's games do not depend on the other snapshots or on ``--workers``).
Writes ``curve.csv`` (step, opponent, games, wins, draws, losses, win_rate and its 95% Wilson interval) and
``curve.png`` to ``--out`` (default ``RUN_DIR/curve``).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from common.math import wilson_interval
from .tournament import check_players, pair_table, play_games, write_csv

OPPONENTS = ("weak", "strong")
GOALS = {"weak": 0.95, "strong": 0.90}  # the tournament goal of issue 13, drawn on the plot


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's self-play snapshots, by step."""
    found = []
    for path in (Path(run_dir) / "selfplay").glob("step_*.pt"):
        match = re.fullmatch(r"step_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def curve_rows(points: list[tuple[int, str]], games: int, workers: int = 2, seed: int = 0) -> list[dict]:
    """One row per (point, opponent): `points` are (step, checkpoint path) pairs."""
    players = list(OPPONENTS) + [path for _, path in points]
    pairs = [(len(OPPONENTS) + k, o) for k in range(len(points)) for o in range(len(OPPONENTS))]
    table = {(row["a"], row["b"]): row for row in pair_table(play_games(players, games, workers, seed, pairs))}
    rows = []
    for step, path in points:
        for opponent in OPPONENTS:
            row = table[(path, opponent)]
            low, high = wilson_interval(row["a_wins"], row["games"])
            rows.append({"step": step, "checkpoint": Path(path).name, "opponent": opponent, "games": row["games"],
                         "wins": row["a_wins"], "draws": row["draws"], "losses": row["b_wins"],
                         "win_rate": row["a_wins"] / row["games"], "win_ci95_low": low, "win_ci95_high": high})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for opponent, colour in zip(OPPONENTS, ("tab:blue", "tab:red")):
        mine = [r for r in rows if r["opponent"] == opponent]
        steps = [r["step"] for r in mine]
        ax.plot(steps, [r["win_rate"] for r in mine], "o-", color=colour, label=f"vs {opponent}")
        ax.fill_between(steps, [r["win_ci95_low"] for r in mine], [r["win_ci95_high"] for r in mine],
                        color=colour, alpha=0.15)
        ax.axhline(GOALS[opponent], color=colour, ls=":", lw=1)
    ax.set(xlabel="environment frames", ylabel="win rate (95% Wilson interval)", ylim=(0, 1), title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--games", type=int, default=100, help="games per snapshot and opponent (a multiple of 4)")
    p.add_argument("--workers", type=int, default=2, help="game processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", action="append", default=[], metavar="STEP=PATH",
                   help="also play this checkpoint, plotted at STEP (e.g. the run's final latest.pt)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.games < 1:
        sys.exit(f"games={args.games}: must be >= 1")
    points = [(step, str(path)) for step, path in snapshots(args.run_dir)]
    for spec in args.checkpoint:
        step, sep, path = spec.partition("=")
        if not sep or not step.isdigit():
            sys.exit(f"--checkpoint {spec}: must be STEP=PATH")
        points.append((int(step), path))
    if not points:
        sys.exit(f"{args.run_dir}: no selfplay/step_<N>.pt snapshots (train with selfplay.snapshot_every > 0, "
                 "as the +experiment=hockey_* recipes do) and no --checkpoint")
    check_players([*OPPONENTS, *(path for _, path in points)])
    out = args.out or args.run_dir / "curve"
    out.mkdir(parents=True, exist_ok=True)
    rows = curve_rows(sorted(points), args.games, args.workers, args.seed)
    write_csv(out / "curve.csv", rows)
    plot(rows, out / "curve.png", "/".join(Path(args.run_dir).resolve().parts[-4:]))  # agent/exp/seed/time
    for r in rows:
        print(f"step {r['step']:>8}  vs {r['opponent']:6s}  W/D/L {r['wins']}/{r['draws']}/{r['losses']}  "
              f"win {r['win_rate']:.3f} [{r['win_ci95_low']:.3f}, {r['win_ci95_high']:.3f}]")
    print(f"written: {out / 'curve.csv'}, {out / 'curve.png'}")
    return rows


if __name__ == "__main__":
    main()
