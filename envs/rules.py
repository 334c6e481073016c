"""The environment kinds' config rules (registered with common/config.py by envs/__init__.py): the task name,
observations, the hockey.* options, the self-play pool (selfplay.*) and several tasks at once."""
from pathlib import Path

import gymnasium as gym
from omegaconf import DictConfig, ListConfig, OmegaConf

from common.config import Rules, agent_rules, agents_with, is_int
from common.tasks import TASK_SETS, is_multitask, task_list
from envs.tasks import HOCKEY_TASKS, task_kind


def task_rules(r: Rules):
    """`task` names known tasks (every member of several); `obs`; the hockey tasks' options."""
    cfg = r.cfg
    multitask, kind = is_multitask(cfg.task), None
    if multitask:  # checks every member
        _multitask_rules(r)
    else:
        try:
            kind = task_kind(cfg.task)
        except ValueError as e:
            r.errors.append(str(e))
    r.choice("obs", ("state", "rgb"))
    if cfg.obs == "rgb" and not multitask:
        r.check(kind == "dmc", "obs", "pixel observations are available for DeepMind Control tasks only")
    if cfg.aux_heads.enabled is True:  # the hockey tasks store the targets the heads predict (envs/hockey/hooks.py)
        r.check(kind == "hockey", "aux_heads.enabled",
                f"task={cfg.task} provides no auxiliary targets; the hockey tasks do ({', '.join(HOCKEY_TASKS)})")
    if kind == "hockey":
        r.choice("hockey.opponent", ("auto", "weak", "strong", "none", "checkpoint", "selfplay"))
        r.choice("hockey.mode", ("auto", "normal", "shooting", "defense"))
        r.choice("hockey.reward", ("sparse", "shaped", "outcome"))
        r.choice("hockey.side", ("alternate", "left"))
        r.choice("hockey.backend", ("ours", "original", "auto"))
        r.choice("hockey.timeout", ("terminated", "truncated"))
        _drill_rules(r)
        r.check(cfg.hockey.opponent != "checkpoint" or bool(cfg.hockey.opponent_checkpoint),
                "hockey.opponent_checkpoint", "must be a path when hockey.opponent=checkpoint")
        if cfg.hockey.opponent == "checkpoint" and cfg.hockey.opponent_checkpoint:
            r.check(Path(str(cfg.hockey.opponent_checkpoint)).is_file(), "hockey.opponent_checkpoint",
                    "must be an existing checkpoint file")


def _drill_rules(r: Rules):
    """hockey.drills (envs/hockey/task.py Drills): the share of training episodes that are drills."""
    cfg = r.cfg
    drills = OmegaConf.select(cfg, "hockey.drills")
    if not (isinstance(drills, DictConfig) and set(drills) == {"shooting", "defense"}):
        r.check(False, "hockey.drills", "must be a mapping {shooting: p, defense: q}", drills)
        return
    errors = len(r.errors)
    r.number("hockey.drills.shooting", 0, 1)
    r.number("hockey.drills.defense", 0, 1)
    if len(r.errors) > errors or drills.shooting + drills.defense == 0:
        return
    r.check(drills.shooting + drills.defense <= 1, "hockey.drills",
            "shooting + defense is the share of training episodes that are drills: at most 1", dict(drills))
    mode = HOCKEY_TASKS[cfg.task][0] if cfg.hockey.mode == "auto" else cfg.hockey.mode
    r.check(mode == "normal", "hockey.drills",
            f"drills replace full games: they need mode normal, not {mode} (task={cfg.task})", dict(drills))
    r.check(cfg.trainer == "online", "hockey.drills",
            f"drills are a curriculum of online training: they need trainer=online, not {cfg.trainer}", dict(drills))


