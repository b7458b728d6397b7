"""Markdown tables generated from committed result files, so that no number in the docs is typed.

A document marks each generated table with a pair of comments; what lies between them is replaced::

    <!-- table: docs/results/main_job_cpu.csv -->
    (generated: the table, then one line saying what its rows are)
    <!-- /table -->

The opening comment names a CSV with one row per (setting, seed), as a study or the main job writes
it (``headline.csv``), relative to the document's folder, and may add options:
``by=method,K`` (the setting columns, default ``method,K``) and ``directions=t2v,v2t`` (default).
A paired study's summary (``docs/results/regimes_cpu.csv``) renders as its table of paired
intervals, or with ``show=findings`` as one sentence per regime (:func:`paired_findings`).
``python -m mofkit tables`` rewrites the tables of ``README.md``; ``--check`` only says whether they
are up to date (the test suite runs it), so a hand edit or a CSV changed without regenerating
fails CI.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mofkit.viz.plots import headline_markdown

_BLOCK = re.compile(r"(<!-- table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def seeds_phrase(seeds) -> str:
    """What a table's numbers are over its seeds: "one seed (0): single runs, no spread over
    seeds" or "3 seeds (0, 1, 2): mean ± sample standard deviation"."""
    seeds = sorted({int(x) for x in seeds})
    if len(seeds) == 1:
        return f"one seed ({seeds[0]}): single runs, no spread over seeds"
    return f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± sample standard deviation"


def render_table(csv: str | Path, *, by=("method", "K"), directions=("t2v", "v2t"),
                 label: str | None = None, show: str = "table") -> str:
    """The markdown of one generated table: the table and a line saying what its rows are.

    Args:
        csv: a results file, one row per (setting, seed), with ``seed`` and metric columns and,
            when present, ``gflops``, ``videos_per_s``, ``train_seconds``, ``n_test_videos``,
            ``device`` and ``profile``.
        by: the setting columns.
        directions: metric directions shown.
        label: the file name printed under the table (default ``csv`` as given).

    Returns:
        Markdown text ending with a newline.
    """
    df = pd.read_csv(csv)
    if show == "findings":
        return (paired_findings(df, baselines=paired_baselines(df, directions[0]))
                + f"\n*generated from `{label or csv}`.*\n")
    if any(c.startswith(f"{directions[0]}_vs_") for c in df):  # a paired study's summary
        return _paired_document(df, directions, label or csv)
    table = headline_markdown(df, by=by, directions=directions)
    parts = []
    if "profile" in df:
        parts.append(f"profile `{', '.join(sorted(df['profile'].astype(str).unique()))}`")
    if "n_test_videos" in df:
        parts.append(f"{', '.join(str(int(n)) for n in sorted(df['n_test_videos'].unique()))} test videos")
    if "seed" in df:
        parts.append(seeds_phrase(df["seed"]))
    if "device" in df:
        parts.append(f"device: {'; '.join(sorted(df['device'].astype(str).unique()))}")
    parts.append(f"generated from `{label or csv}`")
    return table + "\n\n" + "*" + "; ".join(parts) + ".*\n"


def paired_baselines(summary: pd.DataFrame, direction: str = "t2v") -> tuple[str, ...]:
    """The baselines a paired summary compares with, read from its ``<direction>_vs_<b>`` columns
    (``uniform`` and ``rand`` for the controls; ``uniform K=4``, ``uniform K=16`` for the compressors)."""
    import re

    head = f"{direction}_vs_"
    tails = ("_low", "_high", "_verdict")
    found = [c[len(head):] for c in summary.columns if c.startswith(head) and not c.endswith(tails)]

    def order(b: str):  # uniform first, by K; then the others as found
        k = re.search(r"K=(\d+)", b)
        return (not b.startswith("uniform"), int(k.group(1)) if k else 0)

    return tuple(sorted(found, key=order))


