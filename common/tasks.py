"""Task names, without building anything: which tasks a `task` config value names, and the named task sets.

Dependency-free, so the config check and checkpoints (common/) read task values without importing envs/.
`task=mt3-cartpole` is the same as `task=[cartpole-balance,cartpole-swingup,pendulum-swingup]`; the
multi-task env is envs/multitask.py.
"""
from collections.abc import Sequence

TASK_SETS = {
    # one body and a related pendulum; all 1-D actions, observations 5 and 3
    "mt3-cartpole": ("cartpole-balance", "cartpole-swingup", "pendulum-swingup"),
    # planar reaching and spinning with 2-D actions; observations 6, 6, 4 and 9
    "mt4-reach": ("reacher-easy", "reacher-hard", "point-mass-easy", "finger-spin"),
    # legged locomotion; observations 24, 24, 17, 15 and actions 6, 6, 6, 4 (hopper's are padded)
    "mt4-locomotion": ("walker-stand", "walker-walk", "cheetah-run", "hopper-stand"),
}


def task_list(task) -> list[str]:
    """The tasks a `task` config value names: a task set's members, a list's entries, or the one task."""
    if isinstance(task, str):
        return list(TASK_SETS.get(task, (task,)))
    return [str(t) for t in task]


def is_multitask(task) -> bool:
    """True when `task` is a list or a task-set name (also a list of fewer than two tasks: the config check
    reports that)."""
    if isinstance(task, str):
        return task in TASK_SETS
    return isinstance(task, Sequence)


def task_label(task) -> str:
    """A readable, path-safe name for a `task` value (run directories, results, messages): the task itself,
    a task set's name, or a list's names joined by '+' with '/' replaced by '-' (gym/Pendulum-v1 -> gym-Pendulum-v1)."""
    if isinstance(task, str):
        return task
    return "+".join(str(t).replace("/", "-") for t in task)
