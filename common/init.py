"""Weight initialisation used by the world models."""
import torch
import torch.nn as nn


def weight_init(module: nn.Module) -> None:
    """Truncated-normal weights and zero biases for linear layers, small uniform rows for embeddings
    (TD-MPC2's init)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.uniform_(module.weight, -0.02, 0.02)


@torch.no_grad()
def zero_(*params: torch.Tensor) -> None:
    """Zero output layers so reward/value predictions start at exactly 0."""
    for p in params:
        p.zero_()
