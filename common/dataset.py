"""Offline datasets: a run's replay buffer written out as a memory-mapped TensorDict, and read back for
offline training without loading it into memory.

A dataset is a directory:
  manifest.json   format version, task, tasks (the task list; multi-task data store a `task` id per step),
                  obs/action shapes, discrete, episodes, steps, per-episode returns, lengths and row offsets,
                  the creating run's resolved config and where it came from
  data/           TensorDict.memmap of the stored steps in the buffer's layout (common/buffer.py), oldest
                  first, whole episodes only, `episode` numbered 0..N-1 in order

  python -m common.dataset export RUN_DIR [--out PATH]   # from a run's latest checkpoint and its buffer
  python -m common.dataset info PATH                      # print a dataset's manifest summary
An online run with save_dataset=true writes `<run_dir>/dataset` when it finishes.
"""
import argparse
import dataclasses
import itertools
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tensordict import MemoryMappedTensor, TensorDict

from common import checkpoint
from common.buffer import Buffer, oldest_row

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "data"
_CHUNK = 65536  # rows copied at a time when writing


class DatasetError(ValueError):
    """A dataset that cannot be written or used; the message names the path and the problem."""


# ---------------------------------------------------------------------------------------------- writing
def write_dataset(steps: TensorDict, start: int, out: Path, *, spec: dict, config: dict, source: dict) -> dict:
    """Write `steps` (a buffer's storage rows; `start` is the row of the oldest step) to directory `out`,
    oldest first, dropping a leading partial episode (left by a buffer that wrapped around). Rows are copied
    in chunks, so a memory-mapped source is never read whole. Returns the manifest."""
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} already exists; remove it or export with --out to another path")
    steps = steps.exclude("stream")  # the buffer's own bookkeeping, not data
    n_rows = steps.shape[0]
    order = (torch.arange(n_rows) + start) % n_rows if n_rows else torch.zeros(0, dtype=torch.int64)
    is_first = steps["is_first"].reshape(-1)[order].bool()
    firsts = torch.nonzero(is_first).reshape(-1)
    if len(firsts) == 0:
        raise DatasetError("the replay buffer holds no complete episode; nothing to export")
    order, is_first = order[firsts[0]:], is_first[firsts[0]:]
    episode = torch.cumsum(is_first.long(), 0) - 1
    num_episodes, n = int(episode[-1]) + 1, len(order)
    reward = steps["reward"].reshape(-1)[order].double()
    returns = torch.zeros(num_episodes, dtype=torch.float64).index_add_(0, episode, reward)
    lengths = torch.bincount(episode, minlength=num_episodes) - 1  # agent steps (the first row has no action)
    offsets = torch.nonzero(is_first).reshape(-1)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = steps[:n].memmap_like(prefix=str(tmp / DATA))  # empty files of the right shapes
    for i in range(0, n, _CHUNK):
        chunk = steps[order[i:i + _CHUNK]]
        chunk["episode"] = episode[i:i + _CHUNK]
        data[i:i + _CHUNK] = chunk
    keys = {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in data.items()}
    del data
    manifest = {
        "format_version": FORMAT_VERSION, "task": spec["task"], "tasks": list(spec.get("tasks") or [spec["task"]]),
        "obs_shape": list(spec["obs_shape"]),
        "action_dim": spec["action_dim"], "discrete": spec["discrete"], "action_repeat": spec["action_repeat"],
        "episode_length": spec["episode_length"], "episodic": spec["episodic"],
        "num_episodes": num_episodes, "num_steps": int(lengths.sum()), "num_rows": n,
        "episode_returns": [round(float(r), 6) for r in returns], "episode_lengths": lengths.tolist(),
        "episode_offsets": offsets.tolist(), "keys": keys, "source": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": config}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    tmp.rename(out)
    return manifest


def export_buffer(buffer, out: Path, cfg, spec, source: dict | None = None) -> dict:
    """Write a live `common.buffer.Buffer` as a dataset (save_dataset=true at the end of an online run)."""
    steps, start = buffer.stored_steps()
    return write_dataset(steps, start, out, spec=dataclasses.asdict(spec),
                         config=OmegaConf.to_container(cfg, resolve=True), source=source or {})


def export_run(run: Path, out: Path | None = None) -> tuple[Path, dict]:
    """Export the replay buffer saved with a run's latest checkpoint (RUN_DIR, or a checkpoint file).
    Reads the saved buffer memory-mapped; writes `<run_dir>/dataset` unless `out` is given."""
    run = Path(run)
    ckpt = run if run.is_file() else run / "checkpoints" / "latest.pt"
    if not ckpt.is_file():
        raise DatasetError(f"{run}: no checkpoint at {ckpt}; give a run directory or a checkpoint file")
    try:
        payload = checkpoint.load(ckpt)
    except checkpoint.CheckpointError as e:
        raise DatasetError(str(e)) from None
    if payload["trainer"]["trainer"] != "online":
        raise DatasetError(f"{ckpt} was written by the {payload['trainer']['trainer']} trainer, which has no "
                           "replay buffer of its own (its data are the datasets named in its config)")
    buffer_dir = checkpoint.buffer_path(ckpt, payload)
    if buffer_dir is None or not (buffer_dir / "storage").is_dir():
        raise DatasetError(f"{ckpt} has no replay buffer beside it (the run had save_buffer=false); "
                           "rerun with save_buffer=true or save_dataset=true")
    storage = TensorDict.load_memmap(buffer_dir / "storage")
    length = json.loads((buffer_dir / "storage" / "storage_metadata.json").read_text())["len"]
    start = oldest_row(payload["buffer_state"]["written"], length)
    out = Path(out) if out is not None else ckpt.parent.parent / "dataset"
    source = {"run_dir": str(ckpt.parent.parent.resolve()), "checkpoint": str(ckpt.resolve()),
              "step": payload["trainer"]["step"]}
    manifest = write_dataset(storage[:length], start, out, spec=payload["spec"], config=payload["config"],
                             source=source)
    return out, manifest


# ---------------------------------------------------------------------------------------------- reading
def read_manifest(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if not (path / MANIFEST).is_file():
        raise DatasetError(f"{path} is not a dataset (no {MANIFEST}); create one with "
                           "`python -m common.dataset export RUN_DIR`")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path / MANIFEST} is not valid JSON ({e})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise DatasetError(f"dataset {path} has format version {version}; this code reads version {FORMAT_VERSION}")
    return manifest


def open_data(path: Path, m: dict) -> TensorDict:
    """The dataset's steps, memory-mapped read-only (copy-on-write: nothing is ever written to the files),
    after checking each file's size against the manifest (a short file is an error, never padded) and the
    episodes against the manifest's offsets, lengths and returns, and that float values are finite."""
    data_dir = path / DATA
    keys = m.get("keys")
    if not isinstance(keys, dict) or not {"obs", "action", "reward", "is_first", "episode"} <= set(keys):
        raise DatasetError(f"dataset {path}: {MANIFEST} lists no keys or misses obs/action/reward/is_first/episode")
    n, leaves = m["num_rows"], {}
    for key, info in keys.items():
        file = data_dir / f"{key}.memmap"
        dtype = getattr(torch, info["dtype"])
        numel = n * math.prod(info["shape"])
        expected = numel * torch.empty((), dtype=dtype).element_size()
        actual = file.stat().st_size if file.is_file() else None
        if actual != expected:
            raise DatasetError(f"dataset {path}: {file} is {'missing' if actual is None else f'{actual} bytes'}; "
                               f"the manifest ({n} rows of {info['shape']} {info['dtype']}) needs {expected} bytes")
        mapped = torch.from_file(str(file), shared=False, size=numel, dtype=dtype)  # MAP_PRIVATE: read-only file
        leaves[key] = MemoryMappedTensor(mapped.view(n, *info["shape"]))
        leaves[key].filename = str(file)
    data = TensorDict(leaves, batch_size=[n])
    if tuple(data["obs"].shape[1:]) != tuple(m["obs_shape"]) or data["action"].shape[-1] != m["action_dim"]:
        raise DatasetError(f"dataset {path}: the data (obs {tuple(data['obs'].shape[1:])}, "
                           f"{data['action'].shape[-1]} actions) do not match its manifest "
                           f"(obs {tuple(m['obs_shape'])}, {m['action_dim']} actions)")
    _check_episodes(path, data, m)
    for key, value in data.items():
        if value.is_floating_point():
            for i in range(0, n, _CHUNK):
                if not torch.isfinite(value[i:i + _CHUNK]).all():
                    raise DatasetError(f"dataset {path}: {key} holds non-finite values (rows {i}..{i + _CHUNK})")
    return data


def _check_episodes(path: Path, data: TensorDict, m: dict) -> None:
    """Episode starts (`is_first`), ids and returns must be what the manifest's offsets, lengths and returns say."""
    offsets, lengths, returns = m["episode_offsets"], m["episode_lengths"], m["episode_returns"]
    problem = None
    if not len(offsets) == len(lengths) == len(returns) == m["num_episodes"]:
        problem = (f"{len(offsets)} offsets, {len(lengths)} lengths, {len(returns)} returns for "
                   f"num_episodes={m['num_episodes']}")
    elif sum(lengths) + len(lengths) != m["num_rows"] or list(offsets) != [0, *itertools.accumulate(
            length + 1 for length in lengths[:-1])]:
        problem = "episode_offsets and episode_lengths do not tile the rows (episodes joined or split?)"
    else:
        starts = torch.nonzero(data["is_first"].reshape(-1).bool()).reshape(-1).tolist()
        episode = data["episode"].reshape(-1)
        expected = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths) + 1)
        if starts != list(offsets):
            first = next((i for i, (a, b) in enumerate(zip(starts, offsets)) if a != b), min(len(starts), len(offsets)))
            problem = (f"the data's {len(starts)} episode starts (is_first) differ from the manifest's "
                       f"{len(offsets)} episode_offsets from episode {first} on")
        elif not torch.equal(episode, expected):
            problem = "the episode ids in the data differ from the manifest's episodes"
        else:
            sums = torch.zeros(len(lengths), dtype=torch.float64).index_add_(
                0, expected, data["reward"].reshape(-1).double())
            bad = torch.nonzero((sums - torch.tensor(returns, dtype=torch.float64)).abs()
                                > 1e-3 * (1 + sums.abs())).reshape(-1)
            if len(bad):
                problem = (f"episode {int(bad[0])}'s rewards sum to {float(sums[bad[0]]):.4f}, its manifest return "
                           f"is {returns[int(bad[0])]} ({len(bad)} episodes differ)")
    if problem:
        raise DatasetError(f"dataset {path}: {problem}; the dataset is corrupt (re-export it)")


