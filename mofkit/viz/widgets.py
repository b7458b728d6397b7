"""Browse compressed frames: an ipywidgets explorer, and its static twin for headless runs.

Both take the snapshots a MOF run writes (read with ``mofkit.viz.snapshots.load_snapshots``): per video,
``(E, K, H, W, 3)`` frames at E saved epochs, floats on the [0, 1] scale (uint8 works too).
Differences are computed from the floats, so changes below one grey level show, and every colour
scale runs from 0 to the largest difference shown. The explorer renders each view to PNG bytes
in an ``ipywidgets.Image`` (not a live matplotlib canvas), so it needs no interactive matplotlib
backend and its output can be checked in tests.
"""
from __future__ import annotations

import html
import io
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mofkit.viz.frames import (CELL, epoch_label, FONT, _add_axes, _as_frames, _centres, _diff_cmap, _diff_map,
                               _diff_scale, _even, _fmt_levels, _interp, _levels, _mosaic,
                               _strip_width, _wrap, save_figure)

__all__ = ["frame_explorer", "static_explorer_figure", "render_explorer_view", "save_figure"]

_PANEL = 2.0  # inches per panel of the explorer view (a 64 px frame at 100 dpi is shown at 3x)


def _prepare(snapshots_by_video: Mapping[str, object], uniform: Mapping[str, object] | None,
             epochs: Sequence[int] | None):
    """Validated numpy snapshots, starting frames and epoch labels per video."""
    if not snapshots_by_video:
        raise ValueError("no snapshots to explore: a MOF run (mof.enabled) writes them to "
                         "<out_dir>/snapshots")
    snaps, starts, labels = {}, {}, {}
    for vid, s in snapshots_by_video.items():
        s = _levels(s, f"snapshots of {vid}", ndim=5) / 255  # (E, K, H, W, 3), [0, 1] scale
        e = s.shape[0]
        if epochs is not None and len(epochs) != e:
            raise ValueError(f"epochs has {len(epochs)} labels, the snapshots of {vid} have {e}")
        lab = list(epochs) if epochs is not None else list(range(e))
        if uniform is not None and vid in uniform:
            u = _levels(uniform[vid], f"uniform frames of {vid}") / 255
            if u.shape != s.shape[1:]:
                raise ValueError(f"uniform frames of {vid} are {tuple(u.shape)}, its snapshots hold "
                                 f"{tuple(s.shape[1:])} frames")
            starts[vid] = (u, "uniform (start)")
        else:  # the first snapshot is the initialisation: the uniform frames after preprocessing
            starts[vid] = (s[0], f"epoch {lab[0]} (start)")
        snaps[vid], labels[vid] = s, lab
    return snaps, starts, labels


