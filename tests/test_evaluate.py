"""train.py on hockey with multi-discount heads, then evaluate.py on the checkpoint (hockey and a gym task)."""
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, TINY_TDMPC2, run_train


def _evaluate(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "threads=1", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.heavy
def test_hockey_headline_command_trains_and_evaluates(tmp_path):
    proc = run_train(["task=hockey", "multi_gamma.enabled=true", *TINY_TDMPC2, "steps=753", "seed_steps=502",
                      "eval_freq=100000", "eval_episodes=1", "checkpoint_freq=100000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "discount 0.9801" in proc.stdout  # 251-step games
    run = next((tmp_path / "runs" / "hockey").rglob("metrics")).parent
    header = (run / "metrics" / "train.csv").read_text().splitlines()[0].split(",")
    for column in ("win_rate", "draw_rate", "loss_rate", "goals_for", "goals_against", "aux_value_ce/mean"):
        assert column in header
    ckpt = run / "checkpoints" / "latest.pt"
    ev = _evaluate([f"checkpoint={ckpt}", "hockey_games=4"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    for opponent in ("weak", "strong"):
        line = next(l for l in ev.stdout.splitlines() if l.startswith(f"vs {opponent}"))
        assert "over 4 games" in line and "win" in line and "draw" in line and "loss" in line


@pytest.mark.heavy
def test_evaluate_gym_checkpoint_with_video(tmp_path):
    proc = run_train(["task=gym/Pendulum-v1", *TINY_TDMPC2, "steps=400", "seed_steps=400", "eval_episodes=1"],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = next((tmp_path / "runs").rglob("latest.pt"))
    ev = _evaluate([f"checkpoint={ckpt}", "eval_episodes=2", "save_video=true"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "return" in ev.stdout and "over 2 episodes" in ev.stdout
    video = next((tmp_path / "runs" / "evaluate").rglob("episode.*"))
    assert video.suffix in (".mp4", ".gif") and video.stat().st_size > 1000


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path):
    ev = _evaluate([f"checkpoint={tmp_path}/nope.pt"], tmp_path)
    assert ev.returncode != 0 and "does not exist" in ev.stderr


@pytest.mark.slow
def test_compiled_update_matches_eager(tiny_tdmpc2):
    """compile=true (with multi-discount heads) gives the same losses as eager, within float tolerance."""
    import torch._inductor.config
    from common.buffer import Buffer
    from tests.test_tdmpc2 import _fill
    torch._inductor.config.fallback_random = True  # compiled code draws the same random numbers as eager
    results = []
    for compiled in ("false", "true"):
        cfg, env, spec, agent = tiny_tdmpc2(f"compile={compiled}", "multi_gamma.enabled=true", "dropout=0")
        buffer = Buffer(5000, agent.seq_len, agent.batch_size)
        torch.manual_seed(0)
        _fill(env, spec, buffer)
        torch.manual_seed(1)
        batches = [buffer.sample() for _ in range(3)]
        torch.manual_seed(2)
        results.append([agent.update(b) for b in batches])
        torch.manual_seed(3)
        results[-1].append({"action": agent.act(batches[0]["obs"][0, 0], t0=True, eval_mode=True)})
    for eager, compiled in zip(*results):
        for k in eager:
            assert torch.allclose(eager[k], compiled[k], rtol=1e-3, atol=1e-4), k


def test_return_stats_are_the_ones_eval_csv_and_evaluation_json_share():
    from trainer.evaluation import mean_over_tasks, return_stats
    assert return_stats([1.0, 2.0, 3.0]) == (2.0, 1.0)  # the sample std (n - 1), as eval.csv has always had it
    assert return_stats([5.0]) == (5.0, 0.0)
    assert mean_over_tasks({"a": {"r": 1.0}, "b": {"r": 4.0}}, "r") == 2.5
