"""Compute precision of the agents (`precision=fp32|bf16|auto|bf16_emulated`).

bf16 here means: every matrix product (linear layers, batched ensemble products, convolutions, the GRU's two
products) takes bf16 inputs and weights and accumulates in fp32, as the hardware does; its result is returned
in fp32, and *everything else* runs in fp32. That one rule decides the op-by-op question:
- LayerNorm statistics, SimNorm's softmax, two-hot encode/decode and its log-softmax cross-entropy, symlog/
  symexp, tanh squashing and Gaussian log-probabilities, KL terms and the categorical latents' softmax, the
  running scales (TD-MPC2's Q percentiles, Dreamer's return percentiles) and the MPPI scores, temperature softmax
  and refit are all fp32. Each is either a reduction whose sum loses bits in bf16's 8-bit mantissa (norms,
  softmaxes, percentiles), an exp/log of a value that bf16 rounds by up to 0.4% before the exp amplifies it
  (log-probabilities, two-hot decoding over 101-255 bins whose expected value must resolve a bin width), or a
  weight that multiplies actions (MPPI scores). None of them is a matrix product, so fp32 costs little there.
- Master weights, gradients and optimiser states stay fp32 (the bf16 copies are casts made inside the
  context), so checkpoints never depend on the precision: a bf16 run resumes or evaluates in fp32 and back.

`bf16` is fast only where the hardware has bf16 dot products (CPUs with AVX512-BF16 or AMX, CUDA compute
capability 8.0+): elsewhere torch falls back to a scalar kernel that is far *slower* than fp32 (measured on an
AVX2-only EPYC: 0.9 GFLOP/s against 62 in fp32). `auto` picks bf16 only where it is fast. `bf16_emulated`
reproduces bf16's numerics with fp32 kernels (inputs, weights and results rounded to bf16, fp32 accumulation:
the same values up to the order of the accumulation) so that a machine without fast bf16 can check that bf16
learns as well as fp32; it is slower than fp32, never a speed option.
"""
import contextlib
import functools
import warnings

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

PRECISIONS = ("fp32", "bf16", "auto", "bf16_emulated")


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` has hardware bf16 matrix products."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve(precision: str, device: torch.device) -> str:
    """The precision a run uses: `auto` -> bf16 where it is fast, else fp32; an explicit bf16 on hardware
    without fast bf16 runs, with a warning."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16" and not fast_bf16(device):
        warnings.warn(f"precision=bf16 on {device} without hardware bf16 (no AVX512-BF16/AMX, or CUDA capability "
                      "< 8.0): matrix products fall back to a slow kernel, far slower than fp32. precision=auto "
                      "picks fp32 here; precision=bf16_emulated checks bf16 numerics at fp32 speed.", stacklevel=2)
    return precision


def describe(precision: str, device: torch.device) -> str:
    """The start-up line's account of the choice, e.g. 'precision auto -> fp32 (no hardware bf16 on cpu)'."""
    if precision != "auto":
        return f"precision {precision}"
    has = fast_bf16(device)
    return f"precision auto -> {'bf16' if has else 'fp32'} ({'' if has else 'no '}hardware bf16 on {device.type})"


def _round(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).float()


class _Bf16Products(TorchFunctionMode):
    """Runs matrix products on bf16 copies of their float operands and returns fp32 results (the module
    docstring says why). `emulate`: round the operands to bf16 but multiply in fp32.

    Casts of parameters are cached for the lifetime of the context, keyed by the parameter, its version
    counter (an optimiser step changes it) and whether autograd records (a cast made under no_grad must not be
    reused where gradients are needed), so a weight used at every planning iteration is cast once."""

    def __init__(self, emulate: bool):
        super().__init__()
        self.cast = _round if emulate else (lambda x: x.to(torch.bfloat16))
        self.cache = {}

    def _operand(self, x):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        if isinstance(x, torch.nn.Parameter):
            key = (id(x), x._version, torch.is_grad_enabled())
            if key not in self.cache:
                self.cache[key] = (x, self.cast(x))  # the parameter itself keeps id(x) from being reused
            return self.cache[key][1]
        return self.cast(x)

    def _product(self, func, args, kwargs):
        out = func(*[self._operand(a) for a in args], **{k: self._operand(v) for k, v in kwargs.items()})
        return _round(out) if self.cast is _round else out.float()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _PRODUCTS:
            return self._product(func, args, kwargs)
        if func is torch.gru_cell:  # its gates are elementwise: only the two products go to bf16
            x, h, w_ih, w_hh, b_ih, b_hh = args
            gi = self._product(F.linear, (x, w_ih, b_ih), {}).chunk(3, -1)  # (B, 3 * deter) -> r, z, n parts
            gh = self._product(F.linear, (h, w_hh, b_hh), {}).chunk(3, -1)
            reset, update = torch.sigmoid(gi[0] + gh[0]), torch.sigmoid(gi[1] + gh[1])
            candidate = torch.tanh(gi[2] + reset * gh[2])
            return candidate + update * (h - candidate)  # (1 - u) * n + u * h
        return func(*args, **kwargs)


_PRODUCTS = {F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm,
             torch.baddbmm, torch.addmm, F.conv2d, F.conv_transpose2d}


def compute_context(precision: str):
    """A fresh context manager for one act/update call in the resolved `precision`."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return _Bf16Products(emulate=precision == "bf16_emulated")


def in_precision(method):
    """Decorator for an agent's act/update: runs it in `compute_context(self.precision)`."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with compute_context(self.precision):
            return method(self, *args, **kwargs)
    return wrapper
