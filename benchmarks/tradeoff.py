"""The trade-off tables: uniform K against MOF, mean ± std over seeds, with cost.

Trains (or reuses) the runs of a profile's K sweep in ``<out>/sweep/<setting>/seed<s>``, the same
folders notebook 05_efficiency uses, so this script and the main job share finished runs. Prints:

1. uniform K in ``--k`` (default 2 4 8 16): t2v and v2t R@1/R@5/R@10/MdR/MnR, GFLOPs per
   video, training seconds;
2. MOF at ``--mof-k`` (exact hypergradient, and first order with ``--fd``) next to uniform K.

    python benchmarks/tradeoff.py                      # cpu profile, seeds 0 1 2
    python benchmarks/tradeoff.py --seeds 0 --k 2 4    # quicker
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--out", default=None, help="results folder (default runs/<profile>)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--mof-k", type=int, nargs="+", default=[4])
    p.add_argument("--fd", action="store_true", help="also MOF with the finite-difference hypergradient")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    args = p.parse_args(argv)

    from mofkit.cli import parse_overrides
    from mofkit.config import get_config
    from mofkit.train.experiments import run_grid
    from mofkit.viz.plots import headline_markdown

    cfg = get_config(args.profile, parse_overrides(args.set))
    root = Path(args.out or f"runs/{args.profile}") / "sweep"
    uniform = run_grid(cfg, {"data.num_frames": args.k, "mof.enabled": [False]}, seeds=args.seeds,
                       root=root, label="uniform")
    mof = run_grid(cfg, {"data.num_frames": args.mof_k, "mof.enabled": [True]}, seeds=args.seeds,
                   root=root, label="MOF")
    parts = [uniform, mof]
    if args.fd:
        parts.append(run_grid(cfg, {"data.num_frames": args.mof_k, "mof.enabled": [True],
                                    "mof.hypergrad": ["fd"]}, seeds=args.seeds, root=root,
                              label="MOF (first order)"))
    table = pd.concat(parts, ignore_index=True)
    table.to_csv(root / "tradeoff.csv", index=False)
    m = cfg.mof
    print(f"\nprofile {args.profile}: {cfg.model.arch}, {cfg.train.epochs} epochs, batch "
          f"{cfg.train.batch_size}, lr {cfg.train.lr}; MOF N={m.meta_frames} alpha={m.alpha} "
          f"frame lr={m.frame_lr} update={m.update} every {m.meta_every} epoch(s); seeds {args.seeds}")
    print(f"test videos: {int(table.n_test_videos.iloc[0])}\n")
    print(headline_markdown(table, by=("method", "K")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
