"""Setting up a run: device, threads, seeds, run directory, resuming. Shared by train.py and evaluate.py."""
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from common import checkpoint
from common.precision import fast_bf16


def device_of(cfg) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def seed_everything(cfg) -> None:
    if cfg.threads != "auto":
        torch.set_num_threads(cfg.threads)
    seed_generators(cfg.seed)


def seed_generators(seed: int) -> None:
    """The global python, numpy and torch generators (CUDA's with torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# bytes per stored step: pixels are uint8, vector observations and actions float32, plus the scalar fields
PIXEL_BYTES, FLOAT_BYTES, STEP_SCALAR_BYTES = 1, 4, 16  # scalars: reward, terminated, is_first, task, rounded up


def buffer_storage(cfg, spec) -> str:
    """'memmap' when the buffer would not fit comfortably in memory (buffer_storage=auto)."""
    if cfg.buffer_storage != "auto":
        return cfg.buffer_storage
    obs_bytes = int(np.prod(spec.obs_shape)) * (PIXEL_BYTES if len(spec.obs_shape) == 3 else FLOAT_BYTES)
    step_bytes = obs_bytes + FLOAT_BYTES * spec.action_dim + STEP_SCALAR_BYTES
    gigabytes = buffer_capacity(cfg, spec) * step_bytes / 1e9
    return "memmap" if gigabytes > cfg.buffer_memmap_gb else "memory"


STEPS_PER_AGENT_STEP = 2  # stored steps per agent step at most: an episode stores its first step too
BUFFER_HEADROOM = 1000  # stored steps beyond that


def buffer_capacity(cfg, spec) -> int:
    """Steps to keep: the whole run (plus each episode's first step) unless buffer_size is smaller."""
    agent_steps = cfg.steps // spec.action_repeat
    return int(min(cfg.buffer_size, STEPS_PER_AGENT_STEP * agent_steps + BUFFER_HEADROOM))


LOCK = "run.lock"


class RunDirError(RuntimeError):
    """A run directory that cannot be created or written; the message names the path."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers such as SLURM send before a kill), handled like Ctrl-C: checkpoint, then exit."""


def terminate_like_ctrl_c() -> None:
    def raise_terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while saving kills at once
        raise Terminated
    signal.signal(signal.SIGTERM, raise_terminated)


def claim_run_dir(run_dir: Path, overrides=()) -> Path:
    """Make `run_dir` this run's own: create its lock file exclusively; if another run holds it (two runs
    started in the same second get the same timestamped name), use `<name>-1`, `<name>-2`, ... instead, with
    this run's own `overrides` in `.hydra/overrides.yaml` (Hydra's files in `run_dir` may be the other run's).
    The lock names this process while it runs (`release_run_dir` empties it) and stays as the mark that the
    directory belongs to a run."""
    candidate, k = Path(run_dir), 0
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=k == 0)
            fd = os.open(candidate / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            k += 1
            candidate = Path(run_dir).with_name(f"{Path(run_dir).name}-{k}")
        except OSError as e:
            raise RunDirError(f"cannot create the run directory {candidate}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    if k:
        hydra_dir = candidate / ".hydra"
        hydra_dir.mkdir()
        OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
        print(f"Run directory {run_dir} belongs to another run started in the same second; using {candidate}")
    return candidate


def release_run_dir(run_dir: Path) -> None:
    try:
        (Path(run_dir) / LOCK).write_text("")
    except OSError:  # a directory that became unwritable: the lock names a dead process, which counts as free
        pass


def live_holder(run_dir: Path) -> str | None:
    """'PID p on HOST' if a live run holds `run_dir` (its lock names a process that still exists), else None.
    A process on another host cannot be checked: it counts as live until its lock is emptied or removed."""
    try:
        holder = json.loads((Path(run_dir) / LOCK).read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or holder.get("pid") == os.getpid():
        return None
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return f"PID {holder.get('pid')} on {holder.get('host')}"


def _started(run: Path) -> list:
    """Sort key of run directories: their timestamped names in natural order (`-10` after `-9`)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", run.name)]


# Overrides that may change between a sweep and its resumption: the resume switch itself, and `steps`
# (resume=true steps=<more> extends finished runs). Every other override names which job a directory holds.
RESUME_MAY_CHANGE = ("resume", "steps")


def override_key(override) -> str:
    """The config key a Hydra override sets: `a.b` for `a.b=1`, `+a.b=1`, `++a.b=1` and `~a.b`."""
    return str(override).split("=", 1)[0].lstrip("+~")


def job_identity(overrides) -> dict:
    """A sweep job's overrides as {key as written (`+a.b`): value}, less RESUME_MAY_CHANGE: what makes two jobs
    the same run whatever their order on the command line or their job number."""
    return {written: value for written, _, value in (str(o).partition("=") for o in overrides)
            if override_key(written) not in RESUME_MAY_CHANGE}


def _job_overrides(job_dir: Path):
    try:
        return OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    except OSError:
        return None


def find_resume_checkpoint(run_dir: Path, sweep_overrides=None) -> Path:
    """resume=true: the checkpoint of the most recently started earlier run with the same
    task/agent/exp_name/seed that has one; the run directories' timestamped names order them, so the pick is
    deterministic. Refuses one that a live run still holds.
    A sweep job (`sweep_overrides`: its Hydra overrides) lives in <sweeps>/<sweep time>/job<N>: its earlier run
    is a job of an earlier sweep under <sweeps> with the same overrides (job_identity), not the same number,
    as another sweep in between may have numbered other runs job<N>."""
    run_dir = Path(run_dir)
    if sweep_overrides is None:
        root, pattern = run_dir.parent, "*/checkpoints/latest.pt"
        found = [p for p in root.glob(pattern) if run_dir not in p.parents]
        started = {p: _started(p.parent.parent) for p in found}
    else:
        root, pattern = run_dir.parent.parent, "*/*/checkpoints/latest.pt"
        identity = job_identity(sweep_overrides)
        found = [p for p in root.glob(pattern) if run_dir not in p.parents
                 and (o := _job_overrides(p.parent.parent)) is not None and job_identity(o) == identity]
        started = {p: (_started(p.parent.parent.parent), _started(p.parent.parent)) for p in found}
        if found:  # two jobs of one sweep that differ only in RESUME_MAY_CHANGE (a sweep over steps): no guess
            sweep = max(found, key=started.get).parent.parent.parent
            jobs = sorted({re.sub(r"-\d+$", "", p.parent.parent.name)  # job3-1: job3 resumed into one sweep dir
                           for p in found if p.parent.parent.parent == sweep})
            if len(jobs) > 1:
                raise checkpoint.CheckpointError(
                    f"resume=true: jobs {', '.join(jobs)} of {sweep} have the same overrides but for "
                    f"{'/'.join(RESUME_MAY_CHANGE)}; resume each with checkpoint=PATH")
    if not found:
        what = f" whose .hydra/overrides.yaml match {sorted(identity.items())}" if sweep_overrides is not None else ""
        raise checkpoint.CheckpointError(f"resume=true: no earlier checkpoint matching {root / pattern}{what}; "
                                         "start without resume=true, or give checkpoint=PATH")
    newest = max(found, key=started.get)
    holder = live_holder(newest.parent.parent)
    if holder:
        raise checkpoint.CheckpointError(
            f"resume=true: the newest run {newest.parent.parent} is still running ({holder}); wait for it or "
            f"stop it (if it is gone, empty {newest.parent.parent / LOCK})")
    if len(found) > 1:
        print(f"resume=true: {len(found)} earlier runs have checkpoints; continuing the most recently started, "
              f"{newest.parent.parent}")
    return newest


def restore(path: Path, cfg, agent, trainer, buffer, logger, run_dir: Path, device) -> str:
    """Load a checkpoint into this run; returns what was done. A checkpoint of the same trainer resumes
    everything (counters, RNG states, replay, metrics); one of another trainer (offline -> online
    fine-tuning; a World Models pretraining phase -> the next, see `OnPolicyTrainer`) gives the agent only,
    and only with checkpoint=PATH, never with resume=true."""
    payload = checkpoint.load(path, cfg, map_location=device)
    if payload.get("policy_only"):
        raise checkpoint.CheckpointError(f"{path} holds only a policy (a self-play snapshot), no optimiser or "
                                         "trainer state: use it with evaluate.py or as an opponent, not to train on")
    written_by = payload["trainer"]["trainer"]
    if written_by != trainer.name and cfg.resume:
        raise checkpoint.CheckpointError(
            f"{path} was written by the {written_by} trainer, not trainer={trainer.name}; to start "
            f"{cfg.trainer} training from its agent give checkpoint={path}")
    agent.load_state_dict(payload["agent"])
    if written_by != trainer.name:
        return (f"Starting {cfg.trainer} training from the agent in {path} (written by the {written_by} trainer "
                f"at step {payload['trainer']['step']}); its counters, replay, RNG states and metrics are not "
                "carried over")
    step = payload["trainer"]["step"]
    if cfg.steps < step:
        raise checkpoint.CheckpointError(f"steps={cfg.steps}: below the checkpoint's step {step}; a run can be "
                                         f"extended (steps > {step}), not shortened")
    if payload.get("buffer_dir"):  # checked (and loaded) before anything else changes
        capacity = buffer.capacity
        buffer.load(str(checkpoint.buffer_path(path, payload)), payload["buffer_state"])
        if buffer.capacity != capacity:
            print(f"Replay capacity {buffer.capacity} (the saved buffer's; the config gives {capacity})")
    trainer.load_state(payload["trainer"])
    checkpoint.set_rng_state(payload["rng"])
    adopt_previous_metrics(path, run_dir, payload["trainer"], logger)
    replay = f" ({len(buffer)} steps in replay)" if buffer is not None else ""
    return f"Resumed from {path} at step {trainer.step}{replay}"


def adopt_previous_metrics(ckpt_path: Path, run_dir: Path, trainer_state: dict, logger) -> None:
    """Copy the metrics of the run being resumed into this run's directory, cut to the rows its checkpoint
    counted (checkpoints of earlier code: cut at the checkpoint step), and its diagnostics (`<name>.jsonl`,
    trainer/base.py) cut to the records before the checkpoint step: the resumed run writes its own from there."""
    old_run = ckpt_path.parent.parent
    if old_run.resolve() != Path(run_dir).resolve():
        for f in (old_run / "metrics").glob("*.csv"):
            shutil.copy(f, run_dir / "metrics" / f.name)
        for f in old_run.glob("*.jsonl"):  # a record without a step is kept
            kept = [line for line in f.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", -1) < trainer_state["step"]]
            (Path(run_dir) / f.name).write_text("".join(line + "\n" for line in kept))
    if "metrics_rows" in trainer_state:
        logger.truncate_to(trainer_state["metrics_rows"])
    else:
        logger.truncate_after(trainer_state["step"])


RESULTS_NAME_MAX, RESULTS_HASH_LEN = 80, 8  # a sweep job's overrides in its results file name: cut, then hashed


def results_csv_name(cfg, job_overrides=None) -> str:
    """File name of the reference-format eval curve: `<agent>-<exp_name>-seed<N>.csv`. A sweep's job (its
    overrides given) adds them, less `seed`, sorted, so jobs that differ in any override never share a file:
    `tdmpc2-default-seed1-multi_gamma.gammas=_primary,0.97_-1a2b3c4d.csv`. Characters unsafe in file names become
    `_`; then, or past 80 characters (cut there), a hash of the exact overrides keeps the name unique.
    `resume` is left out too: a job resumed with the same command rewrites its own curve."""
    name = f"{cfg.agent}-{cfg.exp_name}-seed{cfg.seed}"
    overrides = ",".join(sorted(o for o in job_overrides or () if override_key(o) not in ("seed", "resume")))
    if overrides:
        safe = re.sub(r"[^A-Za-z0-9._=,+-]", "_", overrides)
        if safe != overrides or len(safe) > RESULTS_NAME_MAX:
            safe = safe[:RESULTS_NAME_MAX] + "-" + hashlib.sha1(overrides.encode()).hexdigest()[:RESULTS_HASH_LEN]
        name += "-" + safe
    return name + ".csv"


def hardware_info(device: torch.device, precision: str) -> dict:
    """What a run ran on: the device, the precision `auto` resolved to, the thread count, the CPU model and the
    vector instructions torch uses on it. Wall times and `precision=auto` runs are only comparable with this
    beside them. The model name alone does not tell machines apart: cloud CPUs all read "AMD EPYC", with
    AVX2 only on some and AVX-512 with bf16 dot products on others (1.7x apart per update in bf16)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_text("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    return {"device": str(device), "precision": precision, "threads": torch.get_num_threads(), "cpu": cpu,
            "cpu_isa": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": fast_bf16(torch.device("cpu")),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # no /proc (macOS, Windows)
        return ""


def write_run_info(run_dir: Path, cfg, counts: dict, hardware: dict) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "parameters.json").write_text(json.dumps(counts, indent=2))
    (run_dir / "source.json").write_text(json.dumps(checkpoint.source_revision(), indent=2))  # commit, dirty
    (run_dir / "hardware.json").write_text(json.dumps(hardware, indent=2))
