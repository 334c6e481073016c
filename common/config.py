"""The one place where a composed Hydra config is checked, before anything is built.

`validate(cfg)` checks every rule that needs only the config; `validate_for_env(cfg, spec)` checks the
rules that need the environment (action space, primary discount). Both raise `ConfigError` listing every
broken rule as `key=value: rule`. The config is then frozen; values derived from the environment
(episode length, primary discount) are computed by functions here, never written back into it.
"""
import math
import warnings

from omegaconf import DictConfig, ListConfig, OmegaConf

from common.math import discount_from_episode_length
from common.precision import PRECISIONS

AGENTS = ("tdmpc2", "dreamer", "worldmodels")
TRAINERS = ("online", "offline", "onpolicy")
MAX_DISCOUNTS = 6


class ConfigError(ValueError):
    """An invalid configuration; the message names each key, its value and the rule it breaks."""


def _preset(key: str, *, _root_: DictConfig):
    table, size = _root_.model_presets, _root_.model_size
    if size not in table:
        raise ConfigError(f"model_size={size!r}: not a preset of agent {_root_.agent!r}; "
                          f"choose one of {', '.join(map(str, table))}")
    return table[size][key]


if not OmegaConf.has_resolver("preset"):
    OmegaConf.register_new_resolver("preset", _preset)


def _task_label(task) -> str:
    from envs.multitask import task_label
    return task_label(task)


if not OmegaConf.has_resolver("task_label"):  # run directories: runs/${task_label:${task}}/... (lists readable)
    OmegaConf.register_new_resolver("task_label", _task_label)


def check_path_part(value, key: str = "exp_name") -> None:
    """A config value used as one directory name (the run directory, the results file) must be a plain name:
    no path separators, not '.' or '..', so no run writes outside runs/ and results/. Raises ConfigError."""
    text = str(value)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0"):
        raise ConfigError(f"{key}={value!r}: must be a plain name (it names a directory): no '/', '\\' or '..'")


def _path_part(value) -> str:
    """The run directory's pattern (conf/config.yaml) resolves before `validate` can report a bad name: it
    gets a placeholder inside runs/, and `validate` then stops the run with the `key=value: rule` message."""
    try:
        check_path_part(value)
        return str(value)
    except ConfigError:
        return "invalid-name"


if not OmegaConf.has_resolver("path_part"):
    OmegaConf.register_new_resolver("path_part", _path_part)


