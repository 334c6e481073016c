import json

import pytest

from results import report


def _fake_run(root, task, ablation, seed, returns, update_ms=10.0, params=1000, steps=None, wall_s=60.0,
              updates=50, extra="", cpu="Test CPU", isa="AVX512"):
    steps = steps or [i * 100 for i in range(len(returns))]
    d = root / f"{task}-{ablation}-{seed}{extra.replace(': ', '')}"
    (d / "metrics").mkdir(parents=True)
    enabled = ablation != "A0"
    (d / "config.yaml").write_text(f"task: {task}\nagent: tdmpc2\nablation: {ablation}\nseed: {seed}\n"
                                   f"multi_gamma: {{enabled: {str(enabled).lower()}, gammas: [primary, 0.97], "
                                   f"head: joint, loss_weight: 0.5}}\n{extra}\n")
    (d / "metrics" / "eval.csv").write_text("step,episode_reward,elapsed_time\n" + "".join(
        f"{s},{r},{wall_s * s / steps[-1]}\n" for s, r in zip(steps, returns)))
    (d / "metrics" / "train.csv").write_text(f"step,update_ms,peak_memory_mb,updates,elapsed_time\n"
                                             f"{steps[-1]},{update_ms},500,{updates},{wall_s}\n")
    (d / "parameters.json").write_text(json.dumps({"total": params}))
    if cpu is not None:  # None: a run from before hardware.json was written
        (d / "hardware.json").write_text(json.dumps({"device": "cpu", "precision": "fp32", "cpu": cpu, "cpu_isa": isa,
                                                     "gpu": None}))
    if enabled:
        (d / "multi_gamma_snapshots.jsonl").write_text(json.dumps({"abs_error": [1.0, 3.0]}) + "\n")


def test_each_method_compares_with_the_baseline_on_the_frames_both_reached(tmp_path):
    _fake_run(tmp_path, "cartpole-swingup", "A0", 1, [0, 100, 200])  # evaluated at 0, 100, 200 frames
    _fake_run(tmp_path, "cartpole-swingup", "A1", 1, [0, 120])  # stopped after its 100-frame evaluation
    _fake_run(tmp_path, "cartpole-swingup", "A3", 1, [0, 90, 300], steps=[0, 50, 150])  # A0 is interpolated at 150
    table = {r["method"]: r for r in report.summarize(report.find_runs([tmp_path]))}
    assert {m: r["frames"] for m, r in table.items()} == {"A0": 200, "A1": 100, "A3": 150}  # A1 does not shorten A3
    # A0 alone, over 0..200: (50 * 100 + 150 * 100) / 200 = 100
    assert table["A0"]["auc"] == pytest.approx(100) and table["A0"]["final"] == pytest.approx(200)
    # A1 over 0..100: (0 + 120) / 2 = 60 against A0's (0 + 100) / 2 = 50
    assert table["A1"]["auc"] == pytest.approx(60) and table["A1"]["final"] == pytest.approx(120)
    assert table["A1"]["baseline_auc"] == pytest.approx(50) and table["A1"]["auc_gain"] == pytest.approx(0.2)
    # A3 over 0..150: (45 * 50 + 195 * 100) / 150 = 145; A0 there, 150 at 150: (50 * 100 + 125 * 50) / 150 = 75
    assert table["A3"]["auc"] == pytest.approx(145) and table["A3"]["final"] == pytest.approx(300)
    assert table["A3"]["baseline_auc"] == pytest.approx(75) and table["A3"]["auc_gain"] == pytest.approx(145 / 75 - 1)


def test_time_overhead_counts_for_the_bar_only_on_the_baselines_hardware(tmp_path):
    # reacher-easy: the same CPU model name on a machine without AVX-512 (cloud EPYCs differ that way)
    for task, a1_cpu, a1_isa in (("walker-walk", "Test CPU", "AVX512"), ("cheetah-run", "Other CPU", "AVX512"),
                                 ("finger-spin", None, None), ("reacher-easy", "Test CPU", "AVX2")):
        _fake_run(tmp_path, task, "A0", 1, [0, 100, 200])
        _fake_run(tmp_path, task, "A1", 1, [0, 150, 300], update_ms=9.0, cpu=a1_cpu,  # +50% AUC, 10% faster
                  isa=a1_isa)
    table = {r["task"]: r for r in report.summarize(report.find_runs([tmp_path])) if r["method"] == "A1"}
    assert {t: r["hardware"] for t, r in table.items()} == {
        "walker-walk": "same", "cheetah-run": "differs", "finger-spin": "unknown", "reacher-easy": "differs"}
    verdict = report.success(list(table.values()))["tdmpc2 A1"]
    # the gain on four tasks, but only one timed alike: the bar (two tasks) is not met
    assert verdict == {"tasks_meeting_bar": ["walker-walk"], "success": False,
                       "time_not_comparable": ["cheetah-run", "finger-spin", "reacher-easy"]}
    report.main([str(tmp_path)])
    assert "time overhead not comparable: cheetah-run, finger-spin, reacher-easy" in (tmp_path / "report.md").read_text()


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
    assert report.success(list(table.values()))["tdmpc2 A1"]["success"]
    text = (tmp_path / "report.md").read_text()
    assert "A1: meets the bar" in text
    assert (tmp_path / "curves_walker-walk.png").stat().st_size > 1000


