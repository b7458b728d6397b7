"""How fast the compressed-frame bank is updated, against what the disk under it allows.

For a bank of ``--videos`` x ``--frames`` x 3 x ``--size``^2 (per storage dtype), prints:

* ``accumulate``: adding one gradient to every row, in batches of ``--batch`` rows (what a MOF
  epoch does batch by batch), and ``step``: :meth:`FrameBank.step_accumulated`, the once-per-epoch
  Adam step that streams the generation into a new one;
* the bank bytes each moves (``step``: frames, both moments and the accumulator read, frames and
  both moments written; ``accumulate``: the accumulator read and written), and bytes per second;
* the disk's own sequential write and read throughput, measured in the same run on a file in the
  same folder (direct I/O where the file system allows it, otherwise buffered I/O with fsync and
  the file dropped from the page cache), the time that limit allows for the same bytes, and the
  ratio of that time to the measured one (1.0: the update runs at the disk's speed);
* the extrapolated update time per epoch at MSR-VTT scale (9,000 training videos, K = 8, 224 px).

Before each timed phase the bank's files are written back and dropped from the page cache, so the
update reads from the disk as it would for a bank larger than memory (MSR-VTT's is 130 GB per
generation); ``--warm`` keeps the cache (a bank that fits in memory).

    python benchmarks/bench_bank.py                          # 200 videos, K = 8, 224 px, both dtypes
    python benchmarks/bench_bank.py --videos 50 --dtypes float16 --dir /scratch/bench
"""
from __future__ import annotations

import argparse
import mmap
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MSRVTT_VIDEOS = 9000


