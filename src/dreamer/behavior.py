"""DreamerV3 behaviour learning in imagination: actor, critic with a slow EMA regulariser, lambda-returns
weighted by predicted continues, and return normalisation (EMA of the 5th-95th percentile range, floored at 1,
the framework's `RunningScale`). With `aux_rewards.enabled` the rewards of imagined transitions get the
auxiliary heads' dense shaping terms (src/heads/aux_task.py), computed without gradient."""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from common.init import variance_scaling_init, zero_
from common.layers import mlp
from common.math import TwoHot, gaussian_logprob, squash
from common.scale import RunningScale
from src.dreamer.rssm import gumbel_argmax
from src.heads.aux_task import aux_reward

MEAN_LIMIT = 5.0  # the Gaussian actor's pre-squash mean is soft-clipped to (-5, 5) (DreamerV3)
STD_SHIFT = 2.0  # std = min + (max - min) * sigmoid(raw + 2): a fresh actor starts near its largest std
BATCH_STD_FLOOR = 1e-8  # advantage_norm=batch: the smallest advantage std divided by


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """TD(lambda) returns of imagined states 0..H-1.

    reward (H, N, 1) and cont (H, N, 1) belong to states 1..H (received / continuing on arriving there),
    value (H+1, N, 1) to states 0..H. R_H = V_H and
    R_t = r_{t+1} + gamma * c_{t+1} * ((1 - lam) * V_{t+1} + lam * R_{t+1}). Returns (H, N, 1).
    """
    H = reward.shape[0]
    ret = value[-1]
    out = []
    for t in reversed(range(H)):
        ret = reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * ret)
        out.append(ret)
    return torch.stack(out[::-1])


class Actor(nn.Module):
    """Tanh-squashed Gaussian (`dist=tanh_normal`) or plain Gaussian whose samples the environment wrapper
    clips to [-1, 1] (`dist=normal_clip`, DreamerV1's option: envs/wrappers.py TorchEnv clips), for continuous
    actions; one-hot categorical with unimix for discrete ones."""

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, hidden: int, layers: int, act,
                 min_std: float, max_std: float, unimix: float, dist: str = "tanh_normal"):
        super().__init__()
        self.action_dim, self.discrete, self.squashed = action_dim, discrete, dist == "tanh_normal"
        self.min_std, self.max_std, self.unimix = min_std, max_std, unimix
        self.net = mlp(feat_dim, [hidden] * layers, action_dim if discrete else 2 * action_dim, hidden_act=act)

    def _params(self, feat):
        out = self.net(feat)
        if self.discrete:
            probs = F.softmax(out, -1)
            if self.unimix > 0:
                probs = (1 - self.unimix) * probs + self.unimix / self.action_dim
            return probs, None
        mean, std = out.chunk(2, -1)
        mean = MEAN_LIMIT * torch.tanh(mean / MEAN_LIMIT)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + STD_SHIFT) + self.min_std
        return mean, std

    def forward(self, feat, deterministic: bool = False):
        """(action, raw): a differentiable sample (straight-through one-hot, or reparameterised tanh-Gaussian)
        and what `log_prob` needs (the one-hot itself, or the pre-tanh sample), detached."""
        a, std = self._params(feat)
        if self.discrete:
            idx = a.argmax(-1) if deterministic else gumbel_argmax(a.log())
            onehot = F.one_hot(idx, self.action_dim).to(a.dtype)
            return onehot + a - a.detach(), onehot
        if deterministic:  # normal_clip returns the Gaussian's own values: the env wrapper clips them
            return (torch.tanh(a) if self.squashed else a), a.detach()
        raw = a + std * torch.randn_like(std)
        return (torch.tanh(raw) if self.squashed else raw), raw.detach()

    def log_prob_entropy(self, feat, raw):
        """log pi(raw | feat) and an entropy estimate, both (..., 1). For the tanh-Gaussian the entropy is
        -log pi of a fresh reparameterised sample (unbiased, with the right gradient)."""
        a, std = self._params(feat)
        if self.discrete:
            logp = a.log()
            return (raw * logp).sum(-1, keepdim=True), -(a * logp).sum(-1, keepdim=True)
        log_std = std.log()
        if not self.squashed:  # plain Gaussian: exact entropy
            return gaussian_logprob((raw - a) / std, log_std), (log_std + 0.5 * math.log(2 * math.pi * math.e)
                                                                ).sum(-1, keepdim=True)
        _, _, logp = squash(a, raw, gaussian_logprob((raw - a) / std, log_std))
        eps = torch.randn_like(std)
        _, _, logp_fresh = squash(a, a + std * eps, gaussian_logprob(eps, log_std))
        return logp, -logp_fresh

    def kl_uniform(self, feat, entropy):
        """KL(pi || uninformative prior), (..., 1), given `log_prob_entropy`'s entropy (DreamerV1 notes, seed 004).
        Discrete: the uniform categorical, log K - H. Tanh-Gaussian: the uniform on [-1, 1]^A, A log 2 - H (the
        entropy bonus up to a constant: the same gradient). Plain Gaussian: the uniform has no density off
        [-1, 1], so its moment-matched Normal N(0, 1/3) per dim, in closed form: unlike the entropy bonus this
        pulls means back inside the clipping range."""
        if self.discrete:
            return math.log(self.action_dim) - entropy
        if self.squashed:
            return self.action_dim * math.log(2.0) - entropy
        mean, std = self._params(feat)
        var_prior = 1.0 / 3.0  # variance of U(-1, 1)
        kl = 0.5 * math.log(var_prior) - std.log() + (std.pow(2) + mean.pow(2)) / (2 * var_prior) - 0.5
        return kl.sum(-1, keepdim=True)


