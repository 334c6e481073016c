"""Hockey env speed: env steps per second with random actions, one process, no rendering.

Follows /work/shared/specs/benchmarks.md as far as it applies to a single-threaded Python/Box2D env:
* same-run reference: the same Box2D world stepped with random forces on both players (two force calls and
  one ``world.Step`` per step, no game logic), timed alternately with the env configurations; every figure
  is also reported as a ratio to it (the share of time not spent on game logic / Python overhead). If the original package (``hockey.hockey_env``) is importable it is timed too and the
  ratio ours/original printed. (The original was measured at about 22k steps/s on this kind of machine.)
* threads: the env is single-threaded Python + Box2D (no torch); BLAS threads are irrelevant.
* 3 warm-up repeats, then ``--repeats`` (default 20) timed repeats of ``--steps`` steps each; median, min, max.
* sizes: NORMAL mode, keep_mode, 8-dim uniform random actions (4 for the opponent configurations), episodes
  reset when done (resets are included in the time).
* a row per configuration is appended to ``results/bench_hockey_speed.csv`` and a Markdown table printed.

    python bench/hockey_speed.py [--steps 2000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import statistics
import time
from pathlib import Path

import numpy as np

import harness  # noqa: E402  (puts the repository root on sys.path)
from harness import ROOT  # noqa: E402
from envs.hockey.hockey_env import HockeyEnv, HockeyEnv_BasicOpponent  # noqa: E402
from envs.hockey.task import make_hockey_env  # noqa: E402

REF_NAME = "reference: Box2D world.Step + 2 force calls (no game logic)"
ORIGINAL_REFERENCE_STEPS_PER_S = 22_000  # the original package, random actions, measured on this machine type


def _env_runner(env, action_dim, steps, seed):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (steps, action_dim))
    env.reset(seed=seed)

    def run():
        step = env.step
        reset = env.reset
        t0 = time.perf_counter()
        for a in actions:
            out = step(a)
            if out[2] or out[3]:
                reset()
        return time.perf_counter() - t0

    return run


def _box2d_runner(steps, seed):
    """Reference: the same Box2D world driven with random forces (2 force calls + 1 Step per step, reset
    every 251 steps), i.e. the engine cost with contacts but without the game's Python logic."""
    env = HockeyEnv()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    forces = (rng.uniform(-1, 1, (steps, 4)) * 6000).tolist()

    def run():
        world, p1, p2 = env.world, env.player1, env.player2
        t0 = time.perf_counter()
        for i, f in enumerate(forces):
            p1.ApplyForceToCenter((f[0], f[1]), True)
            p2.ApplyForceToCenter((f[2], f[3]), True)
            world.Step(0.02, 180, 60)
            if i % 251 == 250:
                env.reset()
                world, p1, p2 = env.world, env.player1, env.player2
        return time.perf_counter() - t0

    return run, env


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="env steps per timed repeat")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--csv", default=str(ROOT / "results" / "bench_hockey_speed.csv"))
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)

    runners = {}
    box2d_run, _keep = _box2d_runner(args.steps, 0)
    runners[REF_NAME] = box2d_run
    runners["HockeyEnv, 2 random players"] = _env_runner(HockeyEnv(), 8, args.steps, 1)
    runners["HockeyEnv_BasicOpponent (strong), random learner"] = _env_runner(HockeyEnv_BasicOpponent(), 4,
                                                                                args.steps, 2)
    runners["task: make_hockey_env(opponent='weak'), random learner"] = _env_runner(
        make_hockey_env(opponent="weak", seed=3), 4, args.steps, 3)
    runners["task: make_hockey_env(opponent='none'), random learner"] = _env_runner(
        make_hockey_env(opponent="none", seed=4), 4, args.steps, 4)
    try:
        import hockey.hockey_env as original  # noqa: F401

        runners["ORIGINAL hockey.HockeyEnv, 2 random players"] = _env_runner(original.HockeyEnv(), 8, args.steps, 1)
        runners["ORIGINAL HockeyEnv_BasicOpponent, random learner"] = _env_runner(
            original.HockeyEnv_BasicOpponent(), 4, args.steps, 2)
    except ImportError:
        pass

    times = {name: [] for name in runners}
    for _ in range(args.warmup):
        for run in runners.values():
            run()
    for _ in range(args.repeats):  # alternate the configurations inside every repeat
        for name, run in runners.items():
            times[name].append(run())

    ref_name = REF_NAME
    ref_median = args.steps / statistics.median(times[ref_name])
    date = _dt.datetime.now().isoformat(timespec="seconds")
    machine, commit = harness.machine(), harness.commit()
    rows = []
    for name, ts in times.items():
        rates = [args.steps / t for t in ts]
        med = statistics.median(rates)
        rows.append({
            "date": date, "commit": commit, "machine": machine, "config": name, "steps_per_repeat": args.steps,
            "repeats": args.repeats, "warmup": args.warmup, "threads": 1,
            "median_steps_per_s": round(med, 1), "min_steps_per_s": round(min(rates), 1),
            "max_steps_per_s": round(max(rates), 1), "ratio_to_box2d_step": round(med / ref_median, 4),
            "ratio_to_original_22k": round(med / ORIGINAL_REFERENCE_STEPS_PER_S, 3),
        })
    orig = {r["config"]: r["median_steps_per_s"] for r in rows if r["config"].startswith("ORIGINAL")}

    print(f"\nhockey env speed -- {machine}, commit {commit}, {args.steps} steps x {args.repeats} repeats "
          f"(+{args.warmup} warm-up), NORMAL mode, random actions, no rendering\n")
    print("| configuration | median steps/s | min | max | ratio to Box2D reference | ratio to original (22k) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['median_steps_per_s']:,.0f} | {r['min_steps_per_s']:,.0f} | "
              f"{r['max_steps_per_s']:,.0f} | {r['ratio_to_box2d_step']:.3f} | {r['ratio_to_original_22k']:.2f} |")
    if orig:
        ours = {r["config"]: r["median_steps_per_s"] for r in rows}
        print(f"\nours / original (measured here): two players "
              f"{ours['HockeyEnv, 2 random players'] / orig['ORIGINAL hockey.HockeyEnv, 2 random players']:.2f}, "
              f"with opponent {ours['HockeyEnv_BasicOpponent (strong), random learner'] / orig['ORIGINAL HockeyEnv_BasicOpponent, random learner']:.2f}")
    else:
        print("\n(original package not importable here; 'ratio to original' uses the 22k steps/s figure "
              "measured earlier on this machine type, not a same-run measurement)")

    if not args.no_csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
        print(f"appended {len(rows)} rows to {path}")
    return rows


if __name__ == "__main__":
    main()
