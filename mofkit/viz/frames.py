"""Figures of frames: strips, sampling timelines, compressed vs uniform frames, their evolution.

Frames are uint8 ``(T, H, W, 3)`` arrays or tensors, numpy or torch, or floats on the [0, 1] scale
(compressed-frame snapshots are float so that changes below one grey level survive: difference maps
and change curves are computed from the floats, in grey levels of 0..255; only the drawn images are
rounded, and clipped to [0, 1] where a learned frame strays a little outside). Figures are built on ``matplotlib.figure.Figure`` directly, not through pyplot:
JupyterLab displays a returned ``Figure`` once (a pyplot figure would also be shown by the inline
backend at the end of the cell, so twice), and loops that make many figures leave nothing open in
pyplot's global registry. Nothing here calls ``plt.show``; :func:`save_figure` writes a PNG.

Layouts are computed in inches, so a 64 px frame is drawn at the same size (``CELL``) in every
figure and labels get fixed room instead of whatever a layout engine leaves them.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mofkit.data.sampling import sample_indices, segment_bounds

CELL = 0.8  # inches per displayed frame side: a 64 px frame at 120 dpi is shown at 1.5x
FONT = 8  # points, labels and captions
_GAP = 2  # pixels between frames of a strip
_DIFF_CMAP = "magma"


# ----------------------------------------------------------------------------------------------
# helpers


def _ipython_png_support() -> None:
    """Let IPython show a returned Figure as a PNG before any pyplot figure was made.

    The inline backend registers its PNG formatter for ``Figure`` only once pyplot loads a
    backend; until then a plain ``Figure`` shows as ``<Figure size ...>``. Nothing happens outside
    IPython or where a formatter is already registered (inline, or the user's own settings).
    """
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    try:
        shell.display_formatter.formatters["image/png"].lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"}, bbox_inches="tight")


_ipython_png_support()


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write a figure as a PNG and close it.

    Args:
        fig: the figure.
        path: target file; missing parent folders are created.
        dpi: resolution.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white", format="png")
    # pyplot is imported only here: a Figure made with plt.subplots stays registered (and in memory)
    # until pyplot closes it; for a plain Figure this is a no-op.
    from matplotlib import pyplot as plt

    plt.close(fig)
    return path


# Floats further outside [0, 1] than this are not images on the [0, 1] scale (normalised model
# input, say), which is an error; learned frames may stray a little outside and are clipped.
_FLOAT_SLACK = 0.5


def _frames_array(frames, name: str, ndim: int) -> np.ndarray:
    """numpy (..., H, W, 3) with ``ndim`` dims from numpy/torch, shape checked, dtype untouched."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    a = np.asarray(frames)
    if a.ndim == ndim + 1 and a.shape[0] == 1:  # a batch of one: Preprocessor.to_uint8_image(bank.read([row]))
        a = a[0]
    if ndim == 4 and a.ndim == 3 and a.shape[-1] == 3:  # one frame
        a = a[None]
    if a.ndim != ndim or a.shape[-1] != 3:
        layout = {4: "(T, H, W, 3)", 5: "(E, K, H, W, 3)"}.get(ndim, f"{ndim}-d (..., 3)")
        raise ValueError(f"{name} must be {layout} RGB frames, got shape {tuple(a.shape)}")
    return a


def _levels(frames, name: str = "frames", ndim: int = 4) -> np.ndarray:
    """float32 grey levels (0..255 scale, not rounded or clipped) of uint8 or [0, 1]-scale frames."""
    a = _frames_array(frames, name, ndim)
    if a.dtype == np.uint8:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (not np.isfinite(a).all() or a.min() < -_FLOAT_SLACK or a.max() > 1 + _FLOAT_SLACK):
            raise ValueError(f"{name} holds floats that are not an image on the [0, 1] scale (range "
                             f"{np.nanmin(a):.2f}..{np.nanmax(a):.2f}); pass uint8 frames or "
                             f"denormalised ones (for compressed frames: Preprocessor.to_uint8_image, or "
                             f"the snapshots a MOF run writes)")
        return a.astype(np.float32) * 255
    if np.issubdtype(a.dtype, np.integer) and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
        return a.astype(np.float32)
    raise ValueError(f"{name} has dtype {a.dtype}; expected uint8 frames (or floats in [0, 1])")


def _as_frames(frames, name: str = "frames", ndim: int = 4) -> np.ndarray:
    """uint8 numpy (..., H, W, 3) with ``ndim`` dims, to draw: uint8 or [0, 1]-scale floats."""
    a = _frames_array(frames, name, ndim)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.round(_levels(a, name, ndim)), 0, 255).astype(np.uint8)


