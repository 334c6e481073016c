"""Auxiliary task heads (`aux_heads.*`) and the dense rewards they give in imagination (`aux_rewards.*`).

The heads read a world model's state feature and predict, for the state of each stored step, the targets a
task stores in replay under `AUX_TARGET_KEYS` (hockey: `envs/hockey/aux_targets.py` computes them):
P(the learner scores within the next K steps), the puck's distance to the opponent's goal mouth, and the
shot quality in [0, 1]. They are trained with the world-model loss on real data only:

* Dreamer: the posterior feature cat(h_t, z_t) of step t (it has seen obs_t), per step of the replayed
  sequence, added to the per-step world-model loss before its mean.
* TD-MPC2: the latent z_t of the model's own rollout (z_0 encoded from obs_0, then the dynamics under the
  replayed actions), steps 0..horizon-1, rho**t weighted like the reward loss.

Dreamer's behaviour learning reads them again, without gradient, on imagined features (`aux_reward`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from common.config import Rules, agent_rules, agents_with, is_int
from common.layers import mlp

# per-step targets the heads predict, stored in replay beside each observation by a task that provides them
AUX_TARGET_KEYS = ("aux_goal", "aux_puck_goal_dist", "aux_shot_quality")
DIST_FORMS = ("inverse", "pbrs")


def aux_heads_enabled(cfg) -> bool:
    """`aux_heads.enabled` (False for configs saved before the key existed, e.g. old opponent checkpoints)."""
    return bool(OmegaConf.select(cfg, "aux_heads.enabled", default=False))


def replayed_targets(batch) -> dict[str, torch.Tensor]:
    """The auxiliary targets stored with a replayed batch's steps, {key: (..., 1)}; a clear error when the
    steps have none (a buffer or dataset written without aux_heads.enabled)."""
    missing = [k for k in AUX_TARGET_KEYS if k not in batch.keys()]
    if missing:
        raise KeyError(f"aux_heads.enabled=True but the replayed steps lack the auxiliary targets {missing}: "
                       "online runs on a task that provides them (hockey) store them when aux_heads.enabled=true")
    return {k: batch[k] for k in AUX_TARGET_KEYS}


class AuxTaskHeads(nn.Module):
    """Three heads on one shared MLP trunk: feature (..., in_dim) -> {goal_logit, goal_prob, puck_goal_dist,
    shot_quality}, each (..., 1). The distance is a linear output in table units; the shot quality is a
    sigmoid, so it stays in [0, 1]."""

    def __init__(self, in_dim: int, hidden_dims: list[int], act: type[nn.Module], weights):
        super().__init__()
        self.net = mlp(in_dim, hidden_dims, 3, hidden_act=act)  # outputs: goal logit, distance, shot logit
        self.weights = {k: float(weights[k]) for k in ("goal", "dist", "shot")}

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        goal_logit, dist, shot_logit = self.net(feat).split(1, -1)  # each (..., 1)
        return {"goal_logit": goal_logit, "goal_prob": torch.sigmoid(goal_logit), "puck_goal_dist": dist,
                "shot_quality": torch.sigmoid(shot_logit)}

    def loss(self, feat: torch.Tensor, targets: dict[str, torch.Tensor]):
        """Weighted per-element loss (...) against the stored targets (each (..., 1)): BCE on the goal,
        MSE on the distance and on the shot quality; plus detached metrics on this (real) data."""
        goal, dist, shot = (targets[k].float() for k in AUX_TARGET_KEYS)
        pred = self(feat)
        goal_loss = F.binary_cross_entropy_with_logits(pred["goal_logit"], goal, reduction="none")
        dist_loss = (pred["puck_goal_dist"] - dist).pow(2)
        shot_loss = (pred["shot_quality"] - shot).pow(2)
        w = self.weights
        loss = (w["goal"] * goal_loss + w["dist"] * dist_loss + w["shot"] * shot_loss).squeeze(-1)
        with torch.no_grad():
            metrics = {"aux/goal_loss": goal_loss.mean(), "aux/dist_loss": dist_loss.mean(),
                       "aux/shot_loss": shot_loss.mean(),
                       "aux/goal_accuracy": ((pred["goal_logit"] > 0).float() == goal).float().mean(),
                       "aux/goal_rate": goal.mean(),  # share of positive targets: the accuracy's baseline
                       "aux/puck_goal_dist_error": (pred["puck_goal_dist"] - dist).abs().mean(),
                       "aux/shot_quality_error": (pred["shot_quality"] - shot).abs().mean()}
        return loss, metrics


def closeness(dist: torch.Tensor) -> torch.Tensor:
    """The seed's centred inverse distance 1 / (max(d, 0.1) + 0.5) - 0.5: 0 at d = 1.5, 1.17 at d <= 0.1,
    about -0.28 with the puck on the centre spot (d = 4.08), -0.39 at the far end (d = 8.5)."""
    return 1.0 / (dist.clamp(min=0.1) + 0.5) - 0.5


def aux_reward(pred: dict[str, torch.Tensor], goal_scale: float, dist_scale: float, shot_scale: float,
               dist_form: str, gamma: float, scored_state: str = "next"
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Dense reward of imagined transitions from the heads' predictions on states 0..H (each (H+1, N, 1)):
    for the transition from state t into state t+1, with s = t+1 (`scored_state=next`, the state the reward
    head scores) or s = t (`current`, the seed's `states[:-1]`),
        goal_scale * P(goal)_s + dist_scale * f_s + shot_scale * quality_s,
    with f = closeness(d_s) (`inverse`) or the potential-based gamma * phi(s_{t+1}) - phi(s_t) with
    phi = closeness (`pbrs`, a term of the transition, whatever `scored_state`). Returns (reward (H, N, 1),
    its three terms)."""
    scored = slice(1, None) if scored_state == "next" else slice(None, -1)  # H of the H+1 states
    phi = closeness(pred["puck_goal_dist"])  # (H+1, N, 1)
    dist_term = phi[scored] if dist_form == "inverse" else gamma * phi[1:] - phi[:-1]
    terms = {"goal": goal_scale * pred["goal_prob"][scored], "dist": dist_scale * dist_term,
             "shot": shot_scale * pred["shot_quality"][scored]}
    return terms["goal"] + terms["dist"] + terms["shot"], terms


