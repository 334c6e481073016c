"""Auxiliary value heads at several discounts: training-only targets that shape the world model's latent.

They read the Q ensemble's last hidden layer of each rollout latent and action (WorldModel.Q_features) and
are trained with the world-model loss; the planner and the policy never read them. Only the auxiliary discounts
get a head; the primary value stays the Q ensemble.
"""
import warnings

import torch
import torch.nn as nn
from omegaconf import ListConfig

from common.config import Rules, agent_rules, agents_with, primary_discount
from common.init import zero_

MAX_DISCOUNTS = 6  # the primary and up to 5 auxiliary discounts


class MultiGammaHead(nn.Module):
    """`joint`: one Linear latent -> num_aux * num_bins logits; `separate`: one Linear per discount.

    forward(z (..., latent)) -> logits (num_aux, ..., num_bins).
    """

    def __init__(self, latent_dim: int, num_aux: int, num_bins: int, head: str):
        super().__init__()
        self.num_aux, self.num_bins, self.kind = num_aux, num_bins, head
        if head == "joint":
            self.joint = nn.Linear(latent_dim, num_aux * num_bins)
            zero_(self.joint.weight, self.joint.bias)
        else:
            self.separate = nn.ModuleList(nn.Linear(latent_dim, num_bins) for _ in range(num_aux))
            for layer in self.separate:
                zero_(layer.weight, layer.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "joint":
            logits = self.joint(z).unflatten(-1, (self.num_aux, self.num_bins))  # (..., num_aux, num_bins)
            return logits.movedim(-2, 0)  # (num_aux, ..., num_bins)
        return torch.stack([layer(z) for layer in self.separate])  # (num_aux, ..., num_bins)


# ------------------------------------------------------------------ config rules (common/config.py)
def config_rules(r: Rules):
    """multi_gamma.*: the auxiliary discounts and their heads (agents that declare `multi_gamma` heads)."""
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
    agent = agent_rules(r.cfg)
    r.check(agent is not None and "multi_gamma" in agent.heads, "multi_gamma.enabled",
            f"multi-discount heads exist for agent={agents_with(lambda a: 'multi_gamma' in a.heads)} only")
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


def env_rules(r: Rules, spec):
    """A numeric first discount must be the task's primary one."""
    mg = r.cfg.multi_gamma
    if mg.enabled and len(mg.gammas) > 1 and isinstance(mg.gammas[0], float):
        primary = primary_discount(r.cfg, spec)
        r.check(abs(mg.gammas[0] - primary) <= 1e-6, "multi_gamma.gammas[0]",
                f"must equal the primary discount {primary:.6f} of task {spec.task} (within 1e-6); "
                "write 'primary' to use it", mg.gammas[0])
    if mg.enabled and any(abs(float(g) - primary_discount(r.cfg, spec)) <= 1e-6 for g in mg.gammas[1:]):
        # allowed (ablation A3 lists 0.99, the primary of DeepMind Control tasks): that head learns the Q target
        warnings.warn(f"multi_gamma.gammas={list(mg.gammas)}: an auxiliary discount equals the primary discount "
                      f"{primary_discount(r.cfg, spec)} of {spec.task}")
