"""Frame sampling, as the MOF reference (and Frozen-in-Time before it) defines it.

A video of ``n`` frames is cut into ``k`` segments at the boundaries ``linspace(0, n, k + 1)``.
Segment ``i`` holds the frames ``[floor(b_i), floor(b_{i+1}))``.

* ``uniform``: the mid-point of each segment, ``(start + last) // 2`` (the reference's
  ``(x0 + x1) // 2`` with ``x1`` the segment's last frame).
* ``rand``: one frame drawn uniformly from each segment (seeded through ``rng``). Unlike the
  reference, the segment's last frame can be drawn too, and one-frame segments do not crash.
* ``dense``: every ``stride``-th frame, ``0, stride, 2*stride, ...`` (``k`` is ignored).

A video with fewer than ``k`` frames still yields ``k`` indices: empty segments take the frame
their boundary falls in, so indices repeat (``n = 2, k = 4`` gives ``[0, 0, 1, 1]``).
"""
from __future__ import annotations

import numpy as np

MODES = ("uniform", "rand", "dense")


def segment_bounds(n_frames: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) frame of each of the ``k`` segments.

    Args:
        n_frames: frames in the video (>= 1).
        k: number of segments (>= 1).

    Returns:
        ``(starts, ends)``, int64 arrays of length ``k`` with ``ends > starts``; a segment that
        would be empty (``n_frames < k``) holds the one frame its start falls in.
    """
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame to sample from, got n_frames={n_frames}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b = np.floor(np.linspace(0, n_frames, k + 1)).astype(np.int64)
    starts = np.minimum(b[:-1], n_frames - 1)
    ends = np.maximum(b[1:], starts + 1)
    return starts, ends


def sample_indices(n_frames: int, k: int, mode: str = "uniform", *,
                   rng: np.random.Generator | None = None, stride: int = 1) -> np.ndarray:
    """Frame indices to decode.

    Args:
        n_frames: frames in the video.
        k: frames wanted (``uniform``, ``rand``); ignored by ``dense``.
        mode: ``uniform``, ``rand`` or ``dense``.
        rng: random generator for ``rand``; a fresh unseeded one when None.
        stride: step of ``dense`` sampling.

    Returns:
        int64 array: length ``k`` for uniform/rand (non-decreasing, within ``[0, n_frames)``),
        ``ceil(n_frames / stride)`` for dense.
    """
    if mode == "dense":
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if n_frames < 1:
            raise ValueError(f"a video needs at least one frame to sample from, got n_frames={n_frames}")
        return np.arange(0, n_frames, stride, dtype=np.int64)
    starts, ends = segment_bounds(n_frames, k)
    if mode == "uniform":
        return (starts + ends - 1) // 2
    if mode == "rand":
        rng = rng if rng is not None else np.random.default_rng()
        return rng.integers(starts, ends)  # high is exclusive
    raise ValueError(f"unknown sampling mode {mode!r}; choose one of {MODES}")


def sample_from_grid(grid_size: int, k: int, mode: str = "uniform", *,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Sample ``k`` positions of a cached dense grid of ``grid_size`` frames.

    The grid itself is ``sample_indices(n_frames, grid_size, 'uniform')``; sampling inside it with
    the same rule approximates sampling the video when ``grid_size >= k`` and equals it when the
    grid holds every frame.
    """
    return sample_indices(grid_size, k, mode, rng=rng)
