"""Frame sampling against the definition in mofkit.data.sampling's docstring."""
import math

import numpy as np
import pytest

from mofkit.data.sampling import sample_from_grid, sample_indices, segment_bounds


def _naive_segments(n, k):
    """Segments straight from the docstring: boundaries floor(linspace(0, n, k+1))."""
    b = [math.floor(n * j / k) for j in range(k + 1)]
    out = []
    for i in range(k):
        start = min(b[i], n - 1)
        end = max(b[i + 1], start + 1)
        out.append(list(range(start, end)))
    return out


@pytest.mark.parametrize("n,k", [(1, 1), (1, 4), (2, 4), (3, 8), (7, 3), (8, 8), (10, 4), (32, 8),
                                 (100, 12), (101, 32), (5, 5), (31, 32)])
def test_segments_match_definition(n, k):
    starts, ends = segment_bounds(n, k)
    naive = _naive_segments(n, k)
    assert [list(range(s, e)) for s, e in zip(starts, ends)] == naive
    assert (ends > starts).all() and starts.min() >= 0 and ends.max() <= n


@pytest.mark.parametrize("n,k", [(1, 1), (2, 4), (3, 8), (7, 3), (10, 4), (32, 8), (100, 12), (31, 32)])
def test_uniform_is_segment_midpoint(n, k):
    idx = sample_indices(n, k, "uniform")
    expected = [(seg[0] + seg[-1]) // 2 for seg in _naive_segments(n, k)]
    assert idx.dtype == np.int64 and idx.tolist() == expected
    assert (np.diff(idx) >= 0).all()


def test_uniform_hand_computed():
    # 10 frames, 4 segments: bounds 0, 2, 5, 7, 10 -> [0,1], [2,4], [5,6], [7,9]
    assert sample_indices(10, 4, "uniform").tolist() == [0, 3, 5, 8]
    # 32 frames, 8 segments of 4: mid-points (start + start + 3) // 2
    assert sample_indices(32, 8, "uniform").tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert sample_indices(2, 4, "uniform").tolist() == [0, 0, 1, 1]  # the docstring's example


@pytest.mark.parametrize("n,k", [(1, 4), (2, 4), (3, 8), (5, 16)])
def test_short_video_still_gives_k(n, k):
    for mode in ("uniform", "rand"):
        idx = sample_indices(n, k, mode, rng=np.random.default_rng(0))
        assert len(idx) == k
        assert idx.min() >= 0 and idx.max() < n
        assert (np.diff(idx) >= 0).all()
        assert set(idx.tolist()) == set(range(n))  # every frame of a short video is used


def test_rand_draws_inside_each_segment_and_covers_it():
    n, k = 37, 6
    segs = _naive_segments(n, k)
    rng = np.random.default_rng(123)
    seen = [set() for _ in range(k)]
    for _ in range(400):
        idx = sample_indices(n, k, "rand", rng=rng)
        assert len(idx) == k
        for i, j in enumerate(idx):
            assert j in segs[i]
            seen[i].add(int(j))
    # every frame of every segment (last ones included) is drawn at some point
    assert [sorted(s) for s in seen] == segs


def test_rand_seeded_reproducible_and_varies():
    a = sample_indices(100, 8, "rand", rng=np.random.default_rng(7))
    b = sample_indices(100, 8, "rand", rng=np.random.default_rng(7))
    c = sample_indices(100, 8, "rand", rng=np.random.default_rng(8))
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_rand_one_frame_segments_are_deterministic():
    # n == k: every segment holds one frame, so rand equals arange.
    assert sample_indices(8, 8, "rand", rng=np.random.default_rng(0)).tolist() == list(range(8))


@pytest.mark.parametrize("n,stride", [(10, 1), (10, 3), (1, 4), (32, 2)])
def test_dense(n, stride):
    idx = sample_indices(n, 99, "dense", stride=stride)
    assert idx.tolist() == list(range(0, n, stride))
    assert len(idx) == math.ceil(n / stride)


def test_grid_sampling():
    # The grid is itself a uniform sample; sampling it uniformly with the same rule.
    assert sample_from_grid(32, 8).tolist() == sample_indices(32, 8, "uniform").tolist()
    assert sample_from_grid(8, 8).tolist() == list(range(8))  # K = T: the grid itself
    rng = np.random.default_rng(0)
    pos = sample_from_grid(32, 4, "rand", rng=rng)
    assert [p // 8 for p in pos] == [0, 1, 2, 3]


@pytest.mark.parametrize("bad", [dict(n_frames=0, k=4), dict(n_frames=10, k=0)])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError):
        sample_indices(bad["n_frames"], bad["k"], "uniform")


def test_unknown_mode_names_choices():
    with pytest.raises(ValueError, match="uniform"):
        sample_indices(10, 4, "middle")
    with pytest.raises(ValueError, match="stride"):
        sample_indices(10, 4, "dense", stride=0)
