"""Checkpoints: one file per save with a format version, the resolved config, the agent (with its
optimisers), trainer counters and RNG states; the replay buffer in a directory beside it.

Saves are atomic and never destroy what the current `latest.pt` references: the buffer goes to a
temporary directory renamed to a name no earlier save used, then the checkpoint to a temporary file renamed
over `latest.pt`; only then are the buffers of earlier checkpoints deleted. A run killed at any moment
therefore leaves a loadable checkpoint with its buffer (the previous one or the new one). A save that fails
(a full disk, a read-only directory) removes its partial files and raises CheckpointError naming the path;
the previous checkpoint stays as it was.
"""
import dataclasses
import functools
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from common.buffer import SavedBufferError, check_saved
from common.config import ConfigError, agent_rules, agent_rules_of
from common.tasks import task_list

FORMAT_VERSION = 3
# keys that must agree between a checkpoint and the config that loads it: these, and the keys the agent
# declares as changing its weights' shapes (`AgentRules.architecture_keys`); dotted keys name nested entries
ARCHITECTURE_KEYS = ("agent", "task", "obs", "image_size", "aux_heads.enabled")
# checkpoints of other code that `load` converts: (name, recognise(obj) -> bool, convert(obj, cfg, task) -> payload)
_CONVERTERS: list[tuple] = []


def _migrate_1(payload: dict, folder: Path) -> None:
    """Version 1 -> 2 (in place): entries that version-1 files of earlier code may lack get the values that code
    used: the trainer that wrote it (online: the only one then), not finished, no environment RNG state (not
    restored), and the agent's own entries (`AgentRules.migrate`)."""
    trainer = payload["trainer"]
    trainer.setdefault("trainer", "online")
    trainer.setdefault("finished", False)
    trainer.setdefault("env", None)
    agent = agent_rules_of(payload["config"].get("agent"))
    if agent is not None and agent.migrate is not None:
        agent.migrate(payload)


def _migrate_2(payload: dict, folder: Path) -> None:
    """Version 2 -> 3 (in place): a replay buffer saved before sequences could cross episodes has no `written`
    count; such a buffer never wrapped, so it is the stored length (read from the buffer's storage metadata)."""
    state, name = payload.get("buffer_state"), payload.get("buffer_dir")  # both absent without a buffer
    if state is None or name is None or "written" in state:
        return
    for directory in (folder / name, folder / f"{name}.tmp"):  # .tmp: a killed save that `buffer_path` recovers
        try:
            state["written"] = json.loads((directory / "storage" / "storage_metadata.json").read_text())["len"]
            return
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable buffer: `buffer_path` reports it


# format version -> the function that brings a payload of that version to the next one; `register_migration`
# adds the steps of packages whose state a checkpoint holds (the task hooks', envs/__init__.py)
MIGRATIONS = {1: _migrate_1, 2: _migrate_2}
_REGISTERED_MIGRATIONS: list = []


def register_migration(step) -> None:
    """`step(payload)` runs after each core migration step, with `payload["format_version"]` still the version
    being migrated from, and brings its owner's entries to the next version."""
    if step not in _REGISTERED_MIGRATIONS:
        _REGISTERED_MIGRATIONS.append(step)


def migrate(payload: dict, folder: Path) -> dict:
    """A payload of any earlier format version, read from a file in `folder`, brought to FORMAT_VERSION (in
    place), one version at a time."""
    while payload["format_version"] in MIGRATIONS and payload["format_version"] < FORMAT_VERSION:
        MIGRATIONS[payload["format_version"]](payload, Path(folder))
        for step in _REGISTERED_MIGRATIONS:
            step(payload)
        payload["format_version"] += 1
    return payload


def register_converter(name: str, recognise, convert) -> None:
    """`convert(obj, cfg, task)` turns a recognised foreign checkpoint into our payload for `cfg` (or, without
    one, for `task`), raising ConfigError or CheckpointError when it cannot."""
    if all(c[0] != name for c in _CONVERTERS):
        _CONVERTERS.append((name, recognise, convert))


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


def source_revision(root: Path | None = None) -> dict:
    """{'commit': HEAD's SHA, 'dirty': whether tracked files differ from it} of the git checkout at `root`
    (default: this code's, read once per process, so every record of a run names the code it started with);
    both None outside a git checkout. Frozen baselines are traced through it (seed 001)."""
    return dict(_code_revision() if root is None else _revision(Path(root)))


@functools.cache
def _code_revision() -> dict:
    return _revision(Path(__file__).resolve().parent.parent)


