"""Each paired study's summary: per regime (or corpus) and method, R@1 over seeds, the paired 95 %
intervals against the study's baselines, the whole inference cost per video, measured videos per
second and, on the synthetic corpus, the information and colour-only ceilings. A study's grid names
its summariser (:attr:`mofkit.lab.grids.Study.summarise`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mofkit.config import Config
from mofkit.data.datasets import dataset_spec
from mofkit.lab.names import COMPRESSORS, COMPRESSOR_CORPORA, METHODS, PAIRED_BASELINES, REGIMES, compressor_baselines
from mofkit.lab.speed import measured_throughput, timing_root


def regime_ceiling(root: str | Path, k: int) -> dict[str, float]:
    """The information and colour-only ceilings of t2v R@1 (:mod:`mofkit.eval.ceiling`) at K
    uniform frames on the test split of the synthetic corpus at ``root``, in percent
    (``ceiling_t2v_R1``, ``colour_ceiling_t2v_R1``); NaN where the corpus is absent."""
    from mofkit.data.datasets import load_dataset
    from mofkit.data.synthetic import load_timeline
    from mofkit.eval.ceiling import information_ceiling

    if not (Path(root) / "corpus.json").is_file():
        return {"ceiling_t2v_R1": float("nan"), "colour_ceiling_t2v_R1": float("nan")}
    ids = load_dataset("synthetic", root, "test").video_ids
    c = information_ceiling(load_timeline(root), ids, k)
    return {key: c[key] for key in ("ceiling_t2v_R1", "colour_ceiling_t2v_R1")}


def _add_ceilings(table: pd.DataFrame, runs: pd.DataFrame, frames) -> None:
    """Both ceilings per row, at the frames each row reads (``frames``: one count per row)."""
    roots = runs.groupby("regime")["data.root"].first()
    cache = {}
    for reg, n in {(reg, int(n)) for reg, n in zip(table["regime"], frames)}:
        cache[(reg, n)] = regime_ceiling(roots[reg], n)
    for col in ("ceiling_t2v_R1", "colour_ceiling_t2v_R1"):
        table[col] = [cache[(reg, int(n))][col] for reg, n in zip(table["regime"], frames)]


def _describe(cfg: Config, table: pd.DataFrame, runs: pd.DataFrame, frames: str) -> None:
    """The columns every paired summary has: each regime's test videos, the profile and, on a
    corpus with timelines, the best t2v R@1 the frames of column ``frames`` allow (information
    and colour-only ceilings)."""
    tests = runs.groupby("regime")["n_test_videos"].first()
    table["n_test_videos"] = table["regime"].map(tests).astype(int)
    table["profile"] = cfg.profile
    if dataset_spec(cfg.data.dataset).timelines and "data.root" in runs:
        _add_ceilings(table, runs, table[frames])


def summarise_paired(cfg: Config, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """A paired study's table: per regime and method, seeds, R@1 mean and sd, the paired 95 %
    interval of the difference to ``uniform`` and to ``rand``
    (:func:`mofkit.eval.stats.paired_summary`), inference GFLOPs per video and, with ``measure``,
    end-to-end videos per second measured on this machine (the same for every method of a K:
    they differ in training only); ``profile`` and ``n_test_videos`` columns; on the synthetic
    corpus ``ceiling_t2v_R1``, the best t2v R@1 the K uniform test frames allow (:func:`regime_ceiling`)."""
    from mofkit.eval.cost import describe_throughput
    from mofkit.eval.stats import paired_summary

    if runs.empty:
        return pd.DataFrame()
    table = paired_summary(runs, baselines=PAIRED_BASELINES, by=("regime",))
    order = {m: i for i, m in enumerate(METHODS)}
    regimes = {r: i for i, r in enumerate(REGIMES)}
    table = table.sort_values(by=["regime", "method"], key=lambda c: c.map(
        regimes if c.name == "regime" else order)).reset_index(drop=True)
    _describe(cfg, table, runs, "K")  # the ceilings of the K uniform test frames
    if measure:
        root = timing_root(cfg, runs)
        speed = {k: measured_throughput(cfg, root, int(k)) for k in table["K"].unique()}
        table["videos_per_s"] = table["K"].map(speed)
        table["videos_per_s_device"] = describe_throughput(cfg.device)
    return table


def summarise_compressors(cfg: Config, runs: pd.DataFrame, *, measure: bool = True) -> pd.DataFrame:
    """The compressors study's table: per corpus (``regime``: static, camera) and method, seeds,
    R@1 mean and sd, the paired 95 % interval of the difference to uniform at the config's K and at
    16 frames (:func:`compressor_baselines`), the compressor and its training mode, K and N, total
    inference GFLOPs per video (image tower on K frames, temporal head, compressor) and the
    compressor's share, training seconds and, with ``measure``, end-to-end videos per second
    measured on this machine (decode N or K frames, compress, encode; the same on both corpora)."""
    from mofkit.eval.cost import describe_throughput
    from mofkit.eval.stats import paired_summary

    if runs.empty:
        return pd.DataFrame()
    table = paired_summary(runs, baselines=compressor_baselines(cfg), by=("regime",))
    spec = {label: o for label, o in COMPRESSORS.items()}
    table["compressor"] = [spec[m]["compress.name"] if m in spec else "none" for m in table["method"]]
    table["training"] = ["amortised" if spec.get(m, {}).get("compress.training") == "amortised"
                         else ("end_to_end" if spec.get(m, {}).get("compress.name") == "slots" else "")
                         for m in table["method"]]
    table["N"] = [cfg.compress.input_frames if m in spec else int(k)
                  for m, k in zip(table["method"], table["K"])]
    gc = runs.groupby(["regime", "method"])["compressor_gflops"].mean() if "compressor_gflops" in runs \
        else None
    table["compressor_gflops"] = [float(gc.get((r, m), 0.0)) if gc is not None else 0.0
                                  for r, m in zip(table["regime"], table["method"])]
    corpora = list(COMPRESSOR_CORPORA)
    table = table.sort_values(by=["regime"], key=lambda c: c.map({c_: i for i, c_ in enumerate(corpora)}),
                              kind="stable").reset_index(drop=True)
    _describe(cfg, table, runs, "N")  # the frames each row reads: K uniform, or a compressor's N
    if measure:
        root = timing_root(cfg, runs)
        speed = {}
        for m, k in table[["method", "K"]].drop_duplicates().itertuples(index=False):
            speed[m] = measured_throughput(cfg, root, int(k), compress=spec.get(m))
        table["videos_per_s"] = table["method"].map(speed)
        table["videos_per_s_device"] = describe_throughput(cfg.device)
    return table
