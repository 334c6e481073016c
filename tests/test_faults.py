"""Fault injection (issue 15): kills inside saves and between a checkpoint and its eval row, concurrent
starts, corrupted replay buffers and datasets, non-finite losses and data, full disks, bad names and
inputs, SIGTERM, and exact reproduction after resuming. In-process tests are fast; the end-to-end runs
(subprocesses of train.py with a fault injected by a launcher) are marked slow."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import checkpoint
from common.buffer import Buffer, SavedBufferError, check_saved
from common.config import ConfigError, validate_evaluate
from common.dataset import DatasetError, load_buffer, write_dataset
from common.logger import CSVLog
from tests.conftest import ROOT, TINY_TDMPC2, compose, random_episode, run_train


class Killed(BaseException):
    """Raised by an injected fault: like SIGKILL, nothing in the code under test catches it."""


def _filled(env, spec, agent, episodes, capacity=2000):
    buffer = Buffer(capacity, agent.seq_len, agent.batch_size)
    for _ in range(episodes):
        buffer.add(random_episode(env, spec))
    return buffer


def _restorable(path: Path, agent) -> int:
    """Load a checkpoint and its buffer as resume does; returns the buffer's length."""
    payload = checkpoint.load(path)
    buffer = Buffer(2000, agent.seq_len, agent.batch_size)
    buffer.load(str(checkpoint.buffer_path(path, payload)), payload["buffer_state"])
    return len(buffer)


# ------------------------------------------------------------------------ 1: kills inside the save window
@pytest.mark.parametrize("same_step", [True, False])
def test_a_kill_at_any_point_of_a_save_leaves_a_resumable_checkpoint(tmp_path, tiny_tdmpc2, monkeypatch, same_step):
    """A save at the step of the existing checkpoint (end of run right after a periodic one) or a later one,
    killed before each of its file operations in turn: latest.pt and the buffer it names always load."""
    cfg, env, spec, agent = tiny_tdmpc2()
    old_buffer = _filled(env, spec, agent, 2)
    path = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 400}, old_buffer)
    new_buffer = _filled(env, spec, agent, 3)
    ops = [(Path, "rename"), (Path, "replace"), (shutil, "rmtree"), (torch, "save")]
    k, killed_once = 0, True
    while killed_once:
        k += 1
        calls, killed_once = [0], False

        def op(original):
            def faulty(*args, **kwargs):
                calls[0] += 1
                if calls[0] == k:
                    raise Killed
                return original(*args, **kwargs)
            return faulty
        with monkeypatch.context() as m:
            for owner, name in ops:
                m.setattr(owner, name, op(getattr(owner, name)))
            try:
                checkpoint.save(path, cfg, spec, agent, {"step": 400 if same_step else 600}, new_buffer)
            except Killed:
                killed_once = True
        assert _restorable(path, agent) in (len(old_buffer), len(new_buffer)), k
        if not killed_once:  # the save ran to its end: the new state, and only one buffer on disk
            assert _restorable(path, agent) == len(new_buffer)
            assert len([d for d in path.parent.iterdir() if d.is_dir()]) == 1
    assert k > 4  # every operation of the save was interrupted once


def test_a_checkpoint_whose_buffer_a_killed_save_left_as_tmp_is_recovered(tmp_path, tiny_tdmpc2, capsys):
    """What earlier code left (3/3 trials in the issue): latest.pt, no buffer_N/, a complete buffer_N.tmp/."""
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = _filled(env, spec, agent, 2)
    path = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 400}, buffer)
    (path.parent / "buffer_400").rename(path.parent / "buffer_400.tmp")
    assert _restorable(path, agent) == len(buffer)
    assert "Recovered the replay buffer" in capsys.readouterr().out
    shutil.rmtree(path.parent / "buffer_400")  # nothing left to recover: the message names what is missing
    with pytest.raises(checkpoint.CheckpointError, match=r"buffer_400/storage/storage_metadata.json is missing"):
        _restorable(path, agent)


