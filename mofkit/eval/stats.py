"""Statistics over runs: seeds summarised per setting, and the per-query ranks runs keep.

* :func:`aggregate_seeds` and :func:`summarise_seeds` are the one seed-summary API (mean and
  sample standard deviation, ddof 1, over seeds); tables and plots in ``mofkit.viz`` format what
  they return.
* :func:`save_ranks` / :func:`load_ranks`: every finished run writes ``ranks.npz``, each test
  query's counts of competitors above and level with its correct item
  (:func:`mofkit.eval.metrics.rank_counts`), so that paired statistics between runs (same test
  queries, seeds paired) can be computed from saved runs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mofkit.eval.metrics import DIRECTIONS, METRIC_KEYS
from mofkit.runfiles import CONFIG_FILE, METRICS_FILE, RANKS_FILE

# Default metric columns of a seed summary, and the cost columns carried along when present
# (videos_per_s: measured, from file to embedding).
DEFAULT_METRICS = tuple(f"t2v_{k}" for k in METRIC_KEYS)
COST_COLUMNS = ("gflops", "text_gflops", "videos_per_s", "train_seconds")


def aggregate_seeds(runs: Sequence[Mapping]) -> dict:
    """Mean and spread of metrics over seeds.

    Args:
        runs: one metrics dict per seed, flat (``{"R1": ...}``) or nested (``{"t2v": {...}}``), all
            with the same keys.

    Returns:
        The same structure with each number replaced by ``(mean, std)``; std is the sample standard
        deviation (ddof = 1), NaN for a single seed.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty; pass one metrics dict per seed")
    keys = list(runs[0].keys())
    for i, r in enumerate(runs[1:], start=1):
        if list(r.keys()) != keys:
            raise ValueError(f"runs[{i}] has keys {list(r.keys())}, runs[0] has {keys}; "
                             "every seed must report the same metrics")
    out = {}
    for k in keys:
        if isinstance(runs[0][k], Mapping):
            out[k] = aggregate_seeds([r[k] for r in runs])
        else:
            x = np.asarray([float(r[k]) for r in runs])
            out[k] = (float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan)
    return out


def seed_stats(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> dict[tuple, dict]:
    """Per setting of a (setting, seed) table: ``{metric: (mean, std), "seeds": n}``.

    Args:
        df: one row per (setting, seed).
        by: the setting columns.
        metrics: the columns to summarise.

    Returns:
        setting key (a tuple of the ``by`` values) -> statistics, in order of appearance.
    """
    missing = [c for c in [*by, *metrics] if c not in df]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(df.columns)}")
    out = {}
    for key, d in df.groupby(list(by), sort=False):
        rows = [{m: float(r[m]) for m in metrics} for _, r in d.iterrows()]
        key = key if isinstance(key, tuple) else (key,)
        out[key] = {**aggregate_seeds(rows), "seeds": len(rows)}
    return out


def default_metrics(df: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """``metrics`` as given (each must exist), or the default ones the table has."""
    return list(metrics) if metrics is not None else [m for m in DEFAULT_METRICS if m in df]


def summarise_seeds(df: pd.DataFrame, by: Sequence[str] | str,
                    metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sample std (ddof 1) over seeds of each setting, as numbers.

    Args:
        df: one row per (setting, seed).
        by: the setting columns.
        metrics: the metric columns; default those of ``t2v_R1 .. t2v_MnR`` the table has.

    Returns:
        One row per setting: the ``by`` columns, ``<metric>`` (mean), ``<metric>_std`` (NaN for
        one seed) and ``seeds``; the cost columns (:data:`COST_COLUMNS`) are summarised too when
        the table has them, so the result feeds ``mofkit.viz.plots.tradeoff_plot``.
    """
    by = [by] if isinstance(by, str) else list(by)
    metrics = default_metrics(df, metrics)
    metrics += [c for c in COST_COLUMNS if c in df and c not in by and c not in metrics]
    records = []
    for key, st in seed_stats(df, by, metrics).items():
        rec = dict(zip(by, key))
        for m in metrics:
            rec[m], rec[f"{m}_std"] = st[m]
        rec["seeds"] = st["seeds"]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def save_ranks(path: str | os.PathLike, counts: Mapping[str, tuple], *, video_ids: Sequence[str],
               query_to_video: np.ndarray | None = None) -> Path:
    """Write a run's per-query rank counts (atomically: a temporary file renamed over ``path``).

    Args:
        path: the file (a run writes ``<out_dir>/ranks.npz``).
        counts: direction -> ``(higher, tied)``, as :func:`mofkit.eval.metrics.rank_counts`.
        video_ids: the test videos, in column order, so that two runs can be paired.
        query_to_video: (Q,) column of each query; None when query i belongs to video i.
    """
    path = Path(path)
    arrays = {"video_ids": np.asarray(list(video_ids), dtype=str)}
    if query_to_video is not None:
        arrays["query_to_video"] = np.asarray(query_to_video, np.int64)
    for direction, (higher, tied) in counts.items():
        arrays[f"{direction}_higher"] = np.asarray(higher, np.int64)
        arrays[f"{direction}_tied"] = np.asarray(tied, np.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_ranks(path: str | os.PathLike) -> dict:
    """A run's rank counts: ``{"video_ids", "query_to_video" (or None), "counts": {direction:
    (higher, tied)}}``; ``path`` is the file or the run's folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RANKS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: runs write it when they finish (runs of older "
                                f"versions did not; train them again to compare queries)")
    with np.load(path) as z:
        counts = {d: (z[f"{d}_higher"], z[f"{d}_tied"]) for d in DIRECTIONS if f"{d}_higher" in z}
        return {"video_ids": [str(v) for v in z["video_ids"]],
                "query_to_video": z["query_to_video"] if "query_to_video" in z else None,
                "counts": counts}


