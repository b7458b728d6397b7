"""Share of a MOF base step spent waiting for its frames, at the paper profile's shape, on the CPU.

A MOF base step trains on each video's K compressed frames from the frame bank: at the ``paper``
profile's shape (batch 64, K = 8, 224 px) 150 MB per step from its float16 bank (300 MB from a
float32 one). This benchmark builds a bank of
that shape on the disk (random frames; ``--videos`` of them), then runs base steps whose device
part is simulated by a sleep of ``--device-step`` seconds (an H100 base step of ViT-B-32 at this
batch takes a few tens of milliseconds; the sleep leaves the host free, as a queued GPU step does),
and measures the time the step loop spends on the host before each step can be queued:

* ``previous``: what the MOF task did before: the bank read on the training thread, the
  finiteness check on the host, the copy of the kept rows (and, on a GPU, a blocking copy from
  unpinned memory, not counted here);
* ``read-ahead``: what it does now: a reader thread fills a host buffer (pinned on a GPU) for the
  batches ahead (``mofkit.train.feed.ReadAhead``), the step only waits if that thread is behind;
  the copy to the device and the finiteness check run on the device (part of the simulated step).

The share is ``wait / (wait + device step)`` over the ``--steps`` steps of one epoch but its first
(which waits for a whole read in either path), and with it in the last column (a paper epoch has
140 steps, this one 40). Reads are from the page cache (a bank larger than the RAM
reads from the disk: ``bench_bank.py`` measures the disk's own speed), and the host must have
cores to spare for the reader threads: on a busy machine the figures are worse than on an idle one.

    python benchmarks/bench_feed.py                          # both paths, 50 ms device step
    python benchmarks/bench_feed.py --device-step 0.03 --bank-dtype float32
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _build(directory: Path, videos: int, k: int, size: int, dtype: str):
    from mofkit.bilevel.bank import FrameBank

    g = torch.Generator().manual_seed(0)
    return FrameBank.create(directory, [f"video{i}" for i in range(videos)], k, size, dtype=dtype,
                            init=lambda rows: torch.randn(len(rows), k, 3, size, size, generator=g),
                            overwrite=True)


def run_previous(bank, batches, device_step: float) -> list[float]:
    """Host time before each step: read, host finiteness check, copy of the kept rows."""
    waits = []
    for rows in batches:
        t0 = time.perf_counter()
        x = bank.read(rows)  # (B, K, 3, S, S) float32
        ok = torch.isfinite(x.flatten(1)).all(dim=1).numpy()
        x = x[torch.from_numpy(ok)]
        waits.append(time.perf_counter() - t0)
        time.sleep(device_step)
    return waits


def run_read_ahead(bank, batches, device_step: float, depth: int, workers: int) -> list[float]:
    """Host time before each step: waiting for the reader threads (the rest runs on the device)."""
    from mofkit.device import to_device
    from mofkit.train.feed import ReadAhead

    device = torch.device("cpu")
    # The buffers are reused, as CUDA's pinned-memory cache reuses the blocks that
    # mofkit.device.host_buffer allocates (a fresh CPU allocation would be paid in page faults).
    # A float16 bank is read as stored (half the bytes) and widened on the device, as the task does.
    ring = [torch.empty((len(batches[0]), *bank.frame_shape), dtype=bank.torch_dtype) for _ in range(depth + 2)]

    def load(job):
        j, rows = job
        return bank.read(rows, out=ring[j % len(ring)])

    waits = []
    with ReadAhead(list(enumerate(batches)), load, depth=depth, workers=workers) as ahead:
        for _ in batches:
            t0 = time.perf_counter()
            host = ahead.next()
            waits.append(time.perf_counter() - t0)
            to_device(host, device)  # on a GPU: queued, no wait; the check runs on the device
            time.sleep(device_step)
    return waits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=384, help="videos in the bank (6 batches of 64)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=8, help="K")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--bank-dtype", default=None, choices=["float32", "float16"],
                   help="storage of the bank's frames (default: the paper profile's, float16)")
    p.add_argument("--device-step", type=float, default=0.05, help="simulated device step (s)")
    p.add_argument("--steps", type=int, default=40, help="base steps measured (after a pass that warms the cache)")
    p.add_argument("--depth", type=int, default=3, help="batches read ahead")
    p.add_argument("--workers", type=int, default=None,
                   help="reader threads (default: what the MOF task uses on this machine)")
    p.add_argument("--paths", nargs="+", default=["previous", "read-ahead"],
                   choices=["previous", "read-ahead"])
    p.add_argument("--dir", default=None, help="where to build the bank (default: a temporary folder)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.bank_dtype is None:
        from mofkit.config import get_config

        args.bank_dtype = get_config("paper").mof.bank_dtype
    if args.workers is None:
        from mofkit.train.tasks import READERS

        args.workers = READERS

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_feed_"))
    try:
        t0 = time.perf_counter()
        bank = _build(root / "bank", args.videos, args.frames, args.size, args.bank_dtype)
        mb = args.batch * int(np.prod(bank.frame_shape)) * (2 if args.bank_dtype == "float16" else 4) / 2**20
        print(f"bank: {args.videos} videos x {args.frames} frames x {args.size} px, {args.bank_dtype} "
              f"(built in {time.perf_counter() - t0:.0f} s); batch {args.batch}: {mb:.0f} MB of "
              f"{args.bank_dtype} frames read per step; simulated device step {1000 * args.device_step:.0f} ms\n")
        print("| path | reader threads | wait per step, median ms | mean ms | share waiting | "
              "share waiting, first step included |")
        print("|---|---|---|---|---|---|")
        rng = np.random.default_rng(0)
        per_pass = args.videos // args.batch
        order = np.concatenate([rng.permutation(args.videos)[:per_pass * args.batch]
                                for _ in range(-(-args.steps // per_pass))])
        batches = [order[i * args.batch:(i + 1) * args.batch] for i in range(args.steps)]
        bank.read(np.arange(args.videos))  # into the page cache
        for path in args.paths:
            # one epoch of `steps` batches (a paper epoch has 140); its first batch waits in full
            if path == "previous":
                waits = run_previous(bank, batches, args.device_step)
            else:
                waits = run_read_ahead(bank, batches, args.device_step, args.depth, args.workers)
            steady = waits[1:]  # the first step of an epoch waits for a whole read in either path
            mean = statistics.fmean(steady)
            share = mean / (mean + args.device_step)
            share_all = statistics.fmean(waits) / (statistics.fmean(waits) + args.device_step)
            threads = "none (the training thread)" if path == "previous" else args.workers
            print(f"| {path} | {threads} | {1000 * statistics.median(steady):.0f} | {1000 * mean:.0f} | "
                  f"{100 * share:.0f} % | {100 * share_all:.0f} % |", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
