"""Retrieval metrics: hand-computed matrices, ties, multi-caption, DSL, a naive reference, and the
table printed with a real peer's released similarity matrix."""
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mofkit.eval.metrics as metrics_mod
from mofkit.eval import (
    clip4clip_metrics,
    dual_softmax,
    evaluate_similarity,
    format_metrics,
    metrics_table,
    retrieval_metrics,
    similarity_matrix,
    video_to_text_metrics,
)

KEYS = ("R1", "R5", "R10", "MdR", "MnR")


def _close(got: dict, want: dict):
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


# ------------------------------------------------------------------ single caption, by hand

SIM3 = np.array([[0.9, 0.1, 0.2],
                 [0.8, 0.3, 0.5],
                 [0.1, 0.7, 0.4]])
# t2v: row 0 -> 1; row 1: 0.8 and 0.5 above 0.3 -> 3; row 2: 0.7 above 0.4 -> 2
# v2t: col 0 -> 1; col 1: 0.7 above 0.3 -> 2; col 2: 0.5 above 0.4 -> 2


def test_3x3_text_to_video():
    _close(retrieval_metrics(SIM3), {"R1": 100 / 3, "R5": 100, "R10": 100, "MdR": 2, "MnR": 2})


def test_3x3_video_to_text_is_the_transpose():
    want = {"R1": 100 / 3, "R5": 100, "R10": 100, "MdR": 2, "MnR": 5 / 3}
    _close(video_to_text_metrics(SIM3), want)
    _close(retrieval_metrics(SIM3.T), want)


def test_4x4_known_ranks():
    sim = np.array([[4, 3, 2, 1],  # rank 1
                    [1, 2, 4, 3],  # 4 and 3 above 2 -> rank 3
                    [1, 2, 3, 4],  # 4 above 3 -> rank 2
                    [4, 3, 2, 1]], dtype=np.float32)  # 4, 3, 2 above 1 -> rank 4
    _close(retrieval_metrics(sim), {"R1": 25, "R5": 100, "R10": 100, "MdR": 2.5, "MnR": 2.5})


def _matrix_with_ranks(ranks, seed=0):
    """A square matrix whose row i places its diagonal entry at 1-based rank ranks[i]."""
    n = len(ranks)
    rng = np.random.default_rng(seed)
    sim = np.zeros((n, n))
    for i, r in enumerate(ranks):
        values = np.sort(rng.random(n))[::-1]  # distinct, descending
        others = rng.permutation([j for j in range(n) if j != i])
        sim[i, i] = values[r - 1]
        sim[i, others] = np.delete(values, r - 1)
    return sim


def test_recall_at_5_and_10_mdr_mnr():
    ranks = [1, 1, 2, 3, 5, 6, 10, 11, 12, 4, 7, 1]
    sim = _matrix_with_ranks(ranks)
    # <=1: 3, <=5: 7, <=10: 10 of 12; sorted ranks' middle pair (4, 5); sum 63
    _close(retrieval_metrics(sim), {"R1": 25, "R5": 700 / 12, "R10": 1000 / 12, "MdR": 4.5,
                                    "MnR": 63 / 12})


def test_torch_input_and_dtypes_agree_with_numpy():
    want = retrieval_metrics(SIM3)
    _close(retrieval_metrics(torch.tensor(SIM3)), want)
    _close(retrieval_metrics(torch.tensor(SIM3, dtype=torch.bfloat16)), want)
    _close(video_to_text_metrics(torch.tensor(SIM3).float()), video_to_text_metrics(SIM3))


# ------------------------------------------------------------------ multi caption, by hand

Q2V = np.array([0, 0, 1, 2, 2])
SIM_MC = np.array([[0.9, 0.2, 0.1],    # caption of video 0: rank 1
                   [0.3, 0.6, 0.5],    # caption of video 0: 0.6, 0.5 above -> 3
                   [0.4, 0.8, 0.1],    # caption of video 1: rank 1
                   [0.2, 0.7, 0.45],   # caption of video 2: 0.7 above -> 2
                   [0.1, 0.3, 0.2]])   # caption of video 2: 0.3 above -> 2
# v2t, each video ranks the 5 captions (its column):
#   video 0: own best 0.9 -> 1; video 1: own 0.8 -> 1; video 2: own best 0.45, 0.5 above -> 2


def test_multi_caption_text_to_video():
    _close(retrieval_metrics(SIM_MC, query_to_video=Q2V),
           {"R1": 40, "R5": 100, "R10": 100, "MdR": 2, "MnR": 9 / 5})


