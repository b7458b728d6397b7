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
        ``{"K", "ceiling_t2v_R1", "decisive_seen"}``, both in percent.
    """
    sigs = [visible_signature(timeline[v], k) for v in video_ids]
    share = Counter(sigs)
    return {"K": k, "ceiling_t2v_R1": float(100 * np.mean([1 / share[s] for s in sigs])),
            "decisive_seen": float(100 * decisive_seen(timeline, video_ids, k).mean())}


def ceiling_table(timeline: dict[str, list[dict]], video_ids: Sequence[str], k_values) -> pd.DataFrame:
    """:func:`information_ceiling` at every K, one row each."""
    return pd.DataFrame([information_ceiling(timeline, list(video_ids), k) for k in k_values])