# ------------------------------------------------------------------------ 3: resume with more steps
def test_resuming_with_more_steps_grows_the_buffer_oldest_first(tmp_path, tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    small = _filled(env, spec, agent, 3, capacity=500)  # 603 steps: wrapped, oldest partial episode first
    small.save(str(tmp_path / "b"))
    chronological = torch.cat([small.stored_steps()[0]["obs"][small.stored_steps()[1]:],
                               small.stored_steps()[0]["obs"][:small.stored_steps()[1]]])
    big = Buffer(1500, agent.seq_len, agent.batch_size)
    big.load(str(tmp_path / "b"), small.state_dict())
    assert big.capacity == 1500 and len(big) == 500
    assert torch.equal(big.stored_steps()[0]["obs"], chronological) and big.stored_steps()[1] == 0
    big.add(random_episode(env, spec))  # room beyond the old capacity, nothing overwritten
    assert len(big) == 701 and torch.equal(big.stored_steps()[0]["obs"][:500], chronological)
    big.sample()
    smaller = Buffer(100, agent.seq_len, agent.batch_size)  # a smaller configured capacity keeps the saved one
    smaller.load(str(tmp_path / "b"), small.state_dict())
    assert smaller.capacity == 500 and len(smaller) == 500


# ------------------------------------------------------------------------ 4: concurrent starts
def test_a_run_directory_is_claimed_once_and_a_live_holder_blocks_resume(tmp_path, monkeypatch):
    from common import run
    first = run.claim_run_dir(tmp_path / "runs" / "20261201-101500")
    second = run.claim_run_dir(tmp_path / "runs" / "20261201-101500")
    assert first.name == "20261201-101500" and second.name == "20261201-101500-1"
    for d in (first, second):
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "latest.pt").write_bytes(b"x")
    (tmp_path / "runs" / "20261201-101500-10" / "checkpoints").mkdir(parents=True)  # natural order: -10 > -1
    (tmp_path / "runs" / "20261201-101500-10" / "checkpoints" / "latest.pt").write_bytes(b"x")
    here = tmp_path / "runs" / "20261201-110000"
    assert run.find_resume_checkpoint(here).parent.parent.name == "20261201-101500-10"
    # a live process holds the newest one: refused, not silently passed over
    (tmp_path / "runs" / "20261201-101500-10" / run.LOCK).write_text(
        json.dumps({"pid": os.getppid(), "host": __import__("socket").gethostname()}))
    with pytest.raises(checkpoint.CheckpointError, match="is still running"):
        run.find_resume_checkpoint(here)
    run.release_run_dir(tmp_path / "runs" / "20261201-101500-10")
    assert run.find_resume_checkpoint(here).parent.parent.name == "20261201-101500-10"
    with pytest.raises(run.RunDirError, match="cannot create the run directory"):
        (tmp_path / "file").write_text("")
        run.claim_run_dir(tmp_path / "file" / "run")


def _sweep_job(root: Path, sweep: str, job: str, overrides: list[str]) -> Path:
    d = root / sweep / job
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "latest.pt").write_bytes(b"x")
    return d


def test_a_resumed_sweep_job_finds_the_earlier_job_with_its_overrides_not_its_number(tmp_path):
    from common import run
    sweeps = tmp_path / "multirun"
    seed1 = _sweep_job(sweeps, "20261201-100000", "job0", ["task=a", "seed=1", "threads=1"])
    seed2 = _sweep_job(sweeps, "20261201-100000", "job1", ["task=a", "seed=2", "threads=1"])
    _sweep_job(sweeps, "20261201-110000", "job0", ["task=b", "seed=1", "threads=1"])  # another sweep in between
    # the same jobs in another order, plus the switches a resumption may add; job numbers swapped
    here0 = sweeps / "20261201-120000" / "job0"
    assert run.find_resume_checkpoint(here0, ["seed=2", "task=a", "threads=1", "resume=true"]).parent.parent == seed2
    assert run.find_resume_checkpoint(sweeps / "20261201-120000" / "job1",
                                      ["task=a", "seed=1", "threads=1", "resume=true", "steps=500"]
                                      ).parent.parent == seed1
    # resumed a second time: the first resumption (newer) is continued
    again = _sweep_job(sweeps, "20261201-120000", "job0", ["seed=2", "task=a", "threads=1", "resume=true"])
    assert run.find_resume_checkpoint(sweeps / "20261201-130000" / "job3",
                                      ["task=a", "seed=2", "threads=1", "resume=true"]).parent.parent == again
    with pytest.raises(checkpoint.CheckpointError, match=r"overrides.yaml match \[\('seed', '3'\)"):
        run.find_resume_checkpoint(here0, ["seed=3", "task=a", "threads=1"])
    # a sweep over steps: its jobs differ only in what a resumption may change, so which one is meant is unknown
    _sweep_job(sweeps, "20261201-140000", "job0", ["task=c", "steps=100"])
    _sweep_job(sweeps, "20261201-140000", "job1", ["task=c", "steps=200"])
    with pytest.raises(checkpoint.CheckpointError, match="jobs job0, job1 of .* have the same overrides but for"):
        run.find_resume_checkpoint(here0, ["task=c", "steps=200", "resume=true"])


