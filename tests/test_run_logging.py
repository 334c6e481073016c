"""What a run records beside its curves (seed 001's logging plan): multi-discount snapshots every
`multi_gamma.log_interval_steps`, TD-MPC2 planner statistics in train.csv, the source revision in the run
directory and the checkpoint, and results files of a sweep's jobs that never collide."""
import csv
import json
import math
import subprocess
import sys

import pytest
import torch

from common.buffer import Buffer
from common.logger import Logger
from tests.conftest import ROOT, TINY_TDMPC2, run_train
from trainer.online_trainer import OnlineTrainer


def _train(tiny_tdmpc2, tmp_path, *overrides):
    cfg, env, spec, agent = tiny_tdmpc2("eval_freq=100000", "eval_episodes=1", "checkpoint_freq=100000",
                                        "save_buffer=false", "logger.progress=false", *overrides)
    buffer = Buffer(5000, agent.seq_len, agent.batch_size)
    trainer = OnlineTrainer(cfg, env, spec, agent, buffer, Logger(tmp_path, cfg), tmp_path)
    trainer.evaluate = lambda: {"episode_reward": 0.0}  # not under test here: skip the planning episodes
    trainer.train()
    return trainer


@pytest.mark.parametrize("debug", [False, True])
def test_multi_gamma_snapshots_every_log_interval_steps(tiny_tdmpc2, tmp_path, debug):
    """Pendulum: 200-step episodes, 1000 steps, no learning (seed_steps > steps). Snapshots come at the first
    episode end with data (step 200), then past each multiple of 400: steps 400 and 800."""
    _train(tiny_tdmpc2, tmp_path, "multi_gamma.enabled=true", "multi_gamma.log_interval_steps=400",
           f"multi_gamma.debug_logging={debug}", "multi_gamma.log_num_examples=6", "steps=1000", "seed_steps=2000")
    records = [json.loads(line) for line in (tmp_path / "multi_gamma_snapshots.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in records})
    assert steps == [200, 400, 800]
    examples = 6 if debug else 4
    assert len(records) == len(steps) * 2 * examples  # two auxiliary discounts
    standard = {"step", "gamma", "example", "target", "prediction", "abs_error"}
    extra = {"bootstrap", "top2_bins", "top2_probs", "ce_per_step"}
    assert set(records[0]) == (standard | extra if debug else standard)


def test_planner_stats_are_means_over_training_plans(tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    obs = env.reset()
    for t in range(3):
        agent.act(obs, t0=t == 0, eval_mode=True)
    assert agent.planner_stats() == {}  # evaluation plans are not counted
    for t in range(5):
        agent.act(obs, t0=t == 0)
    stats = agent.planner_stats()
    assert set(stats) == {"planner/elite_value_mean", "planner/elite_value_std", "planner/final_std",
                          "planner/score_entropy"}
    assert cfg.min_std <= stats["planner/final_std"] <= cfg.max_std
    assert 0 <= stats["planner/score_entropy"] <= math.log(cfg.num_elites) + 1e-6
    assert stats["planner/elite_value_std"] >= 0
    assert agent.planner_stats() == {}  # read and reset


def test_planner_stats_reach_train_csv(tiny_tdmpc2, tmp_path):
    """Episode 1 is random (seeding), episode 2 plans: only its row carries the planner columns."""
    _train(tiny_tdmpc2, tmp_path, "steps=400", "seed_steps=200", "updates_per_step=0.01")
    with open(tmp_path / "metrics" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert rows[0]["planner/final_std"] == "" and float(rows[1]["planner/final_std"]) > 0
    assert float(rows[1]["planner/score_entropy"]) >= 0


# ---------------------------------------------------------------------------------------------- provenance
def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def test_source_revision_of_a_scratch_repository(tmp_path):
    from common.checkpoint import source_revision
    assert source_revision(tmp_path) == {"commit": None, "dirty": None}  # not a git checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "untracked.csv").write_text("results are not code\n")
    assert source_revision(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_revision(tmp_path) == {"commit": sha, "dirty": True}


def test_run_directory_and_checkpoint_name_the_code(tiny_tdmpc2, tmp_path):
    from common import checkpoint
    from common.precision import fast_bf16
    from common.run import hardware_info, write_run_info
    cfg, env, spec, agent = tiny_tdmpc2("precision=auto")
    write_run_info(tmp_path, cfg, agent.parameter_counts(), hardware_info(torch.device("cpu"), agent.precision))
    hardware = json.loads((tmp_path / "hardware.json").read_text())  # what `auto` became on this machine
    assert hardware["precision"] == ("bf16" if fast_bf16(torch.device("cpu")) else "fp32")
    assert hardware["device"] == "cpu" and hardware["threads"] == torch.get_num_threads() and hardware["cpu"]
    assert hardware["cpu_isa"] == torch.backends.cpu.get_cpu_capability() and hardware["cpu_bf16"] == fast_bf16(
        torch.device("cpu"))  # what tells two "AMD EPYC" machines apart
    expected = checkpoint.source_revision(ROOT)  # this checkout, as the test sees it
    recorded = json.loads((tmp_path / "source.json").read_text())
    assert recorded["commit"] == expected["commit"] and len(recorded["commit"]) == 40
    assert isinstance(recorded["dirty"], bool)
    checkpoint.save(tmp_path / "ckpt.pt", cfg, spec, agent, {"step": 0})
    assert checkpoint.load(tmp_path / "ckpt.pt")["source"] == recorded


def test_override_keys_and_job_identity():
    from common.run import job_identity, override_key
    assert override_key("a.b=1") == override_key("+a.b=1") == override_key("++a.b=x=y") == override_key("~a.b") == "a.b"
    # resume and steps may change when a sweep is resumed; a `+`-added key keeps its prefix in the identity
    assert job_identity(["seed=1", "resume=true", "+steps=5", "+x=a=b", "~y"]) == {"seed": "1", "+x": "a=b", "~y": ""}
    assert job_identity(["b=2", "a=1"]) == job_identity(["a=1", "b=2", "steps=9"])


def test_results_names_of_sweep_jobs_never_collide():
    from omegaconf import OmegaConf
    from common.run import results_csv_name
    cfg = OmegaConf.create({"agent": "tdmpc2", "exp_name": "default", "seed": 3})
    assert results_csv_name(cfg) == "tdmpc2-default-seed3.csv"  # a single run: the reference name
    jobs = [["seed=3", "multi_gamma.gammas=[primary,0.97]"], ["multi_gamma.gammas=[primary,0.9,0.99]", "seed=3"],
            ["seed=3", "multi_gamma.gammas=(primary,0.97)"], ["seed=3", "ablation=A1"], ["ablation=A2", "seed=3"],
            ["seed=3", f"exp_name=x{'y' * 100}1"], ["seed=3", f"exp_name=x{'y' * 100}2"]]
    names = [results_csv_name(cfg, job) for job in jobs]
    assert len(set(names)) == len(jobs)
    assert names[3] == "tdmpc2-default-seed3-ablation=A1.csv"  # safe and short: readable as it is
    assert results_csv_name(cfg, ["ablation=A1", "threads=1"]) == results_csv_name(cfg, ["threads=1", "ablation=A1"])
    assert all("/" not in n and "[" not in n and len(n) < 150 for n in names)


def test_interrupt_before_the_first_episode_of_a_resumed_run_keeps_its_step(tiny_tdmpc2, tmp_path):
    """Ctrl-C (or SIGTERM) during the evaluation a resumed run starts with: the checkpoint keeps the resumed
    step (it used to save step 0, so the next resume restarted the count with the old buffer)."""
    from common import checkpoint
    cfg, env, spec, agent = tiny_tdmpc2("eval_freq=1000", "eval_episodes=1", "checkpoint_freq=100000",
                                        "save_buffer=false", "logger.progress=false", "steps=5000")
    trainer = OnlineTrainer(cfg, env, spec, agent, Buffer(5000, agent.seq_len, agent.batch_size),
                            Logger(tmp_path, cfg), tmp_path)
    trainer.step, trainer._next_eval = 3000, 3000  # as restored from a checkpoint at 3000 frames

    def interrupted():
        raise KeyboardInterrupt
    trainer.evaluate = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert checkpoint.load(trainer.ckpt_path)["trainer"]["step"] == 3000


def test_bench_results_keep_each_column_once_across_appends(tmp_path, monkeypatch):
    from bench import harness
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    (tmp_path / "results").mkdir()
    for row in ({"size": 1, "ms": 2.0}, {"size": 5, "ms": 3.0, "gflops": 9.0}, {"size": 1, "ms": 4.0}):
        path = harness.write_results("speed", [row])
    header, *rows = path.read_text().splitlines()
    assert header.split(",") == ["date", "commit", "machine", "size", "ms", "gflops"]
    with open(path, newline="") as f:
        assert [(r["size"], r["ms"], r["gflops"]) for r in csv.DictReader(f)] == [
            ("1", "2.0", ""), ("5", "3.0", "9.0"), ("1", "4.0", "")]