def _even(n: int, m: int) -> np.ndarray:
    """At most ``m`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= m:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, m).round().astype(int))


def _gap(w: int, gap: int | None = None) -> int:
    # scaled with the frame width, so a gap between large frames survives their shrinking
    gap = _GAP if gap is None else gap
    return max(gap, round(gap * w / 64))


def _mosaic(frames: np.ndarray, gap: int | None = None, fill=255) -> np.ndarray:
    """(T, H, W[, C]) -> (H, T*W + (T-1)*gap[, C]), frames side by side with ``fill`` between."""
    t, h, w = frames.shape[:3]
    gap = _gap(w, gap)
    out = np.full((h, t * w + (t - 1) * gap) + frames.shape[3:], fill, dtype=frames.dtype)
    for i, f in enumerate(frames):
        out[:, i * (w + gap):i * (w + gap) + w] = f
    return out


def _centres(t: int, w: int, gap: int | None = None) -> list[float]:
    """x pixel centre of each frame of a mosaic."""
    gap = _gap(w, gap)
    return [i * (w + gap) + (w - 1) / 2 for i in range(t)]


def _strip_width(t: int, w: int, cell: float = CELL, gap: int | None = None) -> float:
    """Inches taken by a strip of ``t`` frames ``w`` px wide, each drawn ``cell`` inches wide."""
    return cell * (t * w + (t - 1) * _gap(w, gap)) / w


def _add_axes(fig: Figure, x: float, top: float, w: float, h: float) -> Axes:
    """Axes at ``x`` inches from the left, ``top`` inches from the top, ``w`` x ``h`` inches."""
    fw, fh = fig.get_size_inches()
    return fig.add_axes((x / fw, (fh - top - h) / fh, w / fw, h / fh))


def _interp(w_px: int, inches: float, dpi: float = 120) -> str:
    # enlarged small frames stay crisp (the pixels the meta step changed); shrunk large ones are
    # smoothed, where nearest would alias
    return "nearest" if w_px <= inches * dpi else "antialiased"


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _wrap(text: str, width_in: float, fontsize: float = FONT) -> str:
    # about 0.55 em per character in the default sans-serif font
    return textwrap.fill(text, max(20, int(width_in * 72 / (0.55 * fontsize))))


def _title(fig: Figure, title: str | None) -> None:
    """A bold caption at the figure's top left (already wrapped), or nothing."""
    if title:
        fig.text(0.12 / fig.get_size_inches()[0], 1 - 0.1 / fig.get_size_inches()[1], title,
                 fontsize=FONT + 1, va="top", ha="left", fontweight="bold")


def _diff_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute RGB difference of two grey-level arrays (see :func:`_levels`; uint8 works too):
    (..., H, W, 3) -> (..., H, W) float32."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def _diff_scale(d: np.ndarray) -> float:
    """Top of a difference colour scale: the largest difference (1 grey level if there is none)."""
    top = float(np.nanmax(d)) if d.size else 0.0
    return top if top > 0 else 1.0


def _fmt_levels(x: float) -> str:
    """A grey-level amount with the digits it needs: 12.3, 0.43, 0.0021."""
    return f"{x:.1f}" if x >= 0.95 or x == 0 else f"{x:.2g}"


def _diff_cmap():
    # gaps between frames are NaN in a mosaic of difference maps; show them as the page colour
    return matplotlib.colormaps[_DIFF_CMAP].with_extremes(bad="white")


# ----------------------------------------------------------------------------------------------
# strips