class _Rules:
    """Collects broken rules so one run reports all of them at once."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.errors = cfg, []

    def get(self, key: str):
        return OmegaConf.select(self.cfg, key, throw_on_missing=False)

    def check(self, ok: bool, key: str, rule: str, value=None):
        if not ok:
            value = self.get(key) if value is None else value
            self.errors.append(f"{key}={value!r}: {rule}")

    def positive_int(self, *keys: str):
        for key in keys:
            v = self.get(key)
            self.check(isinstance(v, int) and not isinstance(v, bool) and v > 0, key, "must be a positive integer")

    def number(self, key: str, low=-math.inf, high=math.inf, low_open=False, high_open=False):
        v = self.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        self.check(ok, key, f"must be a number in {lo}{low}, {high}{hi}")

    def choice(self, key: str, options):
        self.check(self.get(key) in options, key, f"must be one of {', '.join(map(str, options))}")

    def auto_or(self, key: str, test, rule: str):
        v = self.get(key)
        self.check(v == "auto" or test(v), key, f"must be 'auto' or {rule}")

    def raise_if_any(self):
        if self.errors:
            raise ConfigError("invalid config:\n  " + "\n  ".join(self.errors))


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def validate(cfg: DictConfig) -> DictConfig:
    """Check every config-only rule; return the resolved config, frozen (read-only)."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # a bad model_size surfaces here, from the preset resolver
        raise ConfigError(str(e).split("\n")[0].replace("ValueError raised while resolving interpolation: ", "")
                          ) from None
    r = _Rules(cfg)
    r.choice("agent", AGENTS)
    from envs import task_kind
    from envs.multitask import is_multitask
    multitask, kind = is_multitask(cfg.task), None
    if multitask:  # checks every member
        _validate_multitask(r)
    else:
        try:
            kind = task_kind(cfg.task)
        except ValueError as e:
            r.errors.append(str(e))
    r.choice("obs", ("state", "rgb"))
    if cfg.obs == "rgb" and not multitask:
        r.check(kind == "dmc", "obs", "pixel observations are available for DeepMind Control tasks only")
    r.positive_int("steps", "eval_freq", "eval_episodes", "checkpoint_freq")
    r.check(_is_int(cfg.seed), "seed", "must be a non-negative integer")
    r.auto_or("action_repeat", lambda v: _is_int(v, 1), "a positive integer")
    r.auto_or("episodic", lambda v: isinstance(v, bool), "true/false")
    r.auto_or("discount", lambda v: isinstance(v, float) and 0 < v < 1, "a number in (0, 1)")
    r.auto_or("threads", lambda v: _is_int(v, 1), "a positive integer")
    r.check(cfg.device in ("auto", "cpu") or str(cfg.device).startswith("cuda"), "device",
            "must be auto, cpu, cuda or cuda:N")
    if str(cfg.device).startswith("cuda"):
        import torch
        r.check(torch.cuda.is_available(), "device", "CUDA is not available on this machine")
    r.check(isinstance(cfg.compile, bool), "compile", "must be true or false")
    r.choice("precision", PRECISIONS)
    r.check(not (cfg.compile is True and cfg.precision in ("bf16", "bf16_emulated", "auto")), "precision",
            "compile=true runs in fp32 only (torch.compile re-traces the bf16 product mode of common/precision.py "
            "op by op until it gives up); set precision=fp32 or compile=false")
    r.choice("trainer", TRAINERS)
    if cfg.trainer == "online":
        _validate_online(r)
    if cfg.trainer == "offline":
        _validate_offline(r)
    if cfg.trainer == "onpolicy":
        r.positive_int("num_envs")
    r.check((cfg.agent == "worldmodels") == (cfg.trainer == "onpolicy"), "trainer",
            "agent=worldmodels learns on-policy: it needs trainer=onpolicy, which serves no other agent")
    r.check(cfg.image_size is None or _is_int(cfg.image_size, 1), "image_size", "must be null or a positive integer")
    r.check(not (cfg.resume and cfg.checkpoint), "resume", "give either resume=true or checkpoint=PATH, not both")
    r.check(isinstance(cfg.resume, bool), "resume", "must be true or false")
    try:
        check_path_part(cfg.exp_name)
    except ConfigError as e:
        r.errors.append(str(e))
    r.choice("on_nonfinite", ("stop", "skip", "warn"))
    for key in ("tensorboard", "wandb", "progress"):
        r.check(isinstance(cfg.logger[key], bool), f"logger.{key}", "must be true or false")
    if cfg.logger.wandb is True:
        import importlib.util
        r.check(importlib.util.find_spec("wandb") is not None, "logger.wandb",
                "the wandb package is not installed (pip install wandb)")
    r.positive_int("logger.log_freq")
    if kind == "hockey":
        r.choice("hockey.opponent", ("auto", "weak", "strong", "none", "checkpoint", "selfplay"))
        r.choice("hockey.mode", ("auto", "normal", "shooting", "defense"))
        r.choice("hockey.reward", ("sparse", "shaped", "outcome"))
        r.choice("hockey.side", ("alternate", "left"))
        r.choice("hockey.backend", ("ours", "original", "auto"))
        r.check(cfg.hockey.opponent != "checkpoint" or bool(cfg.hockey.opponent_checkpoint),
                "hockey.opponent_checkpoint", "must be a path when hockey.opponent=checkpoint")
        if cfg.hockey.opponent == "checkpoint" and cfg.hockey.opponent_checkpoint:
            from pathlib import Path
            r.check(Path(str(cfg.hockey.opponent_checkpoint)).is_file(), "hockey.opponent_checkpoint",
                    "must be an existing checkpoint file")
    if cfg.agent == "tdmpc2":
        _validate_tdmpc2(r)
    if cfg.agent == "dreamer":
        _validate_dreamer(r)
    if cfg.agent == "worldmodels":
        _validate_worldmodels(r)
    _validate_multi_gamma(r)
    _validate_aux(r)
    _validate_selfplay(r)
    r.raise_if_any()
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _validate_online(r: _Rules):
    r.positive_int("buffer_size")
    r.auto_or("seed_steps", lambda v: _is_int(v, 0), "a non-negative integer")
    r.choice("buffer_storage", ("auto", "memory", "memmap"))
    r.number("buffer_memmap_gb", 0, low_open=True)
    r.check(isinstance(r.get("save_dataset"), bool), "save_dataset", "must be true or false")
    r.check(isinstance(r.get("save_buffer"), bool), "save_buffer", "must be true or false")


