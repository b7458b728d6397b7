"""Retrieval metrics from a similarity matrix, as text-to-video papers report them.

Conventions (the ones CLIP4Clip, X-CLIP, DRL, Cap4Video and most of the field print):

- ``sim`` is (Q, V): one row per query caption, one column per test video. Higher is better.
- A query's rank is 1-based: 1 means its video came first. R@k is the percentage of queries with
  rank <= k; MdR is the median rank, MnR the mean rank.
- Single-caption protocol (MSR-VTT 1k-A): query i belongs to video i, so ``sim`` is square and the
  correct entries are its diagonal.
- Multi-caption protocol (MSVD): ``query_to_video`` (Q,) gives each caption's video. Text-to-video
  ranks each caption as its own query. Video-to-text ranks all Q captions for each video; a video's
  rank is the best (lowest) rank among its own captions.
- Paragraph protocol (DiDeMo): a video's captions are joined into one paragraph, so there is one
  query per video and the single-caption protocol applies unchanged.
- Dual-softmax re-ranking (DSL) is a test-time trick that uses the whole query set at once; its
  numbers are always reported apart from the raw ones (see :func:`evaluate_similarity`).

Ties
----
A tie is an exact floating-point equality between the correct entry and a competitor (for example
two identical captions, which MSR-VTT has, score identically against every video). ``ties`` picks
the rule; with ``h`` competitors strictly above the correct entry and ``t`` exactly equal to it:

- ``"optimistic"``: rank = 1 + h (the correct item wins every tie);
- ``"pessimistic"``: rank = 1 + h + t (it loses every tie);
- ``"mean"`` (default): the expectation under a uniformly random order of the tied items, so
  rank = 1 + h + t / 2 and R@k is the probability that the rank is <= k, averaged over queries.

``"mean"`` is the default because it is the only rule under which a model that cannot tell items
apart scores at chance: a collapsed model whose similarities are all equal gets R@1 = 100 % under
``"optimistic"`` and R@1 = 0 under ``"pessimistic"``, but 100 / V % under ``"mean"``. Without ties
the three rules agree.

CLIP4Clip's ``compute_metrics`` (copied by many later papers) sorts each row, then collects every
position whose value equals the correct entry; a row with ``t`` ties therefore contributes
``t + 1`` ranks (h + 1, ..., h + t + 1) and the averages are taken over more entries than there are
queries. :func:`clip4clip_metrics` reproduces that behaviour so that published numbers can be
checked; new results should use :func:`retrieval_metrics`.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

METRIC_KEYS = ("R1", "R5", "R10", "MdR", "MnR")
# Every evaluation reports these directions: text-to-video, video-to-text, and both re-ranked with
# dual softmax (reported apart, never instead). Result columns are "<direction>_<metric key>".
DIRECTIONS = ("t2v", "v2t", "t2v_dsl", "v2t_dsl")
_LABELS = {"R1": "R@1", "R5": "R@5", "R10": "R@10", "MdR": "MdR", "MnR": "MnR"}
_TIE_RULES = ("optimistic", "pessimistic", "mean")
_ROW_CHUNK = 4096  # rows compared at once, so a (chunk, V) boolean temporary bounds memory


# --------------------------------------------------------------------------------------------
# ranks


def _as_numpy(sim, name: str = "sim") -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu()
        if sim.dtype not in (torch.float32, torch.float64):
            sim = sim.float()  # numpy has no bfloat16; the upcast is exact
        sim = sim.numpy()
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (queries x videos) matrix, got shape {sim.shape}")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    if sim.size and not np.isfinite(sim).all():
        raise ValueError(f"{name} contains NaN or inf; ranks would be meaningless. "
                         "Check the embeddings (a zero vector normalises to NaN).")
    return sim


def _check_ties(ties: str) -> None:
    if ties not in _TIE_RULES:
        raise ValueError(f"ties must be one of {', '.join(_TIE_RULES)}, not {ties!r}")


def _check_query_to_video(query_to_video, shape: tuple[int, int]) -> np.ndarray | None:
    q, v = shape
    if query_to_video is None:
        if q != v:
            raise ValueError(f"sim is {q} x {v}: without query_to_video it must be square (query i "
                             "belongs to video i); for several captions per video pass "
                             "query_to_video, a (Q,) array of video indices")
        return None
    q2v = np.asarray(query_to_video.detach().cpu() if isinstance(query_to_video, torch.Tensor)
                     else query_to_video)
    if q2v.shape != (q,):
        raise ValueError(f"query_to_video must have shape ({q},) (one video index per row of sim), "
                         f"got {q2v.shape}")
    if not np.issubdtype(q2v.dtype, np.integer):
        raise ValueError(f"query_to_video must hold integer video indices, got dtype {q2v.dtype}")
    if q and (q2v.min() < 0 or q2v.max() >= v):
        raise ValueError(f"query_to_video must hold video indices in [0, {v}) (the columns of sim), "
                         f"got values in [{q2v.min()}, {q2v.max()}]")
    return q2v.astype(np.int64)


def _rank_counts(scores: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: entries strictly above ``target`` and entries equal to it (target included)."""
    higher = np.empty(len(scores), dtype=np.int64)
    equal = np.empty(len(scores), dtype=np.int64)
    for start in range(0, len(scores), _ROW_CHUNK):
        block = scores[start:start + _ROW_CHUNK]
        t = target[start:start + _ROW_CHUNK, None]
        higher[start:start + _ROW_CHUNK] = (block > t).sum(1)
        equal[start:start + _ROW_CHUNK] = (block == t).sum(1)
    return higher, equal


