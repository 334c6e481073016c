"""Weight initialisation used by the world models."""
import math

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


def variance_scaling_init(module: nn.Module) -> None:
    """DreamerV3's init for linear and conv layers: truncated normal (at 2 std) with variance 1 / fan_avg,
    fan_avg = (fan_in + fan_out) / 2, zero biases. Unlike TD-MPC2's std 0.02, output layers start at unit
    scale, so a fresh actor is a state-dependent random policy rather than state-independent noise (which
    never finds the sparse reward of pendulum-swingup)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(module.weight)
        std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978  # 0.8796: std of N(0,1) cut at +-2
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@torch.no_grad()
def zero_(*params: torch.Tensor) -> None:
    """Zero output layers so reward/value predictions start at exactly 0."""
    for p in params:
        p.zero_()