def _revision(root: Path) -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout
    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def save(path: Path, cfg, spec, agent, trainer_state: dict, buffer=None, policy_only: bool = False) -> None:
    """`policy_only`: only what acting needs (`agent.policy_state()`, e.g. self-play snapshots); such a file
    serves evaluation and opponents (src/policy.py), not resuming. Raises CheckpointError when it cannot
    be written (nothing partial is left behind)."""
    path = Path(path)
    folder = path.parent
    if buffer is not None and len(buffer) == 0:  # nothing to keep (a stop before the first episode), and
        buffer = None                            # torchrl cannot write a storage that was never filled
    tmp, tmp_dir, buffer_dir = path.with_suffix(".tmp"), None, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _check_free_space(path)
        for stale in folder.glob("buffer_*.tmp"):  # left by a save that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if buffer is not None:
            buffer_dir = _unused_name(folder, f"buffer_{trainer_state['step']}")
            tmp_dir = folder / (buffer_dir + ".tmp")
            buffer.save(str(tmp_dir))
            tmp_dir.rename(folder / buffer_dir)
            tmp_dir = None
        payload = {"format_version": FORMAT_VERSION, "config": OmegaConf.to_container(cfg, resolve=True),
                   "spec": dataclasses.asdict(spec),
                   "agent": agent.policy_state() if policy_only else agent.state_dict(),
                   "policy_only": policy_only, "trainer": trainer_state, "rng": rng_state(),
                   "buffer_dir": buffer_dir, "buffer_state": buffer.state_dict() if buffer is not None else None,
                   "source": source_revision()}
        torch.save(payload, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        if buffer_dir is not None:  # a fresh name: latest.pt names it only once the replace above succeeded
            shutil.rmtree(folder / buffer_dir, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {_reason(e)}; the previous checkpoint (if any) "
                              "is unchanged") from None
    for old in folder.glob("buffer_*"):  # buffers of earlier checkpoints: latest.pt no longer names them
        if old.name != buffer_dir and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)


def _unused_name(folder: Path, name: str) -> str:
    """`name`, or `name_1`, `name_2`, ... if a directory of that name exists (a second save at one step:
    the first one's buffer may be what latest.pt names)."""
    candidate, k = name, 0
    while (folder / candidate).exists() or (folder / (candidate + ".tmp")).exists():
        k += 1
        candidate = f"{name}_{k}"
    return candidate


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror} ({e.filename})" if e.filename else e.strerror
    return str(e).split("\n")[0]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _check_free_space(path: Path) -> None:
    """Refuse a save that would not fit: the new checkpoint and buffer take about what the current ones do,
    and both exist on disk until the new one replaces the old (a first save has no estimate)."""
    if not path.is_file():
        return
    buffers = sum(_size(d) for d in path.parent.glob("buffer_*") if not d.name.endswith(".tmp"))
    needed = int(1.1 * (_size(path) + buffers)) + 2**20
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(28, f"No space left on device: {free / 2**20:.1f} MiB free, a checkpoint needs about "
                          f"{needed / 2**20:.1f} MiB", str(path.parent))


def load(path: Path, cfg=None, map_location="cpu", task=None) -> dict:
    """Read a checkpoint; with `cfg`, check that it fits this config. Raises CheckpointError.

    A checkpoint of the official TD-MPC2 code is converted (src/tdmpc2/official.py) for `cfg`, or without one for
    `task` with the default config and the sizes its weights have."""
    path = Path(path)
    if path.is_dir():
        hint = next(iter(sorted(path.rglob("latest.pt"))), None)
        raise CheckpointError(f"checkpoint={path}: is a directory; give a checkpoint file"
                              + (f", e.g. {hint}" if hint else " (a run's checkpoints/latest.pt)"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__}: {e})") from None
    for name, recognise, convert in _CONVERTERS:
        if recognise(payload):
            if cfg is None and task is None:
                raise CheckpointError(f"{path} is an {name} checkpoint, which records no task: give task=...")
            try:
                payload = convert(payload, cfg, task)
            except (ConfigError, CheckpointError) as e:
                raise CheckpointError(f"{name} checkpoint {path}: {e}") from None
            break
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a checkpoint of this framework (no format_version)")
    migrate(payload, path.parent)
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}; "
                              f"this code reads version {FORMAT_VERSION}")
    if cfg is not None:
        saved = OmegaConf.create(payload["config"])
        agent = agent_rules(cfg)
        keys = ARCHITECTURE_KEYS + (agent.architecture_keys if agent is not None else ())
        pairs = {k: (OmegaConf.select(saved, k), OmegaConf.select(cfg, k)) for k in keys}
        # the task list (its order gives the task ids) is the architecture: a task set's name equals its list
        pairs["task"] = tuple(None if v is None else task_list(v) for v in pairs["task"])
        if "task_dim" in pairs and not all(v is not None and len(v) > 1 for v in pairs["task"]):
            del pairs["task_dim"]  # one task has no task embedding
        diff = [f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in pairs.items()
                if a is not None and b is not None and a != b]
        if diff:
            raise CheckpointError(f"checkpoint {path} does not fit this config:\n  " + "\n  ".join(diff))
    return payload


def buffer_path(path: Path, payload: dict) -> Path | None:
    """The replay buffer directory saved with a checkpoint, None if it has none. A checkpoint written by
    earlier code may name a directory that a killed save left only as `<name>.tmp`: a complete one
    (`common.buffer.check_saved` passes) is renamed into place; otherwise CheckpointError names what is missing."""
    if not payload.get("buffer_dir"):
        return None
    buffer_dir = Path(path).parent / payload["buffer_dir"]
    tmp = buffer_dir.with_name(buffer_dir.name + ".tmp")
    try:
        check_saved(buffer_dir, payload.get("buffer_state"))
        return buffer_dir
    except SavedBufferError as e:
        error = e
    if tmp.is_dir():
        try:
            check_saved(tmp, payload.get("buffer_state"))
        except SavedBufferError:
            pass
        else:
            shutil.rmtree(buffer_dir, ignore_errors=True)
            tmp.rename(buffer_dir)
            print(f"Recovered the replay buffer of {path} from {tmp.name} (a save was interrupted)")
            return buffer_dir
    raise CheckpointError(f"checkpoint {path}: its replay buffer is unusable: {error}. Resume from an earlier "
                          "copy, or start a new run (save_buffer=false runs need no buffer)") from None
