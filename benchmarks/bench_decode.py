"""Decoding at the decoder's speed: the kit's read, index and end-to-end throughput against limits
measured in the same run.

Prints three tables from one run. Repeats are interleaved (every method once per round, the
order turned each round) and medians are reported, with the machine's load before and after:
on a shared machine compare the ratios, which are measured side by side, not absolute times.

1. **Reading.** Per-video CPU time (this process, all its threads) and wall time of the kit's
   read (``read_video``: K uniform frames at the corpus's short side, each backend), of decord
   alone (one reader, ``get_batch``: the floor of the decord backend) and of the bare open-once
   PyAV loop, the limit: open the file once, take the frame count from the stream header, decode
   up to the last wanted frame with one decoder thread and convert only the wanted frames with
   one single-threaded scaler. Rows: K = 4 and N = 32 on the synthetic corpus (64 px, 32 frames);
   K = 8 and 32 on generated 224 px videos, raw-like (30 fps, x264's long keyframe interval and
   B-frames) and re-encoded by ``mofkit reencode`` (3 fps). ``--before DIR`` (a checkout of
   earlier code) adds that code's read, timed in the same rounds.
2. **Indexing.** ``mofkit index`` (``build_index``) over ``--index-videos`` synthetic videos with a
   K = 4 run of the cpu profile's model (random weights: speed does not depend on them), each
   backend, in videos/s, against two limits: the open-once loop then the embedding, one batch
   after another in one process; and two decode processes running the loop (a plain
   ``multiprocessing`` pool) while this process embeds with one torch thread. Also the CPU time
   per video of all the processes (this one and the workers it started), which the load of a
   shared machine moves less than wall time.
3. **End to end** (``mofkit.lab.speed.measured_throughput``, what ``eval/cost.py`` and the
   studies' videos/s columns report) with the cpu profile's model: uniform K = 4 and the
   compressors study's other K (5, 6, 8, 16) and every compressor of that study (N = 32 decoded,
   compressed to K = 4), on 64 test videos of the synthetic corpus.

Usage::

    python benchmarks/bench_decode.py                      # about 5 minutes on 2 busy cores
    python benchmarks/bench_decode.py --before /path/to/old/checkout --repeats 7
    python benchmarks/bench_decode.py --skip index e2e     # the reading table only

Run it with another checkout's ``mofkit`` on ``PYTHONPATH`` to measure that code's index and end
to end (the limits are measured again, so the ratios compare across runs). ``--set KEY=VALUE``
changes the config of the index and end-to-end runs (e.g. ``model.arch=mof-tiny``, the model of
the colour-era tables).
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mofkit.config import SyntheticConfig, get_config
from mofkit.data.sampling import sample_indices
from mofkit.data.video import available_backends, import_decord, read_video


# ------------------------------------------------------------------------------------------------
# The limit: the bare open-once loop
# ------------------------------------------------------------------------------------------------

def open_once(path: str, k: int) -> np.ndarray:
    """uint8 (k, H, W, 3): k uniform frames, the file opened once, nothing more than needed."""
    import av
    from av.video.reformatter import VideoReformatter

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        idx = sample_indices(stream.frames, k, "uniform")
        want, last = set(idx.tolist()), int(idx.max())
        rgb, got = VideoReformatter(), {}
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                got[i] = rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
            if i >= last:
                break
    return np.stack([got[i] for i in idx.tolist()])


def _open_once_job(job: tuple) -> np.ndarray:
    return open_once(*job)


def decord_alone(path: str, k: int) -> np.ndarray:
    """decord's own cost: one reader at the native size, one ``get_batch``."""
    decord = import_decord()
    vr = decord.VideoReader(str(path), num_threads=1)
    out = vr.get_batch(sample_indices(len(vr), k, "uniform").tolist()).asnumpy()
    del vr
    return out


# ------------------------------------------------------------------------------------------------
# Corpora
# ------------------------------------------------------------------------------------------------