def test_a_resumed_run_adopts_the_diagnostics_written_before_its_checkpoint(tmp_path):
    """Diagnostics records (`<name>.jsonl`) at or past the checkpoint step are redone by the resumed run, so
    only the earlier ones come along; the metrics CSVs are cut to the checkpoint's row counts."""
    from common import run
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        (d / "metrics").mkdir(parents=True)
    (old / "metrics" / "eval.csv").write_text("step,episode_reward\n0,1.0\n")
    records = [{"step": s, "gamma": g} for s in (0, 400, 800) for g in (0.9, 0.99)]
    (old / "multi_gamma_snapshots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    class Logger:
        def truncate_to(self, counts):
            self.counts = counts
    logger = Logger()
    run.adopt_previous_metrics(old / "checkpoints" / "latest.pt", new, {"step": 800, "metrics_rows": {"eval": 1}},
                               logger)
    adopted = [json.loads(line) for line in (new / "multi_gamma_snapshots.jsonl").read_text().splitlines()]
    assert adopted == records[:4] and logger.counts == {"eval": 1}
    assert (new / "metrics" / "eval.csv").read_text() == (old / "metrics" / "eval.csv").read_text()


# ------------------------------------------------------------------------ 5: corrupted buffer files
def test_corrupted_replay_buffers_are_errors_naming_the_file(tmp_path, tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = _filled(env, spec, agent, 2)
    state = buffer.state_dict()

    def saved(name):
        buffer.save(str(tmp_path / name))
        return tmp_path / name
    check_saved(saved("ok"), state)

    cut = saved("cut")  # obs.memmap cut to half
    obs = cut / "storage" / "obs.memmap"
    size = obs.stat().st_size
    with open(obs, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(SavedBufferError, match=f"obs.memmap: {size // 2} bytes; .* need {size} bytes"):
        check_saved(cut, state)
    assert obs.stat().st_size == size // 2  # not zero-filled back to size

    long = saved("long")  # "99999 steps in replay"
    meta = long / "storage" / "storage_metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "len": 99999}))
    with pytest.raises(SavedBufferError, match=r"len=99999: must be an integer in \[0, 2000\]"):
        check_saved(long, state)

    longer = saved("longer")  # a plausible length that counts empty rows
    meta = longer / "storage" / "storage_metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "len": 500}))
    with pytest.raises(SavedBufferError, match="episode starts"):
        check_saved(longer, state)

    nan = saved("nan")
    reward = torch.from_file(str(nan / "storage" / "reward.memmap"), shared=True, size=2000)
    reward[5] = float("nan")
    del reward
    with pytest.raises(SavedBufferError, match="reward.memmap: non-finite values in 1 rows"):
        check_saved(nan, state)


# ------------------------------------------------------------------------ 5: corrupted datasets
def _dataset(tmp_path, tiny_tdmpc2, name="d"):
    import dataclasses
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = _filled(env, spec, agent, 3)
    write_dataset(*buffer.stored_steps(), tmp_path / name, spec=dataclasses.asdict(spec), config={}, source={})
    return tmp_path / name, spec, agent


def _edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))
    return m


def test_corrupted_datasets_are_errors_and_never_modified(tmp_path, tiny_tdmpc2):
    path, spec, agent = _dataset(tmp_path, tiny_tdmpc2)
    buffer, _ = load_buffer([str(path)], spec, agent.seq_len, agent.batch_size)
    steps, _ = buffer.stored_steps()
    before = (path / "data" / "reward.memmap").read_bytes()
    steps["reward"][3] = 123.0  # served in place, but copy-on-write: the file is an input, never written
    assert (path / "data" / "reward.memmap").read_bytes() == before

    m = json.loads((path / "manifest.json").read_text())
    cases = {
        "joined": dict(num_episodes=2, episode_offsets=m["episode_offsets"][:2],
                       episode_lengths=[m["episode_lengths"][0], m["episode_lengths"][1] + m["episode_lengths"][2] + 1],
                       episode_returns=m["episode_returns"][:2]),
        "split": dict(num_episodes=4, episode_offsets=[0, 100, 201, 402], episode_lengths=[99, 200, 200, 200],
                      episode_returns=[0.0, *m["episode_returns"][1:]]),
        "moved": dict(episode_offsets=[0, 201, 403], episode_lengths=[199, 201, 200]),
        "return": dict(episode_returns=[m["episode_returns"][0] + 50, *m["episode_returns"][1:]]),
    }
    for name, changes in cases.items():
        shutil.copytree(path, tmp_path / name)
        _edit_manifest(tmp_path / name, **changes)
        with pytest.raises(DatasetError, match="the dataset is corrupt"):
            load_buffer([str(tmp_path / name)], spec, agent.seq_len, agent.batch_size)

    shutil.copytree(path, tmp_path / "cut")
    obs = tmp_path / "cut" / "data" / "obs.memmap"
    size = obs.stat().st_size
    with open(obs, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DatasetError, match=f"obs.memmap is {size // 2} bytes; the manifest .* needs {size} bytes"):
        load_buffer([str(tmp_path / "cut")], spec, agent.seq_len, agent.batch_size)
    assert obs.stat().st_size == size // 2  # the input was not zero-filled

    shutil.copytree(path, tmp_path / "nan")
    with open(tmp_path / "nan" / "data" / "obs.memmap", "r+b") as f:
        f.seek(40)
        f.write(torch.tensor([float("nan")]).numpy().tobytes())
    with pytest.raises(DatasetError, match="obs holds non-finite values"):
        load_buffer([str(tmp_path / "nan")], spec, agent.seq_len, agent.batch_size)


# ------------------------------------------------------------------------ 6: non-finite losses and data
def _guard(agent, mode, tmp_path):
    from trainer.base import NonFiniteGuard
    return NonFiniteGuard(agent, mode, tmp_path)


@pytest.mark.parametrize("overrides", [["lr=1e10"], ["consistency_coef=1e38"]])
def test_nonfinite_update_stops_with_a_diagnostic_and_finite_weights(tmp_path, tiny_tdmpc2, overrides):
    from trainer.base import NonFiniteError
    cfg, env, spec, agent = tiny_tdmpc2(*overrides)
    buffer = _filled(env, spec, agent, 2)
    guard = _guard(agent, "stop", tmp_path)
    with pytest.raises(NonFiniteError, match=r"non-finite .* in update \d+ at step 7.*Last finite values") as e:
        for update in range(1, 50):
            guard.update(buffer.sample(), update, 7)
    assert "total_loss" in str(e.value) or "grad_norm" in str(e.value)
    diagnostic = torch.load(tmp_path / "diagnostic.pt", weights_only=False)
    assert diagnostic["step"] == 7 and diagnostic["batch"]["obs"].shape[:2] == (agent.seq_len, agent.batch_size)
    # the step with non-finite gradients was not applied: the weights it leaves are finite
    assert all(torch.isfinite(p).all() for p in agent.model.parameters())


def test_skip_drops_nonfinite_steps_and_warn_lets_them_through(tmp_path, tiny_tdmpc2):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = _filled(env, spec, agent, 2)
    nan_batch = buffer.sample()
    nan_batch["reward"][1:] = float("nan")
    weights = {k: v.clone() for k, v in agent.model.state_dict().items()}
    skip = _guard(agent, "skip", tmp_path)
    assert skip.update(nan_batch, 1, 0) is None
    # the model's step (non-finite gradients) was dropped; the policy's gradients were finite, its step stays
    changed = {k.split(".")[0] for k, v in agent.model.state_dict().items() if not torch.equal(weights[k], v)}
    assert changed <= {"policy_prior", "target_q", "_target_q", "q_target", "_target_qs"}, changed
    assert skip.update(buffer.sample(), 2, 0) is not None  # and training carries on
    agent = tiny_tdmpc2()[3]  # a guard's hooks stay on its agent's optimisers: a fresh agent for warn
    warn = _guard(agent, "warn", tmp_path)
    assert warn.update(nan_batch, 3, 0) is not None
    assert not all(torch.isfinite(p).all() for p in agent.model.parameters())


def test_dreamer_huge_lr_stops(tmp_path):
    from envs import make_env
    from src import make_agent
    from trainer.base import NonFiniteError
    cfg = compose(["agent=dreamer", "model_size=XS", "task=gym/Pendulum-v1", "model_lr=1e10", "actor_lr=1e10",
                   "critic_lr=1e10", "batch_size=4", "seq_len=16"])
    env, spec = make_env(cfg)
    agent = make_agent(cfg, spec, torch.device("cpu"))
    buffer = _filled(env, spec, agent, 1)
    guard = _guard(agent, "stop", tmp_path)
    with pytest.raises(NonFiniteError, match="non-finite"):
        for update in range(1, 30):
            guard.update(buffer.sample(), update, 0)
    assert (tmp_path / "diagnostic.pt").is_file()


def test_a_nonfinite_episode_never_enters_replay(tmp_path, tiny_tdmpc2):
    from trainer.base import NonFiniteError
    cfg, env, spec, agent = tiny_tdmpc2()
    episode = random_episode(env, spec)
    episode["obs"][10, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="non-finite obs in the episode ending at step 200"):
        _guard(agent, "stop", tmp_path).check_episode(episode, 200)
    assert not _guard(agent, "skip", tmp_path).check_episode(episode, 200)
    assert _guard(agent, "warn", tmp_path).check_episode(episode, 200)


# ------------------------------------------------------------------------ 7: disk faults
def test_a_full_disk_fails_the_save_cleanly_and_keeps_the_previous_checkpoint(tmp_path, tiny_tdmpc2, monkeypatch):
    cfg, env, spec, agent = tiny_tdmpc2()
    buffer = _filled(env, spec, agent, 2)
    path = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 200}, buffer)
    listing = sorted(p.name for p in path.parent.iterdir())
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # what torch reports when the disk fills mid-write
        Path(f).write_bytes(b"partial" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 12582912 vs 12582848")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError, match=r"cannot write checkpoint .*latest.pt: \[enforce fail"):
        checkpoint.save(path, cfg, spec, agent, {"step": 400}, _filled(env, spec, agent, 3))
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in path.parent.iterdir()) == listing  # no latest.tmp, no new buffer
    assert checkpoint.load(path)["trainer"]["step"] == 200 and _restorable(path, agent) == len(buffer)

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device: 0.0 MiB free"):
        checkpoint.save(path, cfg, spec, agent, {"step": 400}, buffer)
    assert sorted(p.name for p in path.parent.iterdir()) == listing


# ------------------------------------------------------------------------ 8: bad names and inputs
@pytest.mark.parametrize("override, message", [
    ("exp_name=../../../../../escape", "exp_name='../../../../../escape': must be a plain name"),
    ("exp_name=a/b", "exp_name='a/b': must be a plain name"),
    ("exp_name=..", "exp_name='..': must be a plain name"),
    ("save_buffer=maybe", "save_buffer='maybe': must be true or false"),
    ("on_nonfinite=ignore", "on_nonfinite='ignore': must be one of stop, skip, warn"),
    ("resume=maybe", "resume='maybe': must be true or false"),
])
def test_bad_inputs_are_rejected_before_training(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        compose([override])


def test_missing_opponent_checkpoint_and_wandb_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="hockey.opponent_checkpoint=.*must be an existing checkpoint file"):
        compose(["task=hockey", "hockey.opponent=checkpoint", f"hockey.opponent_checkpoint={tmp_path}/no.pt"])
    import importlib.util
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match="logger.wandb=True: the wandb package is not installed"):
            compose(["logger.wandb=true"])


