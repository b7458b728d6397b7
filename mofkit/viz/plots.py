"""Plots of results: training curves, the accuracy/cost trade-off, ablations with spread over seeds."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from mofkit.eval.metrics import mean_std_table

_LOSSES = (("train_loss", "base loss (training frames)"),
           ("meta_loss_compressed", "L1: compressed frames"),
           ("meta_loss_whole", "L2: whole video after the virtual step"))
_RECALLS = (("t2v_R1", "R@1"), ("t2v_R5", "R@5"), ("t2v_R10", "R@10"))


def _runs(history) -> dict[str, pd.DataFrame]:
    if isinstance(history, Mapping):
        return {str(k): pd.DataFrame(v) for k, v in history.items()}
    return {"": pd.DataFrame(history)}


def training_curves(history, *, title: str | None = None) -> Figure:
    """Losses and test recalls against epochs.

    Args:
        history: one run's per-epoch rows (list of dicts or DataFrame), or a dict
            run name -> rows for several runs (one colour each).
        title: figure title.

    Returns:
        A figure with a loss panel and a text-to-video recall panel.
    """
    runs = _runs(history)
    fig = Figure(figsize=(10, 3.6))
    ax_loss, ax_rec = fig.subplots(1, 2)
    styles = {"train_loss": "-", "meta_loss_compressed": "--", "meta_loss_whole": ":"}
    for c, (name, df) in enumerate(runs.items()):
        colour = f"C{c}"
        for key, label in _LOSSES:
            if key in df and df[key].notna().any():
                ax_loss.plot(df["epoch"], df[key], styles[key], color=colour,
                             label=f"{name} {label}".strip())
        for (key, label), marker in zip(_RECALLS, ("o", "s", "^")):
            if key in df and df[key].notna().any():
                d = df[df[key].notna()]
                ax_rec.plot(d["epoch"], d[key], marker=marker, ms=3, color=colour,
                            alpha=1.0 if key == "t2v_R1" else 0.5, label=f"{name} {label}".strip())
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_rec.set_xlabel("epoch")
    ax_rec.set_ylabel("text-to-video recall (%)")
    for ax in (ax_loss, ax_rec):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def tradeoff_plot(df: pd.DataFrame, *, x: str = "gflops", y: str = "t2v_R1",
                  method_col: str = "method", k_col: str = "K", err_col: str | None = None,
                  title: str | None = None) -> Figure:
    """Accuracy against inference cost per video, one line per method, points labelled with K.

    Args:
        df: one row per (method, K) with the mean metric (aggregate seeds first), e.g. the
            output of :func:`summarise_seeds`.
        x: cost column (GFLOPs per video).
        y: metric column.
        method_col: method names (e.g. ``uniform``, ``MOF``).
        k_col: frames per video.
        err_col: optional column of the metric's spread (error bars).
        title: figure title.

    Returns:
        The figure: the trade-off MOF tries to escape, in one picture.
    """
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    for c, (method, d) in enumerate(df.groupby(method_col, sort=False)):
        d = d.sort_values(x)
        ax.errorbar(d[x], d[y], yerr=d[err_col] if err_col and err_col in d else None,
                    marker="o" if method != "MOF" else "*", ms=7 if method != "MOF" else 13,
                    capsize=3, color=f"C{c}", label=str(method), lw=1.5)
        for _, row in d.iterrows():
            ax.annotate(f"K={int(row[k_col])}", (row[x], row[y]), textcoords="offset points",
                        xytext=(5, -11), fontsize=8, color=f"C{c}")
    ax.set_xlabel("inference GFLOPs per video")
    ax.set_ylabel(y.replace("t2v_", "text-to-video ").replace("R1", "R@1 (%)"))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def summarise_seeds(df: pd.DataFrame, by: Sequence[str],
                    metrics: Sequence[str] = ("t2v_R1", "t2v_R5", "t2v_R10", "t2v_MdR", "t2v_MnR")
                    ) -> pd.DataFrame:
    """Mean and sample std over seeds: columns ``<metric>`` and ``<metric>_std`` per group."""
    g = df.groupby(list(by), sort=False)
    mean = g[list(metrics)].mean()
    std = g[list(metrics)].std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std, g.size().rename("seeds")], axis=1).reset_index()
    extra = [c for c in ("gflops", "train_seconds") if c in df.columns and c not in by]
    if extra:
        out = out.merge(g[extra].mean().reset_index(), on=list(by))
    return out


def ablation_table(df: pd.DataFrame, by: Sequence[str] | str,
                   directions: Sequence[str] = ("t2v",)) -> pd.DataFrame:
    """"mean ± std" cells over seeds for each setting (``by`` columns).

    Args:
        df: one row per (setting, seed) with columns ``<direction>_<R1|R5|R10|MdR|MnR>``.
        by: the setting columns.
        directions: which metric families to show (``t2v``, ``v2t``, ``t2v_dsl``, ...).

    Returns:
        DataFrame of strings, one row per setting, columns like ``t2v R@1``.
    """
    by = [by] if isinstance(by, str) else list(by)
    rows = {}
    for key, d in df.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows[" / ".join(str(k) for k in key)] = [
            {dr: {m: float(r[f"{dr}_{m}"]) for m in ("R1", "R5", "R10", "MdR", "MnR")}
             for dr in directions} for _, r in d.iterrows()]
    parts = [mean_std_table(rows, direction=dr).add_prefix(f"{dr} ") for dr in directions]
    table = pd.concat(parts, axis=1)
    table.index.name = " / ".join(by)
    return table


def ablation_plot(df: pd.DataFrame, *, x: str, y: str = "t2v_R1", hue: str | None = None,
                  kind: str = "point", title: str | None = None) -> Figure:
    """A seaborn point (or bar) plot of a metric per setting, with the spread over seeds.

    Args:
        df: one row per (setting, seed).
        x: the varied setting.
        y: the metric.
        hue: a second grouping (e.g. ``method``).
        kind: ``point`` or ``bar``.
        title: axes title.

    Returns:
        The figure (error bars: standard deviation over seeds; points: the seeds themselves).
    """
    import seaborn as sns

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    d = df.copy()
    d[x] = d[x].astype(str)
    plot = sns.pointplot if kind == "point" else sns.barplot
    plot(data=d, x=x, y=y, hue=hue, errorbar="sd", ax=ax, **({"dodge": 0.3} if hue else {}))
    sns.stripplot(data=d, x=x, y=y, hue=hue, ax=ax, color="0.3", alpha=0.5, size=3,
                  legend=False, dodge=bool(hue))
    ax.set_ylabel(y.replace("t2v_", "t2v ").replace("R1", "R@1 (%)"))
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def efficiency_bars(df: pd.DataFrame, *, x: str = "method", y: str = "train_seconds",
                    ylabel: str | None = None, title: str | None = None) -> Figure:
    """Bars of a cost (training time, throughput) per method, mean with the spread over seeds."""
    import seaborn as sns

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    sns.barplot(data=df, x=x, y=y, errorbar="sd", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=8)
    ax.set_ylabel(ylabel or y)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def headline_markdown(df: pd.DataFrame, *, by: Sequence[str] = ("method", "K"),
                      directions: Sequence[str] = ("t2v", "v2t")) -> str:
    """A markdown table: metrics as mean ± std over seeds, GFLOPs per video, training seconds."""
    table = ablation_table(df, list(by), directions)
    g = df.groupby(list(by), sort=False)
    cost = g[["gflops", "train_seconds"]].mean()
    sizes = g.size()
    head = ["setting", *table.columns, "GFLOPs/video", "train s", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, row), (_, c), n in zip(table.iterrows(), cost.iterrows(), sizes):
        lines.append("| " + " | ".join([str(name), *map(str, row.values), f"{c['gflops']:.3f}",
                                        f"{c['train_seconds']:.0f}", str(int(n))]) + " |")
    return "\n".join(lines)
