"""TD-MPC2's implicit world model, with a verb API: encode, next, reward, termination, pi, Q."""
import copy

import torch
import torch.nn as nn

from common import math
from common.init import weight_init, zero_
from common.layers import EnsembleMLP, Mish, SimNorm, conv_encoder, mlp
from src.heads.aux_task import AuxTaskHeads, aux_heads_enabled
from src.heads.multi_gamma import MultiGammaHead


class WorldModel(nn.Module):
    """Encoder, latent dynamics, reward/termination heads, policy prior and a Q ensemble (with a
    Polyak-averaged target copy). Latents are SimNorm-ed; reward and Q are two-hot distributions.

    `discounts` = [primary, auxiliary...]: auxiliary value heads are built only when there is more than one.
    `aux_heads` (aux_heads.enabled): goal / puck-distance / shot-quality heads on the latent (src/heads/aux_task.py).

    Several tasks (`spec.multitask`): a learnable embedding per task (`task_dim`, rows kept within norm 1) is
    appended to the input of every network (encoder, dynamics, reward, termination, policy prior, Q), and every
    verb takes the task ids `task` ((B,) or a 0-d tensor). Actions are padded to the largest task's dims; the
    policy prior's mean, noise and log-probability are masked to the task's own dims (`action_masks`), so its
    padded dims are exactly 0. With one task there is no embedding and `task` is ignored.
    """

    def __init__(self, cfg, spec, discounts: list[float]):
        super().__init__()
        latent, action_dim, mlp_dim = cfg.latent_dim, spec.action_dim, cfg.mlp_dim
        task_dim = cfg.task_dim if spec.multitask else 0
        self.task_emb = None
        if spec.multitask:
            self.task_emb = nn.Embedding(len(spec.tasks), task_dim, max_norm=1)
            dims = torch.tensor(spec.action_dims).unsqueeze(1)  # (num_tasks, 1)
            self.register_buffer("action_masks", (torch.arange(action_dim) < dims).float())  # (num_tasks, A)
        if len(spec.obs_shape) == 3:
            self.encoder = conv_encoder(spec.obs_shape, cfg.num_channels, latent, SimNorm(cfg.simnorm_dim))
        else:
            self.encoder = mlp(spec.obs_shape[0] + task_dim, max(cfg.num_enc_layers - 1, 1) * [cfg.enc_dim], latent,
                               out_act=SimNorm(cfg.simnorm_dim))
        z_dim = latent + task_dim  # what the heads read: the latent and, with several tasks, the task embedding
        self.dynamics = mlp(z_dim + action_dim, 2 * [mlp_dim], latent, out_act=SimNorm(cfg.simnorm_dim))
        self.reward_head = mlp(z_dim + action_dim, 2 * [mlp_dim], cfg.num_bins)
        self.termination_head = mlp(z_dim, 2 * [mlp_dim], 1) if spec.episodic else None
        self.policy_prior = mlp(z_dim, 2 * [mlp_dim], 2 * action_dim)
        self.q_ensemble = EnsembleMLP(cfg.num_q, z_dim + action_dim, 2 * [mlp_dim], cfg.num_bins, cfg.dropout)
        self.multi_gamma_head = None
        if len(discounts) > 1:
            # it reads the Q ensemble's last hidden layer (Q_features), as wide as mlp_dim
            self.multi_gamma_head = MultiGammaHead(mlp_dim, discounts[1:], cfg.num_bins, cfg.multi_gamma.head,
                                                   cfg.multi_gamma.loss_weight)
        self.aux_heads = None  # auxiliary task heads (aux_heads.*) on the latent, trained with the model loss
        if aux_heads_enabled(cfg):
            self.aux_heads = AuxTaskHeads(latent, [mlp_dim], Mish, cfg.aux_heads.weights)
        self.apply(weight_init)
        zero_(self.reward_head[-1].weight, self.q_ensemble.out.weight)
        self.target_q = copy.deepcopy(self.q_ensemble).requires_grad_(False)
        self.two_hot = math.TwoHot(cfg.num_bins, cfg.vmin, cfg.vmax)
        self.num_q = cfg.num_q
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def train(self, mode: bool = True):
        super().train(mode)
        self.target_q.train(False)  # the target never uses dropout
        return self

    def with_task(self, x: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """x (..., d) -> (..., d + task_dim) with each sample's task embedding appended; x itself with one task.
        `task` is (B,) for x (..., B, d) or 0-d for one task shared by all rows."""
        if self.task_emb is None:
            return x
        if task is None:
            raise ValueError("this world model has several tasks: pass the task ids (task=...)")
        emb = self.task_emb(task)  # (B, task_dim) or (task_dim,)
        return torch.cat([x, emb.expand(*x.shape[:-1], -1)], -1)

    def action_mask(self, task: torch.Tensor | None) -> torch.Tensor | None:
        """1 on the task's own action dims, 0 on the padded ones: (B, A) or (A,); None with one task."""
        return None if self.task_emb is None else self.action_masks[task]

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        if obs.dim() == 5:  # pixels (T, B, C, H, W): the conv encoder takes (N, C, H, W)
            return self.encoder(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])
        return self.encoder(self.with_task(obs, task))

    def next(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.dynamics(torch.cat([self.with_task(z, task), action], -1))

    def reward(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Reward logits (..., num_bins)."""
        return self.reward_head(torch.cat([self.with_task(z, task), action], -1))

    def termination(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Termination logits (..., 1)."""
        return self.termination_head(self.with_task(z, task))

    def pi(self, z: torch.Tensor, task: torch.Tensor | None = None):
        """Sample from the tanh-squashed Gaussian policy prior: (action, info with mean, log_std and the three
        entropy estimates the policy loss can use, `entropy=...`):

        - `entropy` (squashed): minus the tanh-corrected log-probability of the action;
        - `scaled_entropy` (scaled, the official code today): minus the pre-tanh Gaussian log-probability times the
          action dim d;
        - `scaled_tanh_entropy` (scaled_tanh, the code released with the paper): the scaled one plus the tanh
          correction, unscaled.

        With several tasks the mean and the noise are zero on the task's padded action dims (so are the sampled
        action and the mean there), the log-probabilities sum over the task's own dims only and d is the task's own
        action dim. (The official code sums over the padded dims too, which adds a constant per task: same
        gradients.)"""
        mean, log_std = self.policy_prior(self.with_task(z, task)).chunk(2, dim=-1)
        log_std = math.log_std(log_std, self.log_std_min, self.log_std_max)
        eps = torch.randn_like(mean)
        mask = self.action_mask(task)
        if mask is not None:
            mean, eps = mean * mask, eps * mask
        log_prob = math.gaussian_logprob(eps, log_std, mask)
        dims = mean.shape[-1] if mask is None else mask.sum(-1, keepdim=True)  # d: int, or (B, 1) / (1,)
        mean, action, squashed = math.squash(mean, mean + eps * log_std.exp(), log_prob, mask)
        scaled_entropy = -dims * log_prob
        return action, {"mean": mean, "log_std": log_std, "entropy": -squashed, "scaled_entropy": scaled_entropy,
                        "scaled_tanh_entropy": scaled_entropy + log_prob - squashed}

    def Q(self, z: torch.Tensor, action: torch.Tensor, return_type: str = "all", target: bool = False,
          detach: bool = False, task: torch.Tensor | None = None) -> torch.Tensor:
        """'all': logits (num_q, ..., num_bins); 'min'/'avg': value (..., 1) of two random members.

        `detach` evaluates the online ensemble with gradient-free weights (policy loss: gradients reach
        the action, not the Q-networks); `target` uses the Polyak-averaged copy.
        """
        za = torch.cat([self.with_task(z, task), action], -1)
        net = self.target_q if target else self.q_ensemble
        if return_type == "all":
            return net(za, detach=detach)
        # two distinct random members (not randperm(...)[:2]: Inductor's randperm-index pattern fails on it); with
        # two in all, min and mean do not depend on their order: the whole ensemble, without copying its weights
        members = torch.rand(self.num_q, device=z.device).topk(2).indices if self.num_q > 2 else None
        values = self.two_hot.decode(net(za, members=members, detach=detach))  # (2, ..., 1)
        return values.min(0).values if return_type == "min" else values.mean(0)

    def Q_features(self, z: torch.Tensor, action: torch.Tensor, detach: bool = False,
                   task: torch.Tensor | None = None) -> torch.Tensor:
        """The online Q ensemble's last hidden layer for (z, action), averaged over members: (..., mlp_dim), what
        the multi-discount heads read. `detach`: gradient-free ensemble weights (the gradient still reaches z)."""
        return self.Q_with_features(z, action, detach, task)[1]

    def Q_with_features(self, z: torch.Tensor, action: torch.Tensor, detach: bool = False,
                        task: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Q(..., return_type='all') logits (num_q, ..., num_bins) and `Q_features` from one ensemble forward."""
        za = torch.cat([self.with_task(z, task), action], -1)
        h = self.q_ensemble.features(za, detach=detach)  # (num_q, N, mlp_dim), N = prod(leading dims)
        logits = self.q_ensemble.out(h, None, detach)  # (num_q, N, num_bins)
        return (logits.reshape(h.shape[0], *za.shape[:-1], logits.shape[-1]),
                h.mean(0).reshape(*za.shape[:-1], h.shape[-1]))

    @torch.no_grad()
    def update_target_q(self, tau: float) -> None:
        torch._foreach_lerp_(list(self.target_q.parameters()), list(self.q_ensemble.parameters()), tau)
