"""Counting a forward pass's FLOPs (the convention: :mod:`mofkit.eval.cost`).

Here, below the model and compressor packages, so that modules which report their own cost
(:meth:`mofkit.compress.base.Compressor.flops`) need nothing from ``eval``.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@contextlib.contextmanager
def _countable_attention():
    """Route attention through ops the FLOP counter has formulas for."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """FLOPs of one forward call, at 2 FLOPs per multiply-add.

    Args:
        fn: a module or function; called once as ``fn(*args, **kwargs)`` without gradients.
        *args, **kwargs: its inputs (their batch size is part of the count).

    Returns:
        The total the counter reports, as an int (see the module docstring for what is counted).
    """
    with torch.no_grad(), _countable_attention(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
