"""Device, precision and autocast: the only module that knows about CUDA."""
from __future__ import annotations

import contextlib
import os

import torch


def get_device(name: str = "auto") -> torch.device:
    """Resolve a device name.

    Args:
        name: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The ``torch.device``. Asking for CUDA on a machine without it raises a ``RuntimeError``
        that says so, rather than failing later inside a kernel.
    """
    if name == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was requested but CUDA is not available on this machine; "
                           "use device='cpu' or 'auto'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA devices that support it, else ``fp32``. Mixed precision is CUDA only."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"precision {precision!r} is CUDA only; on {device.type} use fp32 (or auto)")
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))


def host_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An empty CPU tensor to stage data for ``device``: pinned when it is a CUDA device, so that
    :func:`to_device` copies it without blocking. PyTorch's pinned-memory cache does not hand a
    block out again before the copies that read it have finished, so a fresh buffer per batch is
    safe and cheap."""
    return torch.empty(shape, dtype=dtype, pin_memory=device.type == "cuda")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; from pinned memory the copy is queued without waiting for it."""
    return t.to(device, non_blocking=t.is_pinned())


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for honest timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak allocated CUDA memory since the last reset, in MiB; None on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def describe_device(name: str = "auto") -> str:
    """The machine a table's rows come from, in words: "cpu, 2 cores" or "cuda (NVIDIA H100 ...)"."""
    import os

    device = get_device(name)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device.type}, {cores} cores, {torch.get_num_threads()} torch threads"
