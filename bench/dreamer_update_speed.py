"""Seconds per Dreamer training step (world model + actor + critic) at batch 16 x 64, horizon 15.

Follows specs/benchmarks.md: same-run fp32 and bf16 matmul references (1024^3, median of 20 after 3 warm-ups)
per thread count; eager and compiled agents, in each precision (fp32, and bf16 where the CPU has hardware bf16),
timed in the same run, alternating call by call; warm-up calls first
(compile's first call timed separately), then medians with min and max; FLOPs from torch.utils.flop_counter
(matmuls/convs, forward + backward) over one eager update; rows appended to
results/bench_dreamer_update_speed.csv and a Markdown table printed.

    .venv/bin/python bench/dreamer_update_speed.py                      # XS and S, eager+compiled, 1 and 2 threads
    .venv/bin/python bench/dreamer_update_speed.py --sizes XS --modes eager --threads 1
    .venv/bin/python bench/dreamer_update_speed.py --sizes XS S --modes eager --threads 1 --precisions fp32 bf16
    .venv/bin/python bench/dreamer_update_speed.py --sizes wm1.3M wm16M --modes eager --threads 1

Besides the presets, two configurations match the world-model sizes of the figures quoted for a widely used
PyTorch port on this kind of machine (1.3M parameters: 2.1 s per step on one thread; 16M: 5.9 s on two threads).
Those figures are published numbers, not measured here (the port is not installed); `vs_port` divides our
median by them, so below 1 is faster.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

from harness import (ROOT, commit, count_flops, load_average, machine, markdown_table, matmul_gflops, precisions,
                     write_results)

import common.config  # noqa: E402,F401  (registers the preset resolver)
import src  # noqa: E402,F401  (registers the agents, whose rules validate() checks)
from common.config import validate  # noqa: E402
from common.spec import EnvSpec  # noqa: E402

TASK = EnvSpec(obs_shape=(17,), action_dim=6, discrete=False, episode_length=500, action_repeat=2, episodic=False,
               task="cheetah-run (shapes only: 17-dim obs, 6 actions)")


CONFIGS = {  # name -> (overrides, the port's published seconds per step at this world-model size or None)
    "XS": (["model_size=XS"], None),
    "S": (["model_size=S"], None),
    "wm1.3M": (["model_size=XS", "deter=256", "hidden=256", "groups=16", "classes=16"], 2.1),  # world model 1.26M
    "wm16M": (["model_size=S", "deter=1024", "hidden=704"], 5.9),  # world model 16.1M
}


def make_cfg(size: str, compiled: bool, precision: str = "fp32"):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return validate(compose("config", overrides=["agent=dreamer", *CONFIGS[size][0],
                                                     f"compile={str(compiled).lower()}", f"precision={precision}"]))


def make_batch(L: int, B: int):
    from tensordict import TensorDict
    g = torch.Generator().manual_seed(0)
    is_first = torch.zeros(L, B, 1, dtype=torch.bool)
    is_first[0] = True
    return TensorDict({"obs": torch.randn(L, B, *TASK.obs_shape, generator=g),
                       "action": torch.rand(L, B, TASK.action_dim, generator=g) * 2 - 1,
                       "reward": torch.rand(L, B, 1, generator=g), "terminated": torch.zeros(L, B, 1),
                       "is_first": is_first}, batch_size=(L, B))


def timed(agent, batch) -> float:
    t = time.perf_counter()
    agent.update(batch)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["XS", "S"], choices=list(CONFIGS))
    p.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "bf16_emulated"],
                   help="default: fp32, and bf16 where the CPU has hardware bf16")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timed", type=int, default=20)
    p.add_argument("--timed-large", type=int, default=5,
                   help="timed calls for sizes other than XS (S takes seconds per step on 2 cores)")
    p.add_argument("--csv", default=str(ROOT / "results" / "bench_dreamer_update_speed.csv"),
                   help="results file (its name under results/ is what counts)")
    args = p.parse_args()
    from src.dreamer.agent import Dreamer

    rows, desc, sha, timed_precisions = [], machine(), commit(), precisions(args.precisions)
    csv_name = Path(args.csv).stem
    for size in args.sizes:
        n_timed = args.timed if size == "XS" else args.timed_large
        for threads in args.threads:
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            agents = {(m, p): Dreamer(make_cfg(size, m == "compiled", p), TASK, torch.device("cpu"))
                      for m in args.modes for p in timed_precisions if m == "eager" or p == "fp32"}  # see config
            any_agent = next(iter(agents.values()))
            cfg = any_agent.cfg
            batch = make_batch(any_agent.seq_len, any_agent.batch_size)
            counts = any_agent.parameter_counts()
            params = counts["total"]
            wm_params = sum(counts[k] for k in ("encoder", "rssm", "decoder", "reward", "continue"))
            port_s = CONFIGS[size][1]
            eager_agent = Dreamer(make_cfg(size, False), TASK, torch.device("cpu"))
            flops = count_flops(lambda: eager_agent.update(batch))
            first = {}
            for m, agent in agents.items():  # warm-up; the compiled agent's first call includes compilation
                first[m] = timed(agent, batch)
                for _ in range(args.warmup - 1):
                    timed(agent, batch)
            ref = matmul_gflops()
            bf16_ref = matmul_gflops(repeats=20 if "bf16" in timed_precisions else 3, dtype=torch.bfloat16)
            times = {m: [] for m in agents}
            for _ in range(n_timed):  # alternate eager / compiled call by call
                for m, agent in agents.items():
                    times[m].append(timed(agent, batch))
            med = {m: statistics.median(v) for m, v in times.items()}
            for key in agents:
                m, prec = key
                achieved = flops / med[key] / 1e9
                row = {"size": size, "params": params, "wm_params": wm_params, "mode": m, "precision": prec,
                       "threads": threads, "batch": cfg.batch_size,
                       "seq_len": cfg.seq_len, "horizon": cfg.horizon, "latent": cfg.latent,
                       "actor_grad": "dynamics (auto, continuous)", "task": TASK.task,
                       "median_s": round(med[key], 4), "min_s": round(min(times[key]), 4),
                       "max_s": round(max(times[key]), 4), "n_warmup": args.warmup, "n_timed": n_timed,
                       "first_call_s": round(first[key], 2), "gflop_per_step": round(flops / 1e9, 2),
                       "achieved_gflops": round(achieved, 1), "matmul_gflops": round(ref, 1),
                       "bf16_matmul_gflops": round(bf16_ref, 1), "frac_of_matmul": round(achieved / ref, 3),
                       "frac_of_bf16_matmul": round(achieved / bf16_ref, 3),
                       "compiled_speedup": round(med[("eager", prec)] / med[("compiled", prec)], 3)
                       if {("eager", prec), ("compiled", prec)} <= set(med) else "",
                       "vs_fp32": round(med[key] / med[(m, "fp32")], 3) if (m, "fp32") in med else "",
                       "vs_port": round(med[key] / port_s, 3) if port_s else "", "load_average": load_average()}
                rows.append(row)
                write_results(csv_name, [row])  # row by row: a stopped run keeps what it measured
                print(f"{size} {m} {prec} threads={threads}: median {med[key]:.3f} s (min {min(times[key]):.3f}, "
                      f"max {max(times[key]):.3f}), first call {first[key]:.1f} s", flush=True)

    path = Path(args.csv)
    cols = ["size", "params", "wm_params", "mode", "precision", "threads", "median_s", "min_s", "max_s", "n_timed",
            "first_call_s", "gflop_per_step", "achieved_gflops", "matmul_gflops", "bf16_matmul_gflops",
            "frac_of_matmul", "frac_of_bf16_matmul", "compiled_speedup", "vs_fp32", "vs_port", "load_average"]
    print(f"\nDreamer update, batch {rows[0]['batch']} x {rows[0]['seq_len']}, horizon {rows[0]['horizon']}, "
          f"{rows[0]['latent']} latent, {TASK.task}; {desc}; commit {sha}\n")
    print(markdown_table(rows, cols))
    print(f"\nappended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
