"""GPU check of the ``paper`` profile: what a lent H100/H200 must answer in one call of 10 minutes.

Installs nothing and downloads nothing (random weights of the profile's architecture). In order,
each part timed against ``--budget-s`` (a part that would start past it is skipped and said so):

1. versions and device: torch, CUDA, cuDNN, open_clip, mofkit's commit, the GPU, its memory and
   driver, and the dense bf16 peak of that exact model (H100 SXM 989 TFLOP/s, PCIe 756, ...);
2. base step (forward, backward, clipping, fused AdamW; bf16 autocast) at K = 4, 8, 12 and the
   profile's batch: step time, peak memory, frames/s, TFLOP/s (3 x the forward FLOPs counted by
   torch's counter) and their share of the peak;
3. meta step at the profile's K and N (exact with the profile's ``meta_chunk``, and first order)
   over a batch sweep (16, 32, 64) with out-of-memory caught: step time, peak memory, videos/s,
   whole-video frames/s and the ratio to a base step of the same batch;
4. the ``slots`` compressor at the profile's size: a base step through it (N frames in, K out);
5. the frame-bank path: a bank of the profile's shape on the local disk, read ahead into pinned
   memory, copied without blocking, feeding real base steps: read GB/s and the share of a base
   step spent waiting for frames (``mofkit.train.feed``);
6. the bf16 hypergradient against float32 at the profile's alpha: cosine and norm ratio.

Prints one table per part (markdown) and writes everything to ``--json``.

    python benchmarks/gpu_check.py --json gpu_check.json             # on the GPU machine
    python benchmarks/gpu_check.py --cpu-dry-run --json /tmp/dry.json  # any machine: tiny, CPU

``--cpu-dry-run`` runs every part on the CPU with a tiny architecture and tiny sizes (fp32 steps,
bf16 on CPU autocast for the cosine), so that the script is exercised by the test suite and cannot
rot; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Dense (not sparse) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets; the most
# specific name first (an "H100 PCIe" must not match "H100").
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0))


def peak_bf16(name: str) -> float | None:
    """Dense bf16 peak (TFLOP/s) of a device by its name; None for one not listed."""
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


class Check:
    """The run's device, settings, time budget and results."""

    def __init__(self, args):
        self.args = args
        self.t0 = time.perf_counter()
        self.results: dict = {"parts": {}, "skipped": []}
        self.dry = args.cpu_dry_run
        self.device = torch.device("cpu" if self.dry else "cuda")

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def part(self, name: str, needs_s: float) -> bool:
        """Whether part ``name`` (about ``needs_s`` seconds) still fits the budget."""
        if self.left() < needs_s:
            self.results["skipped"].append(name)
            print(f"\n## {name}: skipped ({self.left():.0f} s of the budget left, needs about {needs_s:.0f})")
            return False
        print(f"\n## {name}\n", flush=True)
        return True

    def sync(self) -> None:
        from mofkit.device import synchronize

        synchronize(self.device)

    def timed(self, fn, iters: int) -> float:
        """Median seconds of ``fn()`` over ``iters`` calls after one warm-up."""
        fn()
        self.sync()
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def peak_gib(self, fn) -> float | None:
        from mofkit.device import peak_memory_mb, reset_peak_memory

        self.sync()
        reset_peak_memory(self.device)
        fn()
        self.sync()
        mb = peak_memory_mb(self.device)
        return None if mb is None else mb / 1024


def _oom_errors() -> tuple[type, ...]:
    errors: list[type] = [getattr(torch, "OutOfMemoryError", RuntimeError)]
    if hasattr(torch.cuda, "OutOfMemoryError"):
        errors.append(torch.cuda.OutOfMemoryError)
    return tuple(errors)