def _validate_offline(r: _Rules):
    paths = dataset_paths(r.cfg)
    r.check(bool(paths) and all(isinstance(p, str) and p.strip() for p in paths), "dataset",
            "trainer=offline needs dataset=PATH, dataset=[PATH,PATH] or dataset='PATH,PATH' "
            "(create one with `python -m common.dataset export RUN_DIR`)")
    f = r.cfg.dataset_filter
    for key in ("top_quantile", "bottom_quantile"):
        if f[key] is not None:
            r.number(f"dataset_filter.{key}", 0, 1, low_open=True)
    r.check(f.top_quantile is None or f.bottom_quantile is None, "dataset_filter.bottom_quantile",
            f"give either top_quantile or bottom_quantile, not both (top_quantile={f.top_quantile})")
    if f.max_episodes is not None:
        r.positive_int("dataset_filter.max_episodes")
    r.positive_int("log_interval")


def dataset_paths(cfg: DictConfig) -> list:
    """`dataset` as a list of paths: a list, or one string whose commas separate paths."""
    value = cfg.get("dataset")
    if value is None:
        return []
    if isinstance(value, (ListConfig, list, tuple)):
        return list(value)
    return [p.strip() for p in str(value).split(",") if p.strip()]


def _validate_tdmpc2(r: _Rules):
    cfg = r.cfg
    r.positive_int("iterations", "num_samples", "num_elites", "horizon", "batch_size", "latent_dim", "mlp_dim",
                   "enc_dim", "num_enc_layers", "simnorm_dim", "num_channels")
    r.check(_is_int(cfg.num_pi_trajs), "num_pi_trajs", "must be a non-negative integer")
    r.check(_is_int(cfg.num_elites) and _is_int(cfg.num_samples) and cfg.num_elites <= cfg.num_samples,
            "num_elites", f"must not exceed num_samples={cfg.num_samples}")
    r.check(_is_int(cfg.num_pi_trajs) and _is_int(cfg.num_samples) and cfg.num_pi_trajs < cfg.num_samples,
            "num_pi_trajs", f"must be below num_samples={cfg.num_samples} (leave room for Gaussian samples)")
    r.check(_is_int(cfg.num_q, 2), "num_q", "must be an integer >= 2 (targets take the min of two members)")
    r.check(_is_int(cfg.num_bins, 2), "num_bins", "must be an integer >= 2")
    r.number("vmin")
    r.check(isinstance(cfg.vmax, (int, float)) and cfg.vmax > cfg.vmin, "vmax", f"must exceed vmin={cfg.vmin}")
    r.check(_is_int(cfg.latent_dim, 1) and _is_int(cfg.simnorm_dim, 1) and cfg.latent_dim % cfg.simnorm_dim == 0,
            "latent_dim", f"must be divisible by simnorm_dim={cfg.simnorm_dim}")
    r.number("min_std", 0, low_open=True)
    r.check(isinstance(cfg.max_std, (int, float)) and cfg.max_std >= cfg.min_std, "max_std",
            f"must be >= min_std={cfg.min_std}")
    for key in ("lr", "temperature", "grad_clip_norm", "updates_per_step"):
        r.number(key, 0, low_open=True)
    r.number("tau", 0, 1, low_open=True)
    r.number("rho", 0, 1, low_open=True)
    r.number("dropout", 0, 1, high_open=True)
    r.number("enc_lr_scale", 0)
    for key in ("entropy_coef", "consistency_coef", "reward_coef", "value_coef", "termination_coef"):
        r.number(key, 0)
    r.check(isinstance(cfg.mpc, bool), "mpc", "must be true or false")
    r.choice("entropy", ("scaled", "squashed", "scaled_tanh"))
    r.check(cfg.log_std_min < cfg.log_std_max, "log_std_min", f"must be below log_std_max={cfg.log_std_max}")
    r.number("discount_denom", 0, low_open=True)
    r.check(0 < cfg.discount_min <= cfg.discount_max < 1, "discount_min",
            f"need 0 < discount_min <= discount_max={cfg.discount_max} < 1")