def synthetic_corpus(root: Path, n_test: int) -> Path:
    from mofkit.data.synthetic import ensure_corpus

    ensure_corpus(root, SyntheticConfig(n_train=40, n_test=n_test), progress=False)
    return root


def raw_like(path: Path, seconds: float, seed: int, size=(224, 298), fps: int = 30) -> None:
    """A clip shaped like raw web video at short side 224: 30 fps, x264 defaults (long keyframe
    interval, B-frames), moving discs over a drifting texture (bench_reencode's clip at this size)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_reencode import write_raw_like

    write_raw_like(path, seconds, seed, size=size, fps=fps)


def corpora_224(root: Path, videos: int, seconds: float) -> tuple[list[Path], list[Path]]:
    from mofkit.data.reencode import ReencodeSettings, reencode_folder

    raw, out = root / "raw224", root / "reencoded224"
    raw.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        if not (raw / f"clip{i}.mp4").exists():
            raw_like(raw / f"clip{i}.mp4", seconds, seed=i)
    rep = reencode_folder(raw, out, ReencodeSettings(fps=3, short_side=224), workers=1, progress=False)
    if not rep.ok:
        raise SystemExit(rep.summary())
    return sorted(raw.glob("*.mp4")), sorted(out.glob("*.mp4"))


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------

def load_before(checkout: Path):
    """``mofkit.data.video`` of another checkout, as a module of its own."""
    path = checkout / "mofkit" / "data" / "video.py"
    spec = importlib.util.spec_from_file_location("before_video", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["before_video"] = module
    spec.loader.exec_module(module)
    return module


def time_pass(fn, paths, k: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per video of ``fn(path, k)`` over ``paths``."""
    c0, w0 = time.process_time(), time.perf_counter()
    for p in paths:
        fn(p, k)
    return ((time.process_time() - c0) / len(paths) * 1e3, (time.perf_counter() - w0) / len(paths) * 1e3)


def interleaved(methods: dict, repeats: int, run) -> dict[str, list]:
    """``run(method)`` for every method once per round, the order turned each round."""
    names, out = list(methods), {m: [] for m in methods}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(run(methods[name]))
    return out


def reading_table(rows: list[tuple[str, list[Path], int, int]], before, repeats: int) -> list[dict]:
    backends = available_backends()
    table = []
    for label, paths, k, size in rows:
        methods = {"limit: open-once loop": lambda p, k: open_once(p, k)}
        for b in backends:
            methods[f"kit read ({b})"] = lambda p, k, b=b: read_video(p, k, size=size, backend=b)
            if before is not None:
                methods[f"before ({b})"] = lambda p, k, b=b: before.read_video(p, k, size=size, backend=b)
        if "decord" in backends:
            methods["decord alone"] = decord_alone
        for fn in methods.values():
            fn(paths[0], k)  # warm-up: libraries, page cache
        got = interleaved(methods, repeats, lambda fn: time_pass(fn, paths, k))
        cpu = {m: statistics.median(v[0] for v in got[m]) for m in got}
        wall = {m: statistics.median(v[1] for v in got[m]) for m in got}
        lim = "limit: open-once loop"
        for m in methods:
            table.append({"corpus": label, "K": k, "videos": len(paths), "method": m,
                          "cpu_ms": cpu[m], "wall_ms": wall[m], "cpu_ratio": cpu[m] / cpu[lim],
                          "wall_ratio": wall[m] / wall[lim]})
    return table


# ------------------------------------------------------------------------------------------------
# Indexing
# ------------------------------------------------------------------------------------------------

def bench_config(root: Path, overrides: dict | None = None):
    """The cpu profile on the bench's corpus, its model without pretrained towers (speed does not
    depend on weights), with ``--set`` overrides."""
    return get_config("cpu", {"data.root": str(root), "model.pretrained": None, **(overrides or {})})


def make_run(folder: Path, root: Path, backend: str, overrides: dict | None = None) -> Path:
    """A 'trained' run of the cpu profile's K = 4 model with random weights."""
    from mofkit.models import create_from_config

    cfg = bench_config(root, {**(overrides or {}), "data.backend": backend})
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    bundle = create_from_config(cfg.model, "cpu")
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.save({"model": bundle.model.state_dict(), "config": cfg.to_dict()}, folder / "checkpoint.pt")
    return folder


