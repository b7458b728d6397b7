"""Data-path throughput: decoding, frame-cache build and read, and the training transform.

Writes (or reuses) a corpus of real mp4 files, then prints one table:

* corpus generation time (when it had to be written),
* decode throughput for uniform-8 and dense-32 sampling with each installed backend
  (``read_video``: one open per video, frames resized on decode), in videos/s and frames/s,
* frame-cache build time (T = 32) in this process and with decoding worker processes,
* cache read throughput through the DataLoader (batches of 32 ``TrainClips`` items, K = 4 of the
  32-frame grid), with 0 and 2 loader workers,
* the training transform (random resized crop + normalise) on those batches.

Usage::

    python benchmarks/bench_data.py                 # defaults: ~1 minute on 2 cores
    python benchmarks/bench_data.py --videos 500 --workers 0 2 4

The synthetic corpus of ``mofkit.data.synthetic`` is used when that module is installed; otherwise
(or with ``--plain``) the script writes its own moving-pattern videos.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mofkit.data.cache import FrameCache
from mofkit.data.loaders import TrainClips, make_loader
from mofkit.data.preprocess import Preprocessor
from mofkit.data.video import available_backends, read_video


@dataclass
class _Record:
    video_id: str
    path: Path
    captions: list


@dataclass
class _Dataset:
    """The attributes of a VideoTextDataset this script needs."""

    name: str
    split: str
    root: Path
    records: list

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, i):
        return self.records[i]

    @property
    def video_ids(self):
        return [r.video_id for r in self.records]

    def caption_pairs(self):
        caps = [c for r in self.records for c in r.captions]
        rows = [i for i, r in enumerate(self.records) for _ in r.captions]
        return caps, np.asarray(rows, dtype=np.int64)


def _write_plain_video(path: Path, n_frames: int, size: int, fps: int, seed: int) -> None:
    """Coloured blocks drifting over a gradient: enough texture and motion for realistic decoding."""
    import av

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(blocks, 8, 0), 8, 1)  # (S, S, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "23"}
    for i in range(n_frames):
        img = np.roll(base, shift=(i, 2 * i), axis=(0, 1)).astype(np.int16)
        img[..., 0] += ((xx + 3 * i) % size * 64 // size).astype(np.int16)
        frame = np.clip(img, 0, 255).astype(np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def _plain_corpus(root: Path, n: int, frames: int, size: int) -> tuple[_Dataset, float | None]:
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    paths = [videos / f"video{i:05d}.mp4" for i in range(n)]
    todo = [p for p in paths if not p.is_file()]
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        if p in todo:
            _write_plain_video(p, frames, size, fps=8, seed=i)
    gen = time.perf_counter() - t0 if todo else None
    records = [_Record(p.stem, p, [f"caption of {p.stem}", f"another caption of {p.stem}"]) for p in paths]
    return _Dataset("bench", "train", root, records), gen


def _synthetic_corpus(root: Path, n: int, frames: int, size: int):
    """The project's synthetic corpus, when its modules exist; None otherwise."""
    try:
        from mofkit.config import SyntheticConfig
        from mofkit.data.datasets import load_dataset
        from mofkit.data.synthetic import ensure_corpus
    except ImportError:
        return None
    cfg = SyntheticConfig(n_train=n, n_test=max(2, n // 10), frames=frames, size=size)
    t0 = time.perf_counter()
    fresh = not (root / "videos").exists()
    ensure_corpus(root, cfg)
    gen = time.perf_counter() - t0 if fresh else None
    return load_dataset("synthetic", root, "train"), gen


def _row(table, task, setting, seconds, videos=None, frames=None, batches=None):
    table.append({"task": task, "setting": setting, "seconds": seconds,
                  "videos/s": videos / seconds if videos else None,
                  "frames/s": frames / seconds if frames else None,
                  "batches/s": batches / seconds if batches else None})


def _print(table, header: str) -> None:
    cols = ["task", "setting", "seconds", "videos/s", "frames/s", "batches/s"]
    fmt = {"seconds": "{:.2f}", "videos/s": "{:.1f}", "frames/s": "{:.0f}", "batches/s": "{:.1f}"}
    cells = [[(fmt.get(c, "{}").format(r[c]) if r[c] is not None else "-") for c in cols] for r in table]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]
    print("\n" + header)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(row, widths))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=None, help="corpus folder (default: a temporary one)")
    p.add_argument("--videos", type=int, default=200, help="videos in the corpus")
    p.add_argument("--frames", type=int, default=32, help="frames per video")
    p.add_argument("--size", type=int, default=64, help="frame side (px) of the corpus and the cache")
    p.add_argument("--decode-videos", type=int, default=100, help="videos timed per decode setting")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to time")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backends", nargs="+", default=None, help="default: every installed backend")
    p.add_argument("--plain", action="store_true", help="use this script's videos, not the synthetic corpus")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="mofkit-bench-"))
    root = args.root or tmp / "corpus"
    table: list[dict] = []
    try:
        made = None if args.plain else _synthetic_corpus(root, args.videos, args.frames, args.size)
        source = "synthetic corpus" if made is not None else "plain videos"
        ds, gen = made if made is not None else _plain_corpus(root, args.videos, args.frames, args.size)
        if gen is not None:
            _row(table, "generate corpus", f"{len(ds)} x {args.frames} frames", gen, videos=len(ds),
                 frames=len(ds) * args.frames)

        backends = args.backends or available_backends()
        for backend in backends:
            for label, k in (("uniform-8", 8), ("dense-32", 32)):
                recs = ds.records[: args.decode_videos]
                read_video(recs[0].path, k, size=args.size, backend=backend)  # warm up imports
                t0 = time.perf_counter()
                for r in recs:
                    read_video(r.path, k, "uniform", size=args.size, backend=backend)
                _row(table, f"decode {label}", backend, time.perf_counter() - t0,
                     videos=len(recs), frames=len(recs) * k)

        cache_dir = tmp / "cache"
        grid = None
        for w in args.workers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                grid = FrameCache.build(ds, num_frames=32, size=args.size, backend=backends[0],
                                        cache_dir=cache_dir, progress=False, rebuild=True, workers=w)
            _row(table, "cache build T=32", f"{backends[0]}, {w} workers", time.perf_counter() - t0,
                 videos=len(ds), frames=len(ds) * 32)
        t0 = time.perf_counter()
        grid = FrameCache.build(ds, num_frames=32, size=args.size, backend=backends[0],
                                cache_dir=cache_dir, progress=False)
        _row(table, "cache hit (stat only)", f"{len(ds)} videos", time.perf_counter() - t0)

        view = grid.dataset_view(ds)
        _, caption_video = view.caption_pairs()
        tokens = torch.zeros(len(caption_video), 32, dtype=torch.long)
        clips = TrainClips(grid, view, tokens, caption_video, num_frames=4, sampling="rand",
                           meta_frames=32)
        for w in args.workers:
            for epoch in range(2):  # loader workers start anew each epoch, as in training
                t0 = time.perf_counter()
                n = sum(1 for _ in make_loader(clips, args.batch_size, shuffle=True, epoch=epoch,
                                               num_workers=w))
                _row(table, f"cache read K=4+N=32 (epoch {epoch})", f"batch {args.batch_size}, {w} workers",
                     time.perf_counter() - t0, videos=len(clips), batches=n)

        pre = Preprocessor(args.size)
        batch = next(iter(make_loader(clips, args.batch_size)))["frames"]  # (B, 4, S, S, 3)
        g = torch.Generator().manual_seed(0)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            pre.train(batch, g)
        _row(table, "train transform (crop+norm)", f"{tuple(batch.shape)}", time.perf_counter() - t0,
             videos=reps * len(batch), frames=reps * batch.shape[0] * batch.shape[1], batches=reps)
        t0 = time.perf_counter()
        for _ in range(reps):
            pre.eval(batch)
        _row(table, "eval transform", f"{tuple(batch.shape)}", time.perf_counter() - t0,
             videos=reps * len(batch), frames=reps * batch.shape[0] * batch.shape[1], batches=reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _print(table, f"{source}: {len(ds)} videos, {args.frames} frames, {args.size} px; "
                  f"torch threads {torch.get_num_threads()}; backends {', '.join(backends)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
