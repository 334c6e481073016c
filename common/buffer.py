"""Episode replay on torchrl: whole episodes go in, `(L, B)` slices come out.

Slices stay inside one episode (TD-MPC2), or, with `cross_episodes=True` (Dreamer), run on across episode
boundaries in the order the steps were stored, so episodes shorter than the slice are still replayed and the
model learns the resets from `is_first` (DreamerV3 replays fixed-length chunks of its step stream the same way).

Each stored step is one observation with what led to it (TD-MPC2's layout):
  obs (*obs_shape), action (A,) the action taken before this obs (zeros at the first step),
  reward (1,) the reward received on arriving here (0 at the first step), terminated (1,),
  is_first (1,) True at the first step of an episode, episode () the episode id, task () the task id
  (multi-task runs only),
  stream () which pass over the storage the step was written in (global step index // capacity): steps of one
  stream are contiguous in time, so a slice inside one stream never joins the newest steps to the oldest ones
  after the storage wraps around.
`sample()` returns a TensorDict of batch size (L, B): TD-MPC2 uses L = horizon + 1, Dreamer L = 64.
`Buffer.from_memmap` serves an offline dataset (common/dataset.py) in place, read-only.

A saved buffer (`save`, torchrl's `dumps`) is checked before it is loaded (`check_saved`: files, sizes, length,
episode starts, finite values), so a truncated or edited one is an error naming the file, never trained on.
`load` keeps the larger of the saved and the configured capacity: resuming with more `steps` grows it.
"""
import json
import math
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import (LazyMemmapStorage, LazyTensorStorage, ReplayBuffer, SliceSampler,
                                         TensorStorage)


class Buffer:
    def __init__(self, capacity: int, seq_len: int, batch_size: int, storage: str = "memory",
                 scratch_dir: str | None = None, device: str | torch.device = "cpu", cross_episodes: bool = False):
        self.capacity, self.seq_len, self.batch_size = capacity, seq_len, batch_size
        self.device = torch.device(device)
        self.cross_episodes = cross_episodes
        self._storage_kind, self._scratch_dir = storage, scratch_dir
        self._num_episodes, self._written = 0, 0
        self._rb = self._make()

    @classmethod
    def from_memmap(cls, steps: TensorDict, num_episodes: int, seq_len: int, batch_size: int,
                    device: str | torch.device = "cpu", cross_episodes: bool = False) -> "Buffer":
        """A read-only buffer over already stored steps (e.g. a memory-mapped dataset), used in place:
        nothing is copied into memory; `episode` must number whole, contiguous episodes in time order."""
        buf = cls.__new__(cls)
        buf.capacity, buf.seq_len, buf.batch_size = steps.shape[0], seq_len, batch_size
        buf.device, buf.cross_episodes = torch.device(device), cross_episodes
        buf._storage_kind, buf._scratch_dir = "dataset", None
        buf._num_episodes, buf._written = num_episodes, steps.shape[0]
        if cross_episodes:  # a dataset is one stream (oldest first); the key lives in memory, files untouched
            steps = TensorDict({**dict(steps.items()), "stream": torch.zeros(steps.shape[0], dtype=torch.int64)},
                               batch_size=steps.shape)
        buf._rb = buf._make(TensorStorage(steps))
        return buf

    def _make(self, storage=None) -> ReplayBuffer:
        if storage is not None:
            pass
        elif self._storage_kind == "memmap":
            storage = LazyMemmapStorage(self.capacity, scratch_dir=self._scratch_dir)
        else:
            storage = LazyTensorStorage(self.capacity)
        sampler = SliceSampler(slice_len=self.seq_len, traj_key="stream" if self.cross_episodes else "episode",
                               end_key=None, truncated_key=None, strict_length=True, cache_values=True)
        return ReplayBuffer(storage=storage, sampler=sampler, batch_size=self.batch_size * self.seq_len,
                            pin_memory=False, prefetch=0)

    @property
    def num_episodes(self) -> int:
        return self._num_episodes

    def __len__(self) -> int:
        return len(self._rb)

    def add(self, episode: TensorDict) -> None:
        """Add one finished episode, a TensorDict of batch size (T,)."""
        if self._storage_kind == "dataset":
            raise RuntimeError("this buffer serves a dataset read-only; episodes cannot be added")
        episode = episode.clone(False)
        T = episode.shape[0]
        episode["episode"] = torch.full((T,), self._num_episodes, dtype=torch.int64)
        episode["stream"] = (self._written + torch.arange(T)) // self.capacity  # (T,)
        self._rb.extend(episode)
        self._num_episodes += 1
        self._written += T

    def sample(self) -> TensorDict:
        """(L, B) slices, each inside one episode (or one stream with cross_episodes), on the buffer's device."""
        td = self._rb.sample().exclude("stream")  # (B * L,), slices laid end to end; stream is bookkeeping
        td = td.view(self.batch_size, self.seq_len).transpose(0, 1)  # (L, B)
        return td.to(self.device, non_blocking=True)

    def stored_steps(self) -> tuple[TensorDict, int]:
        """(the stored steps, oldest first position): the storage's first `len(self)` rows and the row the
        oldest step sits in (0 until the buffer wraps around). Views, no copy."""
        storage = self._rb.storage
        return storage[: len(storage)], oldest_row(self._written, len(storage))

    def state_dict(self) -> dict:
        return {"num_episodes": self._num_episodes, "written": self._written}

    def save(self, path: str) -> None:
        self._rb.dumps(path)

    def load(self, path: str, state: dict) -> None:
        """Load a saved buffer (`check_saved` first). With a larger configured capacity than the saved one
        (resume=true steps=<more>), the stored steps are copied oldest first into the larger storage."""
        saved_capacity = check_saved(Path(path), state)
        self._num_episodes = state["num_episodes"]
        grow = saved_capacity < self.capacity
        saved = Buffer(saved_capacity, self.seq_len, self.batch_size) if grow else self
        saved.capacity = saved_capacity
        saved._rb = saved._make()
        saved._rb.loads(path)
        saved._written = state["written"]
        if not grow:
            return
        steps, start = saved.stored_steps()
        n = steps.shape[0]
        order = (torch.arange(n) + start) % max(n, 1)  # oldest first
        steps = steps[order].clone()
        steps["stream"] = torch.zeros(n, dtype=torch.int64)  # one pass over the larger storage so far
        self._rb = self._make()
        self._rb.extend(TensorDict(dict(steps.items()), batch_size=[n]))
        self._written = n