# ------------------------------------------------------------------ config rules (common/config.py)
def config_rules(r: Rules):
    """aux_heads.* (any agent; envs/rules.py checks that the task provides targets) and aux_rewards.* (agents
    that declare them)."""
    cfg = r.cfg
    heads, rewards = cfg.aux_heads, cfg.aux_rewards
    r.check(isinstance(heads.enabled, bool), "aux_heads.enabled", "must be true or false")
    r.positive_int("aux_heads.goal_horizon")
    r.check(isinstance(heads.weights, DictConfig) and set(heads.weights) == {"goal", "dist", "shot"},
            "aux_heads.weights", "must have exactly the keys goal, dist, shot")
    for key in ("goal", "dist", "shot"):
        if key in heads.weights:
            r.number(f"aux_heads.weights.{key}", 0)
    r.check(isinstance(rewards.enabled, bool), "aux_rewards.enabled", "must be true or false")
    for key in ("goal_scale", "dist_scale", "shot_scale"):
        r.number(f"aux_rewards.{key}", 0)
    r.choice("aux_rewards.dist_form", ("inverse", "pbrs"))
    r.choice("aux_rewards.scored_state", ("next", "current"))
    r.check(rewards.scored_state != "current" or rewards.dist_form != "pbrs", "aux_rewards.scored_state",
            "current needs dist_form=inverse (pbrs scores the transition: gamma * phi(s') - phi(s))")
    r.check(is_int(rewards.decay_steps), "aux_rewards.decay_steps",
            "must be a non-negative integer (updates; 0 = no decay)")
    if rewards.enabled is not True:
        return
    r.check(heads.enabled is True, "aux_rewards.enabled", "needs aux_heads.enabled=true (the rewards come from "
                                                          "the auxiliary heads)")
    agent = agent_rules(cfg)
    r.check(agent is not None and "aux_rewards" in agent.heads, "aux_rewards.enabled",
            "auxiliary rewards shape Dreamer's imagined returns; "
            f"agent={cfg.agent} has none (use aux_heads alone; agents with them: "
            f"{agents_with(lambda a: 'aux_rewards' in a.heads)})")
