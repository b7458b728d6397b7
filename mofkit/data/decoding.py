"""Decoding many videos: worker processes decode while the caller encodes what came back.

Reading a gallery, a test split or a corpus is decode-bound on a CPU: the decoder costs several
times what a small image tower does per video. :func:`decode_many` hands the videos to a pool of
decode processes (a ``torch.utils.data.DataLoader`` with workers over chunks of jobs) and yields
the results in the jobs' order as they arrive, so the caller's model works on one batch while the
workers decode the next ones. Each worker decodes single-threaded (one decoder thread, one scaler
thread, one torch thread); :func:`encoder_threads` gives the caller's torch the cores the
workers leave (at least one), set for the duration and restored after.

A video that cannot be read is a result like any other (:class:`ReadResult` with ``error`` set, the
one-sentence reason of :class:`~mofkit.data.video.VideoReadError`), never an exception that
stops the pool. The pool's workers stop with the iteration: when the caller breaks off, returns or
is interrupted (Ctrl-C), the loader's workers are shut down with it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from mofkit.data.video import DEFAULT_BACKEND, VideoReadError, decode_video


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers(videos: int | None = None, chunk: int = 8) -> int:
    """Decode processes for ``videos`` videos: one per core, at most 8; none on a single core or
    for a single chunk (there processes would cost more than they overlap)."""
    cpus = usable_cpus()
    if cpus < 2 or (videos is not None and videos <= chunk):
        return 0
    return min(8, cpus)


@contextlib.contextmanager
def encoder_threads(workers: int) -> Iterator[int]:
    """Set torch's intra-op threads to the cores ``workers`` decode processes leave (at least one)
    while the block runs; restore the previous setting after.

    Two cores shared by a decode worker and two torch threads measured 26 videos/s against 56
    with one torch thread on the tiny model: threads that wait for a busy core cost more than
    they add. With ``workers == 0`` the setting is left as it is.

    Yields:
        The thread count in force.
    """
    before = torch.get_num_threads()
    n = max(1, usable_cpus() - int(workers)) if workers > 0 else before
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class ReadJob:
    """One video to read: ``k`` frames sampled by ``mode`` (see :func:`~mofkit.data.video.decode_video`)."""

    path: str  # the video file
    k: int  # frames to decode
    mode: str = "uniform"  # sampling: uniform | rand | ... (mofkit.data.sampling)
    size: int | None = None  # short side to resize to on decode; None: native size
    backend: str = DEFAULT_BACKEND  # decord | pyav
    seed: tuple[int, ...] | None = None  # rand modes: the generator's seed


@dataclass(frozen=True)
class ReadResult:
    """What reading one :class:`ReadJob` gave: frames and what the open found, or why it failed."""

    frames: torch.Tensor | None  # uint8 (k, H, W, 3); None when the video could not be read
    indices: np.ndarray | None  # int64 (k,): the frame indices decoded
    num_frames: int = 0  # frames in the video
    fps: float = 0.0  # its average frame rate
    width: int = 0  # displayed native size
    height: int = 0
    error: str | None = None  # VideoReadError.reason when the video could not be read

    @property
    def ok(self) -> bool:
        return self.error is None

    # From a worker the frames travel as bytes through the loader's pipe, not as a shared-memory
    # tensor: containers often cap /dev/shm at 64 MB, and 8 workers with chunks of 32 frames at
    # 224 px hold several hundred MB in flight.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state["frames"] is not None:
            state["frames"] = state["frames"].numpy()
        return state

    def __setstate__(self, state: dict) -> None:
        if state["frames"] is not None:
            state["frames"] = torch.from_numpy(state["frames"])
        self.__dict__.update(state)


def read_job(job: ReadJob) -> ReadResult:
    """Decode one job's frames in one open (runs in a worker); failures become ``error``."""
    rng = np.random.default_rng(list(job.seed)) if job.seed is not None else None
    try:
        got = decode_video(job.path, job.k, job.mode, rng=rng, size=job.size, backend=job.backend)
    except VideoReadError as e:
        return ReadResult(None, None, error=e.reason)
    return ReadResult(got.frames, got.indices, int(got.num_frames), got.fps, got.width, got.height)


class _Chunks(torch.utils.data.Dataset):
    """Jobs in chunks: one loader item is a list of ``chunk`` results."""

    def __init__(self, jobs: Sequence, fn: Callable, chunk: int):
        self.jobs, self.fn, self.chunk = list(jobs), fn, int(chunk)

    def __len__(self) -> int:
        return -(-len(self.jobs) // self.chunk)

    def __getitem__(self, i: int) -> list:
        return [self.fn(job) for job in self.jobs[i * self.chunk:(i + 1) * self.chunk]]


def _as_is(item):
    return item


def _single_threaded(_worker_id: int) -> None:
    torch.set_num_threads(1)


def decode_many(jobs: Sequence, fn: Callable[[Any], Any] = read_job, *, workers: int | None = None,
                chunk: int = 8, ahead: int | None = None) -> Iterator:
    """``fn(job)`` of every job, in the jobs' order, computed by ``workers`` decode processes.

    Args:
        jobs: picklable jobs (e.g. :class:`ReadJob`).
        fn: a module-level function (workers import it by name) mapping a job to a picklable
            result (tensors in it travel through shared memory, numpy arrays and
            :class:`ReadResult` through the loader's pipe). It should return failures as results:
            an exception in a worker stops the iteration.
        workers: decode processes; None: :func:`default_workers`; 0: in this process (also
            inside a daemonic process, which may not start any).
        chunk: jobs per loader item (a worker decodes a chunk, then hands it over).
        ahead: results the workers may hold ready before the caller takes them (None: two
            chunks per worker). A caller that consumes in batches should allow at least two
            batches, so the workers go on decoding while it works on one.

    Yields:
        One result per job, in order.
    """
    import multiprocessing

    jobs = list(jobs)
    if workers is None:
        workers = default_workers(len(jobs), chunk)
    data = _Chunks(jobs, fn, chunk)
    workers = min(int(workers), len(data))
    if multiprocessing.current_process().daemon:
        workers = 0  # a daemonic process (a pool's worker) may not start processes of its own
    if workers <= 0 or len(data) <= 1:
        for i in range(len(data)):
            yield from data[i]
        return
    prefetch = max(2, -(-int(ahead) // (workers * chunk))) if ahead else 2  # chunks per worker
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=workers,
                                         collate_fn=_as_is, prefetch_factor=prefetch,
                                         worker_init_fn=_single_threaded, persistent_workers=False)
    it = iter(loader)
    try:
        for items in it:
            yield from items
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()  # now, not when the iterator is collected: an interrupted caller leaves no workers
