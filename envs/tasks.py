"""The task kinds (DeepMind Control, Gymnasium, hockey) a single `task` name belongs to. Builds nothing;
envs/__init__.py builds envs.
"""
import gymnasium as gym

HOCKEY_TASKS = {  # task -> (default mode, default opponent)
    "hockey": ("normal", "weak"),
    "hockey-strong": ("normal", "strong"),
    "hockey-shooting": ("shooting", "none"),
    "hockey-defense": ("defense", "none"),
}
def task_kind(task: str) -> str:
    """'dmc', 'gym' or 'hockey'; raises ValueError listing the available tasks for an unknown name."""
    if task in HOCKEY_TASKS:
        return "hockey"
    if task.startswith("gym/"):
        gym_id = task[len("gym/"):]
        if gym_id not in gym.registry:
            close = sorted(k for k in gym.registry if gym_id.split("-")[0].lower() in k.lower())[:10]
            raise ValueError(f"task={task!r}: {gym_id!r} is not a registered Gymnasium id"
                             + (f" (similar: {', '.join(close)})" if close else ""))
        return "gym"
    from envs.dmcontrol import dmc_tasks
    if task in dmc_tasks():
        return "dmc"
    raise ValueError(f"task={task!r} is not a known task. Available: DeepMind Control {', '.join(dmc_tasks())}; "
                     f"Gymnasium ids as gym/<id> (e.g. gym/Pendulum-v1, gym/CartPole-v1); "
                     f"hockey tasks {', '.join(HOCKEY_TASKS)}")
