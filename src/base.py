"""The agent contract and the one registry of agents.

Every trainer, evaluate.py, the self-play pool and checkpoint loading use an agent only through `Agent`
below; `make_agent(cfg, spec, device)` builds the one registered under `cfg.agent`. An agent is added with
one folder (its code, its conf/agent/<name>.yaml and its `AgentRules` next to it) and one `register_agent`
line in src/__init__.py (or, for a test's toy agent, one call before train.py's main runs).
"""
from typing import Protocol, runtime_checkable

import torch

from common.config import AgentRules, register_agent_rules


@runtime_checkable
class Agent(Protocol):
    """What trainers and evaluation need of an agent.

    Replay trainers sample `batch_size` sequences of `seq_len` steps and call `update` `updates_per_step`
    times per agent step; `sequences_cross_episodes` says whether a sampled sequence may span an episode
    boundary (the agent then resets its state at `is_first`). The on-policy trainer calls `collect`,
    `values` and `update(rollout)` instead (see trainer/onpolicy_trainer.py)."""

    seq_len: int
    batch_size: int
    updates_per_step: float
    sequences_cross_episodes: bool

    def act(self, obs, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        """Action (action_dim,) for one observation: in [-1, 1], or one-hot for discrete actions. `t0` marks
        an episode's first step (recurrent state and warm starts reset)."""

    def update(self, batch) -> dict:
        """One learning step; metrics as 0-d tensors."""

    def state_dict(self) -> dict:
        """Everything needed to continue training: weights, optimisers, running statistics, counters."""

    def load_state_dict(self, state: dict) -> None: ...

    def policy_state(self) -> dict:
        """What acting needs (for opponents and evaluation): no optimisers."""

    def load_policy_state(self, state: dict) -> None: ...

    def parameter_counts(self) -> dict:
        """Trainable parameters per component, and their sum as `total`."""


AGENTS: dict[str, type] = {}


def register_agent(name: str, cls: type, rules: AgentRules) -> None:
    """Make `agent=<name>` build `cls(cfg, spec, device)`, with `rules` checked by common/config.py."""
    if name in AGENTS and AGENTS[name] is not cls:
        raise ValueError(f"agent {name!r} is already registered as {AGENTS[name].__name__}")
    AGENTS[name] = cls
    register_agent_rules(name, rules)


def make_agent(cfg, spec, device) -> Agent:
    if cfg.agent not in AGENTS:
        raise ValueError(f"agent={cfg.agent!r}: unknown agent; registered: {', '.join(AGENTS)}")
    return AGENTS[cfg.agent](cfg, spec, device)