def test_a_checkpoint_directory_and_a_damaged_metrics_row_are_named(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest.pt").write_bytes(b"x")
    with pytest.raises(checkpoint.CheckpointError, match=r"is a directory; give a checkpoint file, e.g. .*latest.pt"):
        checkpoint.load(tmp_path / "run")
    log = CSVLog(tmp_path / "eval.csv")
    log.write({"step": 0, "episode_reward": 1.0})
    with open(tmp_path / "eval.csv", "a") as f:
        f.write("garbage,row\n")
    with pytest.raises(ValueError, match=r"eval.csv line 3: step='garbage' is not a number"):
        log.truncate_to(5)


def _eval_cfg(overrides):
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("evaluate", overrides=list(overrides))


@pytest.mark.parametrize("overrides, message", [
    ([], "checkpoint=None: required: python evaluate.py checkpoint=PATH"),
    (["checkpoint=x.pt", "hockey_games=0"], "hockey_games=0: must be a positive integer"),
    (["checkpoint=x.pt", "eval_episodes=abc"], "eval_episodes='abc': must be a positive integer"),
    (["checkpoint=x.pt", "eval_episodes=0"], "eval_episodes=0: must be a positive integer"),
    (["checkpoint=x.pt", "save_video=maybe"], "save_video='maybe': must be true or false"),
])
def test_evaluate_inputs_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_evaluate(_eval_cfg(overrides))


def test_evaluate_without_a_checkpoint_is_one_line(tmp_path):
    ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "eval_episodes=0"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 1 and "Traceback" not in ev.stderr
    assert "checkpoint=None: required" in ev.stderr and "eval_episodes=0: must be a positive integer" in ev.stderr


# ------------------------------------------------------------------------ 9: SIGTERM
def test_sigterm_is_handled_like_ctrl_c():
    from common.run import Terminated, terminate_like_ctrl_c
    previous = signal.getsignal(signal.SIGTERM)
    try:
        terminate_like_ctrl_c()
        with pytest.raises(KeyboardInterrupt) as e:  # the trainers' Ctrl-C path: checkpoint, message
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert isinstance(e.value, Terminated)
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------ 10: the env's RNG in checkpoints
@pytest.mark.parametrize("task", ["gym/Pendulum-v1", "pendulum-swingup", "hockey"])
def test_env_rng_state_restores_the_next_episodes(task):
    from envs import make_env
    cfg = compose([f"task={task}", *TINY_TDMPC2])

    def play(env, episodes=2):
        out = []
        for _ in range(episodes):
            out.append(env.reset())
            for _ in range(5):
                out.append(env.step(env.rand_act())[0])
        return torch.stack(out)
    env, _ = make_env(cfg)
    play(env)  # the first reset seeds; later ones continue the stream
    state = env.rng_state()
    expected = play(env)
    fresh, _ = make_env(cfg)
    fresh.set_rng_state(state)
    assert torch.equal(play(fresh), expected)
    other, _ = make_env(cfg)
    assert not torch.equal(play(other), expected)  # without the state: the stream starts over


# ------------------------------------------------------------------------ end to end (slow)
# random actions most of the run, tiny model: each run is a few seconds of updates
TINY_RUN = ["task=gym/Pendulum-v1", *TINY_TDMPC2, "eval_episodes=1", "seed_steps=200"]
# columns that measure time, not what was learned
TIMING = {"fps", "elapsed_time", "update_ms", "peak_memory_mb"}


def _launch(tmp_path, args, inject="", wait=True):
    """train.py in a subprocess with `inject` (Python run before Hydra starts) patching in a fault."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(f"import os, signal, sys, time\nsys.path.insert(0, {str(ROOT)!r})\n{inject}\n"
                        f"import runpy\nsys.argv = ['train.py', *{['threads=1', 'logger.progress=false', *args]!r}]\n"
                        f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n")
    cmd = [sys.executable, str(launcher)]
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics"))


KILL_AFTER_EVAL_ROW = """
import common.logger as L
_log = L.Logger.log
def log(self, metrics, step, category='train'):
    _log(self, metrics, step, category)
    if category == 'eval' and step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
L.Logger.log = log
"""


@pytest.mark.slow
def test_kill_between_checkpoint_and_eval_then_resume_reproduces_the_run_exactly(tmp_path):
    """Items 2 and 10: the checkpoint at 200 is written before the eval row at 200; a kill right after that
    row, then resume=true, gives the uninterrupted run's CSVs exactly (timing columns aside), and resuming
    the finished run adds nothing."""
    args = [*TINY_RUN, "steps=600", "eval_freq=200", "checkpoint_freq=200"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _launch(tmp_path / "a", args)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _launch(tmp_path / "b", args, KILL_AFTER_EVAL_ROW.format(step=200))
    assert killed.returncode == -signal.SIGKILL
    resumed = _launch(tmp_path / "b", [*args, "resume=true"])
    assert resumed.returncode == 0 and "Resumed from" in resumed.stdout and " at step 200 " in resumed.stdout, \
        resumed.stderr[-3000:]
    (a,), (_, b) = _runs(tmp_path / "a"), _runs(tmp_path / "b")
    for name in ("train.csv", "eval.csv"):
        assert _csv(b / "metrics" / name) == _csv(a / "metrics" / name), name
    assert [r["step"] for r in _csv(b / "metrics" / "eval.csv")] == ["0", "200", "400", "600"]
    again = _launch(tmp_path / "b", [*args, "resume=true"])
    assert again.returncode == 0 and "already finished at step 600: nothing to do" in again.stdout
    results = tmp_path / "b" / "results" / "runs" / "gym" / "Pendulum-v1" / "tdmpc2-default-seed1.csv"
    assert results.read_text() == (tmp_path / "a" / results.relative_to(tmp_path / "b")).read_text()


KILL_IN_SECOND_BUFFER_RENAME = """
from pathlib import Path
_rename, _seen = Path.rename, []
def rename(self, target):
    if self.name.endswith('.tmp') and self.name.startswith('buffer_'):
        _seen.append(self.name)
        if len(_seen) == 2:  # the final save, at the step of the periodic checkpoint just written
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
    return _rename(self, target)
Path.rename = rename
"""


@pytest.mark.slow
def test_kill_in_the_final_save_at_the_checkpoint_step_then_resume_and_extend(tmp_path):
    """Items 1 and 3: killed inside the end-of-run save right after the periodic checkpoint at the same
    step; resume=true finishes the run, and resume=true steps=<more> extends it (the buffer grows)."""
    args = [*TINY_RUN, "steps=400", "eval_freq=400", "checkpoint_freq=400", "seed_steps=400"]
    killed = _launch(tmp_path, args, KILL_IN_SECOND_BUFFER_RENAME)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_train([*args, "resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0 and " at step 400 " in resumed.stdout, resumed.stderr[-3000:]
    extended = run_train([*args, "resume=true", "steps=600"], cwd=tmp_path)
    assert extended.returncode == 0 and "Done: 600 steps" in extended.stdout, extended.stderr[-3000:]
    assert "Replay capacity" not in extended.stdout  # grew to the config's capacity, not kept at the saved one
    last = _runs(tmp_path)[-1]
    assert [r["step"] for r in _csv(last / "metrics" / "eval.csv")] == ["0", "400", "600"]
    assert [r["step"] for r in _csv(last / "metrics" / "train.csv")] == ["200", "400", "600"]


@pytest.mark.slow
def test_resume_true_continues_each_job_of_a_sweep(tmp_path):
    """A two-job sweep, then the same sweep with resume=true and more steps: each job continues its own run
    (about 90 s on 2 cores; the fast test of the lookup is above)."""
    def sweep(*more):  # -m before the overrides (Hydra's parser), as on the command line
        return subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "threads=1", "logger.progress=false",
                               *TINY_RUN, "mpc=false", "eval_freq=200", "checkpoint_freq=200", "seed=1,2", *more],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
    first = sweep("steps=200")
    assert first.returncode == 0, first.stderr[-3000:]
    (first_sweep,) = (tmp_path / "multirun").iterdir()
    time.sleep(1.1)  # sweep directories are named by the second they start
    resumed = sweep("steps=400", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (second_sweep,) = set((tmp_path / "multirun").iterdir()) - {first_sweep}
    for job in ("job0", "job1"):
        overrides = (second_sweep / job / ".hydra" / "overrides.yaml").read_text()
        seed = 1 if "seed=1" in overrides else 2
        (earlier,) = [j for j in first_sweep.glob("job*")
                      if f"seed={seed}" in (j / ".hydra" / "overrides.yaml").read_text()]
        assert f"Resumed from {earlier / 'checkpoints' / 'latest.pt'} at step 200" in resumed.stdout, resumed.stdout
        assert [r["step"] for r in _csv(second_sweep / job / "metrics" / "eval.csv")] == ["0", "200", "400"]
        assert checkpoint.load(second_sweep / job / "checkpoints" / "latest.pt")["trainer"]["step"] == 400
    # the extended jobs' curves (steps=400 in their overrides: files of their own) hold the whole run
    curves = [[line.split(",")[0] for line in c.read_text().splitlines()[1:]]
              for c in (tmp_path / "results" / "runs" / "gym" / "Pendulum-v1").glob("*.csv")]
    assert sorted(curves) == [["0", "200"], ["0", "200"], ["0", "200", "400"], ["0", "200", "400"]]


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_directories(tmp_path):
    args = [*TINY_RUN, "steps=400", "seed_steps=400", "eval_freq=400", "checkpoint_freq=400",
            "hydra.run.dir=runs/same"]
    procs = [_launch(tmp_path, args, wait=False) for _ in range(2)]  # one working directory, one run directory
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    dirs = sorted(d.name for d in (tmp_path / "runs").iterdir())
    assert dirs == ["same", "same-1"]
    for d in dirs:
        steps = [r["step"] for r in _csv(tmp_path / "runs" / d / "metrics" / "train.csv")]
        assert steps == ["200", "400"]  # no doubled rows
        assert checkpoint.load(tmp_path / "runs" / d / "checkpoints" / "latest.pt")["trainer"]["step"] == 400


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143(tmp_path):
    proc = _launch(tmp_path, [*TINY_RUN, "steps=100000", "seed_steps=200000", "eval_freq=1000000",
                              "checkpoint_freq=1000000"], wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs").rglob("train.csv")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Continue with the same command plus resume=true" in out
    assert checkpoint.load(next((tmp_path / "runs").rglob("latest.pt")))["trainer"]["step"] >= 200


@pytest.mark.slow
def test_huge_lr_run_stops_with_a_message(tmp_path):
    proc = run_train([*TINY_RUN, "steps=600", "lr=1e10", "eval_freq=100000", "checkpoint_freq=100000"],
                     cwd=tmp_path)
    assert proc.returncode == 1 and "Stopped: non-finite" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and next((tmp_path / "runs").rglob("diagnostic.pt"))


def test_a_checkpoint_before_the_first_episode_saves_and_resumes_with_an_empty_buffer(tmp_path, tiny_tdmpc2):
    """A stop during the step-0 evaluation: the replay buffer is still empty, and the checkpoint is written
    anyway (without a buffer directory); restoring it leaves the run's buffer empty."""
    cfg, env, spec, agent = tiny_tdmpc2()
    empty = Buffer(2000, agent.seq_len, agent.batch_size)
    path = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0}, empty)
    payload = checkpoint.load(path, cfg)
    assert payload["buffer_dir"] is None and payload["trainer"]["step"] == 0
    assert checkpoint.buffer_path(path, payload) is None
    assert not list(path.parent.glob("buffer_*"))
