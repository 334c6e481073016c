"""Setting up a run: device, threads, seeds, run directory, resuming. Shared by train.py and evaluate.py."""
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from common import checkpoint


def device_of(cfg) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def seed_everything(cfg) -> None:
    if cfg.threads != "auto":
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


def buffer_storage(cfg, spec) -> str:
    """'memmap' when the buffer would not fit comfortably in memory (buffer_storage=auto)."""
    if cfg.buffer_storage != "auto":
        return cfg.buffer_storage
    obs_bytes = int(np.prod(spec.obs_shape)) * (1 if len(spec.obs_shape) == 3 else 4)
    gigabytes = buffer_capacity(cfg, spec) * (obs_bytes + 4 * spec.action_dim + 16) / 1e9
    return "memmap" if gigabytes > cfg.buffer_memmap_gb else "memory"


def buffer_capacity(cfg, spec) -> int:
    """Steps to keep: the whole run (plus each episode's first step) unless buffer_size is smaller."""
    agent_steps = cfg.steps // spec.action_repeat
    return int(min(cfg.buffer_size, 2 * agent_steps + 1000))


def find_resume_checkpoint(run_dir: Path, multirun: bool) -> Path:
    """The newest checkpoint of an earlier run with the same task/agent/exp_name/seed (or, in a sweep,
    the same job), for resume=true."""
    pattern = f"*/{run_dir.name}/checkpoints/latest.pt" if multirun else "*/checkpoints/latest.pt"
    root = run_dir.parent.parent if multirun else run_dir.parent
    found = [p for p in root.glob(pattern) if run_dir not in p.parents]
    if not found:
        raise checkpoint.CheckpointError(f"resume=true: no earlier checkpoint matching {root / pattern}; "
                                         "start without resume=true, or give checkpoint=PATH")
    return max(found, key=lambda p: p.stat().st_mtime)


def restore(path: Path, cfg, agent, trainer, buffer, logger, run_dir: Path, device) -> str:
    """Load a checkpoint into this run; returns what was done. A checkpoint of the same trainer resumes
    everything (counters, RNG states, replay, metrics); one of another trainer (offline -> online
    fine-tuning; a World Models pretraining phase -> the next, see `OnPolicyTrainer`) gives the agent only,
    and only with checkpoint=PATH, never with resume=true."""
    payload = checkpoint.load(path, cfg, map_location=device)
    if payload.get("policy_only"):
        raise checkpoint.CheckpointError(f"{path} holds only a policy (a self-play snapshot), no optimiser or "
                                         "trainer state: use it with evaluate.py or as an opponent, not to train on")
    written_by = payload["trainer"].get("trainer", "online")  # checkpoints before offline training: online
    if written_by != trainer.name and cfg.resume:
        raise checkpoint.CheckpointError(
            f"{path} was written by the {written_by} trainer, not trainer={trainer.name}; to start "
            f"{cfg.trainer} training from its agent give checkpoint={path}")
    agent.load_state_dict(payload["agent"])
    if written_by != trainer.name:
        return (f"Starting {cfg.trainer} training from the agent in {path} (written by the {written_by} trainer "
                f"at step {payload['trainer']['step']}); its counters, replay, RNG states and metrics are not "
                "carried over")
    trainer.load_state(payload["trainer"])
    checkpoint.set_rng_state(payload["rng"])
    if payload.get("buffer_dir"):
        buffer.load(str(checkpoint.buffer_path(path, payload)), payload["buffer_state"])
    adopt_previous_metrics(path, run_dir, trainer.step, logger)
    replay = f" ({len(buffer)} steps in replay)" if buffer is not None else ""
    return f"Resumed from {path} at step {trainer.step}{replay}"


def adopt_previous_metrics(ckpt_path: Path, run_dir: Path, step: int, logger) -> None:
    """Copy the metrics of the run being resumed into this run's directory, cut at the checkpoint step."""
    old_metrics = ckpt_path.parent.parent / "metrics"
    if old_metrics.is_dir() and old_metrics.resolve() != (run_dir / "metrics").resolve():
        for f in old_metrics.glob("*.csv"):
            shutil.copy(f, run_dir / "metrics" / f.name)
    logger.truncate_after(step)


def write_run_info(run_dir: Path, cfg, counts: dict) -> None:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "parameters.json").write_text(json.dumps(counts, indent=2))
