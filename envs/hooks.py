"""What a task adds to online training, behind hooks the trainer calls without knowing what they do.

The env factory (envs/__init__.py) builds each task's `TaskHooks` with its env, as `env.task_hooks`; the
default does nothing, so tasks without extras need none. The hockey tasks' (envs/hockey/hooks.py) compute the auxiliary
targets, count games and run the self-play pool.
"""
import contextlib

from tensordict import TensorDict


class TaskHooks:
    """Called by the online trainer: `annotate` each finished episode before it enters replay,
    `episode_stats` for its train.csv row, `evaluating()` around evaluation (the evaluation opponent),
    `before_episode` ahead of each episode (the learner at that step, and the run directory for anything it
    writes), and `state_dict`/`load_state_dict` for checkpoints (keys merged into the trainer's state, loaded
    from it; `migrate` brings those of older checkpoints up to date). evaluate.py reads `evaluation_matchups`."""

    def annotate(self, episode: TensorDict, final_info: dict) -> None:
        """Add per-step fields to a finished episode (T+1 steps) in place."""

    def episode_stats(self, final_info: dict) -> dict:
        """Columns of the episode's train.csv row."""
        return {}

    def evaluating(self):
        return contextlib.nullcontext()

    def before_episode(self, step: int, agent, counters: dict, run_dir) -> None:
        """`counters` are the trainer's (`step`, `trainer`), for anything the hook saves."""

    @staticmethod
    def evaluation_matchups() -> dict[str, dict]:
        """Opponents evaluate.py reports win/draw/loss against instead of returns: {name: config overrides that
        build the env playing it}; each game's final info then carries `winner` (1 win, 0 draw, -1 loss).
        Read without building the env (`envs.evaluation_matchups`)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, trainer_state: dict) -> None:
        """`trainer_state`: the whole trainer state of the checkpoint (its counters included)."""

    @staticmethod
    def migrate(trainer_state: dict, version: int) -> None:
        """Bring this task's entries of a checkpoint's trainer state from format `version` to the next (in
        place; common/checkpoint.py `register_migration`, registered by envs/__init__.py)."""
