"""Pure math helpers shared by the agents and the reports (no state, no config objects)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Distributional regression of a scalar onto `num_bins` equally spaced bins in symlog space.

    `encode` turns a scalar target (..., 1) into a two-hot distribution (..., num_bins), `decode` turns
    logits back into a scalar (symexp of the expected bin), `ce` is the soft cross-entropy between logits
    and the two-hot encoding of a scalar target. TD-MPC2 uses 101 bins on [-10, 10], DreamerV3 255 on [-20, 20].
    """

    def __init__(self, num_bins: int, vmin: float, vmax: float):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins={num_bins}: two-hot regression needs at least 2 bins")
        self.num_bins, self.vmin, self.vmax = num_bins, float(vmin), float(vmax)
        self.bin_size = (self.vmax - self.vmin) / (num_bins - 1)
        self.register_buffer("bins", torch.linspace(self.vmin, self.vmax, num_bins), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = symlog(x).clamp(self.vmin, self.vmax).squeeze(-1)  # (...)
        pos = (x - self.vmin) / self.bin_size
        lower = pos.floor().clamp(max=self.num_bins - 2)  # the top bin's weight goes to upper
        # a NaN target gets NaN weights in bin 0 (a NaN loss the non-finite guard reports), not an index error
        lower = lower.nan_to_num(0.0)
        upper_weight = (pos - lower).unsqueeze(-1)  # (..., 1)
        lower = lower.long().unsqueeze(-1)
        target = torch.zeros(*x.shape, self.num_bins, device=x.device, dtype=x.dtype)
        target = target.scatter(-1, lower, 1 - upper_weight)
        return target.scatter(-1, lower + 1, upper_weight)  # (..., num_bins)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits, dim=-1)
        return symexp((probs * self.bins).sum(-1, keepdim=True))  # (..., 1)

    def ce(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return soft_ce(logits, self.encode(x))


def soft_ce(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between logits and a target distribution over the last dim; returns (..., 1)."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1, keepdim=True)


def log_std(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Squash an unbounded network output into [low, high] smoothly."""
    return low + 0.5 * (high - low) * (torch.tanh(x) + 1)


def gaussian_logprob(eps: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Log-density of mean + eps * std under N(mean, std), summed over the last dim: (..., 1).
    With `mask` (0/1, broadcastable) only the dims where it is 1 count (a multi-task agent's padded action dims
    are not part of the task's action space)."""
    residual = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    if mask is not None:
        residual = residual * mask
    return residual.sum(-1, keepdim=True)


def squash(mean: torch.Tensor, action: torch.Tensor, log_prob: torch.Tensor, mask: torch.Tensor | None = None):
    """Apply tanh to a Gaussian sample and correct its log-probability for the change of variables
    (over the dims where `mask` is 1, when given)."""
    mean, action = torch.tanh(mean), torch.tanh(action)
    correction = torch.log(F.relu(1 - action.pow(2)) + 1e-6)
    if mask is not None:
        correction = correction * mask
    log_prob = log_prob - correction.sum(-1, keepdim=True)
    return mean, action, log_prob


def gumbel_softmax_sample(probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Index (shape (1,)) drawn from the categorical `probs` (N,) with the Gumbel-max trick (no sync)."""
    gumbels = -torch.empty_like(probs).exponential_().log()
    return ((probs.clamp_min(1e-20).log() + gumbels) / temperature).argmax(-1, keepdim=True)


def discount_from_episode_length(episode_length: int, denom: float = 5, low: float = 0.95,
                                 high: float = 0.995) -> float:
    """TD-MPC2's discount heuristic: gamma = clip((L/denom - 1) / (L/denom), low, high).

    With L the episode length in agent steps (after action repeat); e.g. L=500 gives 0.99,
    L=250 (hockey) gives 0.98, short episodes hit the lower bound 0.95.
    """
    frac = episode_length / denom
    return min(max((frac - 1) / frac, low), high)
