"""TD-MPC2 speed: ms per update() and per act() (planning) for model_size 1 and 5, eager and compiled, per
precision (fp32, and bf16 where the CPU has hardware bf16), with 1 and 2 threads, on cheetah-run shapes
(17-dim observations, 6 actions), batch 256, horizon 3. Achieved GFLOP/s are reported as fractions of the
same-run fp32 and bf16 1024^3 matmul rates, with the load average during the measurement.

    python bench/update_speed.py [--sizes 1 5] [--threads 1 2] [--precisions fp32 bf16] [--no-compile] [--repeats 20]

Reference points for the official TD-MPC2 code, eager, measured on another machine of this kind (an AVX512-BF16
EPYC; issue 12: one thread, timed alternately with ours, medians of 4 rounds): model_size 1 update 151 ms / act
215 ms, model_size 5 572 / 608 ms; with 2 threads (shared/specs/benchmarks.md) 109 / 137 ms at model_size 1.
They are not same-run figures (the official code is not installed here): on a slower CPU *_vs_official flatters
the official code, so read them next to the same-run matmul fractions.
"""
import argparse
import time

import torch
from tensordict import TensorDict

from harness import count_flops, load_average, markdown_table, matmul_gflops, precisions, time_calls, write_results

import common.config  # noqa: F401  (preset resolver)
from common.config import validate
from common.spec import EnvSpec

OFFICIAL_MS = {(1, 1): (151, 215), (1, 2): (109, 137), (5, 1): (572, 608)}  # (size, threads): (update, act)


def build(size: int, compiled: bool, overrides: tuple = ()):
    """(cfg, spec, agent) for TD-MPC2 at `size` on cheetah-run shapes."""
    from hydra import compose, initialize_config_dir
    from harness import ROOT
    from src import make_agent
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = validate(compose("config", overrides=[f"model_size={size}", f"compile={str(compiled).lower()}",
                                                    "task=cheetah-run", *overrides]))
    spec = EnvSpec(obs_shape=(17,), action_dim=6, discrete=False, episode_length=500, action_repeat=2,
                   episodic=False, task="cheetah-run")
    torch.manual_seed(0)
    return cfg, spec, make_agent(cfg, spec, torch.device("cpu"))


def batch(cfg, spec):
    L, B = cfg.horizon + 1, cfg.batch_size
    return TensorDict({"obs": torch.randn(L, B, *spec.obs_shape), "action": torch.rand(L, B, spec.action_dim) * 2 - 1,
                       "reward": torch.rand(L, B, 1), "terminated": torch.zeros(L, B, 1),
                       "is_first": torch.zeros(L, B, 1, dtype=torch.bool)}, batch_size=(L, B))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "bf16_emulated"],
                        help="default: fp32, and bf16 where the CPU has hardware bf16")
    args = parser.parse_args()
    rows, timed_precisions = [], precisions(args.precisions)
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_gflops()
        bf16_peak = matmul_gflops(repeats=20 if "bf16" in timed_precisions else 3, dtype=torch.bfloat16)
        # compile=true runs in fp32 only (a config rule: see common/precision.py)
        for size, prec, compiled in [(s, p, c) for s in args.sizes for p in timed_precisions
                                     for c in [False] + ([] if args.no_compile or p != "fp32" else [True])]:
            cfg, spec, agent = build(size, compiled, (f"precision={prec}",))
            data, obs = batch(cfg, spec), torch.randn(*spec.obs_shape)
            start = time.perf_counter()
            agent.update(data)
            agent.act(obs, t0=True)
            first_call = time.perf_counter() - start  # includes compilation when compiled
            update = time_calls(lambda: agent.update(data), 3, args.repeats)
            act = time_calls(lambda: agent.act(obs), 3, args.repeats)
            update_flops = count_flops(lambda: agent.update(data)) if not compiled else None
            act_flops = count_flops(lambda: agent.act(obs)) if not compiled else None
            official = OFFICIAL_MS.get((size, threads))
            row = {"model_size": size, "params": agent.parameter_counts()["total"], "threads": threads,
                   "precision": prec, "mode": "compiled" if compiled else "eager", "batch": cfg.batch_size, "horizon": cfg.horizon,
                   "num_samples": cfg.num_samples, "iterations": cfg.iterations,
                   "update_ms": update["median"] * 1e3, "update_min_ms": update["min"] * 1e3,
                   "update_max_ms": update["max"] * 1e3, "act_ms": act["median"] * 1e3,
                   "act_min_ms": act["min"] * 1e3, "act_max_ms": act["max"] * 1e3,
                   "step_ms": (update["median"] + act["median"]) * 1e3,
                   "first_call_s": first_call, "matmul_peak_gflops": peak, "bf16_matmul_peak_gflops": bf16_peak,
                   "load_average": load_average()}
            if update_flops:
                for name, flops, t in [("update", update_flops, update), ("act", act_flops, act)]:
                    row[f"{name}_gflops"] = flops / t["median"] / 1e9
                    row[f"{name}_frac_of_fp32_peak"] = row[f"{name}_gflops"] / peak
                    row[f"{name}_frac_of_bf16_peak"] = row[f"{name}_gflops"] / bf16_peak
            if official:
                row["update_vs_official"] = row["update_ms"] / official[0]
                row["act_vs_official"] = row["act_ms"] / official[1]
                row["step_vs_official"] = row["step_ms"] / sum(official)
            rows.append(row)
            print(f"size {size} threads {threads} {prec} {row['mode']}: update {row['update_ms']:.1f} ms, "
                  f"act {row['act_ms']:.1f} ms (load {row['load_average']})", flush=True)
    path = write_results("bench_update_speed", rows)
    print(markdown_table(rows, ["model_size", "params", "threads", "precision", "mode", "update_ms", "act_ms",
                                "step_vs_official", "update_gflops", "act_gflops", "update_frac_of_fp32_peak",
                                "act_frac_of_fp32_peak", "update_frac_of_bf16_peak", "matmul_peak_gflops",
                                "bf16_matmul_peak_gflops", "load_average", "first_call_s"]))
    print(f"\nAppended to {path}. FLOPs from torch.utils.flop_counter (matmuls only); fractions are of the same-run "
          "1024^3 matmul rate; *_vs_official divides by the official TD-MPC2 figures of the docstring (another machine).")


if __name__ == "__main__":
    main()
