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
    _step(optimiser)
    return norm


@torch.compiler.disable
def _step(optimiser: torch.optim.Optimizer) -> None:
    """The parameter update, eager also inside a compiled update: dynamo's optimizer tracing asserts on CUDA
    once a cudagraph tree exists (TD-MPC2's planner compiles with mode="reduce-overhead"; torch 2.11-2.13:
    "CUDA graph manager has no current node"), and an eager foreach Adam is a few kernels per parameter group."""
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