def frame_strip(frames, *, ax: Axes | None = None, titles: Sequence[str] | None = None,
                gap: int = _GAP) -> Axes:
    """Frames side by side in one row, drawn as one image.

    Args:
        frames: uint8 (T, H, W, 3), numpy or torch.
        ax: axes to draw on; when None a new figure of the right size is made (``ax.figure``).
        titles: one label per frame, shown beneath it (e.g. frame indices).
        gap: white pixels between 64 px wide frames; wider frames get proportionally more, so the
            gap stays visible when they are shrunk for display.

    Returns:
        The axes.
    """
    f = _as_frames(frames)
    t, h, w = f.shape[:3]
    if titles is not None and len(titles) != t:
        raise ValueError(f"titles has {len(titles)} labels for {t} frames")
    if ax is None:
        width, height = _strip_width(t, w, gap=gap), CELL * h / w
        fig = Figure(figsize=(width + 0.1, height + (0.3 if titles is not None else 0.1)))
        ax = _add_axes(fig, 0.05, 0.05, width, height)
    shown_in = ax.get_position().width * ax.figure.get_size_inches()[0]  # inches of the whole strip
    cell = shown_in * w / (t * w + (t - 1) * _gap(w, gap))
    ax.imshow(_mosaic(f, gap), interpolation=_interp(w, cell))
    _bare(ax)
    if titles is not None:
        ax.set_xticks(_centres(t, w, gap), [str(x) for x in titles], fontsize=FONT - 1)
        ax.tick_params(length=0, pad=2)
    return ax


def video_strips(items: Sequence[tuple], *, max_frames: int = 8, title: str | None = None) -> Figure:
    """One frame strip per video, its caption beneath.

    Args:
        items: ``(frames (T, H, W, 3), caption)`` pairs, or triples with the frame indices (shown
            under the frames; default ``0..T-1``).
        max_frames: frames shown per video, evenly picked when there are more.
        title: figure title.

    Returns:
        The figure (one image per video).
    """
    if not items:
        raise ValueError("video_strips needs at least one (frames, caption) item")
    rows = []
    for i, item in enumerate(items):
        f = _as_frames(item[0], f"items[{i}] frames")
        labels = list(item[2]) if len(item) > 2 else list(range(len(f)))
        pick = _even(len(f), max_frames)
        rows.append((f[pick], str(item[1]), [labels[j] for j in pick]))
    widths = [_strip_width(len(f), f.shape[2]) for f, _, _ in rows]
    fig_w = max(4.5, max(widths) + 0.2)
    texts = [_wrap(c, fig_w - 0.2) for _, c, _ in rows]
    heights = [CELL * f.shape[1] / f.shape[2] + 0.22 + 0.16 * t.count("\n") + 0.3
               for (f, _, _), t in zip(rows, texts)]
    title = _wrap(title, fig_w - 0.2, FONT + 2) if title else None
    head = 0.15 + 0.22 * (title.count("\n") + 1) if title else 0.05
    fig = Figure(figsize=(fig_w, head + sum(heights)))
    top = head
    for (f, _, labels), text, width, height in zip(rows, texts, widths, heights):
        strip_h = CELL * f.shape[1] / f.shape[2]
        ax = _add_axes(fig, 0.1, top, width, strip_h)
        frame_strip(f, ax=ax, titles=labels)
        fig.text(0.1 / fig_w, 1 - (top + strip_h + 0.2) / fig.get_size_inches()[1], text,
                 fontsize=FONT, va="top", ha="left")
        top += height
    if title:
        fig.suptitle(title, fontsize=FONT + 2, va="top", y=1 - 0.08 / (head + sum(heights)))
    return fig


def search_results(query: str, ranked: Sequence[tuple], *, k: int = 5, max_frames: int = 8) -> Figure:
    """A text query's top-k videos as frame strips, each with its rank, score and id/caption.

    Args:
        query: the query text.
        ranked: ``(frames (T, H, W, 3), label, score)`` best first; ``label`` is the video id
            and/or caption.
        k: how many to show.
        max_frames: frames per strip.

    Returns:
        The figure.
    """
    if not ranked:
        raise ValueError("search_results: ranked is empty; nothing to show for this query")
    items = [(frames, f"#{i + 1}   score {float(score):.3f}   {label}")
             for i, (frames, label, score) in enumerate(ranked[:k])]
    return video_strips(items, max_frames=max_frames, title=f"query: \u201c{query}\u201d")


# ----------------------------------------------------------------------------------------------
# sampling


