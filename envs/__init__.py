"""Environment factory: `make_env(cfg) -> (TorchEnv, EnvSpec)` from the plain `task` string.

Task names: DeepMind Control `domain-task` (e.g. `cheetah-run`), Gymnasium `gym/<id>`
(e.g. `gym/Pendulum-v1`), and the air-hockey game `hockey`, `hockey-strong`, `hockey-shooting`,
`hockey-defense` (options in the `hockey.*` config namespace).
"""
import gymnasium as gym

from envs.spec import EnvSpec

HOCKEY_TASKS = {  # task -> (default mode, default opponent)
    "hockey": ("normal", "weak"),
    "hockey-strong": ("normal", "strong"),
    "hockey-shooting": ("shooting", "none"),
    "hockey-defense": ("defense", "none"),
}
# per-step auxiliary-task targets a task may provide (`aux_heads.*`), stored in replay beside each observation
AUX_TARGET_KEYS = ("aux_goal", "aux_puck_goal_dist", "aux_shot_quality")


def aux_targets_fn(task: str):
    """The task's auxiliary-target function `(obs (T+1, ...), final_info, goal_horizon) -> {key: (T+1, 1)}`
    for one finished episode, or None when the task provides no targets (only the hockey tasks do)."""
    if task in HOCKEY_TASKS:
        from envs.hockey.aux_targets import aux_targets
        return aux_targets
    return None


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


def _build_gym_env(cfg, seed: int) -> tuple[gym.Env, str]:
    from envs.wrappers import RescaleAction
    kind = task_kind(cfg.task)
    if kind == "dmc":
        from envs.dmcontrol import DMControlEnv
        return DMControlEnv(cfg.task, seed, pixels=cfg.obs == "rgb"), kind
    if kind == "gym":
        env = gym.make(cfg.task[len("gym/"):], render_mode="rgb_array")
    else:
        from envs.hockey.task import make_hockey_env
        mode, opponent = HOCKEY_TASKS[cfg.task]
        h = cfg.hockey
        opponent = opponent if h.opponent == "auto" else h.opponent
        opponent_policy = None
        if opponent == "checkpoint":  # a frozen agent of either type plays the other side
            from src.policy import CheckpointPolicy
            opponent_policy = CheckpointPolicy(h.opponent_checkpoint)
        env = make_hockey_env(opponent=opponent, mode=mode if h.mode == "auto" else h.mode, reward=h.reward,
                              side=h.side, backend=h.backend, seed=seed, opponent_policy=opponent_policy)
    if isinstance(env.action_space, gym.spaces.Box):
        env = RescaleAction(env)
    return env, kind


def make_env(cfg, seed: int | None = None):
    """Build the task named by `cfg.task`; returns (TorchEnv, EnvSpec)."""
    from envs.wrappers import TorchEnv
    seed = cfg.seed if seed is None else seed
    env, kind = _build_gym_env(cfg, seed)
    action_repeat = cfg.action_repeat if cfg.action_repeat != "auto" else (2 if kind == "dmc" else 1)
    frames = getattr(env.unwrapped, "max_episode_steps", None) or (env.spec.max_episode_steps if env.spec else None)
    if frames is None:
        raise ValueError(f"task={cfg.task!r} has no time limit; the framework needs one to set the episode length")
    episodic = cfg.episodic if cfg.episodic != "auto" else kind != "dmc"
    torch_env = TorchEnv(env, action_repeat, seed)
    spec = EnvSpec(obs_shape=tuple(env.observation_space.shape), action_dim=torch_env.action_dim,
                   discrete=torch_env.discrete, episode_length=-(-int(frames) // action_repeat),
                   action_repeat=action_repeat, episodic=bool(episodic), task=cfg.task)
    return torch_env, spec