def load_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Per-epoch rows of a run, from its ``metrics.json``."""
    return pd.DataFrame(_metrics_json(run_dir)["history"])


def final_metrics_table(runs: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Final test metrics of runs, one row per run, every direction.

    Args:
        runs: label -> run folder (holding ``metrics.json``).

    Returns:
        DataFrame indexed by label: K, train seconds, test videos, dropped videos,
        ``<direction> <metric>`` columns and, on the synthetic corpus, the attribute caption test's
        win rates (``caption test colour`` / ``shape`` / ``action``, :mod:`mofkit.eval.probes`).
    """
    rows = []
    for label, folder in runs.items():
        doc = _metrics_json(folder)
        fin = doc["final"]
        row = {"run": label, "K": doc["config"]["data"]["num_frames"],
               "train s": round(doc["train_seconds"], 1), "test videos": fin["n_videos"],
               "dropped": len(fin.get("dropped", []))}
        for direction in DIRECTIONS:
            for m in METRIC_KEYS:
                row[f"{direction} {m}"] = round(fin[direction][m], 2)
        for attr, rate in fin.get("caption_test", {}).items():  # synthetic corpus: win rates (%)
            row[f"caption test {attr}"] = round(rate, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def _metrics_json(run_dir: str | os.PathLike) -> dict:
    import json

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json in {run_dir}: has this run been trained?")
    return json.loads(path.read_text())


# -- paired comparisons ------------------------------------------------------------------------------

def query_hits(higher, tied, k: int = 1) -> np.ndarray:
    """Each query's expected hit at rank ``k`` (0..1), ties counted at their expected rank.

    With ``h`` competitors above its item and ``t`` level with it, a query's item lies uniformly on
    ranks ``h + 1 .. h + t + 1``, so P(rank <= k) = clip(k - h, 0, t + 1) / (t + 1): the same rule
    as :func:`mofkit.eval.metrics.metrics_from_counts`, whose R@k is 100 times the mean of these.
    """
    higher, tied = np.asarray(higher, np.float64), np.asarray(tied, np.float64)
    return np.clip(k - higher, 0, tied + 1) / (tied + 1)


def _run_seed(run_dir: Path) -> int:
    import json

    cfg = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    return int(cfg["train"]["seed"])


def paired_difference(runs_a: Sequence[str | os.PathLike], runs_b: Sequence[str | os.PathLike], *,
                      direction: str = "t2v", k: int = 1, confidence: float = 0.95,
                      n_resamples: int = 10_000, random_state: int = 0) -> dict:
    """R@k of A minus B, paired over seeds and test queries, with a bootstrap confidence interval.

    Runs are paired by their training seed (each side needs the same seeds) and must have been
    tested on the same videos. Per query, the hit difference is averaged over the seed pairs; the
    interval resamples test queries (``scipy.stats.bootstrap``, BCa), so it says how sure the
    difference is for this test set and these seeds.

    Args:
        runs_a: run folders of method A (one per seed), each with ``ranks.npz`` and ``config.json``.
        runs_b: run folders of method B, the same seeds.
        direction: ``t2v``, ``v2t``, ``t2v_dsl`` or ``v2t_dsl``.
        k: the recall cut-off (R@1 by default).
        confidence: of the interval.
        n_resamples: bootstrap resamples.
        random_state: seed of the resampling, so a printed interval can be reproduced.

    Returns:
        ``{"direction", "k", "a", "b", "diff", "low", "high", "seeds", "queries", "verdict"}``:
        mean R@k of each side and their difference in points, the interval, and "A better",
        "B better" or "no difference" (the interval holds zero).
    """
    from scipy import stats as scipy_stats

    by_seed_a = {_run_seed(Path(r)): Path(r) for r in runs_a}
    by_seed_b = {_run_seed(Path(r)): Path(r) for r in runs_b}
    if len(by_seed_a) != len(runs_a) or len(by_seed_b) != len(runs_b):
        raise ValueError("each side needs one run per seed; two runs of a side share a seed")
    if set(by_seed_a) != set(by_seed_b):
        raise ValueError(f"the two sides must have the same seeds to be paired: A has "
                         f"{sorted(by_seed_a)}, B has {sorted(by_seed_b)}")
    diffs, hits_a, hits_b, ids = [], [], [], None
    for seed in sorted(by_seed_a):
        ra, rb = load_ranks(by_seed_a[seed]), load_ranks(by_seed_b[seed])
        for r, side in ((ra, by_seed_a[seed]), (rb, by_seed_b[seed])):
            if ids is None:
                ids = r["video_ids"]
            elif r["video_ids"] != ids:
                raise ValueError(f"{side} was tested on other videos than the first run: paired "
                                 f"statistics need the same test set")
            if direction not in r["counts"]:
                raise KeyError(f"{side}/ranks.npz has no {direction!r} ranks; it has {list(r['counts'])}")
        a, b = query_hits(*ra["counts"][direction], k=k), query_hits(*rb["counts"][direction], k=k)
        hits_a.append(a)
        hits_b.append(b)
        diffs.append(a - b)
    d = 100 * np.mean(diffs, axis=0)  # (Q,) per-query difference in points, averaged over seeds
    if np.ptp(d) == 0:  # every query the same: no spread to resample
        low = high = float(d[0])
    else:
        res = scipy_stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                                    method="BCa", random_state=random_state)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    verdict = "A better" if low > 0 else "B better" if high < 0 else "no difference"
    return {"direction": direction, "k": k, "a": float(100 * np.mean(hits_a)),
            "b": float(100 * np.mean(hits_b)), "diff": float(d.mean()), "low": low, "high": high,
            "seeds": len(by_seed_a), "queries": len(d), "verdict": verdict}