def _paired_document(df: pd.DataFrame, directions, label) -> str:
    parts = []
    if "profile" in df:
        parts.append(f"profile `{', '.join(sorted(df['profile'].astype(str).unique()))}`")
    if "n_test_videos" in df:
        parts.append(f"{', '.join(str(int(n)) for n in sorted(df['n_test_videos'].unique()))} test videos")
    seeds = sorted({int(n) for n in df["seeds"]})
    parts.append(f"{'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''} per row: R@1 mean ± "
                 f"sample sd over seeds; differences paired over seeds, 95 % BCa bootstrap interval "
                 f"over test queries, ▲/▼ where it excludes zero")
    if "ceiling_t2v_R1" in df and df["ceiling_t2v_R1"].notna().any():
        parts.append("ceiling: the best t2v R@1 the frames a row reads allow (K uniform frames, N for a "
                     "compressor; `mofkit ceiling`); colour-only: the same for a scorer that sees only "
                     "the frames' colours, in no order")
    if "device" in df:
        parts.append(f"trained on: {'; '.join(sorted(set('; '.join(df['device'].astype(str)).split('; '))))}")
    if "videos_per_s_device" in df:
        parts.append(f"videos/s measured on: {', '.join(sorted(df['videos_per_s_device'].astype(str).unique()))}")
    parts.append(f"generated from `{label}`")
    if "compressor_gflops" in df:
        parts.insert(2, "GFLOPs/video: the whole inference cost per video, image tower on K frames, "
                        "temporal head and compressor; videos/s: decode (N frames for a compressor), "
                        "compress, encode")
    return (paired_markdown(df, directions=directions, baselines=paired_baselines(df, directions[0]))
            + "\n" + "*" + "; ".join(parts) + ".*\n")


def _options(spec: str) -> tuple[str, dict]:
    path, *rest = spec.split()
    opts: dict = {}
    for item in rest:
        key, _, value = item.partition("=")
        if key not in ("by", "directions", "show") or not value:
            raise ValueError(f"table option {item!r}: use by=col1,col2, directions=t2v,v2t or "
                             f"show=findings (a paired study's findings, in sentences)")
        opts[key] = value if key == "show" else tuple(value.split(","))
    return path, opts


def render_document(text: str, base: str | Path) -> str:
    """``text`` with every marked table regenerated from its CSV (paths relative to ``base``)."""
    def block(m: re.Match) -> str:
        path, opts = _options(m.group("spec"))
        csv = Path(base) / path
        if not csv.is_file():
            raise FileNotFoundError(f"table source {csv} does not exist (named in "
                                    f"'<!-- table: {m.group('spec')} -->')")
        return m.group(1) + render_table(csv, label=path, **opts) + m.group(4)

    return _BLOCK.sub(block, text)


def update_tables(paths, check: bool = False) -> list[Path]:
    """Regenerate the marked tables of markdown files.

    Args:
        paths: the files (e.g. ``["README.md"]``).
        check: change nothing; only report.

    Returns:
        The files whose tables were (or, with ``check``, would be) changed.
    """
    stale = []
    for p in map(Path, paths):
        text = p.read_text()
        new = render_document(text, p.parent)
        if new != text:
            stale.append(p)
            if not check:
                p.write_text(new)
    return stale


def update_figures(csvs) -> list[Path]:
    """Draw the figure of each result file next to it: a compressors study summary
    (``compressors_<profile>.csv``) gets its trade-off plot (``compressors_<profile>.png``,
    :func:`mofkit.viz.plots.compressor_tradeoff`). Returns the PNGs written."""
    from mofkit.viz.frames import save_figure
    from mofkit.viz.plots import compressor_tradeoff

    written = []
    for csv in map(Path, csvs):
        if not csv.stem.startswith("compressors") or csv.stat().st_size == 0:
            continue
        summary = pd.read_csv(csv)
        if summary.empty:
            continue
        profile = csv.stem.partition("_")[2]
        fig = compressor_tradeoff(summary, title=f"frame compressors, {profile} profile: t2v R@1 against "
                                                 "the whole inference cost per video")
        written.append(save_figure(fig, csv.with_suffix(".png")))
    return written


