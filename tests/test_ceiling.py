"""The information ceiling: what an ideal scorer can tell from K uniform frames of the synthetic corpus."""
import pytest

from mofkit.eval.ceiling import (ceiling_table, colour_signature, decisive_seen, information_ceiling,
                                 visible_signature)


def _ev(start, end, phrase, decisive=False):
    return {"start": start, "end": end, "phrase": phrase, "decisive": decisive, "colour": phrase.split()[0]}


# 8 frames; K = 1 samples frame 3, K = 2 frames 1 and 5, K = 4 frames 0, 2, 4, 6.
TIMELINE = {
    "a": [_ev(0, 4, "red circle moves left"), _ev(4, 5, "blue star flashes", True), _ev(5, 8, "cyan square grows")],
    "b": [_ev(0, 4, "red circle moves left"), _ev(4, 5, "green star flashes", True), _ev(5, 8, "cyan square grows")],
    "c": [_ev(0, 4, "red circle moves left"), _ev(4, 5, "white star flashes", True), _ev(5, 8, "cyan square grows")],
    "d": [_ev(0, 1, "orange cross flashes", True), _ev(1, 8, "red circle moves left")],
}


def test_signatures_hold_what_the_frames_hit():
    assert visible_signature(TIMELINE["a"], 1) == ("red circle moves left",)
    assert visible_signature(TIMELINE["a"], 2) == ("red circle moves left", "cyan square grows")
    assert visible_signature(TIMELINE["a"], 4) == ("red circle moves left", "blue star flashes", "cyan square grows")
    assert visible_signature(TIMELINE["d"], 2) == ("red circle moves left",)
    assert decisive_seen(TIMELINE, "abcd", 4).tolist() == [True, True, True, True]
    assert decisive_seen(TIMELINE, "abcd", 2).tolist() == [False, False, False, False]


def test_the_ceiling_is_the_mean_chance_among_look_alikes():
    ids = list("abcd")
    # K = 1: all four show only the red circle: a guess among 4
    assert information_ceiling(TIMELINE, ids, 1)["ceiling_t2v_R1"] == pytest.approx(25.0)
    # K = 2: a, b, c show the circle and the square (1/3 each); d only the circle (told apart)
    assert information_ceiling(TIMELINE, ids, 2)["ceiling_t2v_R1"] == pytest.approx(50.0)
    # K = 4: every flash is hit, every signature differs
    r = information_ceiling(TIMELINE, ids, 4)
    assert r["ceiling_t2v_R1"] == pytest.approx(100.0) and r["decisive_seen"] == pytest.approx(100.0)
    table = ceiling_table(TIMELINE, ids, [1, 2, 4])
    assert list(table["K"]) == [1, 2, 4] and list(table["ceiling_t2v_R1"].round(1)) == [25.0, 50.0, 100.0]
    assert information_ceiling(TIMELINE, ["a", "b"], 2)["ceiling_t2v_R1"] == pytest.approx(50.0)


def test_the_colour_only_ceiling_sees_colours_in_no_order():
    assert colour_signature(TIMELINE["a"], 4) == ("blue", "cyan", "red")
    assert colour_signature(TIMELINE["d"], 4) == ("orange", "red")
    shapes = {  # the same colours, other shapes and order: one signature for colour, two for all
        "p": [_ev(0, 4, "red circle moves left"), _ev(4, 8, "blue star grows")],
        "q": [_ev(0, 4, "blue square moves left"), _ev(4, 8, "red cross grows")],
        "r": [_ev(0, 4, "green circle moves left"), _ev(4, 8, "blue star grows")],
    }
    r = information_ceiling(shapes, list("pqr"), 2)
    assert r["ceiling_t2v_R1"] == pytest.approx(100.0)
    assert r["colour_ceiling_t2v_R1"] == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)
    # K = 1 (frame 3, the first event): p and r show red / green, q blue: all apart by colour
    assert information_ceiling(shapes, list("pqr"), 1)["colour_ceiling_t2v_R1"] == pytest.approx(100.0)
    # on TIMELINE at K = 4 the flashes' colours tell a, b, c apart as their phrases do
    assert information_ceiling(TIMELINE, list("abcd"), 4)["colour_ceiling_t2v_R1"] == pytest.approx(100.0)
    assert information_ceiling(TIMELINE, list("abcd"), 2)["colour_ceiling_t2v_R1"] == pytest.approx(50.0)


def test_ceiling_command_on_the_smoke_corpus(tmp_path, capsys):
    from mofkit.cli import main

    args = ["ceiling", "--profile", "smoke", "--set", f"data.root={tmp_path / 'corpus'}", "--k", "2", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| 16 | 100.0 |" in out and "| 100.0 |\n" in out and "32 test videos" in out
    assert "colour-only" in out
    assert main(["ceiling", "--profile", "paper"]) == 2
