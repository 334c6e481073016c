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
    """Value heads at the auxiliary `discounts`, with their own training objective (`loss`).

    `joint`: one Linear in_dim -> num_aux * num_bins logits; `separate`: one Linear per discount.
    forward(feats (..., in_dim)) -> logits (num_aux, ..., num_bins).
    """

    def __init__(self, in_dim: int, discounts: list[float], num_bins: int, head: str, loss_weight: float):
        super().__init__()
        self.num_aux, self.num_bins, self.kind = len(discounts), num_bins, head
        self.gammas, self.loss_weight = [float(g) for g in discounts], loss_weight
        # not persistent: the discounts are config (checked against the checkpoint's list when it loads)
        self.register_buffer("discounts", torch.tensor(self.gammas).view(-1, 1, 1, 1), persistent=False)  # (m,1,1,1)
        if head == "joint":
            self.joint = nn.Linear(in_dim, self.num_aux * num_bins)
            zero_(self.joint.weight, self.joint.bias)
        else:
            self.separate = nn.ModuleList(nn.Linear(in_dim, num_bins) for _ in range(self.num_aux))
            for layer in self.separate:
                zero_(layer.weight, layer.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.kind == "joint":
            logits = self.joint(feats).unflatten(-1, (self.num_aux, self.num_bins))  # (..., num_aux, num_bins)
            return logits.movedim(-2, 0)  # (num_aux, ..., num_bins)
        return torch.stack([layer(feats) for layer in self.separate])  # (num_aux, ..., num_bins)

    def terms(self, feats, reward, terminated, bootstrap, two_hot):
        """One-step TD targets r + gamma_i (1 - term) V(s') for each auxiliary discount, with the primary
        bootstrap V (no gradient): targets (m, T, B, 1), the heads' logits (m, T, B, num_bins) on `feats`
        (T, B, in_dim), their two-hot cross-entropy (m, T, B, 1). reward, terminated, bootstrap: (T, B, 1)."""
        targets = reward + self.discounts * (1 - terminated) * bootstrap
        logits = self(feats)
        return targets, logits, two_hot.ce(logits, targets)

    def loss(self, feats, reward, terminated, bootstrap, two_hot, rho):
        """(loss_weight times the sum over discounts of each head's cross-entropy, weighted by `rho` (T,) over
        the rollout steps and averaged over them; detached metrics per discount)."""
        _, logits, ce = self.terms(feats, reward, terminated, bootstrap, two_hot)
        per_discount = (ce.mean((2, 3)) * rho).sum(1) / rho.shape[0]  # (m,)
        with torch.no_grad():
            decoded = two_hot.decode(logits)  # (m, T, B, 1)
        metrics = {"aux_value_ce/mean": per_discount.mean()}
        for i, gamma in enumerate(self.gammas):
            metrics[f"aux_value_ce/g{gamma:g}"] = per_discount[i]
            metrics[f"aux_value_pred_mean/g{gamma:g}"] = decoded[i].mean()
            metrics[f"aux_value_pred_std/g{gamma:g}"] = decoded[i].std()
        return self.loss_weight * per_discount.sum(), metrics


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