def _validate_multi_gamma(r: _Rules):
    mg = r.cfg.multi_gamma
    r.check(isinstance(mg.enabled, bool), "multi_gamma.enabled", "must be true or false")
    r.choice("multi_gamma.head", ("joint", "separate"))
    r.number("multi_gamma.loss_weight", 0)
    r.check(isinstance(mg.debug_logging, bool), "multi_gamma.debug_logging", "must be true or false")
    r.check(isinstance(mg.grad_to_q, bool), "multi_gamma.grad_to_q", "must be true or false")
    r.positive_int("multi_gamma.log_num_examples", "multi_gamma.log_interval_steps")
    if not mg.enabled:
        return
    gammas = list(mg.gammas) if isinstance(mg.gammas, ListConfig) else mg.gammas
    if not isinstance(gammas, list) or len(gammas) == 0:
        r.check(False, "multi_gamma.gammas", "must be a non-empty list when multi_gamma.enabled=true", gammas)
        return
    r.check(r.cfg.agent == "tdmpc2", "multi_gamma.enabled", "multi-discount heads exist for agent=tdmpc2 only")
    r.check(len(gammas) <= MAX_DISCOUNTS, "multi_gamma.gammas",
            f"at most {MAX_DISCOUNTS} discounts (the primary and up to {MAX_DISCOUNTS - 1} auxiliary)", gammas)
    r.check(gammas[0] == "primary" or isinstance(gammas[0], float), "multi_gamma.gammas[0]",
            "must be 'primary' or the primary discount as a number", gammas[0])
    for i, g in enumerate(gammas[1:], start=1):
        r.check(isinstance(g, float) and 0 < g < 1, f"multi_gamma.gammas[{i}]",
                "auxiliary discounts must be numbers in (0, 1)", g)
    numeric = [g for g in gammas[1:] if isinstance(g, float)]
    r.check(len(set(numeric)) == len(numeric), "multi_gamma.gammas", "duplicate discounts", gammas)
    if len(gammas) == 1:
        warnings.warn("multi_gamma.enabled=true with a single discount trains the baseline (no auxiliary heads)")


def _validate_selfplay(r: _Rules):
    """selfplay.*: the opponent pool of hockey.opponent=selfplay (envs/hockey/selfplay.py)."""
    from pathlib import Path

    from envs import HOCKEY_TASKS
    cfg, sp = r.cfg, r.cfg.selfplay
    r.check(_is_int(sp.snapshot_every), "selfplay.snapshot_every", "must be a non-negative integer (0: no snapshots)")
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
    if _is_int(sp.pool_size, 1):
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
    r.check(probs.get("pool", 0) == 0 or _is_int(sp.snapshot_every, 1) or bool(paths), "selfplay.probs.pool",
            "> 0 needs snapshots (selfplay.snapshot_every > 0) or an initial pool (selfplay.pool=[path,...])")


