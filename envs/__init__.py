"""Environment factory: `make_env(cfg) -> (TorchEnv, EnvSpec)` from the plain `task` string; the env carries
its task's training hooks as `env.task_hooks` (envs/hooks.py), built here with the env.

Task names: DeepMind Control `domain-task` (e.g. `cheetah-run`), Gymnasium `gym/<id>`
(e.g. `gym/Pendulum-v1`), and the air-hockey game `hockey`, `hockey-strong`, `hockey-shooting`,
`hockey-defense` (options in the `hockey.*` config namespace). Several tasks at once (a list, or a task-set
name such as `mt3-cartpole`) give a padded multi-task env (envs/multitask.py).
"""
from collections.abc import Callable

import gymnasium as gym
from omegaconf import OmegaConf

from common.checkpoint import register_migration
from common.config import register_rules
from common.run import device_of
from common.spec import EnvSpec
from common.tasks import is_multitask, task_label, task_list
from envs import rules
from envs.hooks import TaskHooks
from envs.multitask import MultitaskEnv, MultitaskHooks
from envs.tasks import HOCKEY_TASKS, task_kind
from envs.wrappers import ActionRepeat, ImageObservation, RescaleAction, TorchEnv
from src.policy import CheckpointPolicy  # checkpoint opponents: envs builds on src, never the reverse

# Imported where they are used, on purpose: envs.dmcontrol (dm_control and its MuJoCo rendering backend) and
# envs.hockey.* (Box2D) load only when their task is built.

DMC_ACTION_REPEAT = 2  # action_repeat=auto on DeepMind Control (TD-MPC2's and DreamerV3's setting); else 1

register_rules(rules.task_rules)
register_rules(rules.selfplay_rules)


def _migrate_task_state(payload: dict) -> None:
    """Checkpoints of older code: the task's hooks bring their entries of the trainer state up to date (a
    policy-only file holds none)."""
    if not payload.get("policy_only"):
        hooks_class(payload["config"]["task"]).migrate(payload["trainer"], payload["format_version"])


register_migration(_migrate_task_state)


def _build_gym_env(cfg, task: str, seed: int) -> tuple[gym.Env, str, Callable[[EnvSpec], TaskHooks]]:
    """(gymnasium env, task kind, the task's hooks once its spec is known)."""
    kind = task_kind(task)
    hooks = lambda spec: TaskHooks()  # noqa: E731  (tasks without extras: hooks that do nothing)
    if kind == "dmc":
        from envs.dmcontrol import DMControlEnv
        return DMControlEnv(task, seed, pixels=cfg.obs == "rgb"), kind, hooks
    if kind == "gym":
        env = gym.make(task[len("gym/"):], render_mode="rgb_array")
        if len(env.observation_space.shape) == 3:  # pixel tasks, e.g. CarRacing-v3: channels first, resized
            env = ImageObservation(env, cfg.image_size)
    else:
        from envs.hockey.task import Drills, make_hockey_env
        mode, opponent = HOCKEY_TASKS[task]
        h = cfg.hockey
        opponent = opponent if h.opponent == "auto" else h.opponent
        opponent_policy = pool = None
        if opponent == "checkpoint":  # a frozen agent of either type plays the other side
            opponent_policy = CheckpointPolicy(h.opponent_checkpoint)
        if opponent == "selfplay":  # BasicOpponents mixed with frozen agents; evaluation plays the task's own
            from envs.hockey.selfplay import OpponentPool
            pool = OpponentPool.from_config(cfg.selfplay, seed, eval_opponent=HOCKEY_TASKS[task][1],
                                            device=device_of(cfg))
            opponent_policy = pool
        # configs saved before hockey.timeout / hockey.drills existed (checkpoints' configs): the game's terminal
        # draw, full games only
        timeout = OmegaConf.select(cfg, "hockey.timeout", default="terminated")
        drill_probs = OmegaConf.select(cfg, "hockey.drills", default=None)
        drills = Drills(**drill_probs) if drill_probs and any(drill_probs.values()) else None
        env = make_hockey_env(opponent=opponent, mode=mode if h.mode == "auto" else h.mode, reward=h.reward,
                              side=h.side, backend=h.backend, seed=seed, opponent_policy=opponent_policy,
                              timeout=timeout, drills=drills)
        hooks = lambda spec: hooks_class(task)(cfg, spec, pool, drills)  # noqa: E731  (HockeyHooks)
    if isinstance(env.action_space, gym.spaces.Box):
        env = RescaleAction(env)
    return env, kind, hooks


