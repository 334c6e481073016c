"""The one place where a composed Hydra config is checked, before anything is built.

`validate(cfg)` checks every rule that needs only the config; `validate_for_env(cfg, spec)` checks the
rules that need the environment (action space, primary discount). Both raise `ConfigError` listing every
broken rule as `key=value: rule`. The config is then frozen; values derived from the environment
(episode length, primary discount) are computed by functions here, never written back into it.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from common.precision import PRECISIONS
from common.tasks import task_label

TRAINERS = ("online", "offline", "onpolicy")
# seed_steps=auto: random-action agent steps before learning, max(MIN_SEED_STEPS, SEED_EPISODES episodes)
MIN_SEED_STEPS = 1000
SEED_EPISODES = 5


class ConfigError(ValueError):
    """An invalid configuration; the message names each key, its value and the rule it breaks."""


@dataclass(frozen=True)
class AgentRules:
    """What the rule engine needs to know of one agent; each agent declares its own next to its code and
    registers it with the agent (src/base.py `register_agent`).

    `config(r)` checks the agent's keys, `env(r, spec)` what needs the environment; `auto_discount(cfg,
    episode_length)` is the primary discount for `discount=auto`; `trainers` are the trainers it learns with;
    `multitask`: it trains several tasks at once; `heads`: the optional head groups (`multi_gamma`,
    `aux_rewards`) it has; `architecture_keys`: the config keys that change its weights' shapes (a checkpoint
    whose values differ does not load, common/checkpoint.py); `migrate(payload)`: fills in the agent's
    entries that checkpoints of format version 1 may lack (common/checkpoint.py `MIGRATIONS`)."""
    config: Callable
    env: Callable
    auto_discount: Callable
    trainers: tuple = ("online", "offline")
    multitask: bool = False
    heads: tuple = ()
    architecture_keys: tuple = ()
    migrate: Callable | None = None


_AGENT_RULES: dict[str, AgentRules] = {}
# the rules of environment kinds, option namespaces and heads, each declared next to its code and registered by
# its package (envs/__init__.py, src/__init__.py): `rules(r)` on every config, `env_rules(r, spec)` with the env
_RULES: list[Callable] = []
_ENV_RULES: list[Callable] = []


def register_agent_rules(name: str, rules: AgentRules) -> None:
    _AGENT_RULES[name] = rules


def register_rules(rules: Callable | None = None, env_rules: Callable | None = None) -> None:
    for registry, fn in ((_RULES, rules), (_ENV_RULES, env_rules)):
        if fn is not None and fn not in registry:
            registry.append(fn)


def agent_rules(cfg) -> AgentRules | None:
    """The rules the agent `cfg.agent` registered (None for an unknown agent, which `validate` reports)."""
    return agent_rules_of(cfg.agent)


def agent_rules_of(name: str) -> AgentRules | None:
    return _AGENT_RULES.get(name)


def agents_with(test) -> str:
    """The registered agents whose AgentRules pass `test`, as `a|b` for messages."""
    return "|".join(name for name, rules in _AGENT_RULES.items() if test(rules))


def _preset(key: str, *, _root_: DictConfig):
    table, size = _root_.model_presets, _root_.model_size
    if size not in table:
        raise ConfigError(f"model_size={size!r}: not a preset of agent {_root_.agent!r}; "
                          f"choose one of {', '.join(map(str, table))}")
    return table[size][key]


if not OmegaConf.has_resolver("preset"):
    OmegaConf.register_new_resolver("preset", _preset)


if not OmegaConf.has_resolver("task_label"):  # run directories: runs/${task_label:${task}}/... (lists readable)
    OmegaConf.register_new_resolver("task_label", task_label)


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


class Rules:
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


def is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def validate(cfg: DictConfig) -> DictConfig:
    """Check every config-only rule; return the resolved config, frozen (read-only)."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as e:  # a bad model_size surfaces here, from the preset resolver
        raise ConfigError(str(e).split("\n")[0].replace("ValueError raised while resolving interpolation: ", "")
                          ) from None
    r = Rules(cfg)
    r.check(bool(_AGENT_RULES), "agent", "no agent is registered: import src (it registers them) before validating")
    r.choice("agent", tuple(_AGENT_RULES))
    agent = _AGENT_RULES.get(cfg.agent)
    r.positive_int("steps", "eval_freq", "eval_episodes", "checkpoint_freq")
    r.check(is_int(cfg.seed), "seed", "must be a non-negative integer")
    r.auto_or("action_repeat", lambda v: is_int(v, 1), "a positive integer")
    r.auto_or("episodic", lambda v: isinstance(v, bool), "true/false")
    r.auto_or("discount", lambda v: isinstance(v, float) and 0 < v < 1, "a number in (0, 1)")
    r.auto_or("threads", lambda v: is_int(v, 1), "a positive integer")
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
    if agent is not None:
        r.check(cfg.trainer in agent.trainers, "trainer", f"agent={cfg.agent} trains with trainer="
                                                          f"{'|'.join(agent.trainers)}")
    r.check(cfg.image_size is None or is_int(cfg.image_size, 1), "image_size", "must be null or a positive integer")
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
    if agent is not None:
        agent.config(r)
    for rules in _RULES:
        rules(r)
    r.raise_if_any()
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _validate_online(r: Rules):
    r.positive_int("buffer_size")
    r.auto_or("seed_steps", lambda v: is_int(v, 0), "a non-negative integer")
    r.choice("buffer_storage", ("auto", "memory", "memmap"))
    r.number("buffer_memmap_gb", 0, low_open=True)
    r.check(isinstance(r.get("save_dataset"), bool), "save_dataset", "must be true or false")
    r.check(isinstance(r.get("save_buffer"), bool), "save_buffer", "must be true or false")
    r.choice("eval_stream", ("shared", "own"))


def _validate_offline(r: Rules):
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


def validate_evaluate(cfg: DictConfig) -> DictConfig:
    """evaluate.py's config (conf/evaluate.yaml): the same `key=value: rule` checks; returns it frozen."""
    r = Rules(cfg)
    checkpoint = OmegaConf.select(cfg, "checkpoint", throw_on_missing=False)
    r.check(isinstance(checkpoint, str) and bool(checkpoint.strip()) and checkpoint != "???", "checkpoint",
            "required: python evaluate.py checkpoint=PATH (a run's checkpoints/latest.pt)", checkpoint)
    r.positive_int("eval_episodes", "hockey_games")
    r.check(is_int(cfg.seed), "seed", "must be a non-negative integer")
    r.check(isinstance(cfg.save_video, bool), "save_video", "must be true or false")
    r.auto_or("threads", lambda v: is_int(v, 1), "a positive integer")
    r.check(cfg.device in ("auto", "cpu") or str(cfg.device).startswith("cuda"), "device",
            "must be auto, cpu, cuda or cuda:N")
    r.check(cfg.precision is None or cfg.precision in PRECISIONS, "precision",
            f"must be null (the checkpoint's) or one of {', '.join(PRECISIONS)}")
    r.check(cfg.mpc is None or isinstance(cfg.mpc, bool), "mpc", "must be null (the checkpoint's), true or false")
    r.raise_if_any()
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate_saved_agent(cfg: DictConfig) -> None:
    """A checkpoint's saved config, before an agent is rebuilt from it to act (evaluation, opponents): its
    agent is registered and the agent's own rules and the precision hold (an edited or foreign file, or an
    acting override, fails here naming key, value and rule instead of deep inside the agent). The run's other
    rules are not checked: its datasets, devices or pool files need not exist where the agent is loaded."""
    r = Rules(cfg)
    r.choice("agent", tuple(_AGENT_RULES))
    r.choice("precision", PRECISIONS)
    if cfg.agent in _AGENT_RULES:
        _AGENT_RULES[cfg.agent].config(r)
    r.raise_if_any()


def validate_for_env(cfg: DictConfig, spec) -> None:
    """Rules that need the environment: action space and the primary discount."""
    r = Rules(cfg)
    _AGENT_RULES[cfg.agent].env(r, spec)
    for rules in _ENV_RULES:
        rules(r, spec)
    r.raise_if_any()


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
    """`discount`, or for `discount=auto` the agent's own choice (`AgentRules.auto_discount`)."""
    if cfg.discount != "auto":
        return float(cfg.discount)
    return float(_AGENT_RULES[cfg.agent].auto_discount(cfg, episode_length))


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
    return max(MIN_SEED_STEPS, SEED_EPISODES * spec.episode_length)