def test_multi_caption_video_to_text_best_own_caption():
    _close(video_to_text_metrics(SIM_MC, query_to_video=Q2V),
           {"R1": 200 / 3, "R5": 100, "R10": 100, "MdR": 1, "MnR": 4 / 3})


def test_multi_caption_own_captions_are_not_competitors():
    # video 0's two captions tie at its best score; one caption of video 1 ties with them too
    sim = np.array([[0.5, 0.1],
                    [0.5, 0.2],
                    [0.5, 0.9]])
    q2v = np.array([0, 0, 1])
    for ties, rank0 in (("optimistic", 1.0), ("pessimistic", 2.0), ("mean", 1.5)):
        got = video_to_text_metrics(sim, query_to_video=q2v, ties=ties)
        assert got["MnR"] == pytest.approx((rank0 + 1.0) / 2), ties


def test_multi_caption_with_identity_map_equals_single_caption():
    rng = np.random.default_rng(1)
    sim = rng.random((6, 6))
    ident = np.arange(6)
    _close(retrieval_metrics(sim, query_to_video=ident), retrieval_metrics(sim))
    _close(video_to_text_metrics(sim, query_to_video=ident), video_to_text_metrics(sim))


# ------------------------------------------------------------------ a naive reference


def _naive(sim, q2v):
    """Per query, sort the row and take the best position of a correct item (no ties in sim)."""
    t2v, v2t = [], []
    for q, row in enumerate(sim):
        order = np.argsort(-row)
        t2v.append(1 + int(np.flatnonzero(order == q2v[q])[0]))
    for v, col in enumerate(sim.T):
        order = np.argsort(-col)
        own = set(np.flatnonzero(q2v == v))
        v2t.append(1 + min(i for i, q in enumerate(order) if q in own))

    def summary(r):
        r = np.asarray(r, dtype=float)
        return {"R1": 100 * np.mean(r <= 1), "R5": 100 * np.mean(r <= 5),
                "R10": 100 * np.mean(r <= 10), "MdR": np.median(r), "MnR": r.mean()}
    return summary(t2v), summary(v2t)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_naive_reference_in_small_chunks(monkeypatch, seed):
    monkeypatch.setattr(metrics_mod, "_ROW_CHUNK", 3)  # exercise the chunked comparison
    rng = np.random.default_rng(seed)
    n_videos = 17
    q2v = np.concatenate([np.arange(n_videos), rng.integers(0, n_videos, 23)])
    sim = rng.standard_normal((len(q2v), n_videos)).astype(np.float32)
    want_t2v, want_v2t = _naive(sim, q2v)
    got = evaluate_similarity(sim, query_to_video=q2v, dsl=False)
    _close(got["t2v"], want_t2v)
    _close(got["v2t"], want_v2t)


# ------------------------------------------------------------------ ties

SIM_TIES = np.array([[0.5, 0.5, 0.1],   # one competitor level with the diagonal
                     [0.2, 0.6, 0.6],   # one
                     [0.3, 0.3, 0.3]])  # two


def test_tie_rules():
    _close(retrieval_metrics(SIM_TIES, ties="optimistic"),
           {"R1": 100, "R5": 100, "R10": 100, "MdR": 1, "MnR": 1})
    _close(retrieval_metrics(SIM_TIES, ties="pessimistic"),  # ranks 2, 2, 3
           {"R1": 0, "R5": 100, "R10": 100, "MdR": 2, "MnR": 7 / 3})
    # expected ranks 1.5, 1.5, 2; P(rank 1) = 1/2, 1/2, 1/3
    _close(retrieval_metrics(SIM_TIES, ties="mean"),
           {"R1": 100 * (1 / 2 + 1 / 2 + 1 / 3) / 3, "R5": 100, "R10": 100, "MdR": 1.5, "MnR": 5 / 3})
    _close(retrieval_metrics(SIM_TIES), retrieval_metrics(SIM_TIES, ties="mean"))  # the default


def test_peer_convention_counts_each_tie_as_a_query():
    # CLIP4Clip-style: row 0 gives ranks 1 and 2, row 1 gives 1 and 2, row 2 gives 1, 2 and 3,
    # so 7 ranks are averaged for 3 queries
    got = clip4clip_metrics(SIM_TIES)
    _close(got, {"R1": 300 / 7, "R5": 100, "R10": 100, "MdR": 2, "MnR": 12 / 7})
    for ties in ("optimistic", "pessimistic", "mean"):
        assert retrieval_metrics(SIM_TIES, ties=ties)["R1"] != pytest.approx(got["R1"])
    # without ties it is the same as every rule here
    _close(clip4clip_metrics(SIM3), retrieval_metrics(SIM3))