def test_group_by_a_swept_key_against_its_baseline_value(tmp_path):
    for seed in (1, 2):  # a sweep over train_ratio: without --group-by all four runs would be one group
        _fake_run(tmp_path, "cheetah-run", "A0", seed, [0, 100, 200], extra="train_ratio: 64")  # AUC 100
        _fake_run(tmp_path, "cheetah-run", "A0", seed, [0, 120, 240], update_ms=13.0,  # AUC 120
                  extra="train_ratio: 256")
    assert len(report.summarize(report.find_runs([tmp_path]))) == 1
    group_by = report.parse_group_by(["train_ratio=64"])
    table = {r["method"]: r for r in report.summarize(report.find_runs([tmp_path], group_by))}
    assert sorted(table) == ["A0 train_ratio=256", "A0 train_ratio=64"]
    base, more = table["A0 train_ratio=64"], table["A0 train_ratio=256"]
    assert base["baseline"] and not more["baseline"] and more["seeds"] == 2
    assert more["auc_gain"] == pytest.approx(0.2) and more["time_overhead"] == pytest.approx(0.3)
    # +20% AUC and +30% time, but no auxiliary heads: the multi-discount success bar does not judge it
    assert report.success(list(table.values())) == {}
    report.main([str(tmp_path), "--group-by", "train_ratio=64"])
    assert "bar" not in (tmp_path / "report.md").read_text()
    for bad, message in [("train_ratio", "expected KEY=BASELINE"), ("=64", "expected KEY=BASELINE")]:
        with pytest.raises(SystemExit, match=message):
            report.parse_group_by([bad])
    with pytest.raises(SystemExit, match="--group-by train_ration: no such key"):
        report.find_runs([tmp_path], {"train_ration": "64"})


def test_group_by_precision_reads_what_auto_resolved_to(tmp_path):
    for seed, ran in ((1, "bf16"), (2, "fp32")):  # both configs say auto; the machines differed
        _fake_run(tmp_path, "cheetah-run", "A0", seed, [0, 100, 200], extra="precision: auto")
        (tmp_path / f"cheetah-run-A0-{seed}precisionauto" / "hardware.json").write_text(json.dumps({"device": "cpu", "precision": ran}))
    runs = report.find_runs([tmp_path], report.parse_group_by(["precision=fp32"]))
    assert sorted((r["seed"], r["method"], r["baseline"]) for r in runs) == [
        (1, "A0 precision=bf16", False), (2, "A0 precision=fp32", True)]
    report.write_records(runs, tmp_path / "out")  # the record keeps the file, so a later report groups alike
    assert len(list((tmp_path / "out").rglob("hardware.json"))) == 2


def test_overhead_above_budget_fails_the_bar(tmp_path):
    for task in ("walker-walk", "cheetah-run"):
        _fake_run(tmp_path, task, "A0", 1, [0, 100, 200])
        _fake_run(tmp_path, task, "A3", 1, [0, 150, 300], update_ms=20.0)  # +50% AUC but +100% time
    verdict = report.success(report.summarize(report.find_runs([tmp_path])))
    assert not verdict["tdmpc2 A3"]["success"]


def _reference(root, task, curves):
    (root / "tdmpc2").mkdir(parents=True, exist_ok=True)
    (root / "tdmpc2" / f"{task}.csv").write_text("step,reward,seed\n" + "".join(
        f"{step},{reward},{seed}\n" for seed, points in curves.items() for step, reward in points))


def _table(text, task):
    """The reference table of `task` in report.md as {(run group, seed): [cells]} and its header."""
    block = text.split(f"## {task} against published TD-MPC2")[1].split("\n\n")[1].splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block]
    return rows[0], {(r[0], r[1]): r[2:] for r in rows[2:]}


