"""What K uniform frames can tell at best: the information ceiling of the synthetic corpus.

Definition. A test video's *visible signature* at K is the ordered list of the caption phrases
("red circle moves left") of its events that its K uniform frames hit (a frame index inside the
event). An ideal scorer reads the query caption and every video's K frames perfectly, but sees
nothing else: it can tell two videos apart exactly when their visible signatures differ. Given the
caption of video v, it ranks first, in random order, the n videos whose signature equals v's, so
its expected R@1 on that query is 1/n (the videos sharing the signature, v included). The
*ceiling* is the mean of 1/n over the test queries: no model that sees K uniform frames can
expect more on this corpus. It is optimistic (a real scorer cannot always use every visible
difference), which is what a ceiling should be.

The *colour-only ceiling* is the same scorer with a weaker eye: it sees only which colours the K
frames show, as a multiset, in no order (:func:`colour_signature`). A model whose R@1 sits on that
line matches colours and little else; one well above it reads shape, action or order too. Both
ceilings are reported next to every model on the synthetic corpus (``mofkit ceiling``, the study
tables), so a table says how much of the information in its frames a model uses.

Measured on the ``cpu`` corpus (500 test videos): 46.0 / 52.6 / 83.6 / 100 % at K = 2 / 4 / 8 / 16,
and the decisive event (the one that tells a video from its hard negatives) seen in 32.8 / 41.6 /
78.4 / 100 % of the test videos.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from mofkit.data.sampling import sample_indices


def visible(events: Sequence[dict], k: int, mode: str = "uniform") -> list[bool]:
    """Which events of a video K frames (``sample_indices``' ``mode``) hit."""
    idx = sample_indices(events[-1]["end"], k, mode)
    return [bool(any(e["start"] <= i < e["end"] for i in idx)) for e in events]


def visible_signature(events: Sequence[dict], k: int) -> tuple[str, ...]:
    """The caption phrases of the events K uniform frames hit, in order."""
    return tuple(e["phrase"] for e, hit in zip(events, visible(events, k)) if hit)


def colour_signature(events: Sequence[dict], k: int) -> tuple[str, ...]:
    """The colours of the events K uniform frames hit, sorted (order-blind), with repeats."""
    return tuple(sorted(e["colour"] for e, hit in zip(events, visible(events, k)) if hit))


SIGNATURES = {"information": visible_signature, "colour": colour_signature}


def decisive_seen(timeline: dict[str, list[dict]], video_ids: Iterable[str], k: int) -> np.ndarray:
    """Per video, whether K uniform frames hit its decisive event (bool array, in ``video_ids`` order)."""
    out = []
    for vid in video_ids:
        events = timeline[vid]
        out.append(any(h for e, h in zip(events, visible(events, k)) if e.get("decisive")))
    return np.asarray(out, dtype=bool)


def information_ceiling(timeline: dict[str, list[dict]], video_ids: Sequence[str], k: int) -> dict:
    """The ceiling of text-to-video R@1 at K (see the module docstring) over these test videos.

    Args:
        timeline: ``mofkit.data.synthetic.load_timeline`` of the corpus.
        video_ids: the test videos (one query each, as the synthetic test split has).
        k: frames per video.

    Returns:
        ``{"K", "ceiling_t2v_R1", "colour_ceiling_t2v_R1", "decisive_seen"}``, all in percent:
        the information ceiling, the colour-only ceiling (:func:`colour_signature`) and the share
        of videos whose decisive event the K frames hit.
    """
    return {"K": k, "ceiling_t2v_R1": _expected_r1(timeline, video_ids, k, visible_signature),
            "colour_ceiling_t2v_R1": _expected_r1(timeline, video_ids, k, colour_signature),
            "decisive_seen": float(100 * decisive_seen(timeline, video_ids, k).mean())}


def _expected_r1(timeline, video_ids, k: int, signature) -> float:
    """Mean over queries of 1 / (videos sharing the query video's signature), in percent."""
    sigs = [signature(timeline[v], k) for v in video_ids]
    share = Counter(sigs)
    return float(100 * np.mean([1 / share[s] for s in sigs]))


def ceiling_table(timeline: dict[str, list[dict]], video_ids: Sequence[str], k_values) -> pd.DataFrame:
    """:func:`information_ceiling` at every K, one row each."""
    return pd.DataFrame([information_ceiling(timeline, list(video_ids), k) for k in k_values])