def test_collapsed_model_scores_at_chance_under_mean():
    sim = np.ones((10, 10))
    _close(retrieval_metrics(sim), {"R1": 10, "R5": 50, "R10": 100, "MdR": 5.5, "MnR": 5.5})
    assert retrieval_metrics(sim, ties="optimistic")["R1"] == 100
    assert retrieval_metrics(sim, ties="pessimistic")["R1"] == 0


def test_mean_rule_is_the_average_over_tie_orders():
    rng = np.random.default_rng(3)
    sim = rng.integers(0, 2, (5, 5)).astype(float)  # many ties
    got = retrieval_metrics(sim)
    hit = {1: [], 5: [], 10: []}
    mean_rank = []
    for i, row in enumerate(sim):
        above = int((row > row[i]).sum())
        level = [j for j in range(5) if row[j] == row[i]]
        ranks = [above + 1 + order.index(i) for order in itertools.permutations(level)]
        mean_rank.append(np.mean(ranks))
        for k in hit:
            hit[k].append(np.mean([r <= k for r in ranks]))
    assert got["R1"] == pytest.approx(100 * np.mean(hit[1]))
    assert got["R5"] == pytest.approx(100 * np.mean(hit[5]))
    assert got["MnR"] == pytest.approx(np.mean(mean_rank))


# ------------------------------------------------------------------ dual softmax


def test_dual_softmax_by_hand():
    sim = np.array([[0.5, 0.6],
                    [0.2, 0.61]])
    # column softmax of 100 * sim: column 0 over (50, 20), column 1 over (60, 61)
    p0 = np.exp([50.0, 20.0]) / np.exp([50.0, 20.0]).sum()
    p1 = np.exp([60.0, 61.0]) / np.exp([60.0, 61.0]).sum()
    want = sim * np.stack([p0, p1], axis=1)
    np.testing.assert_allclose(dual_softmax(sim), want, rtol=1e-12)
    # the hub column 1 no longer wins caption 0's row
    res = evaluate_similarity(sim)
    assert res["t2v"]["R1"] == 50 and res["t2v_dsl"]["R1"] == 100
    _close(res["v2t_dsl"], res["v2t"])
    _close(retrieval_metrics(sim, dsl=True), res["t2v_dsl"])
    _close(video_to_text_metrics(sim, dsl=True), res["v2t_dsl"])


def test_dsl_leaves_video_to_text_unchanged_and_is_reported_apart():
    rng = np.random.default_rng(4)
    sim = rng.random((30, 12)).astype(np.float32)  # cosines of CLIP models are positive in practice
    q2v = np.concatenate([np.arange(12), rng.integers(0, 12, 18)])
    res = evaluate_similarity(sim, query_to_video=q2v)
    assert set(res) == {"t2v", "v2t", "t2v_dsl", "v2t_dsl"}
    _close(res["v2t_dsl"], res["v2t"])
    _close(res["t2v_dsl"], retrieval_metrics(dual_softmax(sim), query_to_video=q2v))
    assert set(evaluate_similarity(sim, query_to_video=q2v, dsl=False)) == {"t2v", "v2t"}


# ------------------------------------------------------------------ the peer's released matrix