def paired_summary(runs: pd.DataFrame, *, baselines: Sequence[str] = ("uniform", "rand"),
                   by: Sequence[str] = ("regime",), directions: Sequence[str] = ("t2v", "v2t"),
                   confidence: float = 0.95, n_resamples: int = 10_000) -> pd.DataFrame:
    """One row per (``by`` group, method) of a paired study: seeds, R@1 mean and sd per direction,
    and the paired difference to each baseline with its confidence interval.

    Args:
        runs: one row per run, with ``method``, ``seed``, ``run_dir`` (a folder with
            ``config.json`` and ``ranks.npz``), the ``by`` columns and ``<direction>_R1``; the cost
            columns (:data:`COST_COLUMNS`) and ``K`` are carried along (means).
        baselines: methods every other method of its group is compared with (those present).
        by: the columns that group runs into comparable sets (same test set).
        directions: of the R@1 columns and the differences.
        confidence, n_resamples: of :func:`paired_difference` (seeds paired, queries resampled).

    Returns:
        Columns ``*by, method, K, seeds, <d>_R1, <d>_R1_sd`` per direction, then per baseline ``b``
        and direction ``d``: ``<d>_vs_<b>``, ``<d>_vs_<b>_low``, ``<d>_vs_<b>_high`` (points,
        over the seeds both have) and ``<d>_vs_<b>_verdict``; then the cost columns and ``device``.
    """
    records = []
    by = list(by)
    groups = runs.groupby(by, sort=False) if by else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for method, m in g.groupby("method", sort=False):
            rec = dict(zip(by, key))
            rec.update(method=method, K=int(m["K"].iloc[0]) if "K" in m else None,
                       seeds=len(m))
            for d in directions:
                col = m[f"{d}_R1"].astype(float)
                rec[f"{d}_R1"] = col.mean()
                rec[f"{d}_R1_sd"] = col.std(ddof=1) if len(col) > 1 else float("nan")
            for base in baselines:
                b = g[g["method"] == base]
                if base == method or b.empty:
                    continue
                seeds = sorted(set(m["seed"]) & set(b["seed"]))
                if not seeds:
                    continue
                side_a = [m.set_index("seed").loc[s, "run_dir"] for s in seeds]
                side_b = [b.set_index("seed").loc[s, "run_dir"] for s in seeds]
                for d in directions:
                    r = paired_difference(side_a, side_b, direction=d, confidence=confidence,
                                          n_resamples=n_resamples)
                    tag = f"{d}_vs_{base}"
                    rec.update({tag: r["diff"], f"{tag}_low": r["low"], f"{tag}_high": r["high"],
                                f"{tag}_verdict": {"A better": "better", "B better": "worse"}.get(
                                    r["verdict"], r["verdict"])})
                rec[f"paired_seeds_vs_{base}"] = len(seeds)
            for c in COST_COLUMNS:
                if c in m:
                    rec[c] = float(m[c].astype(float).mean())
            if "device" in m:
                rec["device"] = "; ".join(sorted(m["device"].astype(str).unique()))
            records.append(rec)
    return pd.DataFrame.from_records(records)