def _fmt(v, digits=1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def versions(c: Check) -> None:
    import open_clip

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "open_clip": open_clip.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "host": platform.node(), "cpus": len(__import__("os").sched_getaffinity(0))}
    try:
        info["mofkit_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                               text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["mofkit_commit"] = None
    if c.dry:
        info.update(device="cpu (dry run)", memory_gib=None, driver=None, peak_bf16_tflops=None)
    else:
        props = torch.cuda.get_device_properties(c.device)
        info.update(device=props.name, memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    peak_bf16_tflops=peak_bf16(props.name))
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,power.limit,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["driver"], info["power_limit"], info["max_sm_clock"] = \
                [s.strip() for s in out.stdout.splitlines()[0].split(",")]
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            info["driver"] = None
    c.results["versions"] = info
    for k, v in info.items():
        print(f"- {k}: {v}")


def build(c: Check):
    """The profile's config (tiny in a dry run) and its model with random weights."""
    from mofkit.config import get_config
    from mofkit.models import create_from_config

    cfg = get_config("paper")
    if c.dry:
        cfg.model.arch = "mof-tiny-32"
        cfg.data.num_frames, cfg.mof.meta_frames, cfg.train.batch_size = 2, 4, 4
        cfg.mof.meta_chunk = 2
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), c.device)
    if not c.dry:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return cfg, bundle


def _precision(c: Check) -> str:
    return "fp32" if c.dry else "bf16"


