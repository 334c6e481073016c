"""Aggregate runs into an experiment report:
python -m results.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--reference tdmpc2|dreamerv3|sac]
                         [--group-by KEY=BASELINE ...]

Groups runs by task, agent and method (ablation name, else the discount set and head) over seeds and reports
the area under the evaluation-return curve (mean return over the curve, trapezoid rule) and the final return,
both over the frames every run of the method and of its baseline (A0 / heads off, same task and agent) reached
(runs stopped early compare on that budget, and a shorter third method does not shorten the others'), seed
spread, the auxiliary heads' MAE/RMSE of decoded predictions against targets (from debug snapshots,
multi_gamma.debug_logging=true), and overhead against the baseline: parameters, ms per update, peak memory.
The success bar (research plan), for methods with auxiliary heads: +3% AUC or more on at least two tasks with
at most 15% time overhead, the time measured on the same hardware as the baseline's (`hardware.json`: CPU or
GPU model, CPU instruction set, precision, compile; a task where it differs or is unknown does not count). Writes report.md and one PNG of learning
curves (mean over seeds, each seed thin) per task, each run's eval curve in the reference format `step,reward,seed` under curves/, and each run's
record under records/ (its config and metrics, the files read here): pass the output folder again as a DIR
and a later report still holds runs whose directories are gone.

--reference NAME adds the published curves of ../shared/data/reference_results/NAME/<task>.csv: the mean and
min-max band of the published seeds in each task's PNG, and per task a table of each run's return at 50k and
100k frames (or the last evaluation of a run that stopped earlier: never extrapolated), the published mean and
range there (linear interpolation between the published points, every 100k frames), wall time, updates and
environment frames per second.

--group-by KEY=BASELINE splits the methods further by a config key that a sweep varied (`--group-by
train_ratio=64`: labels such as `baseline train_ratio=256`); the baseline of a task and agent is then the
runs at BASELINE among those that would be the baseline without it (A0 / heads off).
"""
import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from common.tasks import task_label  # a multi-task run's task is a list: group it under its readable name

AUC_GAIN, MAX_OVERHEAD = 0.03, 0.15
REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reference_results"
REFERENCES = {"tdmpc2": "TD-MPC2", "dreamerv3": "DreamerV3", "sac": "SAC"}  # folder -> the name in the report
REFERENCE_FRAMES = (50_000, 100_000)  # the comparison points, in environment frames (action repeat in)


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _floats(rows, key):
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def config_value(cfg: dict, key: str, where: Path):
    """The value of a dotted key (`multi_gamma.head`) in a run's saved config; SystemExit naming both if absent."""
    value = cfg
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"--group-by {key}: no such key in {where / 'config.yaml'}")
        value = value[part]
    return value


def parse_group_by(specs: list[str]) -> dict[str, str]:
    """['train_ratio=64'] -> {'train_ratio': '64'}; SystemExit naming the argument and the form otherwise."""
    groups = {}
    for spec in specs:
        key, sep, baseline = spec.partition("=")
        if not (key and sep and baseline):
            raise SystemExit(f"--group-by {spec!r}: expected KEY=BASELINE (for example train_ratio=64)")
        groups[key] = baseline
    return groups