def render_explorer_view(start, current, *, vmax: float | None = None, title: str = "",
                         start_label: str = "uniform (start)", current_label: str = "compressed",
                         dpi: int = 100) -> bytes:
    """One explorer view as PNG bytes: the starting frame, the current frame, their difference.

    Args:
        start: (H, W, 3), the uniform frame the compressed frame started from (uint8, or
            floats on the [0, 1] scale).
        current: (H, W, 3), the compressed frame at some epoch (likewise).
        vmax: top of the difference colour scale in grey levels (default: this difference's
            max, however small).
        title: line above the panels.
        start_label: title of the first panel.
        current_label: title of the second panel.
        dpi: resolution.

    Returns:
        PNG bytes.
    """
    a = _as_frames(start, "start")[0]
    b = _as_frames(current, "current")[0]
    d = _diff_map(_levels(current, "current")[0], _levels(start, "start")[0])
    vmax = float(vmax) if vmax else _diff_scale(d)
    panel_h = _PANEL * a.shape[0] / a.shape[1]
    fig = Figure(figsize=(3 * _PANEL + 2 * 0.15 + 0.75, panel_h + 0.75))
    for i, (img, name) in enumerate(((a, start_label), (b, current_label), (d, "|difference|"))):
        ax = _add_axes(fig, 0.05 + i * (_PANEL + 0.15), 0.5, _PANEL, panel_h)
        ax.set_xticks([])
        ax.set_yticks([])
        if img.ndim == 2:
            im = ax.imshow(img, cmap=_diff_cmap(), vmin=0, vmax=vmax,
                           interpolation=_interp(img.shape[1], _PANEL, dpi))
            ax.set_xlabel(f"mean {_fmt_levels(float(img.mean()))} grey levels", fontsize=FONT)
        else:
            ax.imshow(img, interpolation=_interp(img.shape[1], _PANEL, dpi))
        ax.set_title(name, fontsize=FONT + 1)
    cax = _add_axes(fig, 0.05 + 3 * _PANEL + 2 * 0.15 + 0.08, 0.5, 0.12, panel_h)
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=FONT - 1)
    if title:
        fig.text(0.05 / fig.get_size_inches()[0], 1 - 0.08 / fig.get_size_inches()[1], title,
                 fontsize=FONT + 1, va="top")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def frame_explorer(snapshots_by_video: Mapping[str, object], *,
                   uniform: Mapping[str, object] | None = None,
                   captions: Mapping[str, str] | None = None,
                   epochs: Sequence[int] | None = None):
    """An ipywidgets UI to browse compressed frames by video, epoch and frame.

    Shows the chosen compressed frame at the chosen epoch next to its uniform starting frame and
    their per-pixel difference. The difference colour scale is fixed per video (the largest
    difference over all its epochs), so sliding through epochs shows the change growing.

    Args:
        snapshots_by_video: video id -> (E, K, H, W, 3) frames at the saved epochs (floats on
            the [0, 1] scale, or uint8).
        uniform: video id -> (K, H, W, 3) uniform frames the compressed ones started from;
            default (and for videos missing from it) the first snapshot, the initialisation.
        captions: video id -> caption, shown under the controls.
        epochs: the epoch of each snapshot (default ``0..E-1``).

    Returns:
        An ``ipywidgets.VBox``: ``children[0]`` an HBox of the controls (video Dropdown, epoch
        IntSlider over snapshot positions, the epoch it stands for as an HTML readout, frame
        IntSlider), ``children[1]`` the caption (HTML), ``children[2]`` the view (an
        ``ipywidgets.Image`` holding PNG bytes).
    """
    import ipywidgets as widgets

    snaps, starts, labels = _prepare(snapshots_by_video, uniform, epochs)
    # one colour scale per video, over all its epochs, so sliding through epochs is comparable
    scale = {vid: _diff_scale(_diff_map(255 * s, 255 * starts[vid][0][None])) for vid, s in snaps.items()}
    ids = list(snaps)
    e0, k0 = snaps[ids[0]].shape[:2]
    video = widgets.Dropdown(options=ids, value=ids[0], description="video",
                             layout=widgets.Layout(width="240px"))
    epoch = widgets.IntSlider(value=e0 - 1, min=0, max=e0 - 1, description="epoch", readout=False,
                              continuous_update=True)
    epoch_readout = widgets.HTML()
    frame = widgets.IntSlider(value=0, min=0, max=k0 - 1, description="frame")
    caption = widgets.HTML()
    image = widgets.Image(format="png")

    def redraw(*_):
        vid = video.value
        s = snaps[vid]
        e, f = min(epoch.value, s.shape[0] - 1), min(frame.value, s.shape[1] - 1)
        start, start_label = starts[vid]
        ep = labels[vid][e]
        epoch_readout.value = f"<b>{epoch_label(ep)}</b> (snapshot {e + 1}/{s.shape[0]})"
        text = (captions or {}).get(vid, "")
        caption.value = f"<b>{html.escape(str(vid))}</b>" + (f": {html.escape(text)}" if text else "")
        image.value = render_explorer_view(start[f], s[e, f], vmax=scale[vid],
                                           title=f"{vid}, frame {f}, {epoch_label(ep)}",
                                           start_label=start_label, current_label=epoch_label(ep))

    def on_video(change):
        s = snaps[change["new"]]
        # a video may have been saved with other E or K; keep the sliders inside its range
        with epoch.hold_trait_notifications(), frame.hold_trait_notifications():
            epoch.max, frame.max = s.shape[0] - 1, s.shape[1] - 1
        redraw()

    video.observe(on_video, names="value")
    epoch.observe(redraw, names="value")
    frame.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([video, epoch, epoch_readout, frame]), caption, image])


