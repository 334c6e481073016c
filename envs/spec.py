"""What an agent needs to know about an environment, derived once when the env is built."""
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, ...]   # (obs_dim,) for state, (C, H, W) for pixels
    action_dim: int              # continuous: dims in [-1, 1]; discrete: number of actions (one-hot)
    discrete: bool               # actions are one-hot vectors of length action_dim
    episode_length: int          # agent steps per episode at the time limit (after action repeat)
    action_repeat: int
    episodic: bool               # episodes can terminate before the time limit (learn a termination head)
    task: str