def load_run(run_dir: Path, group_by: dict[str, str] | None = None) -> dict | None:
    """A run's curve and costs; `group_by` ({key: baseline value}) adds `key=value` to its method label."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    ran_on = json.loads((run_dir / "hardware.json").read_text()) if (run_dir / "hardware.json").exists() else {}
    if ran_on:  # `precision=auto` is fp32 or bf16 by machine: group by what ran
        cfg["precision"] = ran_on["precision"]
    evals = _rows(run_dir / "metrics" / "eval.csv")
    if not evals:
        return None
    train = _rows(run_dir / "metrics" / "train.csv")
    steps, returns = _floats(evals, "step"), _floats(evals, "episode_reward")
    errors = []
    snapshots = run_dir / "multi_gamma_snapshots.jsonl"
    if snapshots.exists():
        for line in snapshots.read_text().splitlines():
            errors += json.loads(line)["abs_error"]
    mg = cfg.get("multi_gamma", {})
    method = cfg.get("ablation") if cfg.get("ablation") not in (None, "none") else (
        f"gammas={mg['gammas']},{mg['head']},w={mg['loss_weight']}" if mg.get("enabled") else "baseline")
    baseline = heads_off = method in ("A0", "baseline")
    for key, base in (group_by or {}).items():
        value = str(config_value(cfg, key, run_dir))
        method += f" {key}={value}"
        baseline = baseline and value == base
    params = json.loads((run_dir / "parameters.json").read_text()) if (run_dir / "parameters.json").exists() else {}
    update_ms = _floats(train, "update_ms")
    frames = max(_floats(train, "step") + steps)
    wall_s = max(_floats(train, "elapsed_time") + _floats(evals, "elapsed_time") or [float("nan")])
    return {"dir": run_dir, "task": task_label(cfg["task"]), "agent": cfg["agent"], "method": method,
            "seed": cfg["seed"], "steps": steps, "frames": frames, "wall_s": wall_s,
            "updates": (_floats(train, "updates") or [float("nan")])[-1],
            "frames_per_s": frames / wall_s if wall_s > 0 else float("nan"),
            "returns": returns, "params": params.get("total", float("nan")),
            "update_ms": statistics.median(update_ms) if update_ms else float("nan"),
            "peak_mb": max(_floats(train, "peak_memory_mb") or [float("nan")]),
            "aux_mae": statistics.fmean(errors) if errors else float("nan"),
            "aux_rmse": math.sqrt(statistics.fmean(e * e for e in errors)) if errors else float("nan"),
            "baseline": baseline, "heads": not heads_off,
            # what its ms per update depend on; None where the run predates hardware.json (CPU model unknown).
            # cpu_isa is None in records from before it was written, so such a run differs from a newer one
            "ran_on": (ran_on.get("cpu"), ran_on.get("cpu_isa"), ran_on.get("gpu"), cfg.get("precision"),
                       cfg.get("compile")) if ran_on else None}


def find_runs(roots: list[Path], group_by: dict[str, str] | None = None) -> list[dict]:
    """The runs under `roots`; a run found both as its directory and as a report's record of it (the same task,
    agent, method, seed and curve) counts once, as the directory."""
    runs = {}
    for root in roots:
        for cfg_file in sorted(Path(root).rglob("config.yaml")):
            if cfg_file.parent.name != ".hydra" and (run := load_run(cfg_file.parent, group_by)):
                key = (run["task"], run["agent"], run["method"], run["seed"], tuple(run["steps"]),
                       tuple(run["returns"]))
                if key not in runs or "records" in runs[key]["dir"].parts:
                    runs[key] = run
    return list(runs.values())


def drop_earlier_sittings(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): a run resumed in a new directory (resume=true) starts with a copy of the earlier
    sitting's eval rows, so a run whose curve is a prefix of another's with the same task, agent, method and
    seed is that run's earlier sitting, and counting both would count the seed twice."""
    def earlier(a, b):  # a is b's earlier sitting (of two equal curves, the older directory name)
        n = len(a["steps"])
        same = (a["task"], a["agent"], a["method"], a["seed"]) == (b["task"], b["agent"], b["method"], b["seed"])
        return (a is not b and same and (a["steps"], a["returns"]) == (b["steps"][:n], b["returns"][:n])
                and (n < len(b["steps"]) or str(a["dir"]) < str(b["dir"])))
    dropped = [a for a in runs if any(earlier(a, b) for b in runs)]
    return [r for r in runs if not any(r is d for d in dropped)], dropped


def curve_auc(steps: list[float], returns: list[float], upto: float) -> float:
    """Mean return over [first evaluation, `upto`] (trapezoid rule; the curve interpolated at `upto`)."""
    if upto <= steps[0]:
        return returns[0]
    xs = [x for x in steps if x < upto] + [upto]
    return float(np.trapezoid([interpolate(steps, returns, x) for x in xs], xs)) / (upto - xs[0])