def limit_serial(model, paths: list, k: int, batch: int) -> float:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for s in range(0, len(paths), batch):
        model.embed([torch.from_numpy(open_once(p, k)) for p in paths[s:s + batch]], batch)
    return len(paths) / (time.perf_counter() - t0)


def limit_overlapped(model, paths: list, k: int, batch: int, procs: int = 2) -> float:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        frames = []
        for arr in pool.imap(_open_once_job, [(str(p), k) for p in paths], chunksize=8):
            frames.append(torch.from_numpy(arr))
            if len(frames) == batch:
                model.embed(frames, batch)
                frames = []
        if frames:
            model.embed(frames, batch)
    return len(paths) / (time.perf_counter() - t0)


def with_cpu(fn, videos: int) -> tuple[float, float]:
    """``(fn(), CPU ms per video)``: the CPU of this process and of the worker processes it started
    (and joined) while ``fn`` ran."""
    import resource

    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    c0 = cpu()
    out = fn()
    return out, (cpu() - c0) / videos * 1e3


def index_table(root: Path, work: Path, n: int, repeats: int, batch: int = 32,
                overrides: dict | None = None) -> list[dict]:
    from mofkit.data.datasets import load_dataset
    from mofkit.eval.index import IndexModel, build_index

    test = load_dataset("synthetic", root, "test")
    items = [(r.video_id, r.path, "") for r in list(test)[:n]]
    paths = [p for _, p, _ in items]
    kw = {"workers": None} if "workers" in inspect.signature(build_index).parameters else {}
    threads = torch.get_num_threads()
    table = []
    for backend in available_backends():
        run = make_run(Path(tempfile.mkdtemp(prefix=f"run-{backend}-", dir=work)), root, backend, overrides)
        model = IndexModel(run, "cpu")
        k = model.decoded

        def kit():
            torch.set_num_threads(threads)  # as a user's process has it; the kit sets its own
            rep = build_index(items, run, Path(tempfile.mkdtemp(prefix=f"index-{backend}-", dir=work)),
                              model=model, progress=False, batch_size=batch, **kw)
            return len(rep.added) / rep.seconds

        methods = {"kit index": kit,
                   "limit: decode then embed, one process": lambda: limit_serial(model, paths, k, batch),
                   "limit: 2 decode processes overlapped with embedding":
                       lambda: limit_overlapped(model, paths, k, batch)}
        methods["kit index"]()  # warm-up (model record, page cache)
        got = interleaved(methods, repeats, lambda fn: with_cpu(fn, len(paths)))
        torch.set_num_threads(threads)
        over = statistics.median(v for v, _ in got["limit: 2 decode processes overlapped with embedding"])
        for m, v in got.items():
            rate = statistics.median(r for r, _ in v)
            table.append({"backend": backend, "K": k, "videos": len(paths), "method": m,
                          "videos_per_s": rate, "of_overlapped_limit": rate / over,
                          "cpu_ms_per_video": statistics.median(c for _, c in v)})
    return table


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------

def e2e_table(root: Path, repeats: int, videos: int = 64, overrides: dict | None = None) -> list[dict]:
    from mofkit.lab.names import COMPRESSORS
    from mofkit.lab.speed import measured_throughput

    cfg = bench_config(root, overrides)
    threads = torch.get_num_threads()
    ks = sorted({cfg.data.num_frames, *cfg.study.compressor_k_values})
    methods = {f"uniform K={k}": (k, None) for k in ks}
    methods.update({name: (cfg.data.num_frames, COMPRESSORS[name]) for name in cfg.study.compressors})

    def run(m):
        torch.set_num_threads(threads)
        return measured_throughput(cfg, root, m[0], videos=videos, compress=m[1])

    for m in methods.values():
        run(m)  # warm-up
        break
    got = interleaved(methods, repeats, run)
    torch.set_num_threads(threads)
    return [{"method": m, "N": cfg.compress.input_frames if methods[m][1] else methods[m][0],
             "K": methods[m][0], "videos_per_s": statistics.median(v), "backend": cfg.data.backend}
            for m, v in got.items()]


