"""Decode throughput before and after ``mofkit reencode``, on generated videos of raw MSR-VTT's shape.

Writes ``--videos`` H.264 mp4 files the size of raw MSR-VTT clips (320x240 at 30 fps, ``--seconds``
long, x264's default keyframe interval: moving shapes over a textured background), re-encodes them
with :func:`mofkit.data.reencode.reencode_folder` (default 3 fps, 224 px short side), and prints one
table: for each installed decoder, the kit's read of ``--k`` uniform frames per video
(``read_video``: one open, resized to 224 px on decode) in videos/s before and after, the
speed-up, the re-encoding time, and the folder sizes.

Usage::

    python benchmarks/bench_reencode.py                     # 12 videos of 15 s: about a minute
    python benchmarks/bench_reencode.py --videos 40 --seconds 30 --workers 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mofkit.data.reencode import ReencodeSettings, reencode_folder
from mofkit.data.scan import find_videos
from mofkit.data.video import available_backends, read_video


def write_raw_like(path: Path, seconds: float, seed: int, size=(240, 320), fps: int = 30) -> None:
    """A clip shaped like raw MSR-VTT: 320x240, 30 fps, moving discs over a drifting texture."""
    import av

    rng = np.random.default_rng(seed)
    h, w = size
    tex = rng.integers(40, 200, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, 0), 8, 1)
    yy, xx = np.mgrid[0:h, 0:w]
    discs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-3, 3), rng.uniform(-2, 2),
              rng.uniform(10, 30), rng.integers(0, 256, 3)) for _ in range(4)]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        for t in range(int(seconds * fps)):
            dx = t // 4 % 8
            img = tex[:h, dx:dx + w].copy()
            for x, y, vx, vy, r, col in discs:
                cx, cy = (x + vx * t) % w, (y + vy * t) % h
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = col
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def decode_rate(folder: Path, k: int, backend: str, size: int) -> float:
    """Videos per second of the kit's read: ``k`` uniform frames in one open, resized on decode."""
    videos = find_videos(folder)
    read_video(videos[0][1], k, size=size, backend=backend)  # warm-up (libraries, page cache)
    t0 = time.perf_counter()
    for _, path in videos:
        frames, _ = read_video(path, k, size=size, backend=backend)
        assert frames.shape[0] == k
    return len(videos) / (time.perf_counter() - t0)


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for _, p in find_videos(folder)) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--k", type=int, default=12, help="frames read per video (CLIP4Clip's max_frames)")
    ap.add_argument("--size", type=int, default=224, help="short side frames are resized to on decode")
    ap.add_argument("--fps", type=float, default=3.0)
    ap.add_argument("--short-side", type=int, default=224)
    ap.add_argument("--workers", type=int, default=1, help="re-encoding processes")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        raw, out = root / "raw", root / "reencoded"
        raw.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for i in range(args.videos):
            if not (raw / f"video{i}.mp4").exists():
                write_raw_like(raw / f"video{i}.mp4", args.seconds, seed=i)
        gen = time.perf_counter() - t0
        rep = reencode_folder(raw, out, ReencodeSettings(fps=args.fps, short_side=args.short_side),
                              workers=args.workers, progress=False)
        if not rep.ok:
            raise SystemExit(rep.summary())
        print(f"{args.videos} videos of {args.seconds:g} s, 320x240 at 30 fps (written in {gen:.1f} s); "
              f"re-encoded to {args.fps:g} fps, short side {args.short_side}: {rep.seconds:.1f} s "
              f"({len(rep.encoded) / rep.seconds:.2f} videos/s, {args.workers} process(es)); "
              f"{folder_mb(raw):.1f} MB -> {folder_mb(out):.1f} MB\n")
        print(f"| decoder | K | videos/s raw | videos/s re-encoded | speed-up |\n|---|---|---|---|---|")
        for backend in available_backends():
            before = decode_rate(raw, args.k, backend, args.size)
            after = decode_rate(out, args.k, backend, args.size)
            print(f"| {backend} | {args.k} | {before:.1f} | {after:.1f} | {after / before:.1f}x |")


if __name__ == "__main__":
    main()
