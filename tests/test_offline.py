"""Offline datasets and training: export and reload, filters, bad datasets, offline training end to end,
resuming it, and fine-tuning online from an offline checkpoint."""
import csv
import json
from pathlib import Path

import pytest
import torch

from common.buffer import Buffer, episode_step
from common.dataset import (FORMAT_VERSION, DatasetError, export_run, load_buffer, main as dataset_cli,
                            read_manifest, select_episodes, write_dataset)
from common.spec import EnvSpec
from tests.conftest import TINY_TDMPC2, compose, run_train

PENDULUM = EnvSpec(obs_shape=(3,), action_dim=1, discrete=False, episode_length=200, action_repeat=1,
                   episodic=True, task="gym/Pendulum-v1")
TINY = ["task=gym/Pendulum-v1", *TINY_TDMPC2, "eval_episodes=1"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _episode(idx: int, length: int, reward: float, obs_dim: int = 3, action_dim: int = 1):
    """`length` agent steps; every observation is `idx` (to recognise the episode), every reward `reward`."""
    steps = [episode_step(torch.full((obs_dim,), float(idx)), torch.zeros(action_dim), 0.0, False, True)]
    steps += [episode_step(torch.full((obs_dim,), float(idx)), torch.full((action_dim,), 0.5), reward, False, False)
              for _ in range(length)]
    return torch.stack(steps)


def _synthetic(out: Path, returns_per_step, length=10, obs_dim=3, action_dim=1, capacity=10_000) -> dict:
    buf = Buffer(capacity, seq_len=4, batch_size=8)
    for i, r in enumerate(returns_per_step):
        buf.add(_episode(i, length, r, obs_dim, action_dim))
    spec = {"task": "gym/Pendulum-v1", "obs_shape": [obs_dim], "action_dim": action_dim, "discrete": False,
            "action_repeat": 1, "episode_length": 200, "episodic": True}
    return write_dataset(*buf.stored_steps(), out, spec=spec, config={}, source={"test": True})


def _episodes_in(buffer: Buffer) -> list[int]:
    steps, _ = buffer.stored_steps()
    firsts = steps["is_first"].reshape(-1)
    return [int(v) for v in steps["obs"][firsts, 0]]


# ------------------------------------------------------------------------------------------ unit level
def test_select_episodes_by_quantile_and_count():
    returns = [5.0, -1.0, 3.0, 9.0, 0.0, 7.0, 3.0, -4.0]
    assert select_episodes(returns) == list(range(8))
    assert select_episodes(returns, top_quantile=0.5) == [0, 2, 3, 5]  # ties: the earlier episode (2, not 6)
    assert select_episodes(returns, top_quantile=0.25) == [3, 5]
    assert select_episodes(returns, bottom_quantile=0.25) == [1, 7]
    assert select_episodes(returns, top_quantile=0.3) == [0, 3, 5]  # ceil(0.3 * 8) = 3
    assert select_episodes(returns, max_episodes=3) == [0, 1, 2]
    assert select_episodes(returns, top_quantile=0.5, max_episodes=2) == [0, 2]
    assert select_episodes(returns, top_quantile=0.01) == [3]  # at least one episode


def test_filters_pick_the_right_episodes(tmp_path):
    rewards = [0.5, -1.0, 2.0, -3.0, 1.0, 0.0]  # episode returns are 10x these
    m = _synthetic(tmp_path / "d", rewards)
    assert m["num_episodes"] == 6 and m["num_steps"] == 60 and m["num_rows"] == 66
    assert m["episode_returns"] == [10 * r for r in rewards] and m["episode_offsets"] == list(range(0, 66, 11))
    cases = [({"top_quantile": 0.5}, [0, 2, 4]), ({"bottom_quantile": 1 / 3}, [1, 3]),
             ({"max_episodes": 2}, [0, 1]), ({"top_quantile": 0.5, "max_episodes": 2}, [0, 2])]
    for filt, expected in cases:
        buf, summary = load_buffer([str(tmp_path / "d")], PENDULUM, 4, 8, scratch_dir=str(tmp_path / "s"), **filt)
        assert _episodes_in(buf) == expected, filt
        assert buf.num_episodes == len(expected) and f"{len(expected)} of 6 episodes" in summary
        td = buf.sample()
        assert (td["episode"] == td["episode"][:1]).all() and (td["obs"] == td["obs"][:1]).all()
    # two datasets pool their episodes before the quantile: the best half of 12 is dataset 1's 3 best, twice
    buf, _ = load_buffer([str(tmp_path / "d")] * 2, PENDULUM, 4, 8, top_quantile=0.5, scratch_dir=str(tmp_path / "t"))
    assert _episodes_in(buf) == [0, 2, 4, 0, 2, 4] and buf.num_episodes == 6


def test_one_whole_dataset_is_served_in_place_and_read_only(tmp_path):
    _synthetic(tmp_path / "d", [1.0, 2.0])
    buf, _ = load_buffer([str(tmp_path / "d")], PENDULUM, 4, 8)
    steps, start = buf.stored_steps()
    from tensordict import MemoryMappedTensor
    assert start == 0 and len(buf) == 22 and all(isinstance(v, MemoryMappedTensor) for v in steps.values())
    with pytest.raises(RuntimeError, match="read-only"):
        buf.add(_episode(9, 5, 0.0))


def test_wrapped_buffer_exports_whole_episodes_oldest_first(tmp_path):
    # capacity 30 holds 2.7 episodes of 11 rows: the oldest surviving episode is cut and must be dropped
    m = _synthetic(tmp_path / "d", [1.0, 2.0, 3.0, 4.0, 5.0], capacity=30)
    assert m["episode_returns"] == [40.0, 50.0] and m["num_rows"] == 22
    buf, _ = load_buffer([str(tmp_path / "d")], PENDULUM, 4, 8)
    assert _episodes_in(buf) == [3, 4]


def test_bad_datasets_fail_with_clear_messages(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_buffer([str(tmp_path / "nope")], PENDULUM, 4, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is not a dataset"):
        load_buffer([str(tmp_path / "empty")], PENDULUM, 4, 8)
    _synthetic(tmp_path / "old", [1.0])
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=f"format version {FORMAT_VERSION + 1}; this code reads version"):
        load_buffer([str(tmp_path / "old")], PENDULUM, 4, 8)
    _synthetic(tmp_path / "a", [1.0])
    _synthetic(tmp_path / "b", [1.0], action_dim=2)
    with pytest.raises(DatasetError, match=r"datasets .*a and .*b do not match: .*1 continuous.* vs .*2 continuous"):
        load_buffer([str(tmp_path / "a"), str(tmp_path / "b")], PENDULUM, 4, 8)
    _synthetic(tmp_path / "wide", [1.0], obs_dim=4)
    with pytest.raises(DatasetError, match=r"observations \(4,\).*but task gym/Pendulum-v1 has observations \(3,\)"):
        load_buffer([str(tmp_path / "wide")], PENDULUM, 4, 8)
    with pytest.raises(DatasetError, match="already exists"):
        _synthetic(tmp_path / "a", [1.0])


def test_offline_config_validation():
    cfg = compose(["trainer=offline", "dataset='a,b'"])
    from common.config import ConfigError, dataset_paths
    assert dataset_paths(cfg) == ["a", "b"] and cfg.log_interval > 0
    assert dataset_paths(compose(["trainer=offline", "dataset=[x,y]"])) == ["x", "y"]
    for overrides, message in [([], "dataset=None: trainer=offline needs dataset=PATH"),
                               (["dataset=x", "dataset_filter.top_quantile=1.5"], "dataset_filter.top_quantile=1.5"),
                               (["dataset=x", "dataset_filter.top_quantile=0.5", "dataset_filter.bottom_quantile=0.5"],
                                "give either top_quantile or bottom_quantile"),
                               (["dataset=x", "dataset_filter.max_episodes=0"], "dataset_filter.max_episodes=0"),
                               (["dataset=x", "log_interval=0"], "log_interval=0")]:
        with pytest.raises(ConfigError, match=message):
            compose(["trainer=offline", *overrides])


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    """A tiny online run on random actions with save_dataset=true: (cwd, run_dir)."""
    cwd = tmp_path_factory.mktemp("offline")
    proc = run_train([*TINY, "steps=600", "seed_steps=600", "eval_freq=100000", "checkpoint_freq=100000",
                      "save_dataset=true", "exp_name=source"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next((cwd / "runs").rglob("source/seed1/*"))
    assert "Dataset" in proc.stdout and (run_dir / "dataset" / "manifest.json").is_file()
    return cwd, run_dir


def test_export_and_reload_round_trip(online_run, capsys):
    cwd, run_dir = online_run
    out = cwd / "exported"
    assert dataset_cli(["export", str(run_dir), "--out", str(out)]) == 0
    assert "Wrote" in capsys.readouterr().out and dataset_cli(["export", str(run_dir), "--out", str(out)]) == 1
    saved, exported = read_manifest(run_dir / "dataset"), read_manifest(out)
    assert exported["num_episodes"] == saved["num_episodes"] == 3 and exported["num_steps"] == 600
    assert exported["episode_returns"] == saved["episode_returns"] and exported["source"]["step"] == 600
    assert exported["task"] == "gym/Pendulum-v1" and exported["config"]["latent_dim"] == 32
    train_returns = [float(r["episode_reward"]) for r in _rows(run_dir / "metrics" / "train.csv")]
    assert exported["episode_returns"] == pytest.approx(train_returns, rel=1e-5)
    # the run's own replay buffer (from its checkpoint) and the dataset give byte-identical samples
    from common import checkpoint
    ckpt = run_dir / "checkpoints" / "latest.pt"
    payload = checkpoint.load(ckpt)
    original = Buffer(2 * 600 + 1000, 4, 16)  # the run's capacity (common.run.buffer_capacity), horizon 3 + 1, batch 16
    original.load(str(checkpoint.buffer_path(ckpt, payload)), payload["buffer_state"])
    for path in (out, run_dir / "dataset"):
        reloaded, _ = load_buffer([str(path)], PENDULUM, original.seq_len, original.batch_size)
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            a = original.sample()
            torch.manual_seed(seed)
            b = reloaded.sample()
            assert sorted(a.keys()) == sorted(b.keys())
            for key in a.keys():
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    with pytest.raises(DatasetError, match="already exists"):
        export_run(run_dir)


@pytest.mark.heavy
def test_offline_training_resume_and_online_fine_tuning(online_run):
    cwd, run_dir = online_run
    dataset = run_dir / "dataset"
    offline = [*TINY, "trainer=offline", f"dataset={dataset}", "eval_freq=100000", "checkpoint_freq=100",
               "log_interval=50", "exp_name=offline"]
    proc = run_train([*offline, "steps=200"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Offline data: 1 dataset, 3 of 3 episodes (600 steps)" in proc.stdout and "Done: 200 updates" in proc.stdout
    off_dir = next((cwd / "runs").rglob("offline/seed1/*"))
    rows = _rows(off_dir / "metrics" / "train.csv")
    assert [int(r["step"]) for r in rows] == [50, 100, 150, 200] and float(rows[0]["updates_per_second"]) > 0
    for key in ("total_loss", "reward_loss", "value_loss", "consistency_loss"):
        assert float(rows[-1][key]) < float(rows[0][key]), (key, rows[0][key], rows[-1][key])
    assert [int(r["step"]) for r in _rows(off_dir / "metrics" / "eval.csv")] == [0, 200]
    assert not list((cwd / "results").rglob("*offline*"))  # no reference-format curve: its steps are updates
    from common import checkpoint
    ckpt = off_dir / "checkpoints" / "latest.pt"
    payload = checkpoint.load(ckpt)
    assert payload["trainer"]["trainer"] == "offline" and payload["trainer"]["step"] == 200
    assert payload["buffer_dir"] is None  # the datasets stay where they are

    # resume=true continues the offline run from its checkpoint
    proc = run_train([*offline, "steps=250", "resume=true"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed from" in proc.stdout and " at step 200 " in proc.stdout
    new_dir = sorted(p for p in (cwd / "runs").rglob("offline/seed1/*"))[-1]
    assert [int(r["step"]) for r in _rows(new_dir / "metrics" / "train.csv")] == [50, 100, 150, 200, 250]

    # fine-tuning: trainer=online checkpoint=<offline checkpoint> loads the agent only. With no updates
    # (seed_steps > steps) the online run's final weights are exactly the offline agent's.
    proc = run_train([*TINY, f"checkpoint={ckpt}", "steps=200", "seed_steps=1000", "eval_freq=100000",
                      "checkpoint_freq=100000", "exp_name=finetune"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting online training from the agent in" in proc.stdout
    assert "written by the offline trainer" in proc.stdout
    ft_dir = next((cwd / "runs").rglob("finetune/seed1/*"))
    assert [int(r["step"]) for r in _rows(ft_dir / "metrics" / "train.csv")] == [200]  # counters start at 0
    ft = checkpoint.load(ft_dir / "checkpoints" / "latest.pt")
    assert ft["trainer"]["trainer"] == "online" and ft["trainer"]["episode"] == 1 and ft["trainer"]["updates"] == 0
    for key, value in payload["agent"]["model"].items():
        assert torch.equal(ft["agent"]["model"][key], value), key
    # resume=true does not silently mix trainers
    proc = run_train([*TINY, "resume=true", "steps=400", "exp_name=finetune", "trainer=offline",
                      f"dataset={dataset}"], cwd=cwd, timeout=120)
    assert proc.returncode != 0 and "was written by the online trainer, not trainer=offline" in proc.stderr


def test_missing_dataset_fails_before_training(tmp_path):
    proc = run_train([*TINY, "trainer=offline", f"dataset={tmp_path / 'nope'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and f"Dataset error: dataset {tmp_path / 'nope'} does not exist" in proc.stderr
    assert not list((tmp_path / "runs").rglob("*.csv"))
