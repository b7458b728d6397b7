"""An interactive explorer of compressed frames (ipywidgets), and its static twin for headless runs."""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mofkit.viz.frames import _diff_map, _np


def _panel_png(compressed: np.ndarray, uniform: np.ndarray | None, title: str) -> bytes:
    cols = 3 if uniform is not None else 1
    fig = Figure(figsize=(2.2 * cols, 2.5))
    axes = fig.subplots(1, cols, squeeze=False)[0]
    panels = [(compressed, "compressed")]
    if uniform is not None:
        panels = [(uniform, "uniform (start)"), (compressed, "compressed")]
    for ax, (img, name) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if uniform is not None:
        im = axes[2].imshow(_diff_map(compressed, uniform), cmap="magma")
        axes[2].set_title("|diff| (grey levels)", fontsize=8)
        axes[2].axis("off")
        fig.colorbar(im, ax=axes[2], fraction=0.046)
    fig.suptitle(title, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def frame_explorer(snapshots_by_video: Mapping[str, np.ndarray], *,
                   uniform: Mapping[str, np.ndarray] | None = None,
                   captions: Mapping[str, str] | None = None,
                   epochs: Sequence[int] | None = None):
    """Browse compressed frames by video, epoch and frame.

    Args:
        snapshots_by_video: video id -> uint8 (E, K, H, W, 3) frames at the saved epochs.
        uniform: video id -> uint8 (K, H, W, 3) uniform frames the compressed ones started from.
        captions: video id -> caption shown above the image.
        epochs: labels of the E snapshots.

    Returns:
        An ``ipywidgets.VBox`` (video dropdown, epoch and frame sliders, the image).
    """
    import ipywidgets as w

    ids = list(snapshots_by_video)
    if not ids:
        raise ValueError("no snapshots to explore: train with MOF first (notebook 02_mof)")
    first = _np(snapshots_by_video[ids[0]])
    epochs = list(epochs) if epochs is not None else list(range(first.shape[0]))
    video = w.Dropdown(options=ids, description="video")
    epoch = w.IntSlider(min=0, max=first.shape[0] - 1, value=first.shape[0] - 1,
                        description="snapshot")
    frame = w.IntSlider(min=0, max=first.shape[1] - 1, value=0, description="frame")
    label = w.HTML()
    image = w.Image(format="png")

    def redraw(*_):
        snaps = _np(snapshots_by_video[video.value])
        f, e = min(frame.value, snaps.shape[1] - 1), min(epoch.value, snaps.shape[0] - 1)
        u = _np(uniform[video.value])[f] if uniform is not None else None
        text = (captions or {}).get(video.value, "")
        label.value = f"<b>{video.value}</b>, epoch {epochs[e]}, frame {f}: {text}"
        image.value = _panel_png(snaps[e, f], u, f"epoch {epochs[e]}")

    for control in (video, epoch, frame):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([video, epoch, frame]), label, image])


def static_explorer_figure(snapshots_by_video: Mapping[str, np.ndarray], *,
                           uniform: Mapping[str, np.ndarray] | None = None,
                           epochs: Sequence[int] | None = None, frame: int = 0,
                           max_snapshots: int = 6) -> Figure:
    """What the explorer shows, as one figure: per video, frame ``frame`` across the snapshots.

    Args:
        snapshots_by_video: video id -> uint8 (E, K, H, W, 3).
        uniform: video id -> uint8 (K, H, W, 3) starting frames (adds a |diff| column).
        epochs: labels of the snapshots.
        frame: which of the K frames.
        max_snapshots: columns (evenly picked snapshots).

    Returns:
        The figure.
    """
    ids = list(snapshots_by_video)
    e = _np(snapshots_by_video[ids[0]]).shape[0]
    epochs = list(epochs) if epochs is not None else list(range(e))
    pick = np.linspace(0, e - 1, min(e, max_snapshots)).round().astype(int)
    cols = len(pick) + (uniform is not None)
    fig = Figure(figsize=(1.1 * cols + 0.6, 1.15 * len(ids) + 0.4))
    axes = fig.subplots(len(ids), cols, squeeze=False)
    for i, vid in enumerate(ids):
        snaps = _np(snapshots_by_video[vid])
        for j, p in enumerate(pick):
            ax = axes[i, j]
            ax.imshow(snaps[p, frame])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"ep {epochs[p]}", fontsize=7)
            if j == 0:
                ax.set_ylabel(vid, fontsize=7)
        if uniform is not None:
            ax = axes[i, -1]
            ax.imshow(_diff_map(snaps[pick[-1], frame], _np(uniform[vid])[frame]), cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("|last - uniform|", fontsize=7)
    fig.tight_layout()
    return fig