_PEER = Path(os.environ.get("MOFKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
_PEER_MATRIX = _PEER / "peers" / "cap4video" / "msrvtt_video_matrix.npy"
# the README's table, as printed
_T2V = {"R1": 48.0, "R5": 73.0, "R10": 82.9, "MdR": 2.0, "MnR": 13.1}
_V2T = {"R1": 45.5, "R5": 73.7, "R10": 82.3, "MdR": 2.0, "MnR": 8.8}
_T2V_DSL = {"R1": 52.8, "R5": 78.0, "R10": 85.8, "MdR": 1.0, "MnR": 10.9}


@pytest.fixture(scope="module")
def peer_sim():
    if not _PEER_MATRIX.exists():
        pytest.skip(f"peer matrix not found at {_PEER_MATRIX} (set MOFKIT_SHARED to the shared/ folder)")
    return np.load(_PEER_MATRIX)


def _printed(m):
    return {k: round(v, 1) for k, v in m.items()}


def test_peer_table_text_to_video_raw_and_dsl(peer_sim):
    res = evaluate_similarity(peer_sim)
    assert _printed(res["t2v"]) == _T2V
    assert _printed(res["t2v_dsl"]) == _T2V_DSL
    for ties in ("optimistic", "pessimistic"):  # no ties in any row: every rule agrees
        assert _printed(retrieval_metrics(peer_sim, ties=ties)) == _T2V
    assert _printed(clip4clip_metrics(peer_sim)) == _T2V
    assert _printed(clip4clip_metrics(dual_softmax(peer_sim))) == _T2V_DSL


def test_peer_table_video_to_text_raw_and_dsl(peer_sim):
    # the printed video-to-text row comes from the peer's convention: 9 videos' columns hold
    # duplicate captions level with the correct one, adding 12 ranks to the 1,000
    assert _printed(clip4clip_metrics(peer_sim.T)) == _V2T
    assert _printed(clip4clip_metrics(dual_softmax(peer_sim).T)) == _V2T  # "unchanged"
    # per video (one rank each), the tie rules bracket it; DSL leaves every rule's numbers alone
    res = evaluate_similarity(peer_sim)
    assert _printed(res["v2t"]) == {"R1": 45.8, "R5": 74.1, "R10": 82.8, "MdR": 2.0, "MnR": 8.7}
    assert res["v2t_dsl"] == res["v2t"]
    assert _printed(video_to_text_metrics(peer_sim, ties="optimistic"))["R1"] == 46.0
    assert _printed(video_to_text_metrics(peer_sim, ties="pessimistic"))["R1"] == 45.6


# ------------------------------------------------------------------ similarity in blocks


def test_similarity_matrix_blocks_match_one_product():
    g = torch.Generator().manual_seed(0)
    text, video = torch.randn(7, 4, generator=g), torch.randn(5, 4, generator=g)
    want = torch.nn.functional.normalize(text, dim=-1) @ torch.nn.functional.normalize(video, dim=-1).T
    got = similarity_matrix(text, video, block=3)
    assert got.shape == (7, 5) and got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(similarity_matrix(text.numpy(), video.numpy()), want)
    torch.testing.assert_close(similarity_matrix(text, video, normalize=False, block=2), text @ video.T)
    got16 = similarity_matrix(text.bfloat16(), video.bfloat16(), block=4)
    assert got16.dtype == torch.float32
    torch.testing.assert_close(got16, want, atol=2e-2, rtol=0)


# ------------------------------------------------------------------ errors


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="query_to_video"):
        retrieval_metrics(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"query_to_video must have shape \(3,\)"):
        retrieval_metrics(np.zeros((3, 2)), query_to_video=[0, 1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        retrieval_metrics(np.zeros((3, 2)), query_to_video=[0, 1, 2])
    with pytest.raises(ValueError, match="no caption for video columns \\[2\\]"):
        video_to_text_metrics(np.zeros((3, 3)), query_to_video=[0, 1, 1])
    with pytest.raises(ValueError, match="ties must be one of"):
        retrieval_metrics(SIM3, ties="first")
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(3))
    with pytest.raises(ValueError, match="same D"):
        similarity_matrix(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------ reporting


def test_format_metrics_one_line():
    line = format_metrics({"R1": 48.0, "R5": 73.0, "R10": 82.9, "MdR": 2.0, "MnR": 13.129})
    assert line == "R@1 48.0 | R@5 73.0 | R@10 82.9 | MdR 2.0 | MnR 13.1"
    with pytest.raises(KeyError, match="MnR"):
        format_metrics({"R1": 1, "R5": 1, "R10": 1, "MdR": 1})


def test_metrics_table_flat_and_nested():
    a = {"R1": 48.04, "R5": 73.0, "R10": 82.9, "MdR": 2.0, "MnR": 13.129}
    df = metrics_table({"cap4video": a, "chance": retrieval_metrics(np.ones((4, 4)))}, decimals=1)
    assert list(df.columns) == ["R@1", "R@5", "R@10", "MdR", "MnR"]
    assert df.loc["cap4video", "R@1"] == 48.0 and df.loc["chance", "R@1"] == 25.0
    nested = metrics_table({"m": evaluate_similarity(SIM3)})
    assert nested.loc["m", ("t2v", "MnR")] == 2.0
    assert nested.loc["m", ("v2t_dsl", "R@1")] == pytest.approx(100 / 3)