class Critic(nn.Module):
    """Value of a feature: two-hot symlog over `num_bins` bins, or a scalar for MSE; zero-initialised output."""

    def __init__(self, feat_dim: int, hidden: int, layers: int, act, twohot: TwoHot | None):
        super().__init__()
        self.two_hot = twohot
        self.net = mlp(feat_dim, [hidden] * layers, twohot.num_bins if twohot is not None else 1, hidden_act=act)

    def forward(self, feat):
        """Raw output: logits (..., bins) or the value (..., 1)."""
        return self.net(feat)

    def value(self, feat):
        out = self.net(feat)
        return self.two_hot.decode(out) if self.two_hot is not None else out

    def loss(self, out, target):
        """Per-element loss (...,) of raw output `out` against scalar targets (..., 1)."""
        if self.two_hot is not None:
            return self.two_hot.ce(out, target).squeeze(-1)
        return (out - target).pow(2).squeeze(-1)


class Behavior(nn.Module):
    """Actor, critic, slow critic and return scale; `actor_loss` and `critic_loss` for one imagined batch."""

    def __init__(self, cfg, feat_dim: int, action_dim: int, discrete: bool, act, gamma: float):
        super().__init__()
        self.cfg, self.gamma, self.discrete = cfg, gamma, discrete
        twohot = TwoHot(cfg.num_bins, cfg.vmin, cfg.vmax) if cfg.critic_head == "twohot" else None
        self.actor = Actor(feat_dim, action_dim, discrete, cfg.hidden, cfg.layers, act, cfg.actor_min_std,
                           cfg.actor_max_std, cfg.actor_unimix, cfg.actor_dist)
        self.critic = Critic(feat_dim, cfg.hidden, cfg.layers, act, twohot)
        self.apply(variance_scaling_init)
        zero_(self.critic.net[-1].weight, self.critic.net[-1].bias)
        self.critic_slow = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = RunningScale(cfg.retnorm_rate)
        grad = cfg.actor_grad if cfg.actor_grad != "auto" else ("reinforce" if discrete else "dynamics")
        self.dyn_mix = {"reinforce": 0.0, "dynamics": 1.0, "both": float(cfg.actor_grad_mix)}[grad]
        self.aux_rewards = None  # aux_rewards.*: the shaping terms' scales and distance form, as plain values
        if OmegaConf.select(cfg, "aux_rewards.enabled", default=False):
            ar = cfg.aux_rewards
            self.aux_rewards = {"goal_scale": float(ar.goal_scale), "dist_scale": float(ar.dist_scale),
                                "shot_scale": float(ar.shot_scale), "dist_form": str(ar.dist_form),
                                "scored_state": str(ar.scored_state)}

    @property
    def needs_dynamics_grad(self) -> bool:
        return self.dyn_mix > 0

    def imagine(self, wm, start, horizon: int):
        """Imagined trajectory from `start` states (N,): features (H+1, N, F), raw actions (H, N, A)."""
        states, _, raw = wm.rssm.imagine(self.actor, start, horizon)
        return wm.rssm.feat(states), raw

    def actor_loss(self, wm, feat, raw, start_cont, episodic: bool, aux_decay: torch.Tensor | None = None):
        """Actor loss on an imagined trajectory. The caller freezes the world model and the critic (their
        parameters get no gradient); gradients reach the actor through log-probabilities (REINFORCE) and,
        with dynamics backprop, through the imagined features. With auxiliary rewards, `aux_decay` (0-d, in
        [0, 1]; None: 1) multiplies their scales. Returns (loss, targets for the critic, metrics)."""
        cfg = self.cfg
        reward = wm.reward(feat[1:])  # (H, N, 1)
        metrics = {}
        if self.aux_rewards is not None:  # dense shaping; no gradient, so the heads stay fixed features
            aux_decay = torch.ones((), device=feat.device) if aux_decay is None else aux_decay
            with torch.no_grad():
                bonus, terms = aux_reward(wm.aux_heads(feat), gamma=self.gamma, **self.aux_rewards)  # (H, N, 1)
                bonus = aux_decay * bonus
                metrics = {"imagination/aux_reward_mean": bonus.mean(), "imagination/aux_reward_std": bonus.std(),
                           "imagination/aux_reward_min": bonus.min(), "imagination/aux_reward_max": bonus.max(),
                           "imagination/base_reward_mean": reward.mean(), "imagination/aux_decay": aux_decay,
                           **{f"imagination/aux_{k}_reward_mean": aux_decay * v.mean() for k, v in terms.items()}}
            reward = reward + bonus
            metrics["imagination/total_reward_mean"] = reward.mean().detach()
        cont = wm.cont(feat[1:]) if episodic else torch.ones_like(reward)
        # critic_target=slow: bootstrap (and baseline) from the slow critic, DreamerV2's target network
        value = (self.critic_slow if cfg.critic_target == "slow" else self.critic).value(feat)  # (H+1, N, 1)
        returns = lambda_returns(reward, cont, value, self.gamma, cfg.return_lambda)  # (H, N, 1)
        with torch.no_grad():  # weight of state t: probability that it is reached alive
            weight = torch.cumprod(torch.cat([start_cont.unsqueeze(0), cont[:-1]], 0), 0)  # (H, N, 1)
            self.retnorm.update(returns)
        adv = (returns - value[:-1]).detach()
        if cfg.advantage_norm == "batch":  # standardised over the batch; its std also scales the returns
            scale = adv.std().clamp(min=BATCH_STD_FLOOR)
            adv = (adv - adv.mean()) / scale
        else:  # retnorm: DreamerV3's return scale (floored at 1); none: unscaled
            scale = self.retnorm.value if cfg.advantage_norm == "retnorm" else torch.ones_like(self.retnorm.value)
            adv = adv / scale
        logp, entropy = self.actor.log_prob_entropy(feat[:-1].detach(), raw)
        reg = entropy if cfg.actor_reg == "entropy" else -self.actor.kl_uniform(feat[:-1].detach(), entropy)
        objective = (1 - self.dyn_mix) * logp * adv + cfg.actor_entropy * reg
        if self.dyn_mix > 0:
            objective = objective + self.dyn_mix * returns / scale
        loss = -(weight * objective).mean()
        metrics.update({"actor_loss": loss.detach(), "actor_entropy": entropy.mean().detach(),
                        "imag_return": returns.mean().detach(), "return_scale": scale.detach().clone(),
                        "imag_reward": reward.mean().detach(), "imag_cont": cont.mean().detach(),
                        "imagination/advantage_abs_mean": adv.abs().mean()})
        return loss, (feat[:-1].detach(), returns.detach(), weight), metrics

    def critic_loss(self, feat, returns, weight):
        """Critic regression on lambda-returns plus the slow-critic regulariser, weighted by continues."""
        out = self.critic(feat)
        with torch.no_grad():
            slow = self.critic_slow.value(feat)
        loss = self.critic.loss(out, returns) + self.cfg.critic_slowreg * self.critic.loss(out, slow)
        loss = (weight.squeeze(-1) * loss).mean()
        with torch.no_grad():
            value = self.critic.two_hot.decode(out) if self.critic.two_hot is not None else out
        return loss, {"critic_loss": loss.detach(), "value": value.mean()}

    @torch.no_grad()
    def update_slow(self):
        for p, q in zip(self.critic.parameters(), self.critic_slow.parameters()):
            q.lerp_(p, self.cfg.critic_ema)