def _event_colour(ev: dict, i: int):
    c = ev.get("color", ev.get("colour"))
    if isinstance(c, (tuple, list, np.ndarray)) and len(c) == 3 and max(c) > 1:  # 0..255 RGB
        return tuple(float(x) / 255 for x in c)
    if c is not None and mcolors.is_color_like(c):
        return c
    return f"C{i % 10}"


def _event_label(ev: dict) -> str:
    if ev.get("label"):
        return str(ev["label"])
    return " ".join(str(ev[x]) for x in ("colour", "shape", "action") if ev.get(x)) or "event"


def sampling_timeline(num_frames: int, k: int, *, events: Sequence[dict] | None = None,
                      ax: Axes | None = None, modes: Sequence[str] = ("uniform",),
                      rng_seed: int = 0) -> Axes:
    """A video's frames on a line: the K segments, the frames each sampling picks, the events.

    Segment boundaries are ``linspace(0, num_frames, k + 1)`` (dashed lines); each sampling row
    fills the frames :func:`mofkit.data.sampling.sample_indices` picks. Events are coloured bars;
    an event that no frame of the first ``uniform`` row (else the first row) falls in is hatched
    and labelled *missed*: what a K-frame model never sees.

    Args:
        num_frames: frames in the video.
        k: frames sampled (segments).
        events: dicts with ``start``, ``end`` (exclusive frame) and ``label`` (else a label is made
            from ``colour``, ``shape``, ``action``); optional ``color``/``colour`` (a matplotlib
            colour or 0..255 RGB) and ``decisive`` (thicker outline).
        ax: axes to draw on; when None a new figure is made (``ax.figure``).
        modes: samplings to show, one row each: ``uniform``, ``rand`` (one draw seeded by
            ``rng_seed``).
        rng_seed: seed of the ``rand`` draw.

    Returns:
        The axes.
    """
    if not modes:
        raise ValueError("sampling_timeline: modes is empty; pass e.g. ('uniform', 'rand')")
    events = list(events or [])
    for i, ev in enumerate(events):
        if not 0 <= ev["start"] < ev["end"] <= num_frames:
            raise ValueError(f"events[{i}] spans [{ev['start']}, {ev['end']}), outside a video of "
                             f"{num_frames} frames (end is exclusive)")
    if ax is None:
        width = float(np.clip(0.2 * num_frames + 1.6, 6.0, 14.0))
        height = 0.38 * len(modes) + (1.05 if events else 0.0) + 0.75
        fig = Figure(figsize=(width, height))
        ax = _add_axes(fig, 1.05, 0.35, width - 1.25, height - 0.35 - 0.45)
    picks = {}
    for j, mode in enumerate(modes):
        rng = np.random.default_rng(rng_seed) if mode == "rand" else None
        idx = sample_indices(num_frames, k, mode, rng=rng)
        picks[mode] = idx
        y = -j
        hit = np.zeros(num_frames, bool)
        hit[idx] = True
        ax.bar(np.arange(num_frames), 0.62, bottom=y - 0.31, width=0.86,
               color=np.where(hit, "#1f4e79", "#e3e3e3").tolist(), linewidth=0)
    starts, _ = segment_bounds(num_frames, k)
    for b in [*starts.tolist(), num_frames]:
        ax.axvline(b - 0.5, color="0.45", lw=0.9, ls=(0, (3, 2)), zorder=0)
    yticks = [-j for j in range(len(modes))]
    ylabels = [f"{m} (seed {rng_seed})" if m == "rand" else m for m in modes]
    bottom = -len(modes) + 0.5
    if events:
        ref = "uniform" if "uniform" in picks else modes[0]
        y_ev = -len(modes) - 0.15
        for i, ev in enumerate(events):
            seen = bool(((picks[ref] >= ev["start"]) & (picks[ref] < ev["end"])).any())
            ax.add_patch(Rectangle((ev["start"] - 0.45, y_ev - 0.3), ev["end"] - ev["start"] - 0.1, 0.6,
                                   facecolor=_event_colour(ev, i), edgecolor="black",
                                   lw=2.0 if ev.get("decisive") else 0.6,
                                   hatch=None if seen else "////", zorder=2))
            label = _event_label(ev) + ("" if seen else f"\nmissed by {ref}")
            # alternate two label heights so labels of neighbouring short events do not collide
            x, ha = (ev["start"] + ev["end"] - 1) / 2, "center"
            if x < 0.08 * num_frames:  # keep labels of events at the ends inside the axes
                x, ha = ev["start"] - 0.45, "left"
            elif x > 0.92 * num_frames:
                x, ha = ev["end"] - 0.55, "right"
            ax.text(x, y_ev - 0.42 - 0.55 * (i % 2), label,
                    ha=ha, va="top", fontsize=FONT - 1, linespacing=1.15,
                    color="black" if seen else "#b2182b", fontweight="normal" if seen else "bold")
        yticks.append(y_ev)
        ylabels.append("events")
        bottom = y_ev - 1.75
    ax.set_yticks(yticks, ylabels, fontsize=FONT)
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(-0.6, num_frames - 0.4)
    ax.set_ylim(bottom, 0.55)
    step = 1 if num_frames <= 40 else int(np.ceil(num_frames / 40 / 5) * 5)
    ax.set_xticks(np.arange(0, num_frames, step))
    ax.tick_params(axis="x", labelsize=FONT - 1, length=2)
    ax.set_xlabel("frame", fontsize=FONT)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{num_frames} frames, K = {k} segments: dark cells are the frames each sampling "
                 "reads", fontsize=FONT + 1, loc="left")
    return ax


