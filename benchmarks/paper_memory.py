"""Projected peak device memory of the ``paper`` profile's steps, counted without a GPU.

The ``paper`` profile's model (ViT-B-32-quickgelu at 224 px, K = 8 compressed frames, N = 32
whole-video frames) is built with random weights (nothing is downloaded), its weights are swapped
for fake tensors, and each step runs under ``FakeTensorMode`` while :class:`mofkit.eval.memory.LiveMemory`
counts live tensor storage op by op (the same count as a real run: ``tests/test_memory.py``). Each
figure is the peak of everything on the device during that step: weights, AdamW's two moments, the
step's inputs, gradients and activations.

Steps, at each batch size and precision:

* ``base``: the base step of a MOF or uniform run (K frames: forward, backward, gradient clipping,
  fused AdamW), as the trainer takes it;
* ``meta fd``: the first-order meta step (``mof.hypergrad = "fd"``);
* ``meta exact``: the exact meta step, its N-frame pass in pieces of ``mof.meta_chunk`` videos
  (the profile's setting) and, in the next column, in one piece (``meta_chunk = 0``);
* ``slots``: a base step through the learned ``slots`` compressor (N = 32 frames in, K out, trained
  end to end).

The budget is an 80 GB H100's 79.1 GiB less 1.5 GiB for the CUDA context, kernels' workspaces and
the caching allocator's slack (not counted here); a cell over it is marked ``(over)``. Mixed
precision is counted with CPU autocast, which casts the same layers (linear, matmul, attention) to
the low precision as CUDA autocast does.

    python benchmarks/paper_memory.py                       # batch 16, 32, 64 in bf16 and fp32
    python benchmarks/paper_memory.py --batch 64 --precision bf16 --json paper_memory.json
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import sys
import time

import torch

BUDGET_GIB = 79.1 - 1.5  # an 80 GB H100 as torch sees it, less context, workspaces and slack
STEPS = ("base", "meta fd", "meta exact", "meta exact, one piece", "slots")


def _amp(precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def _measure(fn, resident) -> float:
    """Peak bytes of live storage while ``fn()`` runs, ``resident`` tensors counted from the start."""
    from mofkit.eval.memory import LiveMemory

    with LiveMemory(fake_scalars=True) as mem:
        mem.track(*resident)
        fn()
    return mem.peak


def measure(cfg, batch: int, precision: str, steps=STEPS) -> dict[str, float]:
    """Peak GiB of each step of ``cfg`` (the paper profile) at one batch size and precision."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from mofkit.bilevel.meta import hypergradient
    from mofkit.compress import compressor_from_config
    from mofkit.eval.memory import fake_module
    from mofkit.models import contrastive_loss, create_from_config

    m, k, n = cfg.mof, cfg.data.num_frames, cfg.mof.meta_frames
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None))
    mode = FakeTensorMode()
    model = fake_module(bundle.model, mode)
    tokens = mode.from_tensor(bundle.tokenizer(["a person is cooking in a kitchen"] * batch))
    takes_chunk = "chunk" in inspect.signature(hypergradient).parameters  # not before the restructuring
    chunk = getattr(m, "meta_chunk", 0)
    out: dict[str, float] = {}
    with mode:
        s = bundle.image_size
        x = torch.randn(batch, k, 3, s, s)  # (B, K, 3, S, S) compressed frames
        v = torch.randn(batch, n, 3, s, s)  # (B, N, 3, S, S) whole-video frames
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, fused=True)

        def base(net=model, inputs=x, extra=()):
            net.train()
            with _amp(precision):
                text, video, scale = net(tokens, inputs)
            loss = contrastive_loss(text.float(), video.float(), scale.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params + list(extra), 1.0)
            (opt if not extra else opt2).step()
            (opt if not extra else opt2).zero_grad(set_to_none=True)
            net.eval()

        base()  # AdamW's moments exist from the first step on: they are resident afterwards
        resident = [*model.parameters(), *model.buffers(), tokens,
                    *(t for st in opt.state.values() for t in st.values() if torch.is_tensor(t))]

        def meta(method: str, chunk):
            model.eval()
            kw = {"chunk": chunk} if takes_chunk else {}
            hypergradient(model, contrastive_loss, tokens, x, v, alpha=m.alpha, method=method,
                          fd_eps=m.fd_eps, autocast=_amp(precision), **kw)

        gib = 2.0 ** 30
        if "base" in steps:
            out["base"] = _measure(base, resident + [x]) / gib
        if "meta fd" in steps:
            out["meta fd"] = _measure(lambda: meta("fd", chunk), resident + [x, v]) / gib
        if "meta exact" in steps:
            out["meta exact"] = _measure(lambda: meta("exact", chunk), resident + [x, v]) / gib
        if "meta exact, one piece" in steps:
            out["meta exact, one piece"] = _measure(lambda: meta("exact", 0), resident + [x, v]) / gib
        if "slots" in steps:
            comp_cfg = dataclasses.replace(cfg.compress, name="slots", input_frames=n)
            comp = fake_module(compressor_from_config(comp_cfg, k), mode)
            comp_params = [p for p in comp.parameters() if p.requires_grad]
            opt2 = torch.optim.AdamW(params + comp_params, lr=1e-5, fused=True)

            class _Through(torch.nn.Module):  # the compressor's K frames into the model
                def forward(self, tok, frames):
                    return model(tok, comp(frames))

            def slots():
                base(_Through(), v, comp_params)

            slots()
            comp_resident = [*comp.parameters(), *(t for st in opt2.state.values()
                                                   for t in st.values() if torch.is_tensor(t))]
            out["slots"] = _measure(slots, resident + comp_resident + [v]) / gib
    return out


def _cell(g: float | None) -> str:
    if g is None:
        return "n/a"
    return f"{g:.1f}" + (" (over)" if g > BUDGET_GIB else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32, 64], help="meta and base batch sizes")
    p.add_argument("--precision", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp16", "fp32"])
    p.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS, metavar="STEP",
                   help=f"steps to count (default all: {', '.join(STEPS)})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="paper-profile override")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from mofkit.cli import parse_overrides
    from mofkit.config import get_config

    cfg = get_config("paper", parse_overrides(args.set))
    print(f"paper profile: {cfg.model.arch} {cfg.data.decode_size} px, K = {cfg.data.num_frames}, "
          f"N = {cfg.mof.meta_frames}, alpha = {cfg.mof.alpha}, "
          f"meta_chunk = {getattr(cfg.mof, 'meta_chunk', 'none (before it existed)')}; "
          f"peak GiB of live tensors, budget {BUDGET_GIB:.1f} GiB (80 GB H100)\n", flush=True)
    cols = [s for s in STEPS if s in args.steps]
    print("| batch | precision | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    rows, t0 = [], time.time()
    for precision in args.precision:
        for batch in args.batch:
            got = measure(cfg, batch, precision, cols)
            rows.append({"batch": batch, "precision": precision, **got})
            print(f"| {batch} | {precision} | " + " | ".join(_cell(got.get(c)) for c in cols) + " |",
                  flush=True)
    print(f"\n({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"budget_gib": BUDGET_GIB, "config": cfg.to_dict(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