def base_steps(c: Check, cfg, bundle) -> None:
    from mofkit.device import autocast
    from mofkit.eval.cost import count_flops
    from mofkit.models import contrastive_loss

    model, s, b = bundle.model, bundle.image_size, cfg.train.batch_size
    tokens = bundle.tokenizer(["a person is cooking in a kitchen"] * b).to(c.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=not c.dry)
    amp = autocast(c.device, _precision(c))
    peak = c.results["versions"].get("peak_bf16_tflops")
    ks = [1, 2, 3] if c.dry else c.args.k
    rows = []
    print(f"{cfg.model.arch} at {s} px, batch {b}, {_precision(c)}\n")
    print("| K | step s | peak GiB | train frames/s | TFLOP/s | share of bf16 peak |")
    print("|---|---|---|---|---|---|")
    for k in ks:
        frames = torch.randn(b, k, 3, s, s, device=c.device)

        def step():
            model.train()
            with amp:
                text, video, scale = model(tokens, frames)
            loss = contrastive_loss(text.float(), video.float(), scale.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = c.timed(step, c.args.iters)
        mem = c.peak_gib(step)
        with amp:
            fwd = count_flops(model, tokens, frames)
        tflops = 3 * fwd / t / 1e12
        share = 100 * tflops / peak if peak else None
        rows.append({"k": k, "batch": b, "step_s": t, "peak_gib": mem, "frames_per_s": b * k / t,
                     "tflops": tflops, "share_of_peak_pct": share})
        print(f"| {k} | {t:.3f} | {_fmt(mem)} | {b * k / t:.0f} | {tflops:.1f} | "
              f"{_fmt(share, 0) + ' %' if share is not None else 'n/a'} |", flush=True)
    c.results["parts"]["base"] = rows
    del opt


def meta_steps(c: Check, cfg, bundle) -> None:
    from mofkit.bilevel.meta import hypergradient
    from mofkit.device import autocast
    from mofkit.models import contrastive_loss

    model, s, m = bundle.model, bundle.image_size, cfg.mof
    k, n = cfg.data.num_frames, m.meta_frames
    batches = [2, 4] if c.dry else c.args.meta_batch
    rows = []
    print(f"K = {k}, N = {n}, alpha = {m.alpha}, meta_chunk = {m.meta_chunk}, {_precision(c)}\n")
    print("| batch | method | step s | peak GiB | videos/s | whole-video frames/s | meta / base time |")
    print("|---|---|---|---|---|---|---|")
    params = [p for p in model.parameters() if p.requires_grad]
    for b in batches:
        tokens = bundle.tokenizer(["a person is cooking in a kitchen"] * b).to(c.device)
        try:
            x = torch.randn(b, k, 3, s, s, device=c.device)
            v = torch.randn(b, n, 3, s, s, device=c.device)
            opt = torch.optim.SGD(params, lr=0.0)  # a base step of the same batch, for the ratio

            def base():
                model.train()
                with autocast(c.device, _precision(c)):
                    out = model(tokens, x)
                contrastive_loss(*(t.float() for t in out)).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            t_base = c.timed(base, max(2, c.args.iters // 2))
        except _oom_errors() as e:
            rows.append({"batch": b, "error": f"out of memory in the base step: {str(e)[:120]}"})
            print(f"| {b} | base | out of memory | | | | |")
            _free(c)
            continue
        for method in ("exact", "fd"):
            model.eval()

            def meta():
                hypergradient(model, contrastive_loss, tokens, x, v, alpha=m.alpha, method=method,
                              fd_eps=m.fd_eps, autocast=autocast(c.device, _precision(c)),
                              chunk=m.meta_chunk)

            try:
                t = c.timed(meta, max(1, c.args.iters // 4))
                mem = c.peak_gib(meta)
            except _oom_errors() as e:
                rows.append({"batch": b, "method": method, "error": f"out of memory: {str(e)[:120]}"})
                print(f"| {b} | {method} | out of memory | | | | |", flush=True)
                _free(c)
                continue
            rows.append({"batch": b, "method": method, "step_s": t, "peak_gib": mem,
                         "videos_per_s": b / t, "whole_video_frames_per_s": b * n / t,
                         "base_step_s": t_base, "meta_to_base": t / t_base})
            print(f"| {b} | {method} | {t:.3f} | {_fmt(mem)} | {b / t:.1f} | {b * n / t:.0f} | "
                  f"{t / t_base:.1f} |", flush=True)
        del x, v
        _free(c)
    c.results["parts"]["meta"] = rows


def _free(c: Check) -> None:
    import gc

    gc.collect()
    if c.device.type == "cuda":
        torch.cuda.empty_cache()


def compressor_step(c: Check, cfg, bundle) -> None:
    from mofkit.compress import compressor_from_config
    from mofkit.device import autocast
    from mofkit.models import contrastive_loss

    model, s, b = bundle.model, bundle.image_size, cfg.train.batch_size
    n, k = cfg.mof.meta_frames, cfg.data.num_frames
    comp = compressor_from_config(dataclasses.replace(cfg.compress, name="slots", input_frames=n), k)
    comp = comp.to(c.device)
    tokens = bundle.tokenizer(["a person is cooking in a kitchen"] * b).to(c.device)
    frames = torch.randn(b, n, 3, s, s, device=c.device)
    params = [p for p in list(model.parameters()) + list(comp.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=not c.dry)

    def step():
        model.train()
        with autocast(c.device, _precision(c)):
            out = model(tokens, comp(frames))
        contrastive_loss(*(t.float() for t in out)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    try:
        t = c.timed(step, max(2, c.args.iters // 2))
        mem = c.peak_gib(step)
        with torch.no_grad(), autocast(c.device, _precision(c)):
            t_fwd = c.timed(lambda: comp(frames), max(2, c.args.iters // 2))
        row = {"batch": b, "input_frames": n, "output_frames": k, "step_s": t, "peak_gib": mem,
               "compress_only_s": t_fwd, "videos_per_s": b / t}
        print(f"slots, N = {n} -> K = {k} at {s} px, batch {b}\n")
        print("| step s | peak GiB | compressor alone s | videos/s |\n|---|---|---|---|")
        print(f"| {t:.3f} | {_fmt(mem)} | {t_fwd:.4f} | {b / t:.1f} |")
    except _oom_errors() as e:
        row = {"batch": b, "error": f"out of memory: {str(e)[:120]}"}
        print("out of memory")
    c.results["parts"]["compressor"] = row
    del opt, frames
    _free(c)


def bank_path(c: Check, cfg, bundle) -> None:
    """Bank -> pinned host buffer (read ahead) -> device, feeding real base steps."""
    from mofkit.bilevel.bank import FrameBank
    from mofkit.device import autocast, host_buffer, to_device
    from mofkit.models import contrastive_loss
    from mofkit.train.feed import ReadAhead
    from mofkit.train.tasks import READ_AHEAD, READERS

    model, s, b, k = bundle.model, bundle.image_size, cfg.train.batch_size, cfg.data.num_frames
    steps = 6 if c.dry else c.args.bank_steps
    videos = b * 2 if c.dry else b * max(2, min(steps, 8))
    root = Path(tempfile.mkdtemp(prefix="gpu_check_bank_", dir=c.args.bank_dir))
    try:
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        # the profile's storage (paper: float16, read as stored and widened on the device)
        bank = FrameBank.create(root / "bank", [f"v{i}" for i in range(videos)], k, s,
                                dtype=cfg.mof.bank_dtype,
                                init=lambda rows: torch.randn(len(rows), k, 3, s, s, generator=g))
        build_s = time.perf_counter() - t
        bank.read(range(videos))  # into the page cache, as a bank being trained on is
        order = torch.randperm(videos, generator=g).numpy()
        batches = list(np.resize(order, (steps, b)))  # (steps, B): the bank's videos over and over
        tokens = bundle.tokenizer(["a person is cooking in a kitchen"] * b).to(c.device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, fused=not c.dry)

        def load(rows):
            return bank.read(rows, out=host_buffer((len(rows), *bank.frame_shape), bank.torch_dtype, c.device))

        t = time.perf_counter()
        nbytes = 0
        for rows in batches[:3]:
            nbytes += load(rows).nbytes
        read_gbs = nbytes / (time.perf_counter() - t) / 1e9
        host = load(batches[0])
        t_copy = c.timed(lambda: to_device(host, c.device), 3)
        step_times, waits = [], []
        with ReadAhead(batches, load, depth=READ_AHEAD, workers=READERS) as ahead:
            c.sync()
            for _ in batches:
                t = time.perf_counter()
                w0 = ahead.waited
                x = to_device(ahead.next(), c.device).float()
                ok = torch.isfinite(x.flatten(1)).all(dim=1)
                assert bool(ok.all())  # the one read-back of a base step
                model.train()
                with autocast(c.device, _precision(c)):
                    out = model(tokens, x)
                contrastive_loss(*(o.float() for o in out)).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                c.sync()
                step_times.append(time.perf_counter() - t)
                waits.append(ahead.waited - w0)
        steady = slice(1, None)  # the first batch waits for a whole read in any case
        share = sum(waits[steady]) / max(1e-9, sum(step_times[steady]))
        row = {"batch": b, "frames_mb_per_step": nbytes / 3 / 1e6, "bank_build_s": build_s,
               "read_gb_per_s": read_gbs, "host_to_device_gb_per_s": host.nbytes / t_copy / 1e9,
               "bank_dtype": bank.dtype,
               "step_s_median": statistics.median(step_times[steady]),
               "wait_s_median": statistics.median(waits[steady]), "wait_share": share,
               "pinned": bool(host.is_pinned())}
        print(f"{bank.dtype} bank of {videos} videos at K = {k}, {s} px on {root.parent}; {steps} base steps of batch {b}\n")
        print("| MB per step | read GB/s | host to device GB/s | step s | wait s | share waiting |")
        print("|---|---|---|---|---|---|")
        print(f"| {row['frames_mb_per_step']:.1f} | {read_gbs:.1f} | {row['host_to_device_gb_per_s']:.1f} | "
              f"{row['step_s_median']:.3f} | {row['wait_s_median']:.3f} | {100 * share:.0f} % |")
        del opt
    finally:
        shutil.rmtree(root, ignore_errors=True)
    c.results["parts"]["bank"] = row
    _free(c)


def precision_cosine(c: Check, cfg, bundle) -> None:
    from mofkit.bilevel.meta import hypergradient
    from mofkit.device import autocast
    from mofkit.models import contrastive_loss

    model, s, m = bundle.model.eval(), bundle.image_size, cfg.mof
    b = 4 if c.dry else c.args.cosine_batch
    k, n = cfg.data.num_frames, m.meta_frames
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, k, 3, s, s, generator=g).to(c.device)
    v = torch.randn(b, n, 3, s, s, generator=g).to(c.device)
    tokens = bundle.tokenizer([f"caption {i} of a video" for i in range(b)]).to(c.device)
    ref = hypergradient(model, contrastive_loss, tokens, x, v, alpha=m.alpha, chunk=m.meta_chunk)
    row = {"batch": b, "alpha": m.alpha, "fp32_mean_abs": ref.grad.abs().mean().item()}
    print(f"batch {b}, K = {k}, N = {n}, alpha = {m.alpha}\n")
    print("| precision | cosine to fp32 | norm ratio | all finite |\n|---|---|---|---|")
    for name in ("bf16", "fp16"):
        res = hypergradient(model, contrastive_loss, tokens, x, v, alpha=m.alpha, chunk=m.meta_chunk,
                            autocast=autocast(c.device, name))
        cos = torch.nn.functional.cosine_similarity(res.grad.flatten().float(), ref.grad.flatten(), dim=0)
        ratio = (res.grad.norm() / ref.grad.norm()).item()
        row[name] = {"cosine": cos.item(), "norm_ratio": ratio, "finite": bool(res.finite.all())}
        print(f"| {name} | {cos.item():.6f} | {ratio:.4f} | {bool(res.finite.all())} |")
    c.results["parts"]["precision"] = row


PARTS = (("base step", base_steps, 60), ("meta step", meta_steps, 150),
         ("compressor", compressor_step, 30), ("bank path", bank_path, 60),
         ("bf16 and fp16 hypergradients", precision_cosine, 40))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny arch on the CPU: exercise every part")
    p.add_argument("--k", type=int, nargs="+", default=[4, 8, 12], help="K of the base-step rows")
    p.add_argument("--meta-batch", type=int, nargs="+", default=[16, 32, 64], help="meta batch sweep")
    p.add_argument("--iters", type=int, default=10, help="timed repeats of a base step")
    p.add_argument("--bank-steps", type=int, default=20, help="base steps fed from the bank")
    p.add_argument("--bank-dir", default=None, help="local disk for the bank (default: the temp dir)")
    p.add_argument("--cosine-batch", type=int, default=16)
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting parts after this")
    p.add_argument("--json", default="gpu_check.json", help="where the results go")
    args = p.parse_args(argv)
    c = Check(args)
    if not c.dry and not torch.cuda.is_available():
        print("no CUDA device here: run on the GPU machine, or pass --cpu-dry-run to exercise the "
              "script on the CPU", file=sys.stderr)
        return 1
    if c.dry:
        torch.set_num_threads(1)
        args.iters = 2
    print("# GPU check of the paper profile" + (" (CPU dry run: the figures mean nothing)" if c.dry else ""))
    print("\n## versions and device\n")
    versions(c)
    cfg, bundle = build(c)
    c.results["config"] = cfg.to_dict()
    for name, fn, needs in PARTS:
        if c.part(name, 1 if c.dry else needs):
            try:
                fn(c, cfg, bundle)
            except Exception as e:  # one broken part must not cost the others their answer
                c.results["parts"][name] = {"error": f"{type(e).__name__}: {e}"}
                print(f"failed: {type(e).__name__}: {e}")
                if c.dry:
                    raise
    c.results["seconds"] = time.perf_counter() - c.t0
    Path(args.json).write_text(json.dumps(c.results, indent=2, default=str))
    print(f"\n{c.results['seconds']:.0f} s; results in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