def _validate_aux(r: _Rules):
    """aux_heads.* (any agent, tasks that provide targets) and aux_rewards.* (Dreamer, needs the heads)."""
    from envs import HOCKEY_TASKS, aux_targets_fn
    cfg = r.cfg
    heads, rewards = cfg.aux_heads, cfg.aux_rewards
    r.check(isinstance(heads.enabled, bool), "aux_heads.enabled", "must be true or false")
    r.positive_int("aux_heads.goal_horizon")
    r.check(isinstance(heads.weights, DictConfig) and set(heads.weights) == {"goal", "dist", "shot"},
            "aux_heads.weights", "must have exactly the keys goal, dist, shot")
    for key in ("goal", "dist", "shot"):
        if key in heads.weights:
            r.number(f"aux_heads.weights.{key}", 0)
    if heads.enabled is True:
        r.check(aux_targets_fn(cfg.task) is not None, "aux_heads.enabled",
                f"task={cfg.task} provides no auxiliary targets; the hockey tasks do ({', '.join(HOCKEY_TASKS)})")
    r.check(isinstance(rewards.enabled, bool), "aux_rewards.enabled", "must be true or false")
    for key in ("goal_scale", "dist_scale", "shot_scale"):
        r.number(f"aux_rewards.{key}", 0)
    r.choice("aux_rewards.dist_form", ("inverse", "pbrs"))
    r.choice("aux_rewards.scored_state", ("next", "current"))
    r.check(rewards.scored_state != "current" or rewards.dist_form != "pbrs", "aux_rewards.scored_state",
            "current needs dist_form=inverse (pbrs scores the transition: gamma * phi(s') - phi(s))")
    r.check(_is_int(rewards.decay_steps), "aux_rewards.decay_steps",
            "must be a non-negative integer (updates; 0 = no decay)")
    if rewards.enabled is not True:
        return
    r.check(heads.enabled is True, "aux_rewards.enabled", "needs aux_heads.enabled=true (the rewards come from "
                                                          "the auxiliary heads)")
    r.check(cfg.agent == "dreamer", "aux_rewards.enabled", "auxiliary rewards shape Dreamer's imagined returns; "
                                                           f"agent={cfg.agent} has none (use aux_heads alone)")
    if heads.enabled is True and cfg.agent == "dreamer" and cfg.actor_grad in ("auto", "dynamics"):
        warnings.warn(f"aux_rewards.enabled=true with actor_grad={cfg.actor_grad}: on continuous actions the actor "
                      "learns by backpropagating returns through the dynamics, and the auxiliary rewards carry no "
                      "gradient, so they reach the actor only through the critic; actor_grad=reinforce (as in "
                      "+experiment=hockey_dreamer_aux) or both feeds them to it directly")


def _validate_multitask(r: _Rules):
    """Several tasks in one TD-MPC2 agent (`task` a list or a task-set name, envs/multitask.py)."""
    import gymnasium as gym
    from envs import task_kind
    from envs.multitask import TASK_SETS, task_list
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
    r.check(cfg.agent == "tdmpc2", "agent", "several tasks need agent=tdmpc2 (Dreamer trains one task)")
    r.check(cfg.multi_gamma.enabled is not True, "multi_gamma.enabled",
            "multi-discount heads are single-task only; disable them with several tasks")
    if cfg.action_repeat == "auto" and len({kinds[t] == "dmc" for t in kinds}) > 1:
        r.check(False, "action_repeat", "tasks of several kinds have different action repeats (DeepMind Control 2, "
                                        "Gymnasium 1); set action_repeat=N for all of them")
    if cfg.agent == "tdmpc2":
        r.positive_int("task_dim")


