"""The attribute caption test: does a model read colour, shape and action, or colour alone?

Each test query (a synthetic video's caption) is scored against the same caption with one
*visible* event's attribute changed (an event that the video's input frames hit): its colour
("a red circle" -> "a blue circle"), its shape ("a red circle" -> "a red star") or its action
("moves left" -> "grows"). The rest of the caption, its wording and order stay. A model that reads
the attribute scores the true caption above the altered one for the query's own video; the *win
rate* is the share of queries where it does (a tie counts a half), 50 % is chance. R@1 alone cannot
tell these apart: on the synthetic corpus colour identifies most videos within a batch, so a model
that sees only colour can look good.

The captions are altered in their text, so every paraphrase ("goes left", "blinks", "the", "an")
stays what it was; which event and which new value are drawn from a seed per query. This module
reads event timelines and captions and scores embeddings; it trains nothing.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import torch

from mofkit.data.sampling import sample_indices
from mofkit.data.synthetic import ACTION_WORDS, ACTIONS, COLOURS, SHAPES

ATTRIBUTES = ("colour", "shape", "action")
_WORD_ACTION = {w: a for a, words in ACTION_WORDS.items() for w in words}
# one event's words in a caption: "<colour> <shape> <action wording>"
_PHRASE = re.compile(r"\b(?P<colour>{})\s(?P<shape>{})\s(?P<action>{})\b".format(
    "|".join(COLOURS), "|".join(SHAPES),
    "|".join(sorted(map(re.escape, _WORD_ACTION), key=len, reverse=True))))
_CHOICES = {"colour": tuple(COLOURS), "shape": SHAPES, "action": ACTIONS}


def hit_events(events: Sequence[dict], frames: int, mode: str = "uniform") -> list[int]:
    """Indices of the events that ``frames`` frames sampled by ``mode`` fall in."""
    idx = sample_indices(events[-1]["end"], frames, mode)
    return [j for j, e in enumerate(events) if any(e["start"] <= i < e["end"] for i in idx)]


def alter_caption(caption: str, events: Sequence[dict], event: int, attribute: str,
                  rng: np.random.Generator) -> str | None:
    """``caption`` with event ``event``'s ``attribute`` changed to another value drawn by ``rng``.

    Args:
        caption: a caption naming ``events`` in order ("a red circle moves left, then ...").
        events: the video's timeline.
        event: which event to change.
        attribute: ``colour``, ``shape`` or ``action``.
        rng: draws the new value.

    Returns:
        The altered caption (an action keeps its first wording, "moves left"), or None when the
        caption does not name one phrase per event (it was not written by the synthetic corpus).
    """
    found = list(_PHRASE.finditer(caption))
    if len(found) != len(events):
        return None
    m = found[event]
    current = m.group(attribute)
    current = _WORD_ACTION[current] if attribute == "action" else current
    others = [v for v in _CHOICES[attribute] if v != current]
    new = others[int(rng.integers(len(others)))]
    word = ACTION_WORDS[new][0] if attribute == "action" else new
    start, end = m.span(attribute)
    text = caption[:start] + word + caption[end:]
    if attribute == "colour":  # keep the article right: "a red" -> "an orange"
        head = text[:start]
        art = re.search(r"\b(an?)\s$", head)
        if art:
            fixed = "an" if word[0] in "aeiou" else "a"
            text = head[:art.start(1)] + fixed + head[art.end(1):] + text[start:]
    return text


def altered_queries(captions: Sequence[str], events_of: Sequence[Sequence[dict]], frames: int,
                    seed: int = 0) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per attribute, the queries that can be altered and their altered captions.

    Args:
        captions: the test queries.
        events_of: each query's video timeline.
        frames: how many uniform frames the model sees per video (the events it can read).
        seed: draws each query's event and new value.

    Returns:
        ``{attribute: (query indices, altered captions)}``; a query whose frames hit no event, or
        whose caption is not the corpus's, is left out.
    """
    out: dict[str, tuple[list[int], list[str]]] = {a: ([], []) for a in ATTRIBUTES}
    for q, (cap, events) in enumerate(zip(captions, events_of)):
        hits = hit_events(events, frames)
        if not hits:
            continue
        for i, attr in enumerate(ATTRIBUTES):
            rng = np.random.default_rng([seed, q, i])
            text = alter_caption(cap, events, hits[int(rng.integers(len(hits)))], attr, rng)
            if text is not None:
                out[attr][0].append(q)
                out[attr][1].append(text)
    return {a: (np.asarray(qs, np.int64), texts) for a, (qs, texts) in out.items()}


def win_rate(video: torch.Tensor, true_text: torch.Tensor, altered_text: torch.Tensor) -> float:
    """Share (%) of rows where the video's cosine to its true caption beats the altered one.

    Args:
        video: (Q, D) the query videos' embeddings (any scale; cosines are taken).
        true_text: (Q, D) their true captions' embeddings.
        altered_text: (Q, D) the altered captions' embeddings.

    Returns:
        The win rate in percent, ties counting a half; NaN for no rows.
    """
    if len(video) == 0:
        return float("nan")
    v = torch.nn.functional.normalize(video.float(), dim=-1)
    a = (v * torch.nn.functional.normalize(true_text.float(), dim=-1)).sum(-1)
    b = (v * torch.nn.functional.normalize(altered_text.float(), dim=-1)).sum(-1)
    return float(100.0 * ((a > b).float() + 0.5 * (a == b).float()).mean())
