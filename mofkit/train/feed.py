"""Data read ahead of the step that needs it: a reader thread that stays a few batches in front.

A MOF base step trains on compressed frames read from the frame bank: 300 MB per batch at the
``paper`` profile's shape (64 videos x 8 frames x 224 px, float32). Read on the training thread,
that read (and the copy to the device) would leave the GPU waiting. :class:`ReadAhead` runs the
reads in a background thread, ``depth`` batches ahead, into pinned buffers
(:func:`mofkit.device.host_buffer`) that the step copies to the device without blocking
(:func:`mofkit.device.to_device`). ``numpy`` and torch copy without holding the GIL, so the reads
overlap the step. ``benchmarks/bench_feed.py`` measures the share of a base step spent waiting.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ReadAhead(Generic[T, R]):
    """``load(item)`` for each item, in order, computed in background threads ``depth`` ahead.

    Args:
        items: the work, e.g. the epoch's batches of rows.
        load: ``load(item) -> result``; runs in the reader thread (must not touch CUDA streams
            the training thread relies on; filling host buffers is what it is for).
        depth: results computed ahead of the one being consumed (0: load on demand, in the
            calling thread).
        workers: reader threads, each loading one item at a time (at most ``depth``); more than
            one where a single thread cannot keep up with the step (a copy of 300 MB from the page
            cache takes a thread about 0.1 s).

    Attributes:
        waited: seconds the consumer spent blocked in :meth:`next` waiting for a result.
        served: results handed out.

    Use as an iterator or call :meth:`next`; :meth:`close` (or leaving a ``with`` block) cancels
    the reads not started yet and waits for the running one.
    """

    def __init__(self, items: Iterable[T], load: Callable[[T], R], depth: int = 2, workers: int = 1):
        if depth < 0 or workers < 1:
            raise ValueError(f"ReadAhead: depth must be >= 0 and workers >= 1, got {depth} and {workers}")
        self._items = deque(items)
        self._load = load
        self._depth = depth
        self._pool = ThreadPoolExecutor(min(workers, depth), thread_name_prefix="mofkit-read-ahead") \
            if depth else None
        self._ahead: deque[Future] = deque()
        self.waited = 0.0
        self.served = 0
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and self._items and len(self._ahead) < self._depth:
            self._ahead.append(self._pool.submit(self._load, self._items.popleft()))

    def next(self) -> R:
        """The next result; StopIteration when every item has been served."""
        t0 = time.perf_counter()
        if self._ahead:
            result = self._ahead.popleft().result()
        elif self._items:
            result = self._load(self._items.popleft())
        else:
            raise StopIteration
        self.waited += time.perf_counter() - t0
        self.served += 1
        self._fill()
        return result

    def __iter__(self):
        return self

    def __next__(self) -> R:
        return self.next()

    def close(self) -> None:
        for fut in self._ahead:
            fut.cancel()
        self._ahead.clear()
        self._items.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
