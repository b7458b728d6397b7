"""The attribute caption test: captions altered in one visible event's colour, shape or action."""
import numpy as np
import pytest
import torch

from mofkit.data.synthetic import ACTION_WORDS, COLOURS, SHAPES
from mofkit.eval.probes import alter_caption, altered_queries, hit_events, win_rate


def _ev(start, end, colour, shape, action):
    return {"start": start, "end": end, "colour": colour, "shape": shape, "action": action}


# 8 frames; K = 2 samples frames 1 and 5, K = 4 frames 0, 2, 4, 6
EVENTS = [_ev(0, 4, "red", "circle", "moves left"), _ev(4, 5, "orange", "star", "flashes"),
          _ev(5, 8, "cyan", "square", "grows")]
CAPTION = "a red circle goes left, then an orange star blinks, then the cyan square grows"


def test_hit_events_are_the_events_the_frames_fall_in():
    assert hit_events(EVENTS, 2) == [0, 2]
    assert hit_events(EVENTS, 4) == [0, 1, 2]


def test_one_attribute_of_one_event_changes_and_nothing_else():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        colour = alter_caption(CAPTION, EVENTS, 1, "colour", rng)
        head, rest = colour.split(" star blinks", 1)
        assert rest == ", then the cyan square grows"
        new = head.split()[-1]
        assert new in COLOURS and new != "orange"
        assert head.startswith("a red circle goes left, then " + ("an " if new[0] in "aeiou" else "a ") + new)
        shape = alter_caption(CAPTION, EVENTS, 0, "shape", np.random.default_rng(seed))
        word = shape.split()[2]
        assert word in SHAPES and word != "circle"
        assert shape == CAPTION.replace("circle", word, 1)
        action = alter_caption(CAPTION, EVENTS, 2, "action", np.random.default_rng(seed))
        assert action.startswith("a red circle goes left, then an orange star blinks, then the cyan square ")
        tail = action.rsplit("square ", 1)[1]
        assert tail in [w[0] for a, w in ACTION_WORDS.items() if a != "grows"]


def test_a_caption_that_is_not_the_corpus_s_is_left_out():
    assert alter_caption("a dog catches a ball", EVENTS, 0, "colour", np.random.default_rng(0)) is None
    queries = altered_queries([CAPTION, "a dog catches a ball"], [EVENTS, EVENTS], frames=2)
    for attr in ("colour", "shape", "action"):
        rows, texts = queries[attr]
        assert rows.tolist() == [0] and texts[0] != CAPTION
        # K = 2 sees the circle and the square only: the flash is never the one changed
        assert "orange star blinks" in texts[0]


def test_win_rate_counts_wins_and_half_ties():
    video = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    true = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    altered = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    # wins, loses, ties (the same direction), ties
    assert win_rate(video, true, altered) == pytest.approx(100 * (1 + 0 + 0.5 + 0.5) / 4)
    assert np.isnan(win_rate(video[:0], true[:0], altered[:0]))