def test_reference_comparison_by_hand(tmp_path):
    runs, ref = tmp_path / "runs", tmp_path / "reference"
    # published: seed 3 has no point at 0, so its curve does not span 50k
    _reference(ref, "walker-walk", {1: [(0, 0), (100000, 600), (200000, 800)],
                                    2: [(0, 10), (100000, 700), (200000, 900)], 3: [(100000, 800), (200000, 1000)]})
    _fake_run(runs, "walker-walk", "A0", 1, [0, 100, 200, 300, 400], steps=[0, 25000, 50000, 75000, 100000],
              wall_s=3600.0, updates=50000)
    _fake_run(runs, "walker-walk", "A0", 2, [0, 80, 240], steps=[0, 40000, 80000], wall_s=1800.0, updates=40000)
    _fake_run(runs, "walker-walk", "A1", 1, [0, 150, 500], steps=[0, 50000, 100000], update_ms=10.5)
    _fake_run(runs, "cheetah-run", "A0", 1, [0, 100], steps=[0, 100000])  # no published curve for it
    out = tmp_path / "out"
    report.main([str(runs), "--out", str(out), "--reference", "tdmpc2", "--reference-dir", str(ref)])
    text = (out / "report.md").read_text()
    header, rows = _table(text, "walker-walk")
    assert header == ["run group", "seed", "return @50k", "return @100k", "frames", "wall time", "updates",
                      "env frames/s"]
    assert rows[("tdmpc2 A0", "1")] == ["200.0", "400.0", "100000", "1.00 h", "50000", "27.8"]
    # 50k lies between seed 2's evaluations at 40k (80) and 80k (240): 80 + 160 / 4; it stopped at 80k
    assert rows[("tdmpc2 A0", "2")] == ["120.0*", "reached 80000 frames: 240.0", "80000", "30.0 min", "40000",
                                        "44.4"]
    assert rows[("tdmpc2 A0", "mean of 2")][:2] == ["160.0 (120.0 to 200.0)", "400.0 (400.0 to 400.0), 1 of 2 seeds"]
    # published at 50k: seeds 1 and 2 halfway to 100k (300, 355); at 100k the published points themselves
    assert rows[("published TD-MPC2", "3 seeds")][:2] == ["327.5 (300.0 to 355.0)†, 2 of 3 seeds",
                                                          "700.0 (600.0 to 800.0)"]
    assert ("tdmpc2 A1", "1") in rows and "No published TD-MPC2 curve for cheetah-run" in text
    assert "tdmpc2 A1: does not meet the bar" in text  # the ablation report is still there, composed with this
    band = report._reference_band(report.load_reference("tdmpc2", "walker-walk", ref), 100000)
    assert band == ([0.0, 100000.0], [5.0, 700.0], [0.0, 600.0], [10.0, 800.0])  # 0: only the seeds that have it
    assert (out / "curves_walker-walk.png").stat().st_size > 1000 and (out / "curves_cheetah-run.png").exists()
    assert (out / "curves" / "walker-walk" / "tdmpc2-A0-seed2.csv").read_text() == (
        "step,reward,seed\n0,0.0,2\n40000,80.0,2\n80000,240.0,2\n")


def test_interpolation_never_extrapolates():
    assert report.interpolate([0, 100], [0, 10], 25) == pytest.approx(2.5)
    assert report.interpolate([0, 100], [0, 10], 100) == 10
    assert report.interpolate([0, 100], [0, 10], 101) is None and report.interpolate([50, 100], [0, 10], 0) is None


def test_the_mean_curve_of_seeds_evaluated_at_different_steps():
    a = {"steps": [0, 50, 100], "returns": [0, 50, 100]}
    b = {"steps": [0, 40, 80], "returns": [0, 80, 80]}
    # a's 40 and 80 interpolated (40, 80); b's 50 interpolated (80); up to b's last evaluation only
    assert report.mean_curve([a, b]) == ([0, 40, 50, 80], [0, 60, 65, 80])


def test_an_earlier_sitting_of_a_resumed_run_is_counted_once(tmp_path):
    _fake_run(tmp_path / "first", "walker-walk", "A0", 1, [0, 100])  # stopped, then resumed into a new directory
    _fake_run(tmp_path / "resumed", "walker-walk", "A0", 1, [0, 100, 200])
    _fake_run(tmp_path / "other", "walker-walk", "A0", 2, [0, 100])  # another seed: kept
    kept, dropped = report.drop_earlier_sittings(report.find_runs([tmp_path]))
    assert [r["dir"].parent.name for r in dropped] == ["first"]
    assert sorted((r["dir"].parent.name, r["seed"]) for r in kept) == [("other", 2), ("resumed", 1)]
    report.main([str(tmp_path)])
    assert "earlier sittings" in (tmp_path / "report.md").read_text()


def test_records_keep_runs_whose_directories_are_gone(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "evidence"
    _fake_run(runs, "walker-walk", "A0", 1, [0, 100, 200])
    _fake_run(runs, "walker-walk", "A1", 1, [0, 110, 220], update_ms=11.0)
    report.main([str(runs), "--out", str(out)])
    first = (out / "report.md").read_text()
    assert (out / "records" / "walker-walk" / "tdmpc2-A1-seed1" / "metrics" / "train.csv").exists()
    # the same run as its directory and as its record counts once
    assert len(report.find_runs([runs, out])) == 2
    for d in runs.iterdir():  # the next sitting: the run directories are gone, a new seed ran
        for f in sorted(d.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        d.rmdir()
    _fake_run(runs, "walker-walk", "A0", 2, [0, 120, 240])
    report.main([str(out), str(runs), "--out", str(out)])
    table = {r["method"]: r for r in report.summarize(report.find_runs([out]))}
    assert table["A0"]["seeds"] == 2 and table["A1"]["seeds"] == 1
    assert table["A0"]["auc"] == pytest.approx((100 + 120) / 2) and "walker-walk" in first
