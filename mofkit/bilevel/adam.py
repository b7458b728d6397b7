"""The frame optimiser's arithmetic: Adam per row, float16 stochastic rounding, the lr schedule.

Pure functions of arrays, no files. :func:`adam_rows_` is ``torch.optim.Adam``'s single-tensor
update in its operation order, with a step count per row (rows of the compressed-frame bank are
updated at different times in per-batch mode, and Adam's bias correction depends on how many
updates a row has had); it matches torch bit for bit. :func:`stochastic_round_fp16` writes float32
results into a float16 bank without freezing small updates.

The Adam moments are float32 even in a float16 bank: hypergradients of pixels are tiny (1e-6 and
below), so their squares (1e-12) fall under float16's smallest subnormal (6e-8) and would be stored
as zero, which turns Adam's normalised step ``m / (sqrt(v) + eps)`` (about 1) into ``m / eps``
(about 100 for a gradient of 1e-6 and eps = 1e-8).
The step count is kept per video because in per-batch mode rows are updated at different times,
and Adam's bias correction depends on how many updates that row has had.

Float16 frames are written back from Adam with stochastic rounding: the float16 spacing near 2.0
is 2e-3, larger than a step of the reference learning rate (8e-4, halved every 30 epochs), so
round-to-nearest would freeze most pixels. Stochastic rounding keeps every update in expectation.
It is seeded by (bank seed, row, that row's Adam step), so a resumed run reproduces it bit for bit.

Adam's step ``m / (sqrt(v) + eps)`` is about 1 (so a pixel moves by about the learning rate) only
while the gradient is far above ``eps``. Hypergradients scale with the inner step ``alpha``: at the
paper profile's ``alpha = 1e-7`` a pixel's is about 1e-10, a hundredth of torch's ``eps = 1e-8``, and
frames then move by about 1 % of the learning rate. ``eps_scale="row"`` (``MOFConfig.frame_eps_scale``)
multiplies ``eps`` by each row's gradient scale, the root mean square of its bias-corrected second
moment, which makes the update independent of the hypergradient's absolute scale: multiplying every
gradient by ``c > 0`` leaves it unchanged. ``"absolute"`` is torch's Adam.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def step_lr(base_lr: float, step_index: int, step_size: int = 30, gamma: float = 0.5) -> float:
    """Learning rate of frame-optimiser step ``step_index`` under StepLR (the reference schedule).

    Args:
        base_lr: learning rate of the first ``step_size`` steps (``MOFConfig.frame_lr``).
        step_index: frame-optimiser steps already taken (0 for the first).
        step_size: steps between decays (``MOFConfig.frame_lr_step``).
        gamma: decay factor (``MOFConfig.frame_lr_gamma``).

    Returns:
        ``base_lr * gamma ** (step_index // step_size)``.
    """
    if step_size < 1:
        raise ValueError(f"step_lr: step_size must be >= 1, got {step_size}")
    if step_index < 0:
        raise ValueError(f"step_lr: step_index must be >= 0, got {step_index}")
    return base_lr * gamma ** (step_index // step_size)


EPS_SCALES = ("absolute", "row")  # how Adam's eps is read: as it is (torch), or relative to a row's gradient scale


def check_adam(lr: float, betas: tuple[float, float], eps: float,
               weight_decay: float, eps_scale: str = "absolute") -> tuple[float, float]:
    """Validated ``(beta1, beta2)``; ValueError naming the bad hyperparameter."""
    if eps_scale not in EPS_SCALES:
        raise ValueError(f"frame Adam: eps_scale must be one of {EPS_SCALES} (MOFConfig.frame_eps_scale), "
                         f"got {eps_scale!r}")
    beta1, beta2 = (float(b) for b in betas)
    if not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"frame Adam: lr must be finite and >= 0, got {lr}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"frame Adam: betas must lie in [0, 1), got {betas}")
    if not eps >= 0 or not weight_decay >= 0:
        raise ValueError(f"frame Adam: eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
    return beta1, beta2


def adam_rows_(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
               exp_avg_sq: torch.Tensor, steps: np.ndarray, lr: float, beta1: float, beta2: float,
               eps: float, weight_decay: float, max_change: float | None = None,
               eps_scale: str = "absolute") -> None:
    """torch.optim.Adam's single-tensor update, in its operation order, with a step count per row.

    Updates ``param``, ``exp_avg`` and ``exp_avg_sq`` (B, ...) in place. ``steps`` (B,) already
    counts this update. ``max_change`` (optional) caps each element's change in this step at that
    magnitude, so that a large learning rate moves pixels far over many steps without one step
    throwing a pixel out of range (``MOFConfig.frame_step_cap``); None is Adam's update unchanged.
    ``eps_scale="row"`` adds ``eps * rms_row`` instead of ``eps`` to the denominator, ``rms_row`` being
    the root mean square of the row's bias-corrected second moment (``eps`` where that is 0: the row
    then has no gradient and its update is 0), so the step does not depend on the gradient's
    absolute scale. Per-row scalars are float64 and rounded to float32 where torch passes a Python
    scalar into a float32 kernel, so the result with ``"absolute"`` matches torch bit for bit.
    """
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    s = steps.astype(np.float64)
    bias_correction1 = 1 - beta1 ** s
    bias_correction2 = 1 - beta2 ** s
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    view = (-1,) + (1,) * (param.dim() - 1)  # (B, 1, 1, 1, 1)
    denom = exp_avg_sq.sqrt() / torch.from_numpy(bias_correction2_sqrt).float().view(view)
    if eps_scale == "row":
        # sqrt(mean(v_hat)) per row, summed in float64: squares of 1e-10 gradients are 1e-20
        mean_sq = exp_avg_sq.flatten(1).sum(dim=1, dtype=torch.float64) / exp_avg_sq[0].numel()
        rms = (mean_sq / torch.from_numpy(bias_correction2)).sqrt()  # (B,)
        row_eps = torch.where(rms > 0, eps * rms, torch.full_like(rms, eps))
        denom.add_(row_eps.float().view(view))
    else:
        denom.add_(eps)
    # addcdiv_(t1, t2, value=v) computes self + (v * t1) / t2 in float32.
    update = exp_avg * torch.from_numpy(-step_size).float().view(view) / denom
    if max_change is not None:
        update.clamp_(-max_change, max_change)
    param.add_(update)


def stochastic_round_fp16(x: torch.Tensor, bits: torch.Tensor) -> np.ndarray:
    """Round float32 to one of its two float16 neighbours, the farther one with probability by
    proximity (unbiased), as a float16 array.

    Args:
        x: float32 values (C-contiguous).
        bits: int32 random bits, one per value (uniform over all 32).

    From float16's smallest normal value (2^-14) up, float16 keeps the top 10 of float32's 23
    mantissa bits: adding 13 random bits to the 13 it drops, then clearing them, rounds the
    magnitude up with probability (dropped bits) / 2^13, exactly the distance to the lower
    neighbour over the spacing; a carry moves into the next binade as it should, and a value past
    float16's largest becomes inf (its row is then skipped by the caller). Below 2^-14 the spacing
    is the constant 2^-24, and the value is ``floor(x * 2^24 + u) * 2^-24`` with ``u`` from 24 of
    the bits. NaN takes the second branch and stays NaN. Integer and elementwise torch operations
    only: several times faster than a search for neighbours with ``nextafter`` in float16.
    """
    normal = x.abs() >= 2.0 ** -14  # False for NaN, which the small branch keeps NaN
    up = ((x.view(torch.int32) + ((bits >> 19) & 0x1FFF)) & -0x2000).view(torch.float32)
    u = (bits & 0xFFFFFF).to(torch.float32) * 2.0 ** -24
    small = torch.floor(x * 2.0 ** 24 + u) * 2.0 ** -24
    return torch.where(normal, up, small).half().numpy()
