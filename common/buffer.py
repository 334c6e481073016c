"""Episode replay on torchrl: whole episodes go in, `(L, B)` slices that never cross an episode come out.

Each stored step is one observation with what led to it (TD-MPC2's layout):
  obs (*obs_shape), action (A,) the action taken before this obs (zeros at the first step),
  reward (1,) the reward received on arriving here (0 at the first step), terminated (1,),
  is_first (1,) True at the first step of an episode, episode () the episode id.
`sample()` returns a TensorDict of batch size (L, B): TD-MPC2 uses L = horizon + 1, Dreamer L = 64.
`Buffer.from_memmap` serves an offline dataset (common/dataset.py) in place, read-only.
"""
import torch
from tensordict import TensorDict
from torchrl.data.replay_buffers import (LazyMemmapStorage, LazyTensorStorage, ReplayBuffer, SliceSampler,
                                         TensorStorage)


class Buffer:
    def __init__(self, capacity: int, seq_len: int, batch_size: int, storage: str = "memory",
                 scratch_dir: str | None = None, device: str | torch.device = "cpu"):
        self.capacity, self.seq_len, self.batch_size = capacity, seq_len, batch_size
        self.device = torch.device(device)
        self._storage_kind, self._scratch_dir = storage, scratch_dir
        self._num_episodes = 0
        self._rb = self._make()

    @classmethod
    def from_memmap(cls, steps: TensorDict, num_episodes: int, seq_len: int, batch_size: int,
                    device: str | torch.device = "cpu") -> "Buffer":
        """A read-only buffer over already stored steps (e.g. a memory-mapped dataset), used in place:
        nothing is copied into memory; `episode` must number whole, contiguous episodes."""
        buf = cls.__new__(cls)
        buf.capacity, buf.seq_len, buf.batch_size = steps.shape[0], seq_len, batch_size
        buf.device = torch.device(device)
        buf._storage_kind, buf._scratch_dir = "dataset", None
        buf._num_episodes = num_episodes
        buf._rb = buf._make(TensorStorage(steps))
        return buf

    def _make(self, storage=None) -> ReplayBuffer:
        if storage is not None:
            pass
        elif self._storage_kind == "memmap":
            storage = LazyMemmapStorage(self.capacity, scratch_dir=self._scratch_dir)
        else:
            storage = LazyTensorStorage(self.capacity)
        sampler = SliceSampler(slice_len=self.seq_len, traj_key="episode", end_key=None,
                               truncated_key=None, strict_length=True, cache_values=True)
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
        episode["episode"] = torch.full((episode.shape[0],), self._num_episodes, dtype=torch.int64)
        self._rb.extend(episode)
        self._num_episodes += 1

    def sample(self) -> TensorDict:
        """(L, B) slices, each inside one episode, on the buffer's device."""
        td = self._rb.sample()  # (B * L,), slices laid end to end
        td = td.view(self.batch_size, self.seq_len).transpose(0, 1)  # (L, B)
        return td.to(self.device, non_blocking=True)

    def stored_steps(self) -> tuple[TensorDict, int]:
        """(the stored steps, oldest first position): the storage's first `len(self)` rows and the row the
        oldest step sits in (0 until the buffer wraps around). Views, no copy."""
        storage = self._rb.storage
        steps = storage._storage[: len(storage)]
        writer = self._rb._writer
        wrapped = getattr(writer, "_write_count", 0) > len(storage)
        return steps, (int(writer._cursor) % len(storage) if wrapped and len(storage) else 0)

    def state_dict(self) -> dict:
        return {"num_episodes": self._num_episodes}

    def save(self, path: str) -> None:
        self._rb.dumps(path)

    def load(self, path: str, state: dict) -> None:
        self._rb = self._make()
        self._rb.loads(path)
        self._num_episodes = state["num_episodes"]


def episode_step(obs: torch.Tensor, action: torch.Tensor, reward: float, terminated: bool,
                 is_first: bool) -> TensorDict:
    """One step in the buffer's layout (batch size ())."""
    return TensorDict({"obs": obs, "action": action,
                       "reward": torch.tensor([reward], dtype=torch.float32),
                       "terminated": torch.tensor([float(terminated)]),
                       "is_first": torch.tensor([is_first])}, batch_size=())
