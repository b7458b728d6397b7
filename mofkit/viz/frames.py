"""Figures of frames: strips, sampling timelines, compressed vs uniform frames, their evolution.

Frames are uint8 ``(T, H, W, 3)`` arrays or tensors (numpy or torch). Every function returns a
matplotlib ``Figure`` (or draws on a given ``Axes``) and never calls ``plt.show``, so the same
code serves JupyterLab and headless runs; :func:`save_figure` writes a PNG.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mofkit.data.sampling import sample_indices, segment_bounds


def _np(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    return np.asarray(frames)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (creating folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _mosaic(frames: np.ndarray, gap: int = 2, fill: int = 255) -> np.ndarray:
    """(T, H, W, 3) -> (H, T*W + (T-1)*gap, 3) with white gaps."""
    t, h, w, c = frames.shape
    out = np.full((h, t * w + (t - 1) * gap, c), fill, dtype=frames.dtype)
    for i, f in enumerate(frames):
        out[:, i * (w + gap):i * (w + gap) + w] = f
    return out


def frame_strip(frames, *, ax: Axes | None = None, titles: Sequence[str] | None = None,
                gap: int = 2) -> Axes:
    """Frames side by side in one row.

    Args:
        frames: uint8 (T, H, W, 3).
        ax: axes to draw on (a new figure's when None).
        titles: one label per frame, shown beneath it.
        gap: white pixels between frames.

    Returns:
        The axes.
    """
    f = _np(frames)
    if ax is None:
        ax = Figure(figsize=(1.2 * len(f), 1.4)).add_subplot()
    ax.imshow(_mosaic(f, gap))
    w = f.shape[2]
    if titles is not None:
        ax.set_xticks([i * (w + gap) + w / 2 for i in range(len(f))], list(titles), fontsize=7)
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    return ax


def video_strips(items: Sequence[tuple], *, max_frames: int = 8, title: str | None = None) -> Figure:
    """One frame strip per video with its caption beneath.

    Args:
        items: ``(frames (T, H, W, 3), caption)`` pairs; optionally a third element, the frame
            indices, shown under the frames.
        max_frames: frames shown per video (evenly picked when there are more).
        title: figure title.

    Returns:
        The figure.
    """
    n = len(items)
    fig = Figure(figsize=(1.15 * max_frames + 0.5, 1.75 * n + (0.4 if title else 0)))
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, item in zip(axes, items):
        frames, caption = _np(item[0]), item[1]
        labels = list(item[2]) if len(item) > 2 else list(range(len(frames)))
        if len(frames) > max_frames:
            pick = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
            frames, labels = frames[pick], [labels[i] for i in pick]
        frame_strip(frames, ax=ax, titles=[str(x) for x in labels])
        ax.set_xlabel(textwrap.fill(caption, 110), fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sampling_timeline(num_frames: int, k: int, *, events: Sequence[dict] | None = None,
                      ax: Axes | None = None, modes: Sequence[str] = ("uniform",),
                      rng_seed: int = 0) -> Axes:
    """A video's frames on a line: segment boundaries, the frames each sampling picks, events.

    Args:
        num_frames: frames in the video.
        k: frames sampled.
        events: dicts with ``start``, ``end`` (exclusive frame) and a ``label`` (or ``colour``,
            ``shape``, ``action``); drawn as coloured bars, the decisive one outlined.
        ax: axes to draw on (a new figure's when None).
        modes: samplings to mark, each on its own row (``uniform``, ``rand``).
        rng_seed: seed of the ``rand`` draw shown.

    Returns:
        The axes.
    """
    if ax is None:
        ax = Figure(figsize=(8, 1.2 + 0.35 * len(modes))).add_subplot()
    rows = len(modes)
    starts, _ = segment_bounds(num_frames, k)
    for b in list(starts) + [num_frames]:
        ax.axvline(b - 0.5, color="0.75", lw=0.8, zorder=0)
    for j, mode in enumerate(modes):
        idx = sample_indices(num_frames, k, mode, rng=np.random.default_rng(rng_seed))
        y = rows - j
        ax.scatter(idx, np.full(len(idx), y), marker="v", s=45, color="black", zorder=3)
        ax.text(-0.8, y, f"{mode} K={k}", ha="right", va="center", fontsize=8)
    for ev in events or []:
        colour = _event_colour(ev)
        ax.add_patch(Rectangle((ev["start"] - 0.5, -0.4), ev["end"] - ev["start"], 0.8,
                               color=colour, ec="black", lw=1.6 if ev.get("decisive") else 0.3))
        label = ev.get("label") or " ".join(str(ev.get(x, "")) for x in ("colour", "shape", "action"))
        ax.text((ev["start"] + ev["end"] - 1) / 2, -0.75, textwrap.fill(label.strip(), 18),
                ha="center", va="top", fontsize=6)
    ax.set_xlim(-0.5, num_frames - 0.5)
    ax.set_ylim(-1.6 if events else -0.5, rows + 0.6)
    ax.set_yticks([])
    ax.set_xlabel("frame")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def _event_colour(ev: dict):
    try:
        from mofkit.data.synthetic import COLOURS

        return np.asarray(COLOURS[ev["colour"]]) / 255
    except (ImportError, KeyError):
        return "tab:blue"


def _diff_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute RGB difference, in grey levels: (..., H, W)."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def compressed_vs_uniform(uniform, compressed, *, whole=None, caption: str | None = None,
                          diff_scale: float | None = None) -> Figure:
    """The whole video, the K uniform frames, the K compressed frames and their difference maps.

    Args:
        uniform: uint8 (K, H, W, 3), the uniform frames the compressed frames started from.
        compressed: uint8 (K, H, W, 3), the learned frames (clipped for display).
        whole: optional uint8 (N, H, W, 3) frames of the whole video (at most 16 shown).
        caption: figure title.
        diff_scale: top of the difference colour scale in grey levels (default: the max).

    Returns:
        The figure.
    """
    u, c = _np(uniform), _np(compressed)
    k = len(u)
    w_frames = _np(whole) if whole is not None else None
    if w_frames is not None and len(w_frames) > 16:
        w_frames = w_frames[np.linspace(0, len(w_frames) - 1, 16).round().astype(int)]
    rows = 3 + (w_frames is not None)
    cols = max(k, len(w_frames) if w_frames is not None else 0)
    fig = Figure(figsize=(max(6.0, 0.95 * cols + 1.2), 1.25 * rows + 0.5))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [0.08])
    r = 0
    if w_frames is not None:
        for j, f in enumerate(w_frames):
            ax = fig.add_subplot(grid[0, j])
            ax.imshow(f)
            ax.axis("off")
        fig.axes[0].set_title("whole video", fontsize=8, loc="left")
        r = 1
    diff = _diff_map(c, u)
    vmax = diff_scale or max(float(diff.max()), 1.0)
    im = None
    for j in range(k):
        for rr, (img, name) in enumerate(((u[j], "uniform"), (c[j], "compressed"))):
            ax = fig.add_subplot(grid[r + rr, j])
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
        ax = fig.add_subplot(grid[r + 2, j])
        im = ax.imshow(diff[j], cmap="magma", vmin=0, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel("|diff|", fontsize=8)
    cax = fig.add_subplot(grid[r + 2, cols])
    fig.colorbar(im, cax=cax).set_label("grey levels", fontsize=7)
    if caption:
        fig.suptitle(textwrap.fill(caption, 100), fontsize=9)
    return fig


def frames_over_epochs(snapshots, *, epochs: Sequence[int] | None = None,
                       frame: int | None = None) -> Figure:
    """How compressed frames change over training.

    Args:
        snapshots: uint8 (E, K, H, W, 3): the frames of one video at E saved epochs (the first
            usually the initial uniform frames).
        epochs: labels of the E snapshots (default 0..E-1).
        frame: show only this frame index; all K rows when None.

    Returns:
        A figure: a grid (rows = frames, columns = epochs) and a line plot of the mean absolute
        change from the first snapshot.
    """
    s = _np(snapshots).astype(np.uint8)
    e, k = s.shape[:2]
    epochs = list(epochs) if epochs is not None else list(range(e))
    frames = [frame] if frame is not None else list(range(k))
    show = np.linspace(0, e - 1, min(e, 10)).round().astype(int)
    fig = Figure(figsize=(1.0 * len(show) + 3.2, 1.05 * len(frames) + 0.6))
    grid = fig.add_gridspec(len(frames), len(show) + 1, width_ratios=[1] * len(show) + [2.6])
    for i, f in enumerate(frames):
        for j, ep in enumerate(show):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(s[ep, f])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"ep {epochs[ep]}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"frame {f}", fontsize=7)
    ax = fig.add_subplot(grid[:, -1])
    change = np.abs(s.astype(np.float32) - s[:1].astype(np.float32)).mean(axis=(1, 2, 3, 4))
    ax.plot(epochs, change, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean |change| (grey levels)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def search_results(query: str, ranked: Sequence[tuple], *, k: int = 5, max_frames: int = 8) -> Figure:
    """A text query's top-k videos as frame strips with their id/caption and score.

    Args:
        query: the text typed.
        ranked: ``(frames (T, H, W, 3), label, score)`` best first.
        k: how many to show.
        max_frames: frames per strip.

    Returns:
        The figure.
    """
    items = [(f, f"#{i + 1}  score {s:.3f}  {label}") for i, (f, label, s) in enumerate(ranked[:k])]
    return video_strips(items, max_frames=max_frames, title=f"query: {query}")
