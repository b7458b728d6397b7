"""Seed summaries and the per-query rank counts every run keeps (for paired statistics later)."""
import math

import numpy as np
import pandas as pd
import pytest

from mofkit.eval.metrics import evaluate_similarity, metrics_from_counts, rank_counts
from mofkit.eval.stats import aggregate_seeds, load_ranks, save_ranks, summarise_seeds


def test_aggregate_seeds_is_mean_and_sample_std():
    runs = [{"R1": 47.0, "R5": 70.0, "R10": 80.0, "MdR": 2.0, "MnR": 14.0},
            {"R1": 49.0, "R5": 72.0, "R10": 82.0, "MdR": 2.0, "MnR": 12.0}]
    agg = aggregate_seeds(runs)
    assert agg["R1"] == pytest.approx((48.0, math.sqrt(2)))
    assert agg["MdR"] == (2.0, 0.0)
    nested = aggregate_seeds([{"t2v": r, "v2t": r} for r in runs])
    assert nested["v2t"]["MnR"] == pytest.approx((13.0, math.sqrt(2)))
    assert math.isnan(aggregate_seeds(runs[:1])["R1"][1])
    with pytest.raises(ValueError, match="runs\\[1\\]"):
        aggregate_seeds([{"R1": 1.0}, {"R5": 1.0}])


def test_summarise_seeds_per_setting_with_costs():
    df = pd.DataFrame({"method": ["uniform"] * 3 + ["MOF"], "K": [4] * 4, "seed": [0, 1, 2, 0],
                       "t2v_R1": [20.0, 22.0, 24.0, 30.0], "gflops": [0.068] * 4,
                       "train_seconds": [10.0, 12.0, 14.0, 40.0]})
    s = summarise_seeds(df, ["method", "K"])
    assert list(s["method"]) == ["uniform", "MOF"] and list(s["seeds"]) == [3, 1]
    assert s.loc[0, "t2v_R1"] == 22.0 and s.loc[0, "t2v_R1_std"] == pytest.approx(2.0)
    assert math.isnan(s.loc[1, "t2v_R1_std"]) and s.loc[0, "train_seconds"] == 12.0
    with pytest.raises(KeyError, match="not in the table"):
        summarise_seeds(df, ["method"], ["v2t_R1"])


def test_rank_counts_give_the_same_metrics_query_by_query():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 30))
    sim[3, :] = sim[3, 3]  # a query tied with every video
    counts = rank_counts(sim)
    whole = evaluate_similarity(sim)
    for direction, (higher, tied) in counts.items():
        assert higher.shape == (30,) and metrics_from_counts(higher, tied) == whole[direction]
    assert counts["t2v"][1][3] == 29  # the tied query: 29 competitors level with it
    q2v = np.repeat(np.arange(10), 3)  # three captions per video
    multi = rank_counts(sim[:, :10], query_to_video=q2v)
    assert multi["t2v"][0].shape == (30,) and multi["v2t"][0].shape == (10,)
    assert metrics_from_counts(*multi["v2t"]) == evaluate_similarity(sim[:, :10], query_to_video=q2v)["v2t"]


def test_saved_ranks_read_back(tmp_path):
    counts = rank_counts(np.eye(4) + 0.1)
    path = save_ranks(tmp_path / "ranks.npz", counts, video_ids=["a", "b", "c", "d"])
    back = load_ranks(tmp_path)
    assert back["video_ids"] == ["a", "b", "c", "d"] and back["query_to_video"] is None
    for d in counts:
        assert all(np.array_equal(x, y) for x, y in zip(back["counts"][d], counts[d]))
    assert not list(tmp_path.glob(".*.tmp")) and path.is_file()
    with pytest.raises(FileNotFoundError, match="runs write it when they finish"):
        load_ranks(tmp_path / "nothing")


@pytest.mark.slow
def test_a_finished_run_keeps_ranks_that_give_its_metrics(tmp_path):
    from mofkit.config import get_config
    from mofkit.train.loop import train

    cfg = get_config("smoke", {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
                               "out_dir": str(tmp_path / "run")})
    res = train(cfg, progress=False)
    saved = load_ranks(res.out_dir)
    assert len(saved["video_ids"]) == res.final["n_videos"]
    for direction in ("t2v", "v2t", "t2v_dsl", "v2t_dsl"):
        assert metrics_from_counts(*saved["counts"][direction]) == res.final[direction]
    assert "counts" not in res.final and "sim" not in res.final
    # the synthetic corpus: R@1 within the queries whose decisive event the K frames see, and not
    groups = res.final["groups"]
    seen, missed = groups["decisive_seen"], groups["decisive_missed"]
    assert seen["queries"] + missed["queries"] == res.final["n_queries"]
    overall = sum(g["t2v_R1"] * g["queries"] for g in (seen, missed) if g["queries"]) / res.final["n_queries"]
    assert overall == pytest.approx(res.final["t2v"]["R1"])
    for name, g in groups.items():
        assert res.history[-1].get(f"t2v_R1_{name}") == g["t2v_R1"]  # absent (None) for an empty group
    # the attribute caption test, at every evaluation (win rates in percent)
    assert set(res.final["caption_test"]) == {"colour", "shape", "action"}
    for attr, rate in res.final["caption_test"].items():
        assert 0 <= rate <= 100 and res.history[-1][f"caption_{attr}"] == rate
    assert all("caption_colour" in row and "t2v_R1" in row for row in res.history)