def _mean(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.fmean(xs) if xs else float("nan")


def same_hardware(group: list[dict], baseline: list[dict]) -> str:
    """'same' where the method's runs and the baseline's ran on the same hardware, run for run (the same
    multiset of CPU/GPU model, CPU instruction set, precision and compile), 'differs' where they did not,
    'unknown' where a run has no hardware.json: ms per update are comparable only for 'same'."""
    if any(r["ran_on"] is None for r in group + baseline):
        return "unknown"
    return "same" if sorted(map(str, (r["ran_on"] for r in group))) == sorted(
        map(str, (r["ran_on"] for r in baseline))) else "differs"


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (task, agent, method) over its seeds. AUC and final return are taken over the frames every
    run of the method and of its baseline reached (`frames`: the earliest last evaluation among them; the
    baseline's own row: among its runs), and `baseline_auc` is the baseline's AUC over the same frames, so
    each method is compared with the baseline on one budget, whatever budgets other methods reached."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run["task"], run["agent"], run["method"])].append(run)
    baselines = {(task, agent): group for (task, agent, _), group in groups.items() if group[0]["baseline"]}

    def over(group, upto):  # mean AUC, its std over seeds, mean return at `upto`
        aucs = [curve_auc(r["steps"], r["returns"], upto) for r in group]
        return (_mean(aucs), statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                _mean([interpolate(r["steps"], r["returns"], upto) for r in group]))
    table = []
    for (task, agent, method), group in sorted(groups.items()):
        base = baselines.get((task, agent), [])
        upto = min(r["steps"][-1] for r in group + base)
        auc, auc_std, final = over(group, upto)
        row = {"task": task, "agent": agent, "method": method, "seeds": len(group), "frames": int(upto),
               "auc": auc, "auc_std": auc_std, "final": final,
               "params": _mean([r["params"] for r in group]), "update_ms": _mean([r["update_ms"] for r in group]),
               "peak_mb": _mean([r["peak_mb"] for r in group]),
               "aux_mae": _mean([r["aux_mae"] for r in group]), "aux_rmse": _mean([r["aux_rmse"] for r in group]),
               "baseline": group[0]["baseline"], "heads": group[0]["heads"],
               "baseline_auc": float("nan"), "auc_gain": float("nan"), "time_overhead": float("nan"),
               "param_overhead": float("nan"), "hardware": "n/a"}
        if base:
            base_auc = over(base, upto)[0]
            base_ms, base_params = _mean([r["update_ms"] for r in base]), _mean([r["params"] for r in base])
            row.update(baseline_auc=base_auc, auc_gain=(auc - base_auc) / abs(base_auc) if base_auc else float("nan"),
                       time_overhead=row["update_ms"] / base_ms - 1, param_overhead=row["params"] / base_params - 1,
                       hardware=same_hardware(group, base))
        table.append(row)
    return table


def success(table: list[dict]) -> dict:
    """Per agent and method with auxiliary heads ('tdmpc2 A1'): does it gain >= 3% AUC on at least two tasks
    with <= 15% time overhead, measured on the baseline's hardware? Tasks with the gain whose time overhead
    is not comparable (hardware differs or unknown) are listed apart and do not count. The bar is the
    multi-discount question's, so a method without heads (the baseline at another `--group-by` value) gets
    no verdict."""
    verdict = {}
    for agent, method in {(row["agent"], row["method"]) for row in table if row["heads"]}:
        gains = [row for row in table if (row["agent"], row["method"]) == (agent, method)
                 and row["auc_gain"] >= AUC_GAIN]
        wins = [row["task"] for row in gains if row["hardware"] == "same" and row["time_overhead"] <= MAX_OVERHEAD]
        verdict[f"{agent} {method}"] = {"tasks_meeting_bar": wins, "success": len(wins) >= 2,
                                        "time_not_comparable": [row["task"] for row in gains
                                                                if row["hardware"] != "same"]}
    return verdict


def interpolate(steps: list[float], values: list[float], x: float) -> float | None:
    """The curve at `x`, linear between its points; None outside them (never extrapolated)."""
    if not steps or x < steps[0] or x > steps[-1]:
        return None
    return float(np.interp(x, steps, values))


def load_reference(name: str, task: str, root: Path = REFERENCE_DIR) -> dict[int, tuple[list, list]] | None:
    """A published curve (`step,reward,seed`) as {seed: (steps, rewards)}, sorted by step; None if the task has
    no file."""
    rows = _rows(Path(root) / name / f"{task}.csv")
    if not rows:
        return None
    seeds = defaultdict(list)
    for r in rows:
        seeds[int(float(r["seed"]))].append((float(r["step"]), float(r["reward"])))
    return {seed: ([s for s, _ in sorted(pts)], [v for _, v in sorted(pts)]) for seed, pts in sorted(seeds.items())}


def reference_at(reference: dict, frames: float) -> dict:
    """Mean, min and max over the published seeds whose curve spans `frames`, and whether every value was
    interpolated rather than a published point."""
    values = [v for steps, rewards in reference.values() if (v := interpolate(steps, rewards, frames)) is not None]
    on_points = all(frames in steps for steps, _ in reference.values())
    return {"mean": _mean(values), "min": min(values, default=float("nan")), "max": max(values, default=float("nan")),
            "seeds": len(values), "of": len(reference), "interpolated": not on_points}


def _reference_band(reference: dict, upto: float):
    """Published steps up to `upto` (and the first beyond it) with the mean, min and max over the seeds there."""
    steps = sorted({s for ss, _ in reference.values() for s in ss})
    beyond = [s for s in steps if s >= upto]
    steps = [s for s in steps if s < upto] + beyond[:1]
    at = [[r[ss.index(s)] for ss, r in reference.values() if s in ss] for s in steps]
    return steps, [statistics.fmean(v) for v in at], [min(v) for v in at], [max(v) for v in at]


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _frames(n: float) -> str:
    return f"{n / 1000:g}k"


def our_return_at(run: dict, frames: float) -> str:
    """One run's return at `frames` (its evaluation there, else interpolated between the two around it,
    marked *), or the last evaluation of a run that stopped earlier."""
    value = interpolate(run["steps"], run["returns"], frames)
    if value is None:
        return f"reached {run['steps'][-1]:.0f} frames: {run['returns'][-1]:.1f}"
    return f"{value:.1f}" + ("" if frames in run["steps"] else "*")


def _spread(values: list[float], of: int) -> str:
    if not values:
        return "not reached"
    text = f"{statistics.fmean(values):.1f} ({min(values):.1f} to {max(values):.1f})"
    return text + (f", {len(values)} of {of} seeds" if len(values) < of else "")


def _shown(path: Path) -> str:
    """`path` relative to the repository (../shared/...) when it can be, so a report names no machine's home."""
    relative = os.path.relpath(Path(path).resolve(), Path(__file__).resolve().parents[1])
    return str(path) if relative.startswith(os.path.join("..", "..")) else relative


def reference_tables(runs: list[dict], name: str, root: Path = REFERENCE_DIR) -> tuple[list[str], dict]:
    """Markdown lines: per task, each run and each run group's mean against the published curve `name`;
    returns them with {task: reference} for the plots."""
    label, references, lines = REFERENCES[name], {}, []
    for task in sorted({r["task"] for r in runs}):
        reference = load_reference(name, task, root)
        lines += [f"## {task} against published {label}", ""]
        if reference is None:
            missing = _shown(Path(root) / name / f"{task}.csv")
            lines += [f"No published {label} curve for {task} ({missing} is missing).", ""]
            continue
        references[task] = reference
        cols = ["run group", "seed"] + [f"return @{_frames(f)}" for f in REFERENCE_FRAMES] + [
            "frames", "wall time", "updates", "env frames/s"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        groups = defaultdict(list)
        for r in runs:
            if r["task"] == task:
                groups[(r["agent"], r["method"])].append(r)
        for (agent, method), group in sorted(groups.items()):
            for r in sorted(group, key=lambda r: r["seed"]):
                lines.append("| " + " | ".join([f"{agent} {method}", str(r["seed"])]
                                               + [our_return_at(r, f) for f in REFERENCE_FRAMES]
                                               + [f"{r['frames']:.0f}", _duration(r["wall_s"]), f"{r['updates']:.0f}",
                                                  f"{r['frames_per_s']:.1f}"]) + " |")
            if len(group) > 1:
                at = [[v for r in group if (v := interpolate(r["steps"], r["returns"], f)) is not None]
                      for f in REFERENCE_FRAMES]
                lines.append("| " + " | ".join([f"{agent} {method}", f"mean of {len(group)}"]
                                               + [_spread(v, len(group)) for v in at]
                                               + [f"{_mean([r['frames'] for r in group]):.0f}",
                                                  _duration(_mean([r["wall_s"] for r in group])),
                                                  f"{_mean([r['updates'] for r in group]):.0f}",
                                                  f"{_mean([r['frames_per_s'] for r in group]):.1f}"]) + " |")
        published = [reference_at(reference, f) for f in REFERENCE_FRAMES]
        cells = [("not published" if not p["seeds"] else
                  f"{p['mean']:.1f} ({p['min']:.1f} to {p['max']:.1f})" + ("†" if p["interpolated"] else "")
                  + (f", {p['seeds']} of {p['of']} seeds" if p["seeds"] < p["of"] else "")) for p in published]
        lines.append("| " + " | ".join([f"published {label}", f"{len(reference)} seeds"] + cells + [""] * 4) + " |")
        lines += ["", f"Published: `{_shown(Path(root) / name / (task + '.csv'))}`, mean (min to max) over its seeds. "
                  "† linear interpolation between the published points around it (100k frames apart: a coarse "
                  "estimate). "
                  "* ours interpolated between the two evaluations around that frame count (no evaluation fell on "
                  "it). 'reached N frames: R' is the last evaluation of a run that stopped earlier. Wall time "
                  "includes evaluation; env frames/s = frames / wall time.", ""]
    return lines, references


RECORD_FILES = ("config.yaml", "parameters.json", "hardware.json", "multi_gamma_snapshots.jsonl",
                "metrics/eval.csv", "metrics/train.csv")


def _run_name(r: dict) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", f"{r['agent']}-{r['method']}-seed{r['seed']}")


def write_records(runs: list[dict], out: Path) -> list[Path]:
    """Each run's record: the small files this report reads (no checkpoints, no buffer), under
    records/<task>/<agent>-<method>-seed<N>/. A later report takes `out` as one of its DIRs, so runs of earlier
    sittings, whose run directories are gone, stay in it; a resumed run's newer directory replaces its record."""
    paths = []
    for r in runs:
        record = out / "records" / r["task"].replace("/", "_") / _run_name(r)
        for name in RECORD_FILES:
            src, dst = Path(r["dir"]) / name, record / name
            if src.exists() and src.resolve() != dst.resolve():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        paths.append(record)
    return paths


def write_curves(runs: list[dict], out: Path) -> list[Path]:
    """Each run's eval curve in the reference format `step,reward,seed`: curves/<task>/<agent>-<method>-seed<N>.csv."""
    paths = []
    for r in runs:
        path = out / "curves" / r["task"].replace("/", "_") / (_run_name(r) + ".csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "reward", "seed"])
            writer.writerows([int(s), v, r["seed"]] for s, v in zip(r["steps"], r["returns"]))
        paths.append(path)
    return paths


def mean_curve(group: list[dict]) -> tuple[list, list]:
    """The mean over seeds at every evaluation step of any seed up to where the shortest seed stops (seeds
    evaluated at other steps interpolated linearly there)."""
    end = min(r["steps"][-1] for r in group)
    steps = sorted({s for r in group for s in r["steps"] if s <= end})
    return steps, [statistics.fmean(interpolate(r["steps"], r["returns"], s) for r in group) for s in steps]


def plot(runs: list[dict], out: Path, references: dict | None = None, reference_label: str = "") -> list[Path]:
    """One PNG per task: each run group's mean over seeds (bold) and its seeds (thin); with `references`
    ({task: published curve}) the published mean and the min-max band of its seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for task in sorted({r["task"] for r in runs}):
        fig, ax = plt.subplots(figsize=(6, 4))
        groups = sorted({(r["agent"], r["method"]) for r in runs if r["task"] == task})
        for k, key in enumerate(groups):
            group = [r for r in runs if r["task"] == task and (r["agent"], r["method"]) == key]
            color = f"C{k % 10}"
            for r in group:
                ax.plot(r["steps"], r["returns"], color=color, lw=0.7, alpha=0.45)
            steps, mean = mean_curve(group)
            ax.plot(steps, mean, color=color, lw=2, label=f"{' '.join(key)} (n={len(group)})")
        if references and task in references:
            upto = max(max(r["steps"]) for r in runs if r["task"] == task)
            steps, mean, low, high = _reference_band(references[task], upto)
            ax.plot(steps, mean, color="k", lw=2, ls="--", marker="o", label=f"published {reference_label} "
                                                                 f"(n={len(references[task])}, min-max)")
            ax.fill_between(steps, low, high, color="k", alpha=0.12)
        ax.set(title=task, xlabel="environment frames", ylabel="eval return")
        ax.legend(fontsize=7)
        path = out / f"curves_{task.replace('/', '_')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the first DIR)")
    parser.add_argument("--reference", choices=sorted(REFERENCES), default=None,
                        help="compare with these published curves (folder of --reference-dir)")
    parser.add_argument("--reference-dir", type=Path, default=REFERENCE_DIR,
                        help=f"where the published curves are (default: {REFERENCE_DIR})")
    parser.add_argument("--group-by", nargs="+", default=[], metavar="KEY=BASELINE",
                        help="also group by these config keys; runs at BASELINE are the baseline")
    args = parser.parse_args(argv)
    runs = find_runs(args.dirs, parse_group_by(args.group_by))
    if not runs:
        raise SystemExit(f"no runs (config.yaml + metrics/eval.csv) under {', '.join(map(str, args.dirs))}")
    runs, earlier = drop_earlier_sittings(runs)
    if args.reference and not (args.reference_dir / args.reference).is_dir():
        raise SystemExit(f"--reference {args.reference}: no folder {args.reference_dir / args.reference}")
    out = args.out or args.dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(runs)
    cols = ["task", "agent", "method", "seeds", "frames", "auc", "auc_std", "final", "baseline_auc", "auc_gain",
            "params", "param_overhead", "update_ms", "time_overhead", "hardware", "peak_mb", "aux_mae", "aux_rmse"]

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["# Experiment report", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in cols) + " |" for row in table]
    lines += ["", "AUC (mean return over the curve) and final return are over the first `frames` frames, the most "
                  "that every run of the method and of its baseline reached; baseline_auc is the baseline's AUC over "
                  "the same frames. hardware: whether the method's runs ran on the baseline's hardware "
                  "(hardware.json: CPU/GPU model, CPU instruction set, precision, compile), so that update_ms "
                  "and time_overhead compare; "
                  "'unknown' where a run has no hardware.json."]
    verdicts = success(table)
    if verdicts:
        lines += ["", f"Success bar of the auxiliary heads: AUC gain >= {AUC_GAIN:.0%} on at least two tasks with "
                      f"time overhead <= {MAX_OVERHEAD:.0%} (against the baseline of the same task and agent).", ""]
    for method, v in sorted(verdicts.items()):
        untimed = (f"; AUC gain but time overhead not comparable: {', '.join(v['time_not_comparable'])}"
                   if v["time_not_comparable"] else "")
        lines.append(f"- {method}: {'meets' if v['success'] else 'does not meet'} the bar "
                     f"(tasks: {', '.join(v['tasks_meeting_bar']) or 'none'}{untimed})")
    if earlier:
        lines += ["", "Left out as earlier sittings of resumed runs (their curves begin the resumed runs'): "
                  + ", ".join(f"`{r['dir']}`" for r in earlier)]
    references = {}
    if args.reference:
        more, references = reference_tables(runs, args.reference, args.reference_dir)
        lines += [""] + more
    write_curves(runs, out)
    write_records(runs, out)
    pictures = plot(runs, out, references, REFERENCES.get(args.reference, ""))
    lines += [""] + [f"![{p.stem}]({p.name})" for p in pictures]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nWrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