class SavedBufferError(ValueError):
    """A saved replay buffer that cannot be loaded as it is; the message names the file and the problem."""


def check_saved(path: Path, state: dict | None = None) -> int:
    """Check a buffer directory written by `Buffer.save` without loading it; returns its capacity.
    Every storage file must exist with the size its metadata give (a short file would be silently
    zero-filled by the memory map), the stored length must fit, the episode ids and starts must agree with
    the buffer state, and float values must be finite. Raises SavedBufferError."""
    path = Path(path)
    storage = path / "storage"

    def read_json(file: Path) -> dict:
        if not file.is_file():
            raise SavedBufferError(f"{file} is missing")
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise SavedBufferError(f"{file} is unreadable ({e})") from None

    length = read_json(storage / "storage_metadata.json").get("len")
    meta = read_json(storage / "meta.json")
    keys = {k: v for k, v in meta.items() if isinstance(v, dict) and "dtype" in v}
    capacity = int(meta["shape"][0]) if meta.get("shape") else 0
    if not isinstance(length, int) or not 0 <= length <= capacity:
        raise SavedBufferError(f"{storage / 'storage_metadata.json'}: len={length!r}: must be an integer in "
                               f"[0, {capacity}] (the storage's rows)")
    for key, info in keys.items():
        file = storage / f"{key}.memmap"
        dtype = getattr(torch, info["dtype"].replace("torch.", ""))
        expected = math.prod(info["shape"]) * torch.empty((), dtype=dtype).element_size()
        actual = file.stat().st_size if file.is_file() else None
        if actual != expected:
            raise SavedBufferError(f"{file}: {'missing' if actual is None else f'{actual} bytes'}; its metadata "
                                   f"(shape {info['shape']}, {info['dtype']}) need {expected} bytes")
    read_json(path / "writer" / "metadata.json")
    if length == 0:
        return capacity
    data = TensorDict.load_memmap(storage)[:length]  # sizes checked: maps the files as they are
    if state is not None and state["written"] <= capacity:  # not wrapped: episodes 0..N-1 in order
        episode, first = data["episode"].reshape(-1), data["is_first"].reshape(-1).bool()
        starts = torch.nonzero(first).reshape(-1)
        expected = torch.cumsum(first.long(), 0) - 1
        if len(starts) != state["num_episodes"] or not torch.equal(episode, expected) or starts[0] != 0:
            raise SavedBufferError(f"{storage}: {len(starts)} episode starts and episode ids "
                                   f"{episode.unique().tolist()[:5]}... in {length} rows do not match the "
                                   f"checkpoint's {state['num_episodes']} episodes")
    for key, value in data.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            rows = torch.nonzero(~torch.isfinite(value.reshape(length, -1)).all(1)).reshape(-1)
            raise SavedBufferError(f"{storage / (key + '.memmap')}: non-finite values in {len(rows)} rows "
                                   f"(first row {int(rows[0])})")
    return capacity


def oldest_row(written: int, stored: int) -> int:
    """The storage row of the oldest of `stored` steps after `written` in all: the round-robin writer fills rows
    0, 1, ... and, once full, overwrites from row 0 again, so the oldest step sits at written % stored."""
    return written % stored if written > stored else 0


def episode_step(obs: torch.Tensor, action: torch.Tensor, reward: float, terminated: bool,
                 is_first: bool, task: int | None = None) -> TensorDict:
    """One step in the buffer's layout (batch size ()); multi-task runs add `task` () int64, the task id."""
    step = TensorDict({"obs": obs, "action": action,
                       "reward": torch.tensor([reward], dtype=torch.float32),
                       "terminated": torch.tensor([float(terminated)]),
                       "is_first": torch.tensor([is_first])}, batch_size=())
    if task is not None:
        step["task"] = torch.tensor(task, dtype=torch.int64)
    return step
