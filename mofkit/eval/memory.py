"""Peak device memory of a step, counted without the device: live tensor storage, op by op.

:class:`LiveMemory` is a ``TorchDispatchMode`` that sees every ATen operation below autograd (the
forward, the backward, a double backward, optimiser steps), adds each new storage an operation
returns to a running total and takes it off when the last tensor on that storage is freed, and
keeps the peak of that total. Under ``torch._subclasses.fake_tensor.FakeTensorMode`` the tensors
have shapes, dtypes and lifetimes but no data, so the step of a model of any size can be counted
on a laptop: ``benchmarks/paper_memory.py`` counts the ``paper`` profile's steps at batch 64 this
way. On real CPU tensors the same count comes out (a test checks it), which is what makes the fake
count trustworthy.

What it counts is what PyTorch allocates for tensors. Not counted: allocator rounding and caching
(a CUDA caching allocator reserves somewhat more than it has allocated: budget a few percent),
kernels' internal workspaces (cuBLAS, fused attention), the CUDA context (about 0.5 GiB), and
whatever was allocated before :meth:`LiveMemory.track` was told about it.
"""
from __future__ import annotations

import weakref
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GiB = 2**30


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        st = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested: not counted
        return None
    return st._cdata, st.nbytes()


class LiveMemory(TorchDispatchMode):
    """Counts live tensor storage in bytes and its peak while active.

    Use as a context manager (inside ``FakeTensorMode`` to count without memory)::

        with LiveMemory() as mem:
            mem.track(*model.parameters())
            step()
        mem.peak  # bytes

    Args:
        fake_scalars: answer a read of a tensor's value back to Python (``.item()``, ``float(t)``,
            ``.tolist()``) with 0 instead of failing, so that code which reads its loss back runs
            under ``FakeTensorMode``, where tensors have no values. Only for code whose memory does
            not depend on the values it reads.

    Attributes:
        live: bytes of storage alive now (of tracked tensors and of everything made since).
        peak: the most ``live`` has been since the start or the last :meth:`reset_peak`.
    """

    def __init__(self, *, fake_scalars: bool = False):
        super().__init__()
        self.fake_scalars = fake_scalars
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage -> [tensors alive on it, bytes]
        self._tensors: dict[int, int] = {}  # id of a tracked tensor -> its storage

    def track(self, *tensors: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Count tensors made before this mode was entered (weights, optimiser state, inputs)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t)
            else:
                self.track(*t)

    def reset_peak(self) -> None:
        """Start a new peak from what is alive now."""
        self.peak = self.live

    def _add(self, t: torch.Tensor) -> None:
        if id(t) in self._tensors:
            return
        key = _storage_key(t)
        if key is None:
            return
        sid, nbytes = key
        entry = self._storages.get(sid)
        if entry is None:
            self._storages[sid] = entry = [0, nbytes]
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        self._tensors[id(t)] = sid
        weakref.finalize(t, self._release, id(t), sid)

    def _release(self, tid: int, sid: int) -> None:
        self._tensors.pop(tid, None)
        entry = self._storages.get(sid)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._storages[sid]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.fake_scalars and func is torch.ops.aten._local_scalar_dense.default:
            t = args[0]
            return False if t.dtype == torch.bool else 0 if not t.is_floating_point() else 0.0
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def fake_module(module: torch.nn.Module, mode) -> torch.nn.Module:
    """Replace a module's parameters and buffers, in place, by fake tensors of ``mode`` (a
    ``FakeTensorMode``) of the same shapes, dtypes and ``requires_grad``; returns the module.

    Build the module for real at a small cost in host memory (ViT-B-32: 0.6 GB), then fake it:
    every step run on it inside ``mode`` allocates nothing."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[name] = torch.nn.Parameter(mode.from_tensor(p.detach()),
                                                           requires_grad=p.requires_grad)
        for name, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[name] = mode.from_tensor(b)
    return module