def validate_evaluate(cfg: DictConfig) -> DictConfig:
    """evaluate.py's config (conf/evaluate.yaml): the same `key=value: rule` checks; returns it frozen."""
    r = _Rules(cfg)
    checkpoint = OmegaConf.select(cfg, "checkpoint", throw_on_missing=False)
    r.check(isinstance(checkpoint, str) and bool(checkpoint.strip()) and checkpoint != "???", "checkpoint",
            "required: python evaluate.py checkpoint=PATH (a run's checkpoints/latest.pt)", checkpoint)
    r.positive_int("eval_episodes", "hockey_games")
    r.check(_is_int(cfg.seed), "seed", "must be a non-negative integer")
    r.check(isinstance(cfg.save_video, bool), "save_video", "must be true or false")
    r.auto_or("threads", lambda v: _is_int(v, 1), "a positive integer")
    r.check(cfg.device in ("auto", "cpu") or str(cfg.device).startswith("cuda"), "device",
            "must be auto, cpu, cuda or cuda:N")
    r.check(cfg.precision is None or cfg.precision in PRECISIONS, "precision",
            f"must be null (the checkpoint's) or one of {', '.join(PRECISIONS)}")
    r.raise_if_any()
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate_for_env(cfg: DictConfig, spec) -> None:
    """Rules that need the environment: action space and the primary discount."""
    r = _Rules(cfg)
    if cfg.agent == "tdmpc2":
        r.check(not spec.discrete, "agent", f"TD-MPC2 needs continuous actions; task {spec.task} has discrete "
                                            "actions (use agent=dreamer)")
        if cfg.obs == "state":
            r.check(len(spec.obs_shape) == 1, "obs", f"state observations must be vectors, got {spec.obs_shape}")
    if cfg.agent == "dreamer":
        shape = tuple(spec.obs_shape)
        r.check(len(shape) == 1 or (len(shape) == 3 and shape[1:] == (64, 64)), "obs",
                f"Dreamer needs vector or (C, 64, 64) image observations, got {shape}")
    if cfg.agent == "worldmodels":
        image = len(spec.obs_shape) == 3
        r.check(not (image and cfg.encoder == "mlp"), "encoder",
                f"task {spec.task} has image observations {tuple(spec.obs_shape)}: use encoder=conv (or auto)")
        r.check(image or cfg.encoder != "conv", "encoder",
                f"task {spec.task} has vector observations {tuple(spec.obs_shape)}: use encoder=mlp (or auto)")
        if image and cfg.encoder != "mlp":
            r.check(all(n >= 16 and n % 16 == 0 for n in spec.obs_shape[1:]), "image_size",
                    f"the conv VQ-VAE halves images four times: height and width must be multiples of 16, got "
                    f"{tuple(spec.obs_shape)}")
    mg = cfg.multi_gamma
    if mg.enabled and len(mg.gammas) > 1 and isinstance(mg.gammas[0], float):
        primary = primary_discount(cfg, spec)
        r.check(abs(mg.gammas[0] - primary) <= 1e-6, "multi_gamma.gammas[0]",
                f"must equal the primary discount {primary:.6f} of task {spec.task} (within 1e-6); "
                "write 'primary' to use it", mg.gammas[0])
    r.raise_if_any()
    if mg.enabled and any(abs(float(g) - primary_discount(cfg, spec)) <= 1e-6 for g in mg.gammas[1:]):
        # allowed (ablation A3 lists 0.99, the primary of DeepMind Control tasks): that head learns the Q target
        warnings.warn(f"multi_gamma.gammas={list(mg.gammas)}: an auxiliary discount equals the primary discount "
                      f"{primary_discount(cfg, spec)} of {spec.task}")


def primary_discount(cfg: DictConfig, spec) -> float:
    """The task's discount: `discount` if set, else TD-MPC2's heuristic from the episode length.
    Several tasks have one discount each (`task_discounts`), so a multi-task spec is an error here."""
    if spec.multitask:
        raise ValueError(f"{spec.task} has several tasks, each with its own discount: use task_discounts")
    return _discount(cfg, spec.episode_length)


def task_discounts(cfg: DictConfig, spec) -> list[float]:
    """One discount per task of `spec.tasks` (one entry for a single task), each from that task's own episode
    length with the heuristic (or `discount` for all when set)."""
    return [_discount(cfg, length) for length in spec.episode_lengths]


def _discount(cfg: DictConfig, episode_length: int) -> float:
    if cfg.discount != "auto":
        return float(cfg.discount)
    return discount_from_episode_length(episode_length, cfg.discount_denom, cfg.discount_min, cfg.discount_max)


def discounts(cfg: DictConfig, spec) -> list[float]:
    """[primary, auxiliary...] when multi-discount heads are on, else [primary]."""
    primary = primary_discount(cfg, spec)
    if not cfg.multi_gamma.enabled:
        return [primary]
    return [primary] + [float(g) for g in cfg.multi_gamma.gammas[1:]]


def seed_steps(cfg: DictConfig, spec) -> int:
    """Agent steps of random exploration before learning starts."""
    if cfg.seed_steps != "auto":
        return int(cfg.seed_steps)
    return max(1000, 5 * spec.episode_length)


def _validate_dreamer(r: _Rules):
    cfg = r.cfg
    r.positive_int("deter", "hidden", "layers", "stoch", "groups", "classes", "cnn_depth", "horizon", "batch_size",
                   "seq_len")
    r.choice("latent", ("categorical", "gaussian"))
    r.choice("act", ("silu", "elu", "mish"))
    r.choice("reward_head", ("twohot", "mse"))
    r.choice("critic_head", ("twohot", "mse"))
    r.choice("actor_grad", ("auto", "reinforce", "dynamics", "both"))
    r.choice("actor_reg", ("entropy", "kl_uniform"))
    r.choice("actor_dist", ("tanh_normal", "normal_clip"))
    r.choice("critic_target", ("online", "slow"))
    r.choice("advantage_norm", ("retnorm", "batch", "none"))
    r.number("model_weight_decay", 0)
    r.number("ac_weight_decay", 0)
    if cfg.train_every is not None:  # set: it wins over train_ratio
        r.check(_is_int(cfg.train_every, 1), "train_every", "must be null (train_ratio decides) or a positive "
                                                            "integer (one update every N agent steps)")
    r.check(_is_int(cfg.num_bins, 2), "num_bins", "must be an integer >= 2")
    r.number("vmin")
    r.check(isinstance(cfg.vmax, (int, float)) and cfg.vmax > cfg.vmin, "vmax", f"must exceed vmin={cfg.vmin}")
    for key in ("unimix", "actor_unimix"):
        r.number(key, 0, 1, high_open=True)
    r.number("latent_min_std", 0, low_open=True)
    r.number("actor_min_std", 0, low_open=True)
    r.check(isinstance(cfg.actor_max_std, (int, float)) and cfg.actor_max_std >= cfg.actor_min_std,
            "actor_max_std", f"must be >= actor_min_std={cfg.actor_min_std}")
    for key in ("dyn_scale", "rep_scale", "free_nats", "dec_scale", "reward_scale", "cont_scale", "actor_entropy",
                "critic_slowreg"):
        r.number(key, 0)
    for key in ("model_lr", "actor_lr", "critic_lr", "model_eps", "ac_eps", "model_grad_clip", "actor_grad_clip",
                "critic_grad_clip", "train_ratio"):
        r.number(key, 0, low_open=True)
    r.number("default_discount", 0, 1, low_open=True, high_open=True)
    r.number("return_lambda", 0, 1)
    r.number("actor_grad_mix", 0, 1)
    r.number("critic_ema", 0, 1, low_open=True)
    r.number("retnorm_rate", 0, 1, low_open=True)


def _validate_worldmodels(r: _Rules):
    cfg = r.cfg
    r.choice("phase", ("a2c", "vision", "memory"))
    r.choice("encoder", ("auto", "conv", "mlp"))
    r.choice("value_loss", ("huber", "mse"))
    r.positive_int("codebook_size", "code_dim", "num_codes", "enc_dim", "cnn_depth", "memory_dim", "memory_layers",
                   "memory_heads", "window", "planning_horizon", "num_action_samples", "n_steps")
    r.check(_is_int(cfg.memory_dim, 1) and _is_int(cfg.memory_heads, 1) and cfg.memory_dim % cfg.memory_heads == 0,
            "memory_dim", f"must be divisible by memory_heads={cfg.memory_heads}")
    dims = list(cfg.controller_dims) if isinstance(cfg.controller_dims, ListConfig) else None
    r.check(bool(dims) and all(_is_int(d, 1) for d in dims), "controller_dims",
            "must be a non-empty list of positive integers", dims if dims is not None else cfg.controller_dims)
    for key in ("commitment_coef", "vision_coef", "memory_coef", "reward_coef", "value_coef", "entropy_coef"):
        r.number(key, 0)
    r.number("lr", 0, low_open=True)
    r.number("grad_clip_norm", 0, low_open=True)
    r.number("gae_lambda", 0, 1)
    r.number("planning_weight", 0, 1)
    r.number("default_discount", 0, 1, low_open=True, high_open=True)
    for key in ("planning", "planning_bootstrap", "restart_dead_codes"):
        r.check(isinstance(cfg[key], bool), key, "must be true or false")
    r.check(not (cfg.planning is True and cfg.reward_coef == 0), "planning",
            "planning scores actions by predicted rewards, and reward_coef=0 leaves the reward predictor untrained: "
            "set reward_coef > 0 or planning=false")
