"""What an agent needs to know about an environment, derived once when the env is built."""
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, ...]   # (obs_dim,) for state, (C, H, W) for pixels; several tasks: the largest obs_dim
    action_dim: int              # continuous: dims in [-1, 1]; discrete: number of actions (one-hot); several
    #                              tasks: the largest action dim (smaller tasks are zero-padded)
    discrete: bool               # actions are one-hot vectors of length action_dim
    episode_length: int          # agent steps per episode at the time limit (after action repeat); several: longest
    action_repeat: int
    episodic: bool               # episodes can terminate before the time limit (learn a termination head)
    task: str                    # the task's name; several tasks: the task set's name or the names joined by '+'
    # Multi-task (envs/multitask.py): one entry per task, in task-id order. A single-task spec fills them with
    # its own values, so `spec.tasks[0] == spec.task` and `spec.action_dims[0] == spec.action_dim` always hold.
    tasks: tuple[str, ...] = ()
    obs_dims: tuple[int, ...] = ()        # true observation dims (state observations; empty for pixels)
    action_dims: tuple[int, ...] = ()     # true action dims; the padded dims beyond them are always zero
    episode_lengths: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.tasks:  # single task: its own values (object.__setattr__ because the dataclass is frozen)
            object.__setattr__(self, "tasks", (self.task,))
            object.__setattr__(self, "obs_dims", tuple(self.obs_shape) if len(self.obs_shape) == 1 else ())
            object.__setattr__(self, "action_dims", (self.action_dim,))
            object.__setattr__(self, "episode_lengths", (self.episode_length,))

    @property
    def multitask(self) -> bool:
        return len(self.tasks) > 1
