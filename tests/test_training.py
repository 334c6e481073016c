"""End-to-end: train.py learns, resumes after SIGKILL, and rejects bad configs before training."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.precision import fast_bf16
from tests.conftest import ROOT, TINY_TDMPC2, run_train

# a cheap task and a small planner: about a minute of CPU
PENDULUM = ["task=gym/Pendulum-v1", *TINY_TDMPC2, "latent_dim=64", "mlp_dim=128", "enc_dim=128", "batch_size=64",
            "num_samples=64", "num_elites=8", "iterations=2", "seed_steps=400", "eval_episodes=5"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run_dir(root: Path, task: str, exp: str) -> Path:
    dirs = sorted((root / "runs" / task / "tdmpc2" / exp / "seed1").iterdir())
    return dirs[-1]


# bf16 where the hardware has it; elsewhere its numerics with fp32 kernels (bf16 kernels would be far slower)
BF16 = "bf16" if fast_bf16(torch.device("cpu")) else "bf16_emulated"


# the emulated variant costs as much as the fp32 one again (about 4 CI minutes) without a speed to show: slow
@pytest.mark.heavy
@pytest.mark.parametrize("precision", ["fp32", pytest.param(BF16, marks=[pytest.mark.slow] * (BF16 != "bf16"))])
def test_short_run_beats_random_policy(tmp_path, precision):
    proc = run_train([*PENDULUM, "steps=2000", "eval_freq=2000", "checkpoint_freq=2000", "exp_name=learn",
                      f"precision={precision}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = _rows(_run_dir(tmp_path, "gym/Pendulum-v1", "learn") / "metrics" / "eval.csv")
    first, last = float(evals[0]["episode_reward"]), float(evals[-1]["episode_reward"])
    # the untrained agent at step 0 scores like a random policy (about -1200 on Pendulum-v1)
    assert first < -900
    assert last > first + 400, (first, last)
    # the reference-format results file
    results = _rows(tmp_path / "results" / "runs" / "gym" / "Pendulum-v1" / "tdmpc2-learn-seed1.csv")
    assert [r["step"] for r in results] == ["0", "2000"] and results[0]["seed"] == "1"


def test_resume_after_sigkill_continues_from_checkpoint(tmp_path):
    # random actions throughout (seed_steps > steps): this test is about the run's bookkeeping
    args = [*PENDULUM, "steps=6000", "seed_steps=8000", "eval_freq=100000", "eval_episodes=1",
            "checkpoint_freq=400", "exp_name=resume"]
    cmd = [sys.executable, str(ROOT / "train.py"), "threads=1", "logger.progress=false", *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").rglob("checkpoints/latest.pt"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.2)
    assert ckpt is not None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    time.sleep(0.3)  # into the next episode, far from the end (6000 steps)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first_dir = ckpt.parent.parent
    killed_rows = _rows(first_dir / "metrics" / "train.csv")

    resumed = run_train([*args, "resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout
    resumed_at = int(resumed.stdout.split(" at step ")[1].split()[0])
    assert resumed_at >= 400 and resumed_at % 200 == 0  # a checkpoint at an episode boundary
    new_dir = _run_dir(tmp_path, "gym/Pendulum-v1", "resume")
    assert new_dir != first_dir
    rows = _rows(new_dir / "metrics" / "train.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps))  # no duplicated or reordered rows after resuming
    assert steps[-1] == 6000
    # rows up to the checkpoint come from the killed run, unchanged
    kept = [r for r in killed_rows if int(r["step"]) <= resumed_at]
    assert rows[: len(kept)] == kept
    eval_steps = [int(r["step"]) for r in _rows(new_dir / "metrics" / "eval.csv")]
    assert eval_steps == [0, 6000]  # the step-0 evaluation of the killed run, then the final one


@pytest.mark.heavy
def test_ctrl_c_saves_a_checkpoint_then_exits(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "threads=1", "logger.progress=false", *PENDULUM, "steps=100000",
           "seed_steps=200000", "eval_freq=1000000", "eval_episodes=1", "checkpoint_freq=1000000", "exp_name=sigint"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").rglob("train.csv")):
        time.sleep(0.2)  # wait for the first finished episode
    if not list((tmp_path / "runs").rglob("train.csv")):
        proc.kill()
        pytest.fail("no episode finished within 120 s: the signal would interrupt start-up, not training")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Continue with the same command plus resume=true" in out
    ckpt = next((tmp_path / "runs").rglob("checkpoints/latest.pt"))
    from common import checkpoint
    assert checkpoint.load(ckpt)["trainer"]["step"] >= 200


def test_invalid_config_fails_before_training(tmp_path):
    proc = run_train(["num_elites=1000"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "num_elites=1000" in proc.stderr and "must not exceed num_samples=512" in proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("metrics"))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    proc = run_train(["resume=true", "exp_name=none"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "no earlier checkpoint" in proc.stderr


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_train([f"checkpoint={bad}"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "corrupt or not a checkpoint" in proc.stderr


def test_cfg_job_shows_composed_config(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--cfg", "job", "model_size=5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "horizon: 3" in proc.stdout and "model_size: 5" in proc.stdout