def _multitask_rules(r: Rules):
    """Several tasks in one agent (`task` a list or a task-set name, envs/multitask.py)."""
    cfg = r.cfg
    tasks = task_list(cfg.task)
    label = cfg.task if isinstance(cfg.task, str) else tasks  # the value shown in messages
    r.check(len(tasks) >= 2, "task", "multi-task training needs at least 2 tasks (give a single task as a plain "
                                     f"string); task sets: {', '.join(TASK_SETS)}", label)
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    r.check(not duplicates, "task", f"duplicate tasks {duplicates}", label)
    kinds = {}
    for task in tasks:
        try:
            kinds[task] = task_kind(task)
        except ValueError as e:
            r.check(False, "task", f"unknown member {task!r}: {e}", label)
            continue
        r.check(kinds[task] != "hockey", "task", f"member {task!r}: hockey tasks cannot be part of a multi-task "
                                                 "set (a two-player game with its own options)", label)
        if kinds[task] == "gym":
            env = gym.make(task[len("gym/"):])
            r.check(not isinstance(env.action_space, gym.spaces.Discrete), "task",
                    f"member {task!r} has discrete actions; multi-task TD-MPC2 needs continuous actions", label)
            env.close()
    r.check(cfg.obs == "state", "obs", "several tasks need state observations (obs=state)")
    agent = agent_rules(cfg)
    r.check(agent is not None and agent.multitask, "agent",
            f"several tasks need agent={agents_with(lambda a: a.multitask)} (the others train one task)")
    r.check(cfg.multi_gamma.enabled is not True, "multi_gamma.enabled",
            "multi-discount heads are single-task only; disable them with several tasks")
    if cfg.action_repeat == "auto" and len({kinds[t] == "dmc" for t in kinds}) > 1:
        r.check(False, "action_repeat", "tasks of several kinds have different action repeats (DeepMind Control 2, "
                                        "Gymnasium 1); set action_repeat=N for all of them")


def selfplay_rules(r: Rules):
    """selfplay.*: the opponent pool of hockey.opponent=selfplay (envs/hockey/selfplay.py)."""
    cfg, sp = r.cfg, r.cfg.selfplay
    r.check(is_int(sp.snapshot_every), "selfplay.snapshot_every", "must be a non-negative integer (0: no snapshots)")
    r.positive_int("selfplay.pool_size")
    r.choice("selfplay.drop", ("oldest", "weakest"))
    r.check(isinstance(sp.pfsp, bool), "selfplay.pfsp", "must be true or false")
    probs = OmegaConf.to_container(sp.probs) if isinstance(sp.probs, DictConfig) else {}
    r.check(set(probs) == {"weak", "strong", "pool"}, "selfplay.probs", "must have exactly the keys weak, strong, pool")
    for key in probs:
        r.number(f"selfplay.probs.{key}", 0, 1)
    probs = {k: v for k, v in probs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if len(probs) == 3:
        r.check(abs(sum(probs.values()) - 1) <= 1e-6, "selfplay.probs", "must sum to 1", probs)
    paths = list(sp.pool) if isinstance(sp.pool, ListConfig) else sp.pool
    if not isinstance(paths, list):
        r.check(False, "selfplay.pool", "must be a list of checkpoint files: selfplay.pool=[path,...]")
        paths = []
    for i, path in enumerate(paths):
        r.check(isinstance(path, str) and Path(path).is_file(), f"selfplay.pool[{i}]",
                "must be an existing checkpoint file", path)
    if is_int(sp.pool_size, 1):
        r.check(len(paths) <= sp.pool_size, "selfplay.pool", f"at most selfplay.pool_size={sp.pool_size} checkpoints",
                paths)
    if cfg.hockey.opponent != "selfplay":
        r.check(not paths, "selfplay.pool", "is only used with hockey.opponent=selfplay", paths)
        return
    hockey = isinstance(cfg.task, str) and cfg.task in HOCKEY_TASKS
    r.check(hockey, "hockey.opponent", f"selfplay needs one hockey task ({', '.join(HOCKEY_TASKS)}), not "
                                       f"task={cfg.task}")
    if hockey:
        mode = HOCKEY_TASKS[cfg.task][0] if cfg.hockey.mode == "auto" else cfg.hockey.mode
        r.check(mode == "normal", "hockey.mode", "hockey.opponent=selfplay plays full games: needs mode normal",
                mode)
    r.check(cfg.trainer == "online", "trainer", "hockey.opponent=selfplay needs trainer=online")
    r.check(probs.get("pool", 0) == 0 or is_int(sp.snapshot_every, 1) or bool(paths), "selfplay.probs.pool",
            "> 0 needs snapshots (selfplay.snapshot_every > 0) or an initial pool (selfplay.pool=[path,...])")
