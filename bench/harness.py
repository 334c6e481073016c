"""What every benchmark shares (method: shared/specs/benchmarks.md): the same-run matmul reference, timing
with warm-up and medians, the machine description, and writing rows to results/*.csv plus a Markdown table."""
import csv
import datetime
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.memory import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as train.py does: benchmarks time what a run pays


def matmul_gflops(n: int = 1024, warmup: int = 3, repeats: int = 20, dtype=None) -> float:
    """GFLOP/s of an n x n @ n x n product (median) in `dtype` (fp32 by default), with torch's current thread
    count. Without hardware bf16 a bf16 product is ~70x slower: fewer repeats keep that measurement short."""
    import torch
    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    stats = time_calls(lambda: a @ b, warmup, repeats)
    return 2 * n ** 3 / stats["median"] / 1e9


def precisions(requested: list[str] | None) -> list[str]:
    """What to time: the requested precisions, or fp32 plus bf16 where the CPU has hardware bf16 (elsewhere bf16
    falls back to a kernel ~70x slower than fp32, which says nothing about bf16 and takes minutes)."""
    import torch
    from common.precision import fast_bf16
    if requested:
        return requested
    if fast_bf16(torch.device("cpu")):
        return ["fp32", "bf16"]
    print("bf16 not timed: this CPU has no hardware bf16 (no AVX512-BF16/AMX); --precisions bf16 forces it")
    return ["fp32"]


def load_average() -> str:
    """The 1/5/15-minute load averages: how busy the machine was while timing."""
    import os
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def time_calls(fn, warmup: int = 3, repeats: int = 20) -> dict:
    """Seconds per call: median, min and max of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def count_flops(fn) -> float:
    """FLOPs of one call, counted by torch.utils.flop_counter (matmuls/convs; elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}; {platform.system()} {platform.release()}; python {platform.python_version()}; torch {torch.__version__}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def write_results(name: str, rows: list[dict]) -> Path:
    """Append rows (with date, commit and machine) to results/<name>.csv; return its path."""
    path = ROOT / "results" / f"{name}.csv"
    stamp = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit(), "machine": machine()}
    rows = [{**stamp, **row} for row in rows]
    fields = list(rows[0])
    if path.exists():
        with open(path, newline="") as f:
            old = list(csv.DictReader(f))
        fields = list(dict.fromkeys(fields + [k for r in old for k in r]))  # each column once, new ones last
        rows = old + rows
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
