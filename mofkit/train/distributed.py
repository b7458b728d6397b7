"""Distributed data parallel helpers: process group from torchrun's environment, feature gathering.

Under ``torchrun --nproc_per_node=N`` the environment holds RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE; the process group uses NCCL on CUDA and gloo on CPU. Its timeout (how long a rank
waits in a collective, e.g. at a barrier while rank 0 alone steps the shared frame bank) is
``train.dist_timeout_minutes``: NCCL's default of 10 minutes is shorter than some phases at MSR-VTT
scale. Contrastive features are gathered across ranks
*with* gradients (``torch.distributed.nn.functional.all_gather``), so every rank computes the loss
of the whole global batch and, after DDP averages the gradients, the update equals the one a single
process would make on that batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0  # global rank
    world_size: int = 1  # processes in the job
    local_rank: int = 0  # rank on this machine (selects the GPU)
    local_world_size: int = 1  # processes on this machine

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def spans_machines(self) -> bool:
        """Whether the job's processes run on more than one machine (torchrun --nnodes > 1)."""
        return self.world_size > self.local_world_size


def dist_info_from_env() -> DistInfo:
    """Where this process stands, from torchrun's environment (one process without it)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def init_distributed(device_type: str, timeout_minutes: float | None = None) -> DistInfo:
    """Join the process group torchrun set up, or return a single-process ``DistInfo``.

    Args:
        device_type: ``cuda`` (NCCL) or ``cpu`` (gloo).
        timeout_minutes: how long a collective may wait (``train.dist_timeout_minutes``); None
            keeps torch's default (10 minutes for NCCL).
    """
    info = dist_info_from_env()
    if not info.enabled:
        return info
    if timeout_minutes is not None and not timeout_minutes > 0:
        raise ValueError(f"train.dist_timeout_minutes must be > 0, got {timeout_minutes}")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        kwargs = {} if timeout_minutes is None else {"timeout": timedelta(minutes=timeout_minutes)}
        dist.init_process_group(backend=backend, **kwargs)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_features(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate ``t`` (B, D) from every rank in rank order, keeping gradients to all of them."""
    if not info.enabled:
        return t
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(t), dim=0)


def all_gather_tensor(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 (no gradient); shapes must match."""
    if not info.enabled:
        return t
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out, dim=0)


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """Mean of a python float over ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item() / info.world_size)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Send a picklable object from ``src`` to every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj, info: DistInfo) -> list:
    """Every rank's picklable object, in rank order (a one-element list in one process)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
