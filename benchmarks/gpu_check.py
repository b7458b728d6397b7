"""GPU check: ViT-B-32 training and meta steps in bf16, one short table.

For K in 4, 8, 12 (random init, random input; nothing is downloaded): training step time, peak
memory, encode throughput (frames/s) and the share of the device's dense bf16 peak that the
training step reaches (3 x the forward FLOPs counted by torch's FLOP counter, over the step time).
Then one MOF meta step (K = 4, N = 32, exact and first order) against a base step.

    python benchmarks/gpu_check.py --batch 64
"""
from __future__ import annotations

import argparse
import time

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) of common training GPUs, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def _peak(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _time(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1

    from mofkit.bilevel.meta import hypergradient
    from mofkit.device import autocast
    from mofkit.eval.cost import count_flops
    from mofkit.models import contrastive_loss, create_retrieval_model

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peak = _peak(name)
    torch.backends.cuda.matmul.allow_tf32 = True
    bundle = create_retrieval_model(args.arch, None, device=dev)
    model, s = bundle.model, bundle.image_size
    tokens = bundle.tokenizer(["a person is cooking in a kitchen"] * args.batch).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    amp = autocast(dev, "bf16")
    print(f"{name}, {args.arch} {s}px, batch {args.batch}, bf16 autocast\n")
    print("| K | step s | peak GiB | train frames/s | encode frames/s | TFLOP/s | share of bf16 peak |")
    print("|---|---|---|---|---|---|---|")
    for k in args.k:
        frames = torch.randn(args.batch, k, 3, s, s, device=dev)

        def step():
            with amp:
                loss = contrastive_loss(*model(tokens, frames))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def encode():
            with torch.no_grad(), amp:
                model.encode_video(frames)

        torch.cuda.reset_peak_memory_stats(dev)
        t_step = _time(step, args.iters)
        mem = torch.cuda.max_memory_allocated(dev) / 2**30
        t_enc = _time(encode, args.iters)
        fwd = count_flops(lambda: model(tokens, frames))
        tflops = 3 * fwd / t_step / 1e12
        share = f"{100 * tflops / peak:.0f}%" if peak else "n/a"
        print(f"| {k} | {t_step:.3f} | {mem:.1f} | {args.batch * k / t_step:.0f} | "
              f"{args.batch * k / t_enc:.0f} | {tflops:.0f} | {share} |")

    b = max(1, args.batch // 4)
    x = torch.randn(b, 4, 3, s, s, device=dev)
    v = torch.randn(b, 32, 3, s, s, device=dev)
    tok = tokens[:b]
    print(f"\nMOF meta step, batch {b}, K=4, N=32\n\n| step | s | peak GiB |\n|---|---|---|")

    def base():
        with amp:
            loss = contrastive_loss(*model(tok, x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.eval()
    for label, fn in (("base", base),
                      ("meta exact", lambda: hypergradient(model, contrastive_loss, tok, x, v, alpha=1e-2,
                                                           autocast=autocast(dev, "bf16"))),
                      ("meta first order", lambda: hypergradient(model, contrastive_loss, tok, x, v,
                                                                 alpha=1e-2, method="fd",
                                                                 autocast=autocast(dev, "bf16")))):
        torch.cuda.reset_peak_memory_stats(dev)
        t = _time(fn, max(2, args.iters // 3))
        print(f"| {label} | {t:.3f} | {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
