"""Plots of results: training curves, the accuracy/cost trade-off, ablations over seeds, costs.

Inputs are DataFrames (or lists of per-epoch dicts), as the runs write them to ``metrics.csv``:
columns such as ``epoch``, ``train_loss``, ``meta_loss_compressed``, ``meta_loss_whole``,
``t2v_R1`` .. ``t2v_MnR``, ``v2t_*``, ``frames_mean_abs_change``, ``epoch_seconds``. Missing
columns are skipped. Ablation tables have one row per (setting, seed). Every plot returns a
``matplotlib.figure.Figure``; :func:`save_figure` writes a PNG.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mofkit.eval.metrics import METRIC_KEYS
from mofkit.eval.stats import COST_COLUMNS, default_metrics, seed_stats, summarise_seeds
from mofkit.viz.frames import FONT, save_figure

__all__ = ["training_curves", "tradeoff_plot", "compressor_tradeoff", "ablation_plot", "ablation_table",
           "headline_markdown", "efficiency_bars", "metric_label", "save_figure"]

_LOSSES = (("train_loss", "base loss (training frames)", "-"),
           ("meta_loss_compressed", "L1 (compressed frames)", "--"),
           ("meta_loss_whole", "L2 (whole video, after virtual step)", ":"))
_RECALLS = (("t2v_R1", "R@1", "-", "o"), ("t2v_R5", "R@5", "--", "s"), ("t2v_R10", "R@10", ":", "^"))
_DIRECTIONS = {"t2v": "text-to-video", "v2t": "video-to-text", "t2v_dsl": "text-to-video (DSL)",
               "v2t_dsl": "video-to-text (DSL)"}
_METRICS = {"R1": "R@1 (%)", "R5": "R@5 (%)", "R10": "R@10 (%)", "MdR": "median rank",
            "MnR": "mean rank"}


def metric_label(column: str) -> str:
    """A readable axis label for a metrics column: ``t2v_R1`` -> ``text-to-video R@1 (%)``.

    Args:
        column: a column name; unknown names are returned with underscores as spaces.

    Returns:
        The label.
    """
    direction, _, metric = column.rpartition("_")
    if direction in _DIRECTIONS and metric in _METRICS:
        return f"{_DIRECTIONS[direction]} {_METRICS[metric]}"
    return {"gflops": "inference GFLOPs per video", "epoch_seconds": "seconds per epoch",
            "train_seconds": "training time (s)"}.get(column, column.replace("_", " "))


def _runs(history) -> dict[str, pd.DataFrame]:
    def is_run(v) -> bool:  # a DataFrame or a list of per-epoch dicts (not a list of numbers)
        return isinstance(v, pd.DataFrame) or (isinstance(v, (list, tuple)) and len(v) > 0
                                               and all(isinstance(r, Mapping) for r in v))

    if isinstance(history, Mapping) and history and all(is_run(v) for v in history.values()):
        runs = {str(k): pd.DataFrame(list(v) if isinstance(v, tuple) else v)
                for k, v in history.items()}
    else:
        runs = {"": pd.DataFrame(history)}
    for name, df in runs.items():
        if df.empty:
            raise ValueError(f"training_curves: run {name or 'history'!r} has no rows")
        if "epoch" not in df:
            df.insert(0, "epoch", np.arange(1, len(df) + 1))  # rows are epochs in order
    return runs


def _series(df: pd.DataFrame, key: str) -> pd.DataFrame | None:
    if key not in df:
        return None
    d = df[["epoch", key]].apply(pd.to_numeric, errors="coerce").dropna()
    return d if len(d) else None


def training_curves(history, *, title: str | None = None) -> Figure:
    """Losses and text-to-video recalls against epochs, for one run or several.

    Panels: losses (``train_loss``, ``meta_loss_compressed`` as "L1 (compressed frames)",
    ``meta_loss_whole`` as "L2 (whole video, after virtual step)"), recalls (``t2v_R1/R5/R10``)
    and, when a run logged it, ``frames_mean_abs_change`` (the mean absolute change of the stored
    frames in each frame update, in the model's normalised input units). With one run every series has its own
    colour; with several, colour is the run and line style the series.

    Args:
        history: one run's per-epoch rows (a DataFrame or a list of dicts), or a dict
            run name -> rows.
        title: figure title.

    Returns:
        The figure: 2 axes, or 3 with the frame-change panel.
    """
    runs = _runs(history)
    many = len(runs) > 1
    has_change = any(_series(df, "frames_mean_abs_change") is not None for df in runs.values())
    n_panels = 3 if has_change else 2
    fig = Figure(figsize=(4.3 * n_panels, 3.6 + (0.35 if title else 0) + (0.25 if many else 0)),
                 layout="constrained")
    axes = fig.subplots(1, n_panels)
    ax_loss, ax_rec = axes[0], axes[1]
    used_losses, used_recalls = set(), set()
    for c, (name, df) in enumerate(runs.items()):
        for i, (key, label, style) in enumerate(_LOSSES):
            d = _series(df, key)
            if d is None:
                continue
            used_losses.add(key)
            colour = f"C{c}" if many else f"C{i}"
            ax_loss.plot(d["epoch"], d[key], style if many else "-", color=colour,
                         marker="." if len(d) < len(df) or len(d) == 1 else None, label=label)
        for i, (key, label, style, marker) in enumerate(_RECALLS):
            d = _series(df, key)
            if d is None:
                continue
            used_recalls.add(key)
            colour = f"C{c}" if many else f"C{i}"
            ax_rec.plot(d["epoch"], d[key], style if many else "-", marker=marker, ms=3.5,
                        color=colour, label=label)
        if has_change:
            d = _series(df, "frames_mean_abs_change")
            if d is not None:
                axes[2].plot(d["epoch"], d["frames_mean_abs_change"], marker="o", ms=3.5,
                             color=f"C{c}" if many else "C0", label=name or None)
    ax_loss.set_title("losses", fontsize=FONT + 1)
    ax_loss.set_ylabel("loss", fontsize=FONT)
    ax_rec.set_title("test retrieval", fontsize=FONT + 1)
    ax_rec.set_ylabel("text-to-video recall (%)", fontsize=FONT)
    if has_change:
        axes[2].set_title("compressed frames", fontsize=FONT + 1)
        axes[2].set_ylabel("mean |change| per frame update\n(model-input units)", fontsize=FONT)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if many:
        # line style names the series, colour the run: one small legend for each
        for ax, table, used in ((ax_loss, _LOSSES, used_losses), (ax_rec, _RECALLS, used_recalls)):
            handles = [Line2D([], [], color="0.2", ls=row[2], label=row[1]) for row in table
                       if row[0] in used]
            if handles:
                ax.legend(handles=handles, fontsize=FONT - 1)
        fig.legend(handles=[Line2D([], [], color=f"C{c}", lw=2, label=n) for c, n in enumerate(runs)],
                   loc="outside lower center", ncol=min(len(runs), 6), fontsize=FONT, frameon=False)
    else:
        for ax in (ax_loss, ax_rec):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=FONT - 1)
    for ax, used in ((ax_loss, used_losses), (ax_rec, used_recalls)):
        if not used:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", color="0.5")
    if title:
        fig.suptitle(title, fontsize=FONT + 2)
    return fig


# ----------------------------------------------------------------------------------------------
# seeds


def ablation_table(df: pd.DataFrame, by: Sequence[str] | str,
                   metrics: Sequence[str] | None = None, decimals: int = 1, *,
                   directions: Sequence[str] | None = None) -> pd.DataFrame:
    """``"mean ± std"`` cells over seeds, one row per setting.

    Statistics are those of :func:`mofkit.eval.stats.seed_stats` (sample std); a setting with one
    seed shows the mean alone.

    Args:
        df: one row per (setting, seed).
        by: the setting columns (one name or several).
        metrics: the metric columns, shown in this order; default those of ``t2v_R1, t2v_R5,
            t2v_R10, t2v_MdR, t2v_MnR`` the table has.
        decimals: digits after the point.
        directions: shorthand that replaces ``metrics`` with every metric of these directions,
            e.g. ``("t2v", "v2t")`` -> ``t2v_R1 .. t2v_MnR, v2t_R1 .. v2t_MnR``.

    Returns:
        DataFrame of strings indexed by the setting (a MultiIndex for several ``by`` columns),
        one column per metric plus ``seeds``.
    """
    by = [by] if isinstance(by, str) else list(by)
    if directions is not None:
        metrics = [f"{d}_{k}" for d in directions for k in METRIC_KEYS]
    metrics = default_metrics(df, metrics)
    if not metrics:
        raise KeyError(f"ablation_table: no metric columns; pass metrics= (the table has "
                       f"{list(df.columns)})")
    stats = seed_stats(df, by, metrics)

    def cell(mean: float, std: float) -> str:
        text = f"{mean:.{decimals}f}"
        return text if math.isnan(std) else f"{text} ± {std:.{decimals}f}"

    table = pd.DataFrame([{**{m: cell(*st[m]) for m in metrics}, "seeds": st["seeds"]}
                          for st in stats.values()])
    keys = list(stats)
    table.index = (pd.MultiIndex.from_tuples(keys, names=by) if len(by) > 1
                   else pd.Index([k[0] for k in keys], name=by[0]))
    return table


def headline_markdown(df: pd.DataFrame, *, by: Sequence[str] = ("method", "K"),
                      directions: Sequence[str] = ("t2v", "v2t"), decimals: int = 1) -> str:
    """A markdown table of the results: metrics as mean ± std over seeds, then cost.

    Args:
        df: one row per (setting, seed) with ``<direction>_<R1..MnR>`` columns and, when present,
            ``gflops`` (inference GFLOPs per video) and ``train_seconds``.
        by: the setting columns.
        directions: metric directions shown (``t2v``, ``v2t``, ``t2v_dsl``, ``v2t_dsl``).
        decimals: digits after the point of the metrics.

    Returns:
        The table as markdown text (no trailing newline).
    """
    by = list(by)
    table = ablation_table(df, by, decimals=decimals, directions=directions)
    costs = summarise_seeds(df, by, []) if any(c in df for c in COST_COLUMNS) else None
    short = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "MdR": "MdR", "MnR": "MnR"}
    head = [" / ".join(by)] + [f"{m.rpartition('_')[0]} {short.get(m.rpartition('_')[2], m)}"
                               for m in table.columns if m != "seeds"]
    if costs is not None and "gflops" in costs:
        head.append("GFLOPs / video")
    if costs is not None and "videos_per_s" in costs:
        head.append("videos/s (end to end)")
    if costs is not None and "train_seconds" in costs:
        head.append("train s")
    head.append("seeds")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (key, row) in enumerate(table.iterrows()):
        key = key if isinstance(key, tuple) else (key,)
        cells = [" ".join(str(k) for k in key), *[str(row[m]) for m in table.columns if m != "seeds"]]
        if costs is not None and "gflops" in costs:
            cells.append(f"{costs['gflops'].iloc[i]:.3g}")
        if costs is not None and "videos_per_s" in costs:
            cells.append(f"{costs['videos_per_s'].iloc[i]:.0f}")
        if costs is not None and "train_seconds" in costs:
            cells.append(f"{costs['train_seconds'].iloc[i]:.0f}")
        cells.append(str(int(row["seeds"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# plots


def tradeoff_plot(df: pd.DataFrame, *, x: str = "gflops", y: str = "t2v_R1",
                  method_col: str = "method", k_col: str = "K", err_col: str | None = None,
                  title: str | None = None, ceiling: pd.DataFrame | None = None) -> Figure:
    """Accuracy against inference cost per video: one line per method, each point labelled K.

    Uniform sampling traces a curve (more frames, more accuracy, more GFLOPs); MOF's test cost is
    that of its K uniform frames, so it sits at the same x as uniform at that K, above it when it
    works.

    Args:
        df: one row per (method, K), or one per (method, K, seed): repeated (method, K) rows are
            averaged and, unless ``err_col`` is given, their sample std becomes the error bar.
        x: cost column (GFLOPs per video).
        y: metric column.
        method_col: method names (e.g. ``uniform``, ``MOF``).
        k_col: frames per video.
        err_col: column with the spread of ``y`` (error bars).
        title: axes title.
        ceiling: optional rows of :func:`mofkit.eval.ceiling.ceiling_table` (``K``,
            ``ceiling_t2v_R1``, ``colour_ceiling_t2v_R1``): the information ceiling of uniform K
            frames and the colour-only one (dotted), drawn at the
            cost of each K (the uniform rows' x), so the gap a better model could close shows.

    Returns:
        The figure (one line per method, and the ceiling).
    """
    cols = [x, y] + ([err_col] if err_col else [])
    stats = seed_stats(df, [method_col, k_col], cols)
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(k[0] for k in stats))
    for c, method in enumerate(methods):
        keys = sorted((k for k in stats if k[0] == method), key=lambda k: stats[k][x][0])
        xs = [stats[k][x][0] for k in keys]
        ys = [stats[k][y][0] for k in keys]
        if err_col:
            err = [stats[k][err_col][0] for k in keys]
        else:
            err = [stats[k][y][1] for k in keys]
            err = (None if all(math.isnan(e) for e in err)
                   else [0.0 if math.isnan(e) else e for e in err])
        star = str(method).lower() == "mof"
        ax.errorbar(xs, ys, yerr=err, marker="*" if star else "o", ms=13 if star else 6, capsize=3,
                    color=f"C{c}", label=str(method), lw=1.6)
        # methods share x values (MOF at K costs what uniform at K costs): put labels on
        # alternating sides so they do not sit on each other
        dy = -13 if c % 2 == 0 else 8
        for k, xv, yv in zip(keys, xs, ys):
            kk = int(k[1]) if float(k[1]).is_integer() else k[1]
            ax.annotate(f"K={kk}", (xv, yv), textcoords="offset points", xytext=(6, dy),
                        fontsize=FONT, color=f"C{c}")
    if ceiling is not None and len(ceiling):
        cost = {float(k[1]): stats[k][x][0] for k in stats}  # K -> x (the same for every method)
        for col, ls, label in (("ceiling_t2v_R1", "--", "information ceiling (uniform K)"),
                               ("colour_ceiling_t2v_R1", ":", "colour-only ceiling (uniform K)")):
            if col not in ceiling:
                continue
            pts = sorted((cost[float(k)], v) for k, v in zip(ceiling["K"], ceiling[col]) if float(k) in cost)
            if pts:
                ax.plot(*zip(*pts), ls=ls, color="0.35", marker="_", ms=12, label=label)
    ax.set_xlabel(metric_label(x), fontsize=FONT + 1)
    ax.set_ylabel(metric_label(y), fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.12)
    ax.legend(fontsize=FONT, title=method_col, title_fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT + 2)
    return fig


def compressor_tradeoff(summary: pd.DataFrame, *, direction: str = "t2v",
                        title: str | None = None) -> Figure:
    """The compressors study on the accuracy/cost plane: one panel per corpus.

    Uniform sampling is a line over K (each point labelled K); every compressor is one point at its
    total inference cost per video (image tower on its K frames, temporal head and the compressor
    itself). Error bars are the sd over seeds; each legend entry gives the measured end-to-end
    videos per second (decode, compress, encode) where the table has it.

    Args:
        summary: :func:`mofkit.lab.summaries.summarise_compressors`'s table (``regime``,
            ``method``, ``compressor``, ``K``, ``gflops``, ``<direction>_R1`` and ``_sd``,
            optionally ``videos_per_s``, ``seeds``).
        direction: ``t2v`` or ``v2t``.
        title: the figure's title.
    """
    if summary.empty:
        raise ValueError("compressor_tradeoff: the summary is empty (no finished runs)")
    y, sd = f"{direction}_R1", f"{direction}_R1_sd"
    corpora = list(dict.fromkeys(summary["regime"])) if "regime" in summary else [""]
    fig = Figure(figsize=(5.2 * len(corpora) + 1.8, 4.4), layout="constrained")
    axes = fig.subplots(1, len(corpora), squeeze=False, sharey=True)[0]
    methods = [m for m in dict.fromkeys(summary["method"]) if not str(m).startswith("uniform")]
    colour = {m: f"C{(i + 1) % 10}" for i, m in enumerate(methods)}
    markers = "sD^vP*Xph<>"
    handles = {}
    for ax, corpus in zip(axes, corpora):
        g = summary[summary["regime"] == corpus] if corpus else summary
        uni = g[g["method"].astype(str).str.startswith("uniform")].sort_values("gflops")
        if len(uni):
            h = ax.errorbar(uni["gflops"], uni[y], yerr=uni[sd].fillna(0), marker="o", color="C0",
                            capsize=3, lw=1.6)
            handles.setdefault("uniform", h)
            for _, r in uni.iterrows():
                ax.annotate(f"K={int(r['K'])}", (r["gflops"], r[y]), textcoords="offset points",
                            xytext=(5, -12), fontsize=FONT - 1, color="C0")
        for i, m in enumerate(methods):
            r = g[g["method"] == m]
            if r.empty:
                continue
            r = r.iloc[0]
            h = ax.errorbar([r["gflops"]], [r[y]], yerr=[0 if pd.isna(r.get(sd)) else r[sd]],
                            marker=markers[i % len(markers)], ms=7, color=colour[m], capsize=3, ls="none")
            speed = f", {r['videos_per_s']:.0f} videos/s" if pd.notna(r.get("videos_per_s", np.nan)) else ""
            handles.setdefault(m, (h, speed))
        if summary["gflops"].max() > 3 * summary["gflops"].min():  # uniform K = 4 .. 16: a log axis
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("inference GFLOPs per video (image tower on K frames + compressor)", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3, which="both")
        seeds = ", ".join(sorted({str(int(v)) for v in g["seeds"]})) if "seeds" in g else ""
        ax.set_title(f"{corpus} corpus" + (f" (seeds per point: {seeds})" if seeds else ""), fontsize=FONT + 1)
    axes[0].set_ylabel(metric_label(y), fontsize=FONT + 1)
    items = []
    for name, h in handles.items():
        if name == "uniform":
            uni = summary[summary["method"].astype(str).str.startswith("uniform")]
            speeds = uni.drop_duplicates("K").sort_values("K")
            label = "uniform K"
            if "videos_per_s" in speeds and speeds["videos_per_s"].notna().any():
                lo, hi = f"{speeds['videos_per_s'].min():.0f}", f"{speeds['videos_per_s'].max():.0f}"
                label += f" ({lo if lo == hi else f'{hi}-{lo}'} videos/s)"
            items.append((h, label))
        else:
            items.append((h[0], f"{name}{h[1]}"))
    fig.legend([h for h, _ in items], [t for _, t in items], loc="outside right center", fontsize=FONT - 1,
               title="method (end to end, measured)", title_fontsize=FONT - 1)
    if title:
        fig.suptitle(title, fontsize=FONT + 2)
    return fig


def _order(values: pd.Series) -> list:
    uniq = list(dict.fromkeys(values.tolist()))
    return sorted(uniq) if pd.api.types.is_numeric_dtype(values) else uniq


def ablation_plot(df: pd.DataFrame, *, x: str, y: str = "t2v_R1", hue: str | None = None,
                  kind: str = "point", title: str | None = None) -> Figure:
    """A metric per setting with its spread over seeds (seaborn point or bar plot).

    Args:
        df: one row per (setting, seed).
        x: the varied setting (numbers are ordered by value, other values by first appearance).
        y: the metric column.
        hue: a second grouping (e.g. ``method``), one colour each.
        kind: ``point`` (mean with std bars; joined by lines when ``x`` is numeric) or ``bar``.
        title: axes title.

    Returns:
        The figure: error bars are the standard deviation over seeds, small grey dots the seeds.
    """
    import seaborn as sns

    if kind not in ("point", "bar"):
        raise ValueError(f"ablation_plot: kind={kind!r}; choose 'point' or 'bar'")
    for col in [x, y] + ([hue] if hue else []):
        if col not in df:
            raise KeyError(f"ablation_plot: column {col!r} not in the table; it has {list(df.columns)}")
    order = _order(df[x])
    hue_order = _order(df[hue]) if hue else None
    n = len(order) * (len(hue_order) if hue else 1)
    fig = Figure(figsize=(max(4.5, 1.0 + 0.55 * n), 3.8), layout="constrained")
    ax = fig.add_subplot()
    common = dict(data=df, x=x, y=y, hue=hue, order=order, hue_order=hue_order, ax=ax)
    if kind == "point":
        # a line between points claims an order: join them only along a numeric setting
        sns.pointplot(**common, errorbar="sd", capsize=0.08, markersize=6, linewidth=1.5,
                      dodge=0.3 if hue else False,
                      linestyle="-" if pd.api.types.is_numeric_dtype(df[x]) else "none")
    else:
        sns.barplot(**common, errorbar="sd", capsize=0.1, err_kws={"linewidth": 1.2}, alpha=0.85)
    sns.stripplot(**common, palette=["0.25"] * len(hue_order) if hue else None,
                  color=None if hue else "0.25", dodge=bool(hue), size=3, alpha=0.55, legend=False,
                  jitter=0.08, zorder=5)
    _finish_bar_axes(ax, x, metric_label(y), hue, title)
    return fig


def efficiency_bars(df: pd.DataFrame, *, x: str = "method", y: str = "train_seconds",
                    hue: str | None = None, ylabel: str | None = None, title: str | None = None,
                    fmt: str = "%.1f") -> Figure:
    """Bars of a cost per method (time per epoch, training time, throughput), mean ± std.

    Args:
        df: one row per measurement (e.g. per epoch or per seed) with columns ``x`` and ``y``.
        x: the grouping (method).
        y: the cost column.
        hue: an optional second grouping.
        ylabel: axis label (default from the column name).
        title: axes title.
        fmt: format of the value printed on each bar.

    Returns:
        The figure (one bar per group, its mean printed on it).
    """
    import seaborn as sns

    for col in [x, y] + ([hue] if hue else []):
        if col not in df:
            raise KeyError(f"efficiency_bars: column {col!r} not in the table; it has "
                           f"{list(df.columns)}")
    order = _order(df[x])
    n = len(order) * (df[hue].nunique() if hue else 1)
    fig = Figure(figsize=(max(4.0, 1.2 + 0.8 * n), 3.6), layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=df, x=x, y=y, hue=hue, order=order, errorbar="sd", capsize=0.1, ax=ax,
                err_kws={"linewidth": 1.2}, **({} if hue else {"color": "C0"}))
    for container in ax.containers:
        ax.bar_label(container, fmt=fmt, fontsize=FONT, padding=2, label_type="center",
                     color="white", fontweight="bold")
    _finish_bar_axes(ax, x, ylabel or metric_label(y), hue, title)
    return fig


def _finish_bar_axes(ax, xlabel: str, ylabel: str, hue: str | None, title: str | None) -> None:
    ax.set_xlabel(xlabel, fontsize=FONT + 1)
    ax.set_ylabel(ylabel, fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3, axis="y")
    if hue and ax.get_legend() is not None:
        ax.legend(fontsize=FONT, title=hue, title_fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT + 2)


def paired_plot(summary: pd.DataFrame, *, direction: str = "t2v", baseline: str = "uniform",
                title: str | None = None) -> Figure:
    """Each method's paired difference to ``baseline`` in R@1 points, with its 95 % interval, one
    row per (regime, method): a row whose bar crosses the zero line is no difference.

    Args:
        summary: a paired study's summary (:func:`mofkit.lab.runner.summarise_study`).
        direction: ``t2v`` or ``v2t``.
        baseline: ``uniform`` or ``rand``.
        title: axes title.
    """
    tag = f"{direction}_vs_{baseline}"
    rows = summary[summary.get(tag, pd.Series(dtype=float)).notna()] if tag in summary else summary.iloc[:0]
    fig = Figure(figsize=(6.4, 0.42 * max(3, len(rows)) + 1.0), layout="constrained")
    ax = fig.add_subplot()
    if rows.empty:
        ax.text(0.5, 0.5, f"no paired runs against {baseline} yet", ha="center", va="center",
                transform=ax.transAxes, fontsize=FONT + 1)
        ax.set_axis_off()
        return fig
    has_regime = "regime" in rows and rows["regime"].nunique() > 1
    labels = [(f"{r.regime}: " if has_regime else "") + f"{r.method} (K={int(r.K)}, {int(r.seeds)} seeds)"
              for r in rows.itertuples()]
    ys = np.arange(len(rows))[::-1]
    lo, hi, mid = rows[f"{tag}_low"], rows[f"{tag}_high"], rows[tag]
    colours = ["C2" if v == "better" else "C3" if v == "worse" else "0.4" for v in rows[f"{tag}_verdict"]]
    for y, m, l, h, c in zip(ys, mid, lo, hi, colours):
        ax.errorbar([m], [y], xerr=[[m - l], [h - m]], fmt="o", color=c, capsize=4, lw=1.8)
    ax.axvline(0, color="0.2", lw=1)
    ax.set_yticks(ys, labels, fontsize=FONT)
    ax.set_xlabel(f"{direction} R@1 minus {baseline} (points, 95 % CI)", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=FONT + 2)
    return fig
