"""Running scale of a quantity, used to normalise Q-values in the policy loss."""
import torch
import torch.nn as nn


class RunningScale(nn.Module):
    """EMA (rate `tau`) of the 5th-95th percentile range of the inputs, floored at 1.

    Kept as a buffer so it is part of the agent's state_dict and checkpoints.
    """

    def __init__(self, tau: float):
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("percentiles", torch.tensor([0.05, 0.95]), persistent=False)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        low, high = torch.quantile(x.detach().flatten().float(), self.percentiles)
        self.value.lerp_((high - low).clamp(min=1.0), self.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value
