"""Figures of a dataset: videos as frame strips, and which frames K-sampling sees on a timeline.

Both read videos from disk (through ``mofkit.data.video``) and return a ``matplotlib.figure.Figure``;
on the synthetic corpus the timelines show each video's events (``mofkit.data.synthetic``).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mofkit.data.video import DEFAULT_BACKEND, probe_video, read_frames
from mofkit.viz.frames import sampling_timeline, video_strips


def dataset_strips(dataset, *, backend: str = DEFAULT_BACKEND, n: int = 4, frames: int = 12) -> Figure:
    """Frame strips (every frame index shown) of a dataset's first ``n`` videos with their caption.

    Args:
        dataset: a ``VideoTextDataset``.
        backend: the video decoder.
        n: videos shown.
        frames: frames per strip, spread evenly over each video.
    """
    items = []
    for rec in dataset.records[:n]:
        total = probe_video(rec.path, backend).num_frames
        idx = np.linspace(0, total - 1, min(frames, total)).round().astype(int)
        items.append((read_frames(rec.path, idx, backend=backend), rec.captions[0], idx))
    return video_strips(items, max_frames=frames)


def dataset_timelines(dataset, k: int, *, timeline: dict | None = None, backend: str = DEFAULT_BACKEND,
                      n: int = 4) -> Figure:
    """Which frames uniform K-sampling picks (and one rand draw) in a dataset's first ``n`` videos.

    Args:
        dataset: a ``VideoTextDataset``.
        k: frames per video.
        timeline: video id -> events (the synthetic corpus's ``load_timeline``); None: no events.
        backend: the video decoder (frame counts of videos without a timeline).
        n: videos shown.
    """
    timeline = timeline or {}
    fig = Figure(figsize=(9, 1.9 * n))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, rec in zip(axes, dataset.records[:n]):
        events = timeline.get(rec.video_id)
        total = events[-1]["end"] if events else probe_video(rec.path, backend).num_frames
        sampling_timeline(total, k, events=events, ax=ax, modes=("uniform", "rand"))
        ax.set_title(rec.video_id, fontsize=8, loc="left")
    fig.tight_layout()
    return fig
