"""The trade-off tables: uniform K against MOF, mean ± std over seeds, with cost.

Runs the ``tradeoff`` study (``mofkit.lab.grids``: uniform K over ``study.k_values``, MOF at the
config's K, exact and first-order), training or reusing its runs in ``<out>/sweep/<setting>/seed<s>``,
the folders notebook 05_efficiency and the main job use, and prints the table. The same as
``python -m mofkit study tradeoff``, with shorthand options:

    python benchmarks/tradeoff.py                      # cpu profile, its study.seeds
    python benchmarks/tradeoff.py --seeds 0 --k 2 4    # quicker
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--out", default=None, help="results folder (default runs/<profile>)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="study.seeds")
    p.add_argument("--k", type=int, nargs="+", default=None, help="study.k_values")
    p.add_argument("--mof-k", type=int, default=None, help="data.num_frames of the MOF runs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    args = p.parse_args(argv)

    from mofkit.cli import main as cli

    sets = list(args.set or [])
    if args.seeds:
        sets.append(f"study.seeds={args.seeds}")
    if args.k:
        sets.append(f"study.k_values={args.k}")
    if args.mof_k:
        sets.append(f"data.num_frames={args.mof_k}")
    argv = ["study", "tradeoff", "--profile", args.profile] + [x for s in sets for x in ("--set", s)]
    return cli(argv + (["--out-dir", args.out] if args.out else []))


if __name__ == "__main__":
    raise SystemExit(main())
