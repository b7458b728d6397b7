"""Cost of MOF's meta step against a base step, and how well the first-order estimate agrees.

Prints, for a model and batch (default: the cpu profile's model, batch 32, K = 4, N = 32):

* wall time (median of several repeats) and peak memory of a base training step (forward,
  backward, AdamW) and of a meta step (exact and finite-difference hypergradients);
* the cosine similarity between finite-difference and exact hypergradients (and their norm ratio)
  on real batches of the synthetic corpus, for a few finite-difference radii.

Peak memory is measured for one step in a fresh process: CUDA's max_memory_allocated on a GPU; on
the CPU the peak resident set above the resident set before the step (Linux's peak counter is
reset first), which includes the model's gradients and optimiser state where the step makes them.

    python benchmarks/bench_meta.py                       # cpu profile model, CPU
    python benchmarks/bench_meta.py --arch ViT-B-32 --image-size 224 --device cuda --precision bf16
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(fn, device, repeats: int) -> float:
    from mofkit.device import synchronize

    fn()  # warm-up
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _memory_in_fresh_process(name: str, argv) -> float:
    cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--memory-of", name]
    out = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])
    except (ValueError, IndexError, KeyError):
        return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--arch", default=None, help="override the profile's architecture")
    p.add_argument("--image-size", type=int, default=None, help="input side when --arch is not tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--alpha", type=float, default=1e-2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--agreement-batches", type=int, default=3,
                   help="real corpus batches for the fd-vs-exact agreement (0: skip)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    from mofkit.bilevel.meta import hypergradient
    from mofkit.config import get_config
    from mofkit.device import autocast, get_device, peak_memory_mb
    from mofkit.models import contrastive_loss, create_retrieval_model

    cfg = get_config(args.profile)
    device = get_device(args.device)
    arch = args.arch or cfg.model.arch
    torch.manual_seed(0)
    bundle = create_retrieval_model(arch, None, context_length=cfg.model.context_length, device=device)
    model, s = bundle.model, args.image_size or bundle.image_size
    tokens = bundle.tokenizer(["a red circle moves left, then a blue star flashes"] * args.batch).to(device)
    x = torch.randn(args.batch, args.k, 3, s, s, device=device)
    v = torch.randn(args.batch, args.n, 3, s, s, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast(device, args.precision)

    def base_step():
        model.train()
        with amp:
            loss = contrastive_loss(*model(tokens, x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def meta(method):
        def step():
            model.eval()
            hypergradient(model, contrastive_loss, tokens, x, v, alpha=args.alpha, method=method,
                          autocast=autocast(device, args.precision))
        return step

    steps = {"base step": base_step, "meta step, exact": meta("exact"),
             "meta step, finite differences": meta("fd")}
    if args.memory_of:
        # a fresh process per step type: the allocator has cached nothing yet
        base = _status_mb("VmRSS")
        _reset_rss_peak()
        steps[args.memory_of]()
        print(json.dumps({"peak_mb": peak_memory_mb(device) if device.type == "cuda"
                          else _status_mb("VmHWM") - base}))
        return 0
    rows = {}
    for name, fn in steps.items():
        t = _measure(fn, device, args.repeats)
        rows[name] = (t, _memory_in_fresh_process(name, argv))
    base_t = rows["base step"][0]
    print(f"\n{arch} at {s}px, batch {args.batch}, K={args.k}, N={args.n}, alpha={args.alpha}, "
          f"{device} {args.precision}, {torch.get_num_threads()} threads")
    print("| step | seconds (median) | x base | peak memory (MiB) |\n|---|---|---|---|")
    for name, (t, mem) in rows.items():
        print(f"| {name} | {t:.3f} | {t / base_t:.1f} | {mem:.0f} |")

    agreement = []
    if args.agreement_batches and args.arch is None:
        agreement = _agreement(cfg, bundle, device, args)
        print("\n| fd radius | cosine(fd, exact) mean | min | norm ratio fd/exact |\n|---|---|---|---|")
        for eps, cos, cmin, ratio in agreement:
            print(f"| {eps:g} | {cos:.5f} | {cmin:.5f} | {ratio:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timing": rows, "agreement": agreement, "args": vars(args)}, f, indent=2)
    return 0


def _agreement(cfg, bundle, device, args):
    """fd vs exact hypergradients on real batches of the profile's corpus, after a short training."""
    from mofkit.bilevel.meta import hypergradient
    from mofkit.data.preprocess import Preprocessor
    from mofkit.models import contrastive_loss
    from mofkit.train.data import prepare_data
    from mofkit.train.batches import epoch_batches
    from mofkit.train.distributed import DistInfo

    cfg.mof.enabled, cfg.mof.meta_frames = True, args.n
    cfg.data.dense_frames = max(cfg.data.dense_frames, args.n)
    from mofkit.train.tasks import task_class

    data = prepare_data(cfg, task_class(cfg).data_needs(cfg), bundle.tokenizer, progress=False)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    model = bundle.model
    # a few training steps first, so the gradients are those of a model that has started to learn
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = epoch_batches(len(data.train), args.batch, 0, 0, DistInfo())
    loader = data.train_loader(batches, 0, with_meta=True)
    model.train()
    for i, batch in zip(range(10), loader):
        loss = contrastive_loss(*model(batch["tokens"].to(device), pre.eval(batch["frames"].to(device))))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = []
    picked = [b for _, b in zip(range(args.agreement_batches), loader)]
    for eps in (1e-1, 1e-2, 1e-3):
        cos, ratio = [], []
        for batch in picked:
            tokens = batch["tokens"].to(device)
            x = pre.eval(batch["frames"].to(device))
            v = pre.eval(batch["meta_frames"].to(device))
            exact = hypergradient(model, contrastive_loss, tokens, x, v, alpha=args.alpha).grad
            fd = hypergradient(model, contrastive_loss, tokens, x, v, alpha=args.alpha, method="fd",
                               fd_eps=eps).grad
            cos.append(F.cosine_similarity(fd.double().flatten(), exact.double().flatten(), dim=0).item())
            ratio.append((fd.norm() / exact.norm()).item())
        out.append((eps, statistics.mean(cos), min(cos), statistics.mean(ratio)))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