def write_headline(out: str | Path, sweep: pd.DataFrame, *, cost: pd.DataFrame | None = None,
                   device: str = "", profile: str = "") -> Path:
    """The main job's headline: ``<out>/headline.md`` (the trade-off table, saying what was run)
    and ``<out>/headline.csv`` (its rows, one per setting and seed, with the measured throughput
    and the device: the file ``docs/results/`` keeps of a main job).

    Args:
        out: the results folder.
        sweep: the K sweep's table (``run_study(cfg, "k_sweep", out)``).
        cost: ``mofkit.eval.cost.cost_table`` of the config; adds the measured end-to-end
            videos per second at each K.
        device: what trained and timed the runs, in words (``mofkit.device.describe_device``).
        profile: the config profile.

    Returns:
        The markdown file.
    """
    out = Path(out)
    if cost is not None:  # videos per second from file to embedding
        sweep = sweep.assign(videos_per_s=sweep["K"].map(cost.set_index("K")["videos/s (end to end)"]))
    n_test = sorted({int(n) for n in sweep["n_test_videos"]}) if "n_test_videos" in sweep else []
    where = f"{', '.join(map(str, n_test))} test videos" if n_test else "test set"
    on = f"; trained and timed on {device}" if device else ""
    text = (f"## Headline: uniform K vs MOF ({where}; {seeds_phrase(sweep['seed'])}{on})\n\n"
            + headline_markdown(sweep, by=("method", "K")) + "\n")
    path = out / "headline.md"
    path.write_text(text)
    sweep.assign(device=device, profile=profile).to_csv(out / "headline.csv", index=False)
    return path


def _ci(row, tag: str) -> str:
    if f"{tag}_low" not in row or pd.isna(row.get(f"{tag}_low")):
        return ""
    mark = {"better": " ▲", "worse": " ▼"}.get(row.get(f"{tag}_verdict"), "")
    return f"{row[tag]:+.1f} [{row[f'{tag}_low']:+.1f}, {row[f'{tag}_high']:+.1f}]{mark}"