def hooks_class(task) -> type[TaskHooks]:
    """The class of the hooks a `task` value's env carries, without building it."""
    if is_multitask(task):
        return MultitaskHooks
    if task_kind(task) == "hockey":
        from envs.hockey.hooks import HockeyHooks
        return HockeyHooks
    return TaskHooks


def make_env(cfg, seed: int | None = None):
    """Build the task named by `cfg.task`; returns (TorchEnv, EnvSpec). Several tasks (a list or a task-set
    name, envs/multitask.py) give a MultitaskEnv and a spec with one entry per task."""
    seed = cfg.seed if seed is None else seed
    if is_multitask(cfg.task):
        return _make_multitask_env(cfg, seed)
    return _make_task_env(cfg, cfg.task, seed)


def _make_task_env(cfg, task: str, seed: int):
    env, kind, hooks = _build_gym_env(cfg, task, seed)
    action_repeat = _action_repeat(cfg, kind)
    frames = getattr(env.unwrapped, "max_episode_steps", None) or (env.spec.max_episode_steps if env.spec else None)
    if frames is None:
        raise ValueError(f"task={task!r} has no time limit; the framework needs one to set the episode length")
    episodic = cfg.episodic if cfg.episodic != "auto" else kind != "dmc"
    torch_env = TorchEnv(env, action_repeat, seed)
    spec = EnvSpec(obs_shape=tuple(env.observation_space.shape), action_dim=torch_env.action_dim,
                   discrete=torch_env.discrete, episode_length=-(-int(frames) // action_repeat),
                   action_repeat=action_repeat, episodic=bool(episodic), task=task)
    torch_env.task_hooks = hooks(spec)
    return torch_env, spec


def _action_repeat(cfg, kind: str) -> int:
    return cfg.action_repeat if cfg.action_repeat != "auto" else (DMC_ACTION_REPEAT if kind == "dmc" else 1)


def make_vector_env(cfg, num_envs: int, seed: int) -> gym.vector.SyncVectorEnv:
    """`num_envs` copies of the single task `cfg.task` (env i seeded with seed + i) in one gymnasium vector
    env, actions in [-1, 1] or action indices, action repeat applied inside each copy. Episodes reset in the
    step that ends them; that step's last observation is in `info['final_obs']` (the on-policy trainer
    bootstraps truncated episodes from it)."""

    def build(i: int) -> gym.Env:
        env, kind, _ = _build_gym_env(cfg, cfg.task, seed + i)
        return ActionRepeat(env, _action_repeat(cfg, kind))
    return gym.vector.SyncVectorEnv([lambda i=i: build(i) for i in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _make_multitask_env(cfg, seed: int):
    """One env per task (task i seeded with seed + i, so two tasks of one domain do not start alike), padded
    to the largest observation and action dims. The config check guarantees state observations, continuous
    actions and one action repeat for all tasks."""
    built = [_make_task_env(cfg, task, seed + i) for i, task in enumerate(task_list(cfg.task))]
    specs = [spec for _, spec in built]
    repeats = {s.action_repeat for s in specs}
    if len(repeats) > 1 or any(s.discrete or len(s.obs_shape) != 1 for s in specs):
        got = [(s.task, s.obs_shape, s.discrete, s.action_repeat) for s in specs]
        raise ValueError(f"task={task_label(cfg.task)}: several tasks need vector observations, continuous actions "
                         f"and one action repeat (got (task, obs_shape, discrete, action_repeat) {got})")
    obs_dims, action_dims = [s.obs_shape[0] for s in specs], [s.action_dim for s in specs]
    env = MultitaskEnv([e for e, _ in built], obs_dims, action_dims)
    env.task_hooks = MultitaskHooks(env, len(specs))
    spec = EnvSpec(obs_shape=(max(obs_dims),), action_dim=max(action_dims), discrete=False,
                   episode_length=max(s.episode_length for s in specs), action_repeat=repeats.pop(),
                   episodic=any(s.episodic for s in specs), task=task_label(cfg.task),
                   tasks=tuple(s.task for s in specs), obs_dims=tuple(obs_dims), action_dims=tuple(action_dims),
                   episode_lengths=tuple(s.episode_length for s in specs))
    return env, spec