def static_explorer_figure(snapshots_by_video: Mapping[str, object], *,
                           uniform: Mapping[str, object] | None = None,
                           captions: Mapping[str, str] | None = None,
                           epochs: Sequence[int] | None = None, frame: int = 0,
                           max_snapshots: int = 6, max_videos: int = 8) -> Figure:
    """What the explorer shows, as one figure: per video, one frame across the saved epochs.

    Each row is a video: its starting (uniform) frame, the compressed frame at up to
    ``max_snapshots`` evenly picked epochs, and the difference between the last epoch and the
    start, on one colour scale for the whole figure.

    Args:
        snapshots_by_video: video id -> (E, K, H, W, 3), floats on the [0, 1] scale or uint8.
        uniform: video id -> (K, H, W, 3) starting frames; default the first snapshot.
        captions: video id -> caption, printed under the row.
        epochs: the epoch of each snapshot (default ``0..E-1``).
        frame: which of the K frames.
        max_snapshots: epochs shown per video.
        max_videos: videos shown (the first ones).

    Returns:
        The figure: per video one image of frames and one difference map, and a colorbar.
    """
    snaps, starts, labels = _prepare(dict(list(snapshots_by_video.items())[:max_videos]), uniform,
                                     epochs)
    rows = []
    for vid, s in snaps.items():
        if not 0 <= frame < s.shape[1]:
            raise ValueError(f"frame={frame} is not one of the K={s.shape[1]} frames of {vid}")
        start, start_label = starts[vid]
        own = uniform is not None and vid in uniform
        # the start is snapshot 0 when no uniform frames are given (or they equal it): show it once
        first = 1 if not own or np.array_equal(start, s[0]) else 0
        pick = (first + _even(s.shape[0] - first, max_snapshots) if s.shape[0] > first
                else np.array([], int))
        imgs = np.concatenate([start[frame][None], s[pick, frame]])  # (1 + P, H, W, 3)
        titles = (["uniform" if own else epoch_label(labels[vid][0])]
                  + [epoch_label(labels[vid][p]) for p in pick])
        last = s[pick[-1] if len(pick) else 0, frame]
        rows.append((vid, _as_frames(imgs), titles, _diff_map(255 * last, 255 * start[frame]),
                     (captions or {}).get(vid)))
    vmax = _diff_scale(np.concatenate([r[3].ravel() for r in rows]))
    widths = [_strip_width(len(r[1]), r[1].shape[2]) for r in rows]
    left = 0.95
    fig_w = left + max(widths) + 0.2 + CELL + 0.85
    texts = [_wrap(r[4], fig_w - left - 0.2) if r[4] else None for r in rows]
    heights = [CELL * r[1].shape[1] / r[1].shape[2] + 0.45 + (0.16 * (t.count("\n") + 1) if t else 0)
               for r, t in zip(rows, texts)]
    fig = Figure(figsize=(fig_w, 0.1 + sum(heights)))
    top, im = 0.3, None
    for (vid, imgs, titles, diff, _), width, text, height in zip(rows, widths, texts, heights):
        h = CELL * imgs.shape[1] / imgs.shape[2]
        ax = _add_axes(fig, left, top, width, h)
        ax.imshow(_mosaic(imgs), interpolation=_interp(imgs.shape[2], CELL))
        ax.set_yticks([])
        ax.xaxis.tick_top()
        ax.set_xticks(_centres(len(imgs), imgs.shape[2]), titles, fontsize=FONT - 1)
        ax.tick_params(length=0, pad=2)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_ylabel(vid, fontsize=FONT, rotation=0, ha="right", va="center", labelpad=6)
        dax = _add_axes(fig, left + width + 0.2, top, CELL, h)
        im = dax.imshow(diff, cmap=_diff_cmap(), vmin=0, vmax=vmax,
                        interpolation=_interp(diff.shape[1], CELL))
        dax.set_xticks([])
        dax.set_yticks([])
        dax.set_title("|last \u2212 start|", fontsize=FONT - 1, pad=2)
        if text:
            fig.text(left / fig_w, 1 - (top + h + 0.06) / fig.get_size_inches()[1], text,
                     fontsize=FONT - 1, va="top")
        top += height
    cax = _add_axes(fig, left + max(widths) + 0.2 + CELL + 0.12, 0.3, 0.12,
                    min(2.0, sum(heights) - 0.45))
    bar = fig.colorbar(im, cax=cax)
    bar.set_label("grey levels", fontsize=FONT - 1)
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig
