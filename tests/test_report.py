import json

import pytest

from results import report


def _fake_run(root, task, ablation, seed, returns, update_ms=10.0, params=1000):
    d = root / f"{task}-{ablation}-{seed}"
    (d / "metrics").mkdir(parents=True)
    enabled = ablation != "A0"
    (d / "config.yaml").write_text(f"task: {task}\nablation: {ablation}\nseed: {seed}\n"
                                   f"multi_gamma: {{enabled: {str(enabled).lower()}, gammas: [primary, 0.97], "
                                   f"head: joint, loss_weight: 0.5}}\n")
    (d / "metrics" / "eval.csv").write_text("step,episode_reward\n" + "".join(
        f"{i * 100},{r}\n" for i, r in enumerate(returns)))
    (d / "metrics" / "train.csv").write_text(f"step,update_ms,peak_memory_mb\n100,{update_ms},500\n")
    (d / "parameters.json").write_text(json.dumps({"total": params}))
    if enabled:
        (d / "multi_gamma_snapshots.jsonl").write_text(json.dumps({"abs_error": [1.0, 3.0]}) + "\n")


def test_report_aggregates_and_marks_the_success_bar(tmp_path):
    for task in ("walker-walk", "cheetah-run"):
        for seed in (1, 2):
            _fake_run(tmp_path, task, "A0", seed, [0, 100, 200])  # AUC = (50 + 150) * 100 / 200 = 100
            _fake_run(tmp_path, task, "A1", seed, [0, 110, 220], update_ms=11.0, params=1100)  # AUC 110
    report.main([str(tmp_path)])
    table = {(r["task"], r["method"]): r for r in report.summarize(report.find_runs([tmp_path]))}
    a0, a1 = table[("walker-walk", "A0")], table[("walker-walk", "A1")]
    assert a0["auc"] == pytest.approx(100) and a1["auc"] == pytest.approx(110)
    assert a1["auc_gain"] == pytest.approx(0.10) and a1["time_overhead"] == pytest.approx(0.10)
    assert a1["param_overhead"] == pytest.approx(0.10) and a1["seeds"] == 2
    assert a1["aux_mae"] == pytest.approx(2.0) and a1["aux_rmse"] == pytest.approx(5 ** 0.5)
    assert report.success(list(table.values()))["A1"]["success"]
    text = (tmp_path / "report.md").read_text()
    assert "A1: meets the bar" in text
    assert (tmp_path / "curves_walker-walk.png").stat().st_size > 1000


def test_overhead_above_budget_fails_the_bar(tmp_path):
    for task in ("walker-walk", "cheetah-run"):
        _fake_run(tmp_path, task, "A0", 1, [0, 100, 200])
        _fake_run(tmp_path, task, "A3", 1, [0, 150, 300], update_ms=20.0)  # +50% AUC but +100% time
    verdict = report.success(report.summarize(report.find_runs([tmp_path])))
    assert not verdict["A3"]["success"]
