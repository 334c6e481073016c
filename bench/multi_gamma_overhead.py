"""Cost of multi-discount auxiliary heads: ms per TD-MPC2 update and parameters with 0, 2 and 5 auxiliary
discounts at model_size 5 (latent 512, 101 bins, batch 256, horizon 3), as ratios to the baseline measured
in the same run (timings interleaved round by round so machine noise hits all variants alike).

    python bench/multi_gamma_overhead.py [--model-size 5] [--threads 1 2] [--rounds 20]

The research plan's budget: about 52k parameters per auxiliary discount, at most 15% time for five.
"""
import argparse
import statistics
import time

import torch

from harness import markdown_table, matmul_gflops, write_results
from update_speed import batch, build

VARIANTS = {0: [], 2: ["multi_gamma.enabled=true"],
            5: ["multi_gamma.enabled=true", "multi_gamma.gammas=[primary,0.9,0.95,0.97,0.98,0.995]"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-size", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_gflops()
        agents = {n: build(args.model_size, False, o) for n, o in VARIANTS.items()}
        data = batch(agents[0][0], agents[0][1])
        for _, _, agent in agents.values():  # warm-up
            for _ in range(3):
                agent.update(data)
        times = {n: [] for n in agents}
        for _ in range(args.rounds):  # interleaved: one update of each variant per round
            for n, (_, _, agent) in agents.items():
                start = time.perf_counter()
                agent.update(data)
                times[n].append(time.perf_counter() - start)
        base_ms = statistics.median(times[0]) * 1e3
        base_params = agents[0][2].parameter_counts()["total"]
        for n, (_, _, agent) in agents.items():
            ms = statistics.median(times[n]) * 1e3
            params = agent.parameter_counts()["total"]
            rows.append({"model_size": args.model_size, "threads": threads, "aux_discounts": n,
                         "update_ms": ms, "update_min_ms": min(times[n]) * 1e3, "update_max_ms": max(times[n]) * 1e3,
                         "time_ratio": ms / base_ms, "params": params, "extra_params": params - base_params,
                         "extra_params_per_discount": (params - base_params) / n if n else 0,
                         "rounds": args.rounds, "matmul_peak_gflops": peak})
        print(f"threads {threads}: " + ", ".join(f"{r['aux_discounts']} aux {r['update_ms']:.1f} ms "
                                                 f"(x{r['time_ratio']:.3f})" for r in rows[-3:]), flush=True)
    path = write_results("bench_multi_gamma_overhead", rows)
    print(markdown_table(rows, ["model_size", "threads", "aux_discounts", "update_ms", "update_min_ms",
                                "update_max_ms", "time_ratio", "params", "extra_params_per_discount"]))
    print(f"\nAppended to {path}")


if __name__ == "__main__":
    main()