# ----------------------------------------------------------------------------------------------
# compressed frames


def compressed_vs_uniform(uniform, compressed, *, whole=None, caption: str | None = None,
                          diff_scale: float | None = None) -> Figure:
    """The whole video, the K uniform frames, the K compressed frames and their difference maps.

    Args:
        uniform: (K, H, W, 3): the uniform frames the compressed frames started from (uint8, or
            floats on the [0, 1] scale such as a MOF run's first snapshot).
        compressed: (K, H, W, 3): the learned frames, denormalised (a MOF run's snapshots, float,
            keep changes below a grey level; ``Preprocessor.to_uint8_image`` gives uint8).
        whole: optional uint8 (N, H', W', 3): frames of the whole video; at most 16, evenly
            picked, are shown.
        caption: the video's caption, shown as the title.
        diff_scale: top of the difference colour scale in grey levels (default: the largest
            difference, however small); fix it to compare several figures.

    Returns:
        The figure: one image per row (whole, uniform, compressed, difference) and a colorbar.
    """
    u = _as_frames(uniform, "uniform")
    c = _as_frames(compressed, "compressed")
    if u.shape != c.shape:
        raise ValueError(f"uniform {tuple(u.shape)} and compressed {tuple(c.shape)} must have the "
                         "same (K, H, W, 3) shape: the compressed frames start from the uniform ones")
    k, h, w = u.shape[:3]
    wf = _as_frames(whole, "whole") if whole is not None else None
    diff = _diff_map(_levels(compressed, "compressed"), _levels(uniform, "uniform"))  # (K, H, W)
    vmax = float(diff_scale) if diff_scale else _diff_scale(diff)

    strip_w = _strip_width(k, w)
    strip_h = CELL * h / w
    rows = []  # (title, image, height, labels, cell)
    if wf is not None:
        pick = _even(len(wf), 16)
        # the whole video is context: at most as wide as the K rows, or 8 inches if they are narrower
        cell = min(CELL, max(strip_w, 8.0) / len(pick) * w / (w + _gap(w)))
        shown = f", {len(pick)} shown" if len(pick) < len(wf) else ""
        rows.append((f"whole video: {len(wf)} frames{shown}", wf[pick],
                     cell * wf.shape[1] / wf.shape[2], [str(i) for i in pick], cell))
    rows.append((f"K = {k} uniform frames (where the compressed frames start)", u, strip_h, None, CELL))
    rows.append((f"K = {k} compressed frames", c, strip_h, None, CELL))
    rows.append(("|compressed \u2212 uniform|, mean over RGB", diff, strip_h,
                 [f"mean {_fmt_levels(d)}" for d in diff.mean(axis=(1, 2))], CELL))
    widths = [_strip_width(len(img), img.shape[2], cell) for _, img, _, _, cell in rows]
    fig_w = max(max(widths) + 0.25 + 0.9, 4.5)  # room for the colorbar
    title = _wrap(caption, fig_w - 0.3, FONT + 1) if caption else None
    head = 0.1 + (0.2 * (title.count("\n") + 1) if title else 0)
    row_h = [0.28 + hh + (0.22 if labels else 0.08) for _, _, hh, labels, _ in rows]
    fig = Figure(figsize=(fig_w, head + sum(row_h)))
    top = head
    for (name, img, hh, labels, cell), width, rh in zip(rows, widths, row_h):
        ax = _add_axes(fig, 0.12, top + 0.28, width, hh)
        if img.ndim == 3:  # difference maps
            im = ax.imshow(_mosaic(diff, fill=np.nan), cmap=_diff_cmap(), vmin=0, vmax=vmax,
                           interpolation=_interp(w, cell))
            _bare(ax)
            cax = _add_axes(fig, 0.12 + width + 0.12, top + 0.28, 0.12, hh)
            bar = fig.colorbar(im, cax=cax)
            bar.set_label("grey levels", fontsize=FONT - 1)
            bar.ax.tick_params(labelsize=FONT - 1)
            ax.set_xticks(_centres(k, w), labels, fontsize=FONT - 1)
            ax.tick_params(length=0, pad=2)
        else:
            frame_strip(img, ax=ax, titles=labels)
        ax.set_title(name, fontsize=FONT, loc="left", pad=3)
        top += rh
    _title(fig, title)
    return fig


