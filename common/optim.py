"""The one optimiser step every agent's update uses."""
import torch


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float) -> torch.Tensor:
    """Backward `loss`, clip the gradients of `params` to norm `max_norm`, step, and clear the gradients (no
    gradient outlives its step). Returns the gradient norm before clipping."""
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return norm