def _shapes(m: dict) -> tuple:
    return tuple(m["obs_shape"]), m["action_dim"], bool(m["discrete"])


def _describe(shapes: tuple) -> str:
    obs, actions, discrete = shapes
    return f"observations {obs}, {actions} {'discrete' if discrete else 'continuous'} actions"


def select_episodes(returns: list[float], top_quantile=None, bottom_quantile=None, max_episodes=None) -> list[int]:
    """Indices (ascending) of the episodes a filter keeps. `top_quantile=q` keeps the ceil(q * n) episodes with
    the highest returns, `bottom_quantile=q` the lowest (ties: the earlier episode first); `max_episodes=N`
    then keeps the first N of those in dataset order."""
    n = len(returns)
    keep = list(range(n))
    for q, sign in ((top_quantile, -1.0), (bottom_quantile, 1.0)):
        if q is not None:
            k = max(1, math.ceil(q * n - 1e-9))
            keep = sorted(sorted(keep, key=lambda i: sign * returns[i])[:k])
    if max_episodes is not None:
        keep = keep[:max_episodes]
    return keep


def load_buffer(paths: list[str], spec, seq_len: int, batch_size: int, device="cpu", top_quantile=None,
                bottom_quantile=None, max_episodes=None, scratch_dir: str | None = None, cross_episodes=False):
    """A `common.buffer.Buffer` over one or more datasets, checked against each other and the env `spec`.

    One dataset used whole is served in place from its memory-mapped files; several datasets or a filter
    copy the chosen episodes, one at a time, into a memory-mapped buffer under `scratch_dir`.
    Returns (buffer, summary line). Raises DatasetError before anything is trained."""
    if not paths:
        raise DatasetError("no dataset given (dataset=PATH or dataset=[PATH,PATH])")
    manifests = [read_manifest(Path(p)) for p in paths]
    env_shapes = (tuple(spec.obs_shape), spec.action_dim, bool(spec.discrete))
    for p, m in zip(paths, manifests):
        if _shapes(m) != _shapes(manifests[0]):
            raise DatasetError(f"datasets {paths[0]} and {p} do not match: {_describe(_shapes(manifests[0]))} vs "
                               f"{_describe(_shapes(m))}")
        if _shapes(m) != env_shapes:
            raise DatasetError(f"dataset {p} ({m['task']}) has {_describe(_shapes(m))}, but task {spec.task} has "
                               f"{_describe(env_shapes)}")
        tasks = m.get("tasks", [m["task"]])  # multi-task data: its `task` ids must mean the config's tasks
        if (spec.multitask or len(tasks) > 1) and tasks != list(spec.tasks):
            raise DatasetError(f"dataset {p} holds tasks {tasks}, but the config trains tasks {list(spec.tasks)} "
                               "(the same tasks in the same order)")
    datas = [open_data(Path(p), m) for p, m in zip(paths, manifests)]

    pooled = [(d, e) for d, m in enumerate(manifests) for e in range(m["num_episodes"])]
    returns = [manifests[d]["episode_returns"][e] for d, e in pooled]
    keep = [pooled[i] for i in select_episodes(returns, top_quantile, bottom_quantile, max_episodes)]
    rows = [manifests[d]["episode_lengths"][e] + 1 for d, e in keep]
    if (sum(rows) if cross_episodes else max(rows, default=0)) < seq_len:
        raise DatasetError(f"no chosen episode{'s have' if cross_episodes else ' has'} the {seq_len} steps a "
                           "training slice needs "
                           f"({len(keep)} episodes of at most {max(rows, default=0)} steps)")
    if len(paths) == 1 and len(keep) == manifests[0]["num_episodes"]:
        buffer = Buffer.from_memmap(datas[0], len(keep), seq_len, batch_size, device=device,
                                    cross_episodes=cross_episodes)
    else:
        if scratch_dir is not None:  # this loader's own directory: a stale copy from an earlier load goes
            shutil.rmtree(scratch_dir, ignore_errors=True)
        buffer = Buffer(sum(rows), seq_len, batch_size, storage="memmap", scratch_dir=scratch_dir, device=device,
                        cross_episodes=cross_episodes)
        for d, e in keep:
            start = manifests[d]["episode_offsets"][e]
            buffer.add(datas[d][start:start + manifests[d]["episode_lengths"][e] + 1].exclude("episode"))
    kept = torch.tensor([returns[i] for i in select_episodes(returns, top_quantile, bottom_quantile, max_episodes)])
    summary = (f"{len(paths)} dataset{'s' if len(paths) > 1 else ''}, {len(keep)} of {len(pooled)} episodes "
               f"({sum(rows) - len(keep):,} steps), returns mean {kept.mean():.1f}, min {kept.min():.1f}, "
               f"max {kept.max():.1f}")
    return buffer, summary


# ---------------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.dataset", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a run's replay buffer as a dataset")
    exp.add_argument("run", help="run directory (uses checkpoints/latest.pt and its buffer) or a checkpoint file")
    exp.add_argument("--out", help="dataset directory to create (default: RUN_DIR/dataset)")
    info = sub.add_parser("info", help="print a dataset's manifest summary")
    info.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            out, m = export_run(Path(args.run), Path(args.out) if args.out else None)
        else:
            out, m = Path(args.path), read_manifest(Path(args.path))
    except DatasetError as e:
        print(f"Dataset error: {e}", file=sys.stderr)
        return 1
    r = torch.tensor(m["episode_returns"], dtype=torch.float64)
    print(f"{'Wrote' if args.command == 'export' else 'Dataset'} {out}: {m['task']}, {m['num_episodes']} episodes, "
          f"{m['num_steps']:,} steps, obs {tuple(m['obs_shape'])}, {m['action_dim']} actions"
          f"{' (discrete)' if m['discrete'] else ''}; returns mean {r.mean():.1f}, min {r.min():.1f}, "
          f"max {r.max():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