def _summarise(higher: np.ndarray, tied: np.ndarray, ties: str) -> dict:
    """Metrics from per-query counts of competitors above (``higher``) and level with (``tied``)."""
    if len(higher) == 0:
        raise ValueError("sim has no queries; nothing to rank")
    if ties == "optimistic":
        tied = np.zeros_like(tied)
        ranks = 1.0 + higher
    elif ties == "pessimistic":
        higher = higher + tied
        tied = np.zeros_like(tied)
        ranks = 1.0 + higher
    else:
        ranks = 1.0 + higher + tied / 2.0
    out = {}
    for k in (1, 5, 10):
        # rank is uniform on h + 1 .. h + t + 1, so P(rank <= k) = clip(k - h, 0, t + 1) / (t + 1)
        hit = np.clip(k - higher, 0, tied + 1) / (tied + 1.0)
        out[f"R{k}"] = float(100.0 * hit.mean())
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(ranks.mean())
    return out


def _t2v_counts(sim: np.ndarray, q2v: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    cols = np.arange(len(sim)) if q2v is None else q2v
    target = sim[np.arange(len(sim)), cols]
    higher, equal = _rank_counts(sim, target)
    return higher, equal - 1  # the correct entry itself is not a competitor


def _v2t_counts(sim: np.ndarray, q2v: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if q2v is None:
        return _t2v_counts(np.ascontiguousarray(sim.T), None)
    n_videos = sim.shape[1]
    counts = np.bincount(q2v, minlength=n_videos)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(f"video-to-text needs at least one caption per video, but query_to_video "
                         f"names no caption for video columns {missing[:10].tolist()}"
                         f"{' ...' if len(missing) > 10 else ''}")
    own = sim[np.arange(len(sim)), q2v]  # (Q,) each caption's score against its own video
    best = np.full(n_videos, -np.inf, dtype=sim.dtype)
    np.maximum.at(best, q2v, own)  # (V,) the video's best own caption
    own_at_best = np.bincount(q2v, weights=(own == best[q2v]), minlength=n_videos).astype(np.int64)
    # the rank of the best own caption equals the best rank over own captions; captions of the same
    # video that tie with it are not competitors, so only other videos' captions count
    higher, equal = _rank_counts(np.ascontiguousarray(sim.T), best)
    return higher, equal - own_at_best


def retrieval_metrics(sim, *, query_to_video=None, dsl: bool = False, ties: str = "mean",
                      dsl_temperature: float = 100.0) -> dict:
    """Text-to-video metrics of a similarity matrix.

    Args:
        sim: (Q, V) similarities, numpy or torch; row q scores query q against every video.
        query_to_video: None for the single-caption and paragraph protocols (query i belongs to
            video i, ``sim`` square); else a (Q,) integer array with each caption's video column
            (MSVD), every caption being a query.
        dsl: rank the dual-softmax re-ranked matrix (:func:`dual_softmax`) instead of ``sim``.
        ties: ``"mean"`` (default), ``"optimistic"`` or ``"pessimistic"``; see the module docstring.
        dsl_temperature: the factor inside the softmax when ``dsl`` is set.

    Returns:
        ``{"R1", "R5", "R10", "MdR", "MnR"}`` as floats: recalls in percent, ranks 1-based.
    """
    sim, q2v = _prepare(sim, query_to_video, dsl, ties, dsl_temperature)
    return _summarise(*_t2v_counts(sim, q2v), ties)


def video_to_text_metrics(sim, *, query_to_video=None, dsl: bool = False, ties: str = "mean",
                          dsl_temperature: float = 100.0) -> dict:
    """Video-to-text metrics of the same (Q, V) similarity matrix.

    Single-caption protocol: the metrics of ``sim.T``. Multi-caption protocol: each video ranks all
    Q captions (its row of ``sim.T``) and its rank is that of its best-placed own caption; its other
    captions are not competitors, so a tie between two of its own captions costs nothing.

    Args:
        sim: (Q, V) similarities, numpy or torch, as for :func:`retrieval_metrics`.
        query_to_video: None (query i belongs to video i) or a (Q,) array of video columns; every
            video needs at least one caption.
        dsl: rank the columns of the dual-softmax re-ranked matrix (see :func:`evaluate_similarity`
            for why this leaves video-to-text unchanged).
        ties: ``"mean"`` (default), ``"optimistic"`` or ``"pessimistic"``; see the module docstring.
        dsl_temperature: the factor inside the softmax when ``dsl`` is set.

    Returns:
        ``{"R1", "R5", "R10", "MdR", "MnR"}`` as floats: recalls in percent, ranks 1-based.
    """
    sim, q2v = _prepare(sim, query_to_video, dsl, ties, dsl_temperature)
    return _summarise(*_v2t_counts(sim, q2v), ties)


def _prepare(sim, query_to_video, dsl: bool, ties: str, dsl_temperature: float):
    """Check the arguments of both directions; the (optionally re-ranked) matrix and columns."""
    _check_ties(ties)
    sim = _as_numpy(sim)
    q2v = _check_query_to_video(query_to_video, sim.shape)
    if dsl:
        sim = dual_softmax(sim, temperature=dsl_temperature)
    return sim, q2v


def dual_softmax(sim, temperature: float = 100.0) -> np.ndarray:
    """Dual-softmax re-ranking: ``sim * softmax(temperature * sim)`` over the caption (query) axis.

    For each video column, a softmax over all captions acts as a prior that down-weights videos
    which score high against every caption ("hub" videos). This is the form the Cap4Video release
    documents; it needs the whole query set, so it is a test-time protocol of its own.

    Args:
        sim: (Q, V) similarities, numpy or torch.
        temperature: the factor inside the softmax (100, the cap of CLIP's learned logit scale).

    Returns:
        (Q, V) float64 numpy array. float64 keeps ``exp`` from underflowing to exact zeros (and so
        inventing ties) for any similarity range a cosine can produce.
    """
    s = _as_numpy(sim).astype(np.float64)
    z = temperature * s
    z -= z.max(axis=0, keepdims=True)  # per column, so exp cannot overflow
    prior = np.exp(z)
    prior /= prior.sum(axis=0, keepdims=True)
    return s * prior


def evaluate_similarity(sim, *, query_to_video=None, dsl: bool = True, ties: str = "mean",
                        dsl_temperature: float = 100.0) -> dict:
    """Both directions, raw and (apart) with dual-softmax re-ranking.

    DSL convention: one re-ranked matrix ``D = sim * softmax(100 * sim, over captions)`` (see
    :func:`dual_softmax`); ``t2v_dsl`` ranks its rows and ``v2t_dsl`` its columns. Within a column
    the softmax denominator is a constant and ``s * exp(100 s)`` is increasing for s > -0.01, so the
    order of the captions for each video does not move: video-to-text is unchanged whenever the
    correct entries and their competitors are above -0.01 (always, in practice, for CLIP-style
    cosines), which is what the Cap4Video release states. Computing ``v2t_dsl`` from the same matrix
    rather than copying ``v2t`` keeps the two directions of one protocol on one matrix.

    Args:
        sim: (Q, V) similarities, numpy or torch.
        query_to_video: None (query i belongs to video i; MSR-VTT, DiDeMo paragraphs) or a (Q,)
            array of video columns (MSVD).
        dsl: also report ``t2v_dsl`` and ``v2t_dsl``.
        ties: tie rule for every direction; see the module docstring.
        dsl_temperature: the factor inside the dual softmax.

    Returns:
        ``{"t2v": {...}, "v2t": {...}}`` plus ``"t2v_dsl"`` and ``"v2t_dsl"`` when ``dsl`` is set,
        each a ``{"R1", "R5", "R10", "MdR", "MnR"}`` dict.
    """
    _check_ties(ties)
    counts = rank_counts(sim, query_to_video=query_to_video, dsl=dsl, dsl_temperature=dsl_temperature)
    return {direction: metrics_from_counts(*c, ties=ties) for direction, c in counts.items()}


def rank_counts(sim, *, query_to_video=None, dsl: bool = True,
                dsl_temperature: float = 100.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per query, how many competitors score above its correct item and how many level with it.

    These two counts are all a metric needs (with any tie rule), query by query, so a run keeps
    them (``ranks.npz``) and paired statistics over test queries can be computed later from saved
    runs without the similarity matrix.

    Args:
        sim, query_to_video, dsl, dsl_temperature: as for :func:`evaluate_similarity`.

    Returns:
        direction -> ``(higher, tied)``, two int64 arrays: one entry per query for ``t2v`` and
        ``t2v_dsl`` (Q), per video for ``v2t`` and ``v2t_dsl`` (V).
    """
    sim = _as_numpy(sim)
    q2v = _check_query_to_video(query_to_video, sim.shape)
    out = {"t2v": _t2v_counts(sim, q2v), "v2t": _v2t_counts(sim, q2v)}
    if dsl:
        d = dual_softmax(sim, temperature=dsl_temperature)
        out["t2v_dsl"] = _t2v_counts(d, q2v)
        out["v2t_dsl"] = _v2t_counts(d, q2v)
    return out


def metrics_from_counts(higher, tied, ties: str = "mean") -> dict:
    """R@1/5/10, MdR, MnR from per-query counts (see :func:`rank_counts`).

    Args:
        higher: (Q,) competitors above each query's correct item.
        tied: (Q,) competitors level with it.
        ties: ``"mean"`` (default), ``"optimistic"`` or ``"pessimistic"``.

    Returns:
        ``{"R1", "R5", "R10", "MdR", "MnR"}`` as floats.
    """
    _check_ties(ties)
    return _summarise(np.asarray(higher, np.int64), np.asarray(tied, np.int64), ties)


def clip4clip_metrics(sim) -> dict:
    """The metrics as CLIP4Clip's ``compute_metrics`` computes them, ties and all.

    Every entry of a row that equals the diagonal entry contributes its position in the sorted row,
    so a row with ``t`` ties adds ``t + 1`` ranks and R@k, MdR and MnR are averaged over more entries
    than there are queries. Kept to check numbers published with that code (for example Cap4Video's
    video-to-text); use :func:`retrieval_metrics` for new results.

    Args:
        sim: (N, N) similarities, numpy or torch; the diagonal holds the correct pairs. Pass
            ``sim.T`` for video-to-text.

    Returns:
        ``{"R1", "R5", "R10", "MdR", "MnR"}`` as floats.
    """
    sim = _as_numpy(sim)
    _check_query_to_video(None, sim.shape)
    higher, tied = _t2v_counts(sim, None)
    # a row with h above and t level yields the 1-based ranks h + 1, ..., h + t + 1
    ranks = np.concatenate([np.arange(h + 1, h + t + 2) for h, t in zip(higher, tied)]).astype(float)
    out = {f"R{k}": float(100.0 * (ranks <= k).mean()) for k in (1, 5, 10)}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(ranks.mean())
    return out


# --------------------------------------------------------------------------------------------
# similarity


@torch.no_grad()
def similarity_matrix(text_emb, video_emb, block: int = 4096, *, normalize: bool = True,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Query-by-video similarities, computed block by block.

    Only one (block x block) tile lives on ``device`` at a time, so a large test set fits on a GPU
    next to the model; the full matrix is assembled on the CPU.

    Args:
        text_emb: (Q, D) query embeddings, numpy or torch.
        video_emb: (V, D) video embeddings, numpy or torch.
        block: rows and columns per tile.
        normalize: L2-normalise both sides first (cosine similarity, the scale dual softmax's
            temperature of 100 assumes). Already normalised inputs are unchanged by it.
        device: where the tiles are multiplied; default the device of ``text_emb``.

    Returns:
        (Q, V) float32 tensor on the CPU.
    """
    text = torch.as_tensor(text_emb)
    video = torch.as_tensor(video_emb)
    if text.ndim != 2 or video.ndim != 2 or text.shape[1] != video.shape[1]:
        raise ValueError(f"text_emb and video_emb must be (Q, D) and (V, D) with the same D, got "
                         f"{tuple(text.shape)} and {tuple(video.shape)}")
    if block < 1:
        raise ValueError(f"block must be a positive number of rows, got {block}")
    dev = torch.device(device) if device is not None else text.device
    out = torch.empty(text.shape[0], video.shape[0], dtype=torch.float32)
    for i in range(0, text.shape[0], block):
        t = text[i:i + block].to(dev, torch.float32)
        if normalize:
            t = torch.nn.functional.normalize(t, dim=-1)
        for j in range(0, video.shape[0], block):
            v = video[j:j + block].to(dev, torch.float32)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=-1)
            out[i:i + block, j:j + block] = (t @ v.T).cpu()
    return out


# --------------------------------------------------------------------------------------------
# reporting


def format_metrics(metrics: Mapping[str, float], decimals: int = 1) -> str:
    """One line: ``"R@1 48.0 | R@5 73.0 | R@10 82.9 | MdR 2.0 | MnR 13.1"``.

    Args:
        metrics: a dict with keys R1, R5, R10, MdR, MnR (others are ignored).
        decimals: digits after the point.

    Returns:
        The formatted line.
    """
    missing = [k for k in METRIC_KEYS if k not in metrics]
    if missing:
        raise KeyError(f"metrics lacks {missing}; expected the keys {list(METRIC_KEYS)} "
                       "(one direction of evaluate_similarity's result)")
    return " | ".join(f"{_LABELS[k]} {metrics[k]:.{decimals}f}" for k in METRIC_KEYS)


def metrics_table(rows: Mapping[str, Mapping], decimals: int | None = None) -> pd.DataFrame:
    """A table with one row per model or setting.

    Args:
        rows: name -> metrics, either one direction (``{"R1", ...}``) or the nested result of
            :func:`evaluate_similarity` (``{"t2v": {...}, ...}``), which gives (direction, metric)
            columns.
        decimals: round to this many digits; None keeps full precision.

    Returns:
        DataFrame indexed by name, columns R@1 .. MnR (a MultiIndex for nested input).
    """
    records = {}
    for name, m in rows.items():
        if all(isinstance(v, Mapping) for v in m.values()):
            records[name] = {(d, _LABELS[k]): m[d][k] for d in m for k in METRIC_KEYS}
        else:
            records[name] = {_LABELS[k]: m[k] for k in METRIC_KEYS}
    df = pd.DataFrame.from_dict(records, orient="index")
    return df.round(decimals) if decimals is not None else df