def drop_cache(folder: Path) -> None:
    """Write back and evict every file under ``folder`` from the page cache (Linux; no-op elsewhere)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def disk_throughput(folder: Path, nbytes: int, block: int = 16 * 2**20) -> tuple[float, float, str]:
    """Sequential (write, read) bytes per second of the disk under ``folder``, and how measured."""
    path = folder / "disk_probe.bin"
    blocks = max(1, nbytes // block)
    buf = mmap.mmap(-1, block)  # page-aligned, as direct I/O needs
    buf.write(np.random.default_rng(0).integers(0, 255, block, dtype=np.uint8).tobytes())
    how = "direct I/O"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0))
        os.write(fd, buf)  # the file system may refuse direct I/O only at the first write
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        how = "buffered I/O, fsync, page cache dropped"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if not hasattr(os, "O_DIRECT"):
        how = "buffered I/O, fsync"
    try:
        t0 = time.perf_counter()
        for _ in range(blocks):
            os.write(fd, buf)
        os.fsync(fd)
        t_write = time.perf_counter() - t0
    finally:
        os.close(fd)
    flags = os.O_RDONLY | (getattr(os, "O_DIRECT", 0) if how == "direct I/O" else 0)
    if how != "direct I/O" and hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    fd = os.open(path, flags)
    try:
        t0 = time.perf_counter()
        while os.readv(fd, [buf]) == block:
            pass
        t_read = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()
    return blocks * block / t_write, blocks * block / t_read, how


def bench_dtype(folder: Path, videos: int, frames: int, size: int, dtype: str, batch: int,
                warm: bool) -> dict:
    from mofkit.bilevel.bank import FrameBank

    shape = (frames, 3, size, size)
    rng = np.random.default_rng(0)
    row = rng.standard_normal(shape, dtype=np.float32)  # one row, reused: init is not what is timed
    bank = FrameBank.create(folder / "bank", [f"v{i}" for i in range(videos)], frames, size,
                            dtype=dtype, init=lambda rows: np.repeat(row[None], len(rows), axis=0))
    bank.commit()
    grad = torch.from_numpy(rng.standard_normal((batch, *shape), dtype=np.float32) * 1e-6)
    if not warm:
        drop_cache(folder)
    t0 = time.perf_counter()
    for a in range(0, videos, batch):
        rows = np.arange(a, min(videos, a + batch))
        bank.accumulate(rows, grad[:len(rows)])
    bank._flush()
    t_acc = time.perf_counter() - t0
    bank.step_accumulated(lr=1e-3)  # warm-up: the first step also creates the files' extents
    bank.commit()
    for a in range(0, videos, batch):
        rows = np.arange(a, min(videos, a + batch))
        bank.accumulate(rows, grad[:len(rows)])
    bank.prune({bank.generation})
    if not warm:
        drop_cache(folder)
    t0 = time.perf_counter()
    stats = bank.step_accumulated(lr=1e-3)
    t_step = time.perf_counter() - t0
    assert stats["rows_updated"] == videos, stats
    bank.close()
    per = int(np.prod(shape))
    fbytes = per * np.dtype(dtype).itemsize
    mbytes = per * 4  # a moment or the accumulator, float32
    step_read = videos * (fbytes + 3 * mbytes)
    step_write = videos * (fbytes + 2 * mbytes)
    acc_bytes = videos * mbytes
    shutil.rmtree(folder / "bank")
    return {"dtype": dtype, "t_acc": t_acc, "t_step": t_step, "step_read": step_read,
            "step_write": step_write, "acc_read": acc_bytes, "acc_write": acc_bytes,
            "gen_bytes": videos * (fbytes + 2 * mbytes)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=200)
    p.add_argument("--frames", type=int, default=8, help="K")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--dtypes", default="float32,float16")
    p.add_argument("--batch", type=int, default=32, help="rows per accumulate call")
    p.add_argument("--dir", default=None, help="folder on the disk to measure (default: a temporary "
                   "folder under the current directory)")
    p.add_argument("--warm", action="store_true", help="keep the bank in the page cache")
    args = p.parse_args(argv)

    base = Path(args.dir) if args.dir else Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="bench_bank_", dir=base) as tmp:
        folder = Path(tmp)
        results = [bench_dtype(folder, args.videos, args.frames, args.size, d.strip(), args.batch,
                               args.warm) for d in args.dtypes.split(",")]
        probe = max(r["gen_bytes"] for r in results)
        wbw, rbw, how = disk_throughput(folder, min(probe, 4 * 2**30))

    gb = 1e9
    print(f"bank: {args.videos} videos x {args.frames} x 3 x {args.size}^2, "
          f"{'page cache kept' if args.warm else 'read from disk (page cache dropped)'}, "
          f"{torch.get_num_threads()} threads")
    print(f"disk ({base}, {how}): write {wbw / gb:.2f} GB/s, read {rbw / gb:.2f} GB/s\n")
    head = (f"{'dtype':8} {'phase':10} {'seconds':>8} {'GB moved':>9} {'GB/s':>6} "
            f"{'disk limit s':>12} {'ratio':>6} {'MSR-VTT min/epoch':>18}")
    print(head)
    print("-" * len(head))
    # MSR-VTT's bank: 9,000 rows of 8 x 3 x 224 x 224; the update's cost grows with its bytes
    scale = (MSRVTT_VIDEOS * 8 * 224 ** 2) / (args.videos * args.frames * args.size ** 2)
    for r in results:
        total_t = 0.0
        total_limit = 0.0
        for phase, t, rd, wr in (("accumulate", r["t_acc"], r["acc_read"], r["acc_write"]),
                                 ("step", r["t_step"], r["step_read"], r["step_write"])):
            limit = rd / rbw + wr / wbw
            total_t += t
            total_limit += limit
            print(f"{r['dtype']:8} {phase:10} {t:8.2f} {(rd + wr) / gb:9.2f} {(rd + wr) / gb / t:6.2f} "
                  f"{limit:12.2f} {limit / t:6.2f} {t * scale / 60:18.1f}")
        print(f"{r['dtype']:8} {'both':10} {total_t:8.2f} {'':9} {'':6} {total_limit:12.2f} "
              f"{total_limit / total_t:6.2f} {total_t * scale / 60:18.1f}")
    print(f"\nMSR-VTT: {MSRVTT_VIDEOS} training videos, K = 8, 224 px; minutes per epoch extrapolated "
          f"linearly from this bank's bytes (x {scale:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
