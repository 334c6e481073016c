"""The one optimiser step every agent's update uses."""
from typing import Callable

import torch


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float,
                   before_clip: Callable[[], None] | None = None) -> torch.Tensor:
    """Backward `loss`, clip the gradients of `params` to norm `max_norm`, step, and clear the gradients (no
    gradient outlives its step). Returns the gradient norm before clipping. `before_clip` runs between the
    backward pass and the clipping, e.g. to log each part's own gradient norm."""
    loss.backward()
    if before_clip is not None:
        before_clip()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return norm
