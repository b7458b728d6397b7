"""Decode workers (mofkit.data.decoding): the same results in the same order as decoding in this
process, failures as results, the caller's torch threads set while they run, no process left
behind when the caller stops early."""
import contextlib
import multiprocessing
import os

import pytest
import torch

from conftest import decoded_indices, need_backend, write_video
from mofkit.data.decoding import (ReadJob, decode_many, default_workers, encoder_threads, read_job,
                                  usable_cpus)


def _pid(job):
    return job, os.getpid()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    paths = [write_video(d / f"c{i}.mp4", 10 + i, pattern="index") for i in range(9)]
    (d / "bad.mp4").write_bytes(b"\x00" * 512)
    return paths[:4] + [d / "bad.mp4"] + paths[4:]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_workers_give_what_this_process_gives_in_order(clips, backend):
    need_backend(backend)
    jobs = [ReadJob(str(p), 4, "uniform", size=None, backend=backend) for p in clips]
    jobs += [ReadJob(str(clips[0]), 4, "rand", backend=backend, seed=(3, i)) for i in range(3)]
    here = list(decode_many(jobs, workers=0))
    there = list(decode_many(jobs, workers=2, chunk=2))
    assert len(here) == len(there) == len(jobs)
    for a, b, job in zip(here, there, jobs):
        assert a.ok == b.ok and a.error == b.error
        if a.ok:
            assert torch.equal(a.frames, b.frames) and a.indices.tolist() == b.indices.tolist()
            assert (a.num_frames, a.width, a.height) == (b.num_frames, b.width, b.height)
            assert decoded_indices(b.frames).tolist() == b.indices.tolist()
    assert not here[4].ok and "not a video file" in here[4].error  # listed, not fatal
    assert [r.num_frames for r in here if r.ok][:4] == [10, 11, 12, 13]
    # a rand job's draw follows its seed, wherever it runs
    assert here[-3].indices.tolist() == read_job(jobs[-3]).indices.tolist()


def test_jobs_run_in_worker_processes_and_stop_with_the_caller(clips):
    out = list(decode_many(list(range(12)), _pid, workers=2, chunk=3))
    assert [job for job, _ in out] == list(range(12))
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and len(pids) == 2
    assert multiprocessing.active_children() == []
    # the caller stops after the first result: the pool goes with it
    gen = decode_many(list(range(40)), _pid, workers=2, chunk=2)
    assert next(gen)[0] == 0
    gen.close()
    assert multiprocessing.active_children() == []
    # the caller is interrupted while the workers decode ahead: the pool goes with it
    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(decode_many(list(range(40)), _pid, workers=2, chunk=2)) as results:
            for job, _ in results:
                if job == 5:
                    raise KeyboardInterrupt
    assert multiprocessing.active_children() == []
    # one chunk, or workers=0: in this process
    assert {pid for _, pid in decode_many(list(range(3)), _pid, workers=2, chunk=8)} == {os.getpid()}
    assert {pid for _, pid in decode_many(list(range(9)), _pid, workers=0, chunk=2)} == {os.getpid()}


def test_encoder_threads_are_set_while_workers_run_and_restored():
    before = torch.get_num_threads()
    with encoder_threads(1) as n:
        assert n == max(1, usable_cpus() - 1) == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with encoder_threads(10_000) as n:
        assert n == 1 == torch.get_num_threads()  # at least one
    with encoder_threads(0) as n:
        assert n == before == torch.get_num_threads()  # no workers: left as it is
    with pytest.raises(ZeroDivisionError):
        with encoder_threads(1):
            1 / 0
    assert torch.get_num_threads() == before


def test_default_workers(monkeypatch):
    import mofkit.data.decoding as decoding

    assert default_workers(3, chunk=8) == 0  # a single chunk: nothing to overlap
    for cpus, want in [(1, 0), (2, 2), (16, 8)]:
        monkeypatch.setattr(decoding, "usable_cpus", lambda: cpus)
        assert default_workers(1000) == default_workers() == want


def test_a_result_travels_as_bytes_not_shared_memory(clips):
    """Pickled (as a worker sends it), a result holds a plain array, and comes back a tensor."""
    import pickle

    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401  (registers the shared-memory reductions of tensors)

    res = read_job(ReadJob(str(clips[0]), 4, backend="pyav" if "pyav" in _backends() else "decord"))
    blob = ForkingPickler.dumps(res)
    assert len(blob) > res.frames.numel()  # the pixels themselves, not a handle to shared memory
    back = pickle.loads(blob)
    assert isinstance(back.frames, torch.Tensor) and torch.equal(back.frames, res.frames)
    assert back.indices.tolist() == res.indices.tolist() and back.ok
    bad = pickle.loads(ForkingPickler.dumps(read_job(ReadJob(str(clips[4]), 4))))
    assert bad.frames is None and not bad.ok


def _backends():
    from mofkit.data.video import available_backends

    return available_backends()
