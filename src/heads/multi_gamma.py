"""Auxiliary value heads at several discounts: training-only targets that shape the world model's latent.

They read the Q ensemble's last hidden layer of each rollout latent and action (WorldModel.Q_features) and
are trained with the world-model loss; the planner and the policy never read them. Only the auxiliary discounts
get a head; the primary value stays the Q ensemble.
"""
import torch
import torch.nn as nn

from common.init import zero_


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