def comparison_markdown(table: pd.DataFrame) -> str:
    """One seed's runs side by side (``mofkit.notebook.compressor_vs_uniform``) as a markdown table
    that fits a page: R@1 both ways to one decimal, the paired difference to uniform with its
    95 % interval over test queries, the whole inference GFLOPs per video, measured videos/s and
    training seconds, rounded."""
    if table.empty:
        return "(no runs)\n"
    head = ["method", "K", "N", "t2v R@1", "t2v vs uniform (95 % CI)", "v2t R@1", "v2t vs uniform (95 % CI)", "GFLOPs/video", "videos/s (end to end)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        speed = f"{r['videos_per_s']:.0f}" if "videos_per_s" in r and pd.notna(r["videos_per_s"]) else ""
        cells = [str(r["method"]), str(int(r["K"])), str(int(r["N"])), f"{r['t2v_R1']:.1f}", _ci(r, "t2v_vs_uniform"),
                 f"{r['v2t_R1']:.1f}", _ci(r, "v2t_vs_uniform"), f"{r['gflops']:.3f}", speed,
                 f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n*one seed: the interval is over test queries only.*\n"


def paired_markdown(summary: pd.DataFrame, *, directions=("t2v", "v2t"),
                    baselines=("uniform", "rand")) -> str:
    """A paired study's summary (:func:`mofkit.lab.runner.summarise_study`) as a markdown
    table: per regime and method, R@1 mean ± sd over seeds and the paired difference to each
    baseline with its 95 % interval (▲ / ▼ where the interval excludes zero), then the cost."""
    if summary.empty:
        return "(no finished runs)\n"
    has_regime = "regime" in summary and summary["regime"].nunique() > 1
    has_n = "N" in summary and (summary["N"] != summary["K"]).any()  # a compressor's input frames
    head = ([("corpus" if "compressor" in summary else "regime")] if has_regime else []) + \
        ["method", "K"] + (["N"] if has_n else []) + ["seeds"]
    for d in directions:
        head.append(f"{d} R@1")
        head += [f"{d} vs {b} (95 % CI)" for b in baselines if f"{d}_vs_{b}" in summary]
    ceiling = "ceiling_t2v_R1" in summary and summary["ceiling_t2v_R1"].notna().any()
    colour = ceiling and "colour_ceiling_t2v_R1" in summary
    head += (["ceiling t2v R@1"] if ceiling else []) + (["colour-only ceiling"] if colour else []) + \
        ["GFLOPs/video", "videos/s (end to end)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = ([str(r["regime"])] if has_regime else []) + [str(r["method"]), str(int(r["K"]))] + \
            ([str(int(r["N"]))] if has_n else []) + [str(int(r["seeds"]))]
        for d in directions:
            sd = r.get(f"{d}_R1_sd")
            cells.append(f"{r[f'{d}_R1']:.1f}" + (f" ± {sd:.1f}" if pd.notna(sd) else ""))
            cells += [_ci(r, f"{d}_vs_{b}") for b in baselines if f"{d}_vs_{b}" in summary]
        if ceiling:
            cells.append(f"{r['ceiling_t2v_R1']:.1f}" if pd.notna(r["ceiling_t2v_R1"]) else "")
        if colour:
            cells.append(f"{r['colour_ceiling_t2v_R1']:.1f}" if pd.notna(r["colour_ceiling_t2v_R1"]) else "")
        cells.append(f"{r['gflops']:.3f}" if "gflops" in r and pd.notna(r["gflops"]) else "")
        cells.append(f"{r['videos_per_s']:.0f}" if "videos_per_s" in r and pd.notna(r["videos_per_s"]) else "")
        cells.append(f"{r['train_seconds']:.0f}" if "train_seconds" in r and pd.notna(r["train_seconds"]) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_findings(summary: pd.DataFrame, *, methods=None, baselines=("uniform", "rand"),
                    direction: str = "t2v") -> str:
    """Markdown sentences, one per regime and method, saying what a paired study's table shows
    for each method against each baseline: the difference, its 95 % interval and the verdict
    (better / worse only when the interval excludes zero, else no difference).

    Args:
        summary: :func:`mofkit.lab.runner.summarise_study`'s table.
        methods: the methods to state (default: every method that is not a baseline, in table order).
        baselines: what they are compared with.
        direction: ``t2v`` or ``v2t``.
    """
    if methods is None:
        methods = [m for m in dict.fromkeys(summary.get("method", [])) if m not in baselines]
    regimes = summary.groupby("regime", sort=False) if "regime" in summary else [("", summary)]
    several = "regime" in summary and summary["regime"].nunique() > 1
    lines = []
    for regime, g in regimes:
        for method in methods:
            row = g[g["method"] == method]
            if row.empty:
                continue
            r = row.iloc[0]
            parts = []
            for b in baselines:
                tag = f"{direction}_vs_{b}"
                if tag in r and pd.notna(r[tag]):
                    verdict = {"better": "better", "worse": "worse"}.get(r[f"{tag}_verdict"], "no difference")
                    parts.append(f"vs {b} {r[tag]:+.1f} [{r[f'{tag}_low']:+.1f}, {r[f'{tag}_high']:+.1f}]: "
                                 f"**{verdict}**")
            if not parts:
                continue
            seeds = int(r.get(f"paired_seeds_vs_{baselines[0]}", r["seeds"]))
            ceiling = (f" of a ceiling of {r['ceiling_t2v_R1']:.1f}"
                       if direction == "t2v" and pd.notna(r.get("ceiling_t2v_R1", float("nan"))) else "")
            if ceiling and pd.notna(r.get("colour_ceiling_t2v_R1", float("nan"))):
                ceiling += f", colour-only {r['colour_ceiling_t2v_R1']:.1f}"
            name = (regime if len(methods) == 1 else f"{regime}, {method}") if several else \
                (method if len(methods) > 1 or not regime else regime)
            lines.append(f"- {name or 'all'} ({seeds} seeds, {direction} R@1 {r[f'{direction}_R1']:.1f}"
                         f"{ceiling}): " + "; ".join(parts))
    return "\n".join(lines) + ("\n" if lines else "(no paired runs yet)\n")