def compressor_outputs(whole, uniform, outputs, *, selection=None, positions=None,
                       uniform_positions=None, events: Sequence[dict] = (),
                       coverage: Sequence[dict] | None = None, caption: str | None = None,
                       name: str = "compressor") -> Figure:
    """A frame compressor on one video: its input frames, the K uniform frames, its K output
    frames and, where it has one, its selection over time (which input frames each output frame
    was made from), with the video's events and whether uniform sampling and the compressor catch
    them (:func:`mofkit.lab.compressor_view.event_coverage`).

    Args:
        whole: uint8 (N, H, W, 3): the compressor's input frames (at most 16 are shown).
        uniform: uint8 (K, H, W, 3): the K uniform frames.
        outputs: uint8 (K, H, W, 3): the compressor's frames.
        selection: (K, N) weights of each output frame over the input frames, or None (then the
            timeline is left out).
        positions: (N,) video frame index of each input frame (default 0..N-1).
        uniform_positions: (K,) video frame indices of the uniform frames, marked on the timeline.
        events: dicts with ``start``, ``end`` (exclusive), a label (see :func:`sampling_timeline`).
        coverage: per event ``{"uniform": bool, "compressor": bool, "slot": int | None}``.
        caption: the video's caption, shown as the title.
        name: what the compressor is called in the labels.

    Returns:
        The figure.
    """
    wf, u, o = _as_frames(whole, "whole"), _as_frames(uniform, "uniform"), _as_frames(outputs, "outputs")
    if u.shape != o.shape:
        raise ValueError(f"uniform {tuple(u.shape)} and outputs {tuple(o.shape)} must both be (K, H, W, 3)")
    k, h, w = u.shape[:3]
    n = len(wf)
    pos = np.arange(n) if positions is None else np.asarray(positions)
    if len(pos) != n:
        raise ValueError(f"positions has {len(pos)} entries for {n} input frames")
    sel = None if selection is None else np.asarray(selection, dtype=np.float32)
    if sel is not None and sel.shape != (k, n):
        raise ValueError(f"selection must be (K, N) = ({k}, {n}), got {tuple(sel.shape)}")
    events = list(events)
    if coverage is not None and len(coverage) != len(events):
        raise ValueError(f"coverage has {len(coverage)} entries for {len(events)} events")
    pick = _even(n, 16)
    strip_w = _strip_width(k, w)
    cell = min(CELL, max(strip_w, 8.0) / len(pick) * w / (w + _gap(w)))
    rows = [(f"{name}'s input: {n} frames" + (f", {len(pick)} shown" if len(pick) < n else ""),
             wf[pick], cell * wf.shape[1] / wf.shape[2], [str(int(pos[i])) for i in pick], cell),
            (f"K = {k} uniform frames", u, CELL * h / w,
             None if uniform_positions is None else [f"frame {int(x)}" for x in uniform_positions], CELL),
            (f"K = {k} frames of {name}", o, CELL * h / w, [f"output {j + 1}" for j in range(k)], CELL)]
    widths = [_strip_width(len(img), img.shape[2], c) for _, img, _, _, c in rows]
    tl_w = max(max(widths), 6.0)
    fig_w = tl_w + 1.5
    title = _wrap(caption, fig_w - 0.3, FONT + 1) if caption else None
    head = 0.1 + (0.2 * (title.count("\n") + 1) if title else 0)
    row_h = [0.28 + hh + (0.22 if labels else 0.08) for _, _, hh, labels, _ in rows]
    tl_h = (0.22 * k + 0.5 + (0.75 if events else 0.0)) if sel is not None else 0.0
    fig = Figure(figsize=(fig_w, head + sum(row_h) + tl_h + (0.45 if sel is not None else 0.0)))
    top = head
    for (label, img, hh, labels, _), width, rh in zip(rows, widths, row_h):
        ax = _add_axes(fig, 1.2, top + 0.28, width, hh)
        frame_strip(img, ax=ax, titles=labels)
        ax.set_title(label, fontsize=FONT, loc="left", pad=3)
        top += rh
    _title(fig, title)
    if sel is None:
        return fig
    ax = _add_axes(fig, 1.2, top + 0.3, tl_w, tl_h)
    # one column per input frame, placed at its video frame index
    edges = np.concatenate([[pos[0] - 0.5], (pos[1:] + pos[:-1]) / 2, [pos[-1] + 0.5]]) if n > 1 \
        else np.array([pos[0] - 0.5, pos[0] + 0.5])
    mesh = ax.pcolormesh(edges, np.arange(k + 1) - 0.5, sel, cmap="Blues", vmin=0,
                         vmax=max(float(sel.max()), 1e-6), shading="flat")
    cax = _add_axes(fig, 1.2 + tl_w + 0.1, top + 0.3, 0.1, 0.22 * k + 0.2)
    bar = fig.colorbar(mesh, cax=cax)
    bar.set_label("weight", fontsize=FONT - 1)
    bar.ax.tick_params(labelsize=FONT - 1)
    if uniform_positions is not None:
        for j, x in enumerate(np.asarray(uniform_positions)):
            ax.plot([x], [j], marker="o", ms=4, mfc="none", mec="#b2182b", mew=1.2, ls="none",
                    label="uniform frame" if j == 0 else None)
    yt, yl = list(range(k)), [f"output {j + 1}" for j in range(k)]
    if events:
        y_ev = k + 0.2
        for i, ev in enumerate(events):
            cov = coverage[i] if coverage is not None else {}
            caught = cov.get("compressor")
            ax.add_patch(Rectangle((ev["start"] - 0.5, y_ev - 0.3), ev["end"] - ev["start"], 0.6,
                                   facecolor=_event_colour(ev, i), edgecolor="black",
                                   lw=2.0 if ev.get("decisive") else 0.6,
                                   hatch=None if caught or caught is None else "////"))
            ax.axvspan(ev["start"] - 0.5, ev["end"] - 0.5, ymin=0, ymax=1, color=_event_colour(ev, i),
                       alpha=0.08, lw=0)
            marks = []
            if "uniform" in cov:
                marks.append("uniform " + ("sees it" if cov["uniform"] else "misses it"))
            if caught is not None:
                marks.append(f"{name} " + (f"catches it (output {cov['slot'] + 1})" if caught else "misses it"))
            ax.text((ev["start"] + ev["end"] - 1) / 2, y_ev + 0.45 + 0.5 * (i % 2),
                    _event_label(ev) + ("\n" + ", ".join(marks) if marks else ""), ha="center", va="top",
                    fontsize=FONT - 2, color="#b2182b" if caught is False else "black")
        yt.append(y_ev)
        yl.append("events")
        ax.set_ylim(y_ev + 1.6, -0.6)
    else:
        ax.set_ylim(k - 0.5, -0.6)
    ax.set_yticks(yt, yl, fontsize=FONT - 1)
    ax.set_xlim(edges[0], edges[-1])
    ax.tick_params(axis="x", labelsize=FONT - 1, length=2)
    ax.set_xlabel("video frame", fontsize=FONT)
    ax.set_title(f"which input frames each of {name}'s K frames is made of (circles: uniform frames)",
                 fontsize=FONT, loc="left", pad=3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def epoch_label(epoch: int) -> str:
    """A snapshot's label: ``start`` for epoch 0 (saved before training), else ``after ep e``,
    e counted from 1 as the training log counts (``epoch e/E``)."""
    return "start" if epoch == 0 else f"after ep {epoch}"


def frames_over_epochs(snapshots, *, epochs: Sequence[int] | None = None, frame: int | None = None,
                       max_epochs: int = 12) -> Figure:
    """How a video's compressed frames change over training.

    Args:
        snapshots: (E, K, H, W, 3): the frames of one video at E saved epochs, the first usually
            the initialisation (a MOF run saves them under ``<out_dir>/snapshots``, as floats on the
            [0, 1] scale so that the change curve sees changes below a grey level; uint8 works too).
        epochs: the epoch of each snapshot (default ``0..E-1``).
        frame: show only this one of the K frames; all K rows when None.
        max_epochs: grid columns; snapshots are picked evenly (first and last kept) when there
            are more. The line plot uses every snapshot.

    Returns:
        The figure: one image per frame row (columns = epochs) and, beneath, the mean absolute
        change from the first snapshot per epoch (one thin line per frame, the mean in black).
    """
    s = _as_frames(snapshots, "snapshots", ndim=5)
    levels = _levels(snapshots, "snapshots", ndim=5)
    e, k, h, w = s.shape[:4]
    epochs = list(epochs) if epochs is not None else list(range(e))
    if len(epochs) != e:
        raise ValueError(f"epochs has {len(epochs)} labels for {e} snapshots")
    if frame is not None and not 0 <= frame < k:
        raise ValueError(f"frame={frame} is not one of the K={k} frames (0..{k - 1})")
    frames = [frame] if frame is not None else list(range(k))
    cols = _even(e, max_epochs)
    width = _strip_width(len(cols), w)
    strip_h = CELL * h / w
    fig_w = max(width + 0.75 + 0.2, 5.0)
    plot_h = 1.9
    grid_h = 0.25 + len(frames) * (strip_h + 0.06)
    fig = Figure(figsize=(fig_w, 0.1 + grid_h + 0.35 + plot_h + 0.5))
    top = 0.35
    for r, f in enumerate(frames):
        ax = _add_axes(fig, 0.75, top, width, strip_h)
        frame_strip(s[cols, f], ax=ax)
        ax.set_ylabel(f"frame {f}", fontsize=FONT, rotation=0, ha="right", va="center", labelpad=4)
        if r == 0:
            ax.xaxis.tick_top()
            ax.set_xticks(_centres(len(cols), w), [epoch_label(epochs[i]) for i in cols], fontsize=FONT - 1)
            ax.tick_params(length=0, pad=2)
        top += strip_h + 0.06
    ax = _add_axes(fig, 0.75, top + 0.35, fig_w - 0.95, plot_h)
    change = _diff_map(levels[:, frames], levels[:1, frames]).mean(axis=(2, 3))  # (E, F)
    if len(frames) > 1:  # each frame's line drawn over the mean's, with its own marker: frames
        # that change alike would otherwise vanish under one thick line
        for j, f in enumerate(frames):
            ax.plot(epochs, change[:, j], lw=1.3, alpha=0.9, color=f"C{j % 10}", zorder=3,
                    marker="os^vDP*X"[j % 8], ms=3.5, label=f"frame {f}" if len(frames) <= 8 else None)
        ax.plot(epochs, change.mean(axis=1), lw=1.2, ls="--", color="black", zorder=2, label="mean")
    else:
        ax.plot(epochs, change[:, 0], marker="o", ms=3.5, lw=1.8, color="black", label=f"frame {frames[0]}")
    ax.set_xlabel("epochs trained (0: the start, before any training)", fontsize=FONT)
    ax.set_ylabel(f"mean |change| since {epoch_label(epochs[0])}\n(grey levels)", fontsize=FONT)
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT - 1, ncol=min(5, len(frames) + 1), frameon=False, loc="upper left")
    return fig

