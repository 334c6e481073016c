"""Checkpoints: one file per save with a format version, the resolved config, the agent (with its
optimisers), trainer counters and RNG states; the replay buffer in a directory beside it.

Saves are atomic (temporary file, then rename), and each checkpoint names its own buffer directory,
so a run killed at any moment leaves the previous checkpoint and its buffer intact.
"""
import dataclasses
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

FORMAT_VERSION = 1
# keys that must agree between a checkpoint and the config that loads it
# (a key missing from either config is skipped, so each agent is checked on its own keys)
ARCHITECTURE_KEYS = ("agent", "task", "obs", "num_bins",
                     "latent_dim", "mlp_dim", "enc_dim", "num_enc_layers", "num_q", "simnorm_dim", "horizon",  # TD-MPC2
                     "deter", "hidden", "layers", "stoch", "groups", "classes", "latent", "cnn_depth",  # Dreamer
                     "encoder", "codebook_size", "code_dim", "num_codes", "memory_dim", "memory_layers",
                     "memory_heads", "window", "controller_dims", "image_size",  # World Models
                     "aux_heads.enabled",  # dotted keys name nested entries
                     "task_dim")  # multi-task TD-MPC2 only (see load)


class CheckpointError(RuntimeError):
    pass


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, cfg, spec, agent, trainer_state: dict, buffer=None, policy_only: bool = False) -> None:
    """`policy_only`: only what acting needs (`agent.policy_state()`, e.g. self-play snapshots); such a file
    serves evaluation and opponents (src/policy.py), not resuming."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer_dir = None
    if buffer is not None:
        buffer_dir = f"buffer_{trainer_state['step']}"
        tmp_dir = path.parent / (buffer_dir + ".tmp")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        buffer.save(str(tmp_dir))
        shutil.rmtree(path.parent / buffer_dir, ignore_errors=True)
        tmp_dir.rename(path.parent / buffer_dir)
    payload = {"format_version": FORMAT_VERSION, "config": OmegaConf.to_container(cfg, resolve=True),
               "spec": dataclasses.asdict(spec), "agent": agent.policy_state() if policy_only else agent.state_dict(),
               "policy_only": policy_only, "trainer": trainer_state, "rng": rng_state(),
               "buffer_dir": buffer_dir, "buffer_state": buffer.state_dict() if buffer is not None else None}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    for old in path.parent.glob("buffer_*"):  # buffers of earlier checkpoints
        if old.name != buffer_dir and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)


def load(path: Path, cfg=None, map_location="cpu") -> dict:
    """Read a checkpoint; with `cfg`, check that it fits this config. Raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a checkpoint of this framework (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}; "
                              f"this code reads version {FORMAT_VERSION}")
    if cfg is not None:
        saved = OmegaConf.create(payload["config"])
        pairs = {k: (OmegaConf.select(saved, k), OmegaConf.select(cfg, k)) for k in ARCHITECTURE_KEYS}
        # the task list (its order gives the task ids) is the architecture: a task set's name equals its list
        from envs.multitask import task_list
        pairs["task"] = tuple(None if v is None else task_list(v) for v in pairs["task"])
        if not all(v is not None and len(v) > 1 for v in pairs["task"]):
            del pairs["task_dim"]  # one task has no task embedding
        diff = [f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in pairs.items()
                if a is not None and b is not None and a != b]
        if diff:
            raise CheckpointError(f"checkpoint {path} does not fit this config:\n  " + "\n  ".join(diff))
    return payload


def buffer_path(path: Path, payload: dict) -> Path | None:
    return Path(path).parent / payload["buffer_dir"] if payload.get("buffer_dir") else None