# ------------------------------------------------------------------------------------------------

def _markdown(rows: list[dict], cols: list[str], fmt: dict) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=100, help="synthetic videos per reading row")
    ap.add_argument("--videos-224", type=int, default=8, help="generated 224 px videos per reading row")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each raw-like 224 px clip")
    ap.add_argument("--index-videos", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the reading table")
    ap.add_argument("--index-repeats", type=int, default=3, help="rounds of the index and end-to-end tables")
    ap.add_argument("--before", type=Path, default=None, help="a checkout of earlier code: its read too")
    ap.add_argument("--skip", nargs="*", default=[], choices=["read", "index", "e2e"])
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the tables here")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides of the index and end-to-end runs, e.g. model.arch=mof-tiny")
    args = ap.parse_args()
    from mofkit.cli import parse_overrides

    overrides = parse_overrides(args.set)

    load0 = os.getloadavg()
    print(f"{len(os.sched_getaffinity(0))} CPUs; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} "
          f"(1, 5, 15 min) at the start; torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
          f"backends {available_backends()}")
    before = load_before(args.before) if args.before else None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.dir or tmp)
        n_test = max(args.videos, args.index_videos, 64)
        t0 = time.perf_counter()
        root = synthetic_corpus(work / "synthetic", n_test)
        syn = sorted((root / "videos").glob("*.mp4"))[:args.videos]
        print(f"corpora ready in {time.perf_counter() - t0:.1f} s")
        if "read" not in args.skip:
            raw, re = corpora_224(work, args.videos_224, args.seconds)
            rows = [("synthetic 64 px", syn, 4, 64), ("synthetic 64 px", syn, 32, 64),
                    (f"raw-like 224 px ({args.seconds:g} s, 30 fps)", raw, 8, 224),
                    (f"raw-like 224 px ({args.seconds:g} s, 30 fps)", raw, 32, 224),
                    ("re-encoded 224 px (3 fps)", re, 8, 224), ("re-encoded 224 px (3 fps)", re, 32, 224)]
            out["read"] = reading_table(rows, before, args.repeats)
            print("\nReading: per video, medians of interleaved rounds; ratio = method / limit\n")
            print(_markdown(out["read"], ["corpus", "K", "method", "cpu_ms", "wall_ms", "cpu_ratio", "wall_ratio"],
                            {"cpu_ms": "{:.2f}", "wall_ms": "{:.2f}", "cpu_ratio": "{:.2f}x",
                             "wall_ratio": "{:.2f}x"}))
        if "index" not in args.skip:
            out["index"] = index_table(root, work, args.index_videos, args.index_repeats, overrides=overrides)
            model = bench_config(root, overrides).model.arch
            print(f"\nIndexing {args.index_videos} synthetic videos (K = 4, {model}): videos/s\n")
            print(_markdown(out["index"], ["backend", "method", "videos_per_s", "of_overlapped_limit",
                                           "cpu_ms_per_video"],
                            {"videos_per_s": "{:.1f}", "of_overlapped_limit": "{:.2f}x",
                             "cpu_ms_per_video": "{:.2f}"}))
        if "e2e" not in args.skip:
            out["e2e"] = e2e_table(root, args.index_repeats, overrides=overrides)
            model = bench_config(root, overrides).model.arch
            print(f"\nEnd to end (measured_throughput, 64 test videos, {model}): videos/s\n")
            print(_markdown(out["e2e"], ["method", "N", "K", "backend", "videos_per_s"],
                            {"videos_per_s": "{:.1f}"}))
    load1 = os.getloadavg()
    print(f"\nload average {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load0, "load_end": load1, **out}, indent=1, default=str))


if __name__ == "__main__":
    main()
