"""Reading ahead: the bank's frames of coming batches in a background thread, in order."""
import threading
import time

import numpy as np
import pytest
import torch

from mofkit.bilevel.bank import FrameBank
from mofkit.train.feed import ReadAhead

V, K, S = 12, 2, 8


def test_results_come_in_order_from_another_thread_ahead_of_use():
    threads, started = [], []

    def load(item):
        threads.append(threading.get_ident())
        started.append(item)
        return item * 10

    with ReadAhead(range(6), load, depth=2) as ahead:
        time.sleep(0.05)
        assert started == [0, 1]  # two ahead before the first is asked for
        assert [ahead.next() for _ in range(3)] == [0, 10, 20]
        assert list(ahead) == [30, 40, 50]
        assert ahead.served == 6 and ahead.waited >= 0
    assert set(threads) and threading.get_ident() not in threads


def test_depth_zero_loads_on_demand_and_close_cancels_the_rest():
    seen = []
    ahead = ReadAhead(range(3), lambda i: seen.append(i) or i, depth=0)
    assert seen == [] and ahead.next() == 0 and seen == [0]
    slow = ReadAhead(range(100), lambda i: time.sleep(0.01) or i, depth=3)
    assert slow.next() == 0
    slow.close()
    with pytest.raises(StopIteration):
        slow.next()
    with pytest.raises(ValueError, match="depth"):
        ReadAhead([], lambda i: i, depth=-1)


def test_an_error_in_the_reader_reaches_the_consumer():
    def load(i):
        if i == 2:
            raise OSError("disk gone")
        return i

    with ReadAhead(range(4), load) as ahead:
        assert ahead.next() == 0 and ahead.next() == 1
        with pytest.raises(OSError, match="disk gone"):
            ahead.next()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_bank_reads_rows_into_a_given_buffer_at_given_places(tmp_path, dtype):
    x = torch.randn(V, K, 3, S, S)
    bank = FrameBank.create(tmp_path / "bank", [f"v{i}" for i in range(V)], K, S, dtype=dtype,
                            init=lambda rows: x[torch.from_numpy(rows)])
    want = x.half().float() if dtype == "float16" else x
    rows = np.array([7, 2, 2, 11])
    torch.testing.assert_close(bank.read(rows), want[rows], rtol=0, atol=0)
    out = torch.full((6, K, 3, S, S), -1.0)
    got = bank.read(rows, out=out, at=np.array([5, 0, 3, 1]))
    assert got is out
    torch.testing.assert_close(out[[5, 0, 3, 1]], want[rows], rtol=0, atol=0)
    assert (out[[2, 4]] == -1).all()  # untouched
    if dtype == "float16":  # read as stored: half the bytes, widened later (on the device)
        raw = bank.read(rows, out=torch.empty(4, K, 3, S, S, dtype=torch.float16))
        assert raw.dtype == torch.float16 and torch.equal(raw.float(), want[rows])
    with pytest.raises(ValueError, match="out must be"):
        bank.read(rows, out=torch.empty(4, K, 3, S, S, dtype=torch.float64))
    with pytest.raises(ValueError, match="at must"):
        bank.read(rows, out=out, at=np.array([0, 1, 2, 6]))