def _fake_run(folder, seed: int, higher, tied=None, ids=None):
    """A run folder with only what paired statistics read: config.json and ranks.npz."""
    import json

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"seed": seed}}))
    higher = np.asarray(higher)
    tied = np.zeros_like(higher) if tied is None else np.asarray(tied)
    ids = ids or [f"v{i}" for i in range(len(higher))]
    save_ranks(folder / "ranks.npz", {"t2v": (higher, tied), "v2t": (higher, tied)}, video_ids=ids)
    return folder


def test_query_hits_average_to_the_metrics():
    from mofkit.eval.stats import query_hits

    higher, tied = np.array([0, 0, 3, 0, 9]), np.array([0, 1, 0, 3, 0])
    for k in (1, 5, 10):
        assert 100 * query_hits(higher, tied, k).mean() == pytest.approx(metrics_from_counts(higher, tied)[f"R{k}"])


def test_paired_difference_interval_and_verdict(tmp_path):
    from mofkit.eval.stats import paired_difference

    rng = np.random.default_rng(0)
    n = 400
    b_runs, a_runs, same = [], [], []
    for seed in (0, 1, 2):
        base = rng.integers(0, 3, n)  # rank counts of method B
        better = np.where(rng.random(n) < 0.3, 0, base)  # A moves 30 % of queries to rank 1
        b_runs.append(_fake_run(tmp_path / f"b{seed}", seed, base))
        a_runs.append(_fake_run(tmp_path / f"a{seed}", seed, better))
        same.append(_fake_run(tmp_path / f"c{seed}", seed, base))
    r = paired_difference(a_runs, b_runs)
    expected = np.mean([metrics_from_counts(np.load(a / "ranks.npz")["t2v_higher"], np.zeros(n))["R1"]
                        - metrics_from_counts(np.load(b / "ranks.npz")["t2v_higher"], np.zeros(n))["R1"]
                        for a, b in zip(a_runs, b_runs)])
    assert r["diff"] == pytest.approx(expected) and r["a"] - r["b"] == pytest.approx(expected)
    assert 0 < r["low"] < r["diff"] < r["high"] and r["verdict"] == "A better"
    assert r["seeds"] == 3 and r["queries"] == n
    assert paired_difference(b_runs, a_runs)["verdict"] == "B better"
    tie = paired_difference(same, b_runs)  # the same ranks: no difference, no spread
    assert tie["diff"] == 0 and (tie["low"], tie["high"]) == (0, 0) and tie["verdict"] == "no difference"
    # the same R@1, reached on other queries: the difference is 0 and the interval holds it
    first = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    left = [_fake_run(tmp_path / f"n{s}", s, first) for s in (0, 1, 2)]
    right = [_fake_run(tmp_path / f"o{s}", s, first[::-1]) for s in (0, 1, 2)]
    r = paired_difference(left, right)
    assert r["diff"] == pytest.approx(0) and r["low"] < -5 and r["high"] > 5
    assert r["verdict"] == "no difference"
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference(a_runs[:2], b_runs)
    odd = _fake_run(tmp_path / "odd", 0, np.zeros(n, int), ids=[f"w{i}" for i in range(n)])
    with pytest.raises(ValueError, match="same test set"):
        paired_difference([odd], b_runs[:1])


def test_compare_on_the_command_line(tmp_path, capsys):
    from mofkit.cli import main

    a = _fake_run(tmp_path / "a", 0, [0, 0, 0, 1])
    b = _fake_run(tmp_path / "b", 0, [1, 1, 0, 1])
    assert main(["compare", str(a), "--against", str(b)]) == 0
    out = capsys.readouterr().out
    assert "| t2v | 75.00 | 25.00 | +50.00 |" in out and "paired over seeds" in out
    assert main(["compare", str(a), "--against", str(tmp_path / "missing")]) == 2
