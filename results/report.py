"""Aggregate runs into an experiment report: python -m results.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]

Groups runs by task and method (ablation name, else the discount set and head) over seeds and reports the
area under the evaluation-return curve (mean return over the curve, trapezoid rule), final return, seed
spread, the auxiliary heads' MAE/RMSE of decoded predictions against targets (from debug snapshots,
multi_gamma.debug_logging=true), and overhead against the baseline (A0 / heads off): parameters, ms per update,
peak memory. The success bar (research plan): +3% AUC or more on at least two tasks with at most 15% time
overhead. Writes report.md and one PNG of learning curves (mean and 95% band over seeds) per task.
"""
import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from envs.multitask import task_label  # a multi-task run's task is a list: group it under its readable name

AUC_GAIN, MAX_OVERHEAD = 0.03, 0.15


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _floats(rows, key):
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def load_run(run_dir: Path) -> dict | None:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    evals = _rows(run_dir / "metrics" / "eval.csv")
    if not evals:
        return None
    train = _rows(run_dir / "metrics" / "train.csv")
    steps, returns = _floats(evals, "step"), _floats(evals, "episode_reward")
    auc = (sum((steps[i + 1] - steps[i]) * (returns[i] + returns[i + 1]) / 2 for i in range(len(steps) - 1))
           / (steps[-1] - steps[0])) if len(steps) > 1 else returns[0]
    errors = []
    snapshots = run_dir / "multi_gamma_snapshots.jsonl"
    if snapshots.exists():
        for line in snapshots.read_text().splitlines():
            errors += json.loads(line)["abs_error"]
    mg = cfg.get("multi_gamma", {})
    method = cfg.get("ablation") if cfg.get("ablation") not in (None, "none") else (
        f"gammas={mg['gammas']},{mg['head']},w={mg['loss_weight']}" if mg.get("enabled") else "baseline")
    params = json.loads((run_dir / "parameters.json").read_text()) if (run_dir / "parameters.json").exists() else {}
    update_ms = _floats(train, "update_ms")
    return {"dir": run_dir, "task": task_label(cfg["task"]), "method": method, "seed": cfg["seed"], "steps": steps,
            "returns": returns, "auc": auc, "final": returns[-1], "params": params.get("total", float("nan")),
            "update_ms": statistics.median(update_ms) if update_ms else float("nan"),
            "peak_mb": max(_floats(train, "peak_memory_mb") or [float("nan")]),
            "aux_mae": statistics.fmean(errors) if errors else float("nan"),
            "aux_rmse": math.sqrt(statistics.fmean(e * e for e in errors)) if errors else float("nan"),
            "baseline": method in ("A0", "baseline")}


def find_runs(roots: list[Path]) -> list[dict]:
    runs = []
    for root in roots:
        for cfg_file in sorted(Path(root).rglob("config.yaml")):
            if cfg_file.parent.name != ".hydra" and (run := load_run(cfg_file.parent)):
                runs.append(run)
    return runs


def _mean(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.fmean(xs) if xs else float("nan")


def summarize(runs: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for run in runs:
        groups[(run["task"], run["method"])].append(run)
    table = []
    for (task, method), group in sorted(groups.items()):
        aucs = [r["auc"] for r in group]
        table.append({"task": task, "method": method, "seeds": len(group), "auc": _mean(aucs),
                      "auc_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                      "final": _mean([r["final"] for r in group]), "params": _mean([r["params"] for r in group]),
                      "update_ms": _mean([r["update_ms"] for r in group]),
                      "peak_mb": _mean([r["peak_mb"] for r in group]),
                      "aux_mae": _mean([r["aux_mae"] for r in group]), "aux_rmse": _mean([r["aux_rmse"] for r in group]),
                      "baseline": group[0]["baseline"]})
    baselines = {row["task"]: row for row in table if row["baseline"]}
    for row in table:
        base = baselines.get(row["task"])
        row["auc_gain"] = (row["auc"] - base["auc"]) / abs(base["auc"]) if base and base["auc"] else float("nan")
        row["time_overhead"] = row["update_ms"] / base["update_ms"] - 1 if base else float("nan")
        row["param_overhead"] = row["params"] / base["params"] - 1 if base else float("nan")
    return table


def success(table: list[dict]) -> dict:
    """Per method: does it gain >= 3% AUC on at least two tasks with <= 15% time overhead?"""
    verdict = {}
    for method in {row["method"] for row in table if not row["baseline"]}:
        wins = [row["task"] for row in table if row["method"] == method and row["auc_gain"] >= AUC_GAIN
                and not row["time_overhead"] > MAX_OVERHEAD]
        verdict[method] = {"tasks_meeting_bar": wins, "success": len(wins) >= 2}
    return verdict


def plot(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    paths = []
    for task in sorted({r["task"] for r in runs}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in sorted({r["method"] for r in runs if r["task"] == task}):
            group = [r for r in runs if r["task"] == task and r["method"] == method]
            n = min(len(r["returns"]) for r in group)
            steps = np.array(group[0]["steps"][:n])
            curves = np.array([r["returns"][:n] for r in group])
            mean = curves.mean(0)
            half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(group)) if len(group) > 1 else np.zeros(n)
            ax.plot(steps, mean, label=f"{method} (n={len(group)})")
            ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
        ax.set(title=task, xlabel="environment steps", ylabel="eval return")
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
    args = parser.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        raise SystemExit(f"no runs (config.yaml + metrics/eval.csv) under {', '.join(map(str, args.dirs))}")
    out = args.out or args.dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(runs)
    cols = ["task", "method", "seeds", "auc", "auc_std", "final", "auc_gain", "params", "param_overhead",
            "update_ms", "time_overhead", "peak_mb", "aux_mae", "aux_rmse"]

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["# Experiment report", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in cols) + " |" for row in table]
    lines += ["", f"Success bar: AUC gain >= {AUC_GAIN:.0%} on at least two tasks with time overhead <= "
                  f"{MAX_OVERHEAD:.0%} (against the baseline of the same task).", ""]
    for method, v in sorted(success(table).items()):
        lines.append(f"- {method}: {'meets' if v['success'] else 'does not meet'} the bar "
                     f"(tasks: {', '.join(v['tasks_meeting_bar']) or 'none'})")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plot(runs, out)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nWrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
