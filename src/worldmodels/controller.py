"""C: the policy and value MLPs on [z_t, h_t], and planning with M (held actions scored by predicted rewards)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.layers import mlp
from common.math import gaussian_logprob, log_std as squash_log_std

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # pre-tanh std range of the continuous policy
CANDIDATE_STD = 0.5  # spread of the continuous planning candidates around the policy mean (pre-tanh)


class Controller(nn.Module):
    """Policy: categorical logits (discrete) or a tanh-Gaussian (continuous); a separate value network."""

    def __init__(self, cfg, in_dim: int, action_dim: int, discrete: bool):
        super().__init__()
        self.discrete, self.action_dim = discrete, action_dim
        dims = list(cfg.controller_dims)
        self.policy = mlp(in_dim, dims, action_dim if discrete else 2 * action_dim, hidden_act=nn.ReLU)
        self.value_net = mlp(in_dim, dims, 1, hidden_act=nn.ReLU)

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        return self.value_net(feat).squeeze(-1)

    def _gaussian(self, feat):
        mean, raw_std = self.policy(feat).chunk(2, -1)
        return mean, squash_log_std(raw_std, LOG_STD_MIN, LOG_STD_MAX)

    def act(self, feat: torch.Tensor, eval_mode: bool):
        """(action (B, A): one-hot or in (-1, 1); pre-tanh mean (B, A) for continuous, probabilities for
        discrete)."""
        if self.discrete:
            probs = F.softmax(self.policy(feat), -1)
            index = probs.argmax(-1) if eval_mode else torch.multinomial(probs, 1).squeeze(-1)
            return F.one_hot(index, self.action_dim).float(), probs
        mean, log_std = self._gaussian(feat)
        pre = mean if eval_mode else mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(pre), mean

    def log_prob_entropy(self, feat: torch.Tensor, action: torch.Tensor, plan: torch.Tensor | None = None):
        """log-prob of `action` (B,) and the base policy's entropy (B,) (continuous: of the pre-tanh Gaussian,
        which has a closed form; the tanh-Gaussian's has none).

        Discrete: the log-prob under the behaviour mixture `(1 - plan.sum()) pi + plan`, `plan` (B, A) being the
        planning share (`agent._choose`; None: pi alone). With pi's log-prob instead, an action planning chose
        where pi gives it little mass would get a large score that the sampling never justified (off-policy)."""
        if self.discrete:
            log_probs = F.log_softmax(self.policy(feat), -1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            if plan is None:
                return (log_probs * action).sum(-1), entropy
            probs = (1 - plan.sum(-1, keepdim=True)) * log_probs.exp() + plan
            return torch.log((probs * action).sum(-1).clamp_min(1e-8)), entropy
        mean, log_std = self._gaussian(feat)
        a = action.clamp(-1 + 1e-6, 1 - 1e-6)
        pre = torch.atanh(a)
        log_prob = gaussian_logprob((pre - mean) / log_std.exp(), log_std).squeeze(-1)
        log_prob = log_prob - torch.log(1 - a.pow(2) + 1e-6).sum(-1)  # tanh change of variables
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return log_prob, entropy


def planned_returns(memory, controller, history, length, token, h, actions, horizon: int, gamma: float,
                    bootstrap: bool) -> torch.Tensor:
    """Score (B, S) of holding each candidate `actions` (B, S, A) for `horizon` steps from the current entry
    `token` (B, token_dim) with memory output `h` (B, H): the discounted predicted rewards, plus
    gamma^horizon * V at the end when `bootstrap`."""
    b, s = actions.shape[:2]
    # every candidate starts from its stream's state: (B, ...) -> (B * S, ...)
    history, length = history.repeat_interleave(s, 0), length.repeat_interleave(s, 0)
    token, h, a = token.repeat_interleave(s, 0), h.repeat_interleave(s, 0), actions.flatten(0, 1)
    score = torch.zeros(b * s, device=h.device)
    for t in range(horizon):
        z_next, reward = memory.predict(h, a)
        score = score + gamma ** t * reward
        history, length = memory.advance(history, length, token)
        token = torch.cat([z_next, a], -1)
        h = memory(history, length, token)
    if bootstrap:
        score = score + gamma ** horizon * controller.value(torch.cat([token[:, :-a.shape[-1]], h], -1))
    return score.view(b, s)
