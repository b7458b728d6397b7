"""Re-measure the end-to-end videos/s column of committed study tables with today's decoding path.

A study's table measures ``videos_per_s`` (file to embedding: decode, compress, encode) when it is
summarised. The R@1 columns of a finished study never change, but its speeds do when the decoding
path does: this command re-times every (method, K) of the given tables with the model of the runs
they summarise (its ``config.json``, e.g. a kept run's) on that config's test corpus, and rewrites
``videos_per_s`` and ``videos_per_s_device`` in place. It prints the old and new figures.

    python benchmarks/remeasure_speeds.py docs/results/compressors_cpu_colour.csv \\
        --config docs/results/runs/cpu-colour/studies/base/<setting>/seed0/config.json

Run it on quiet cores: the figures are what this machine does now, with the kit's decode workers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tables", nargs="+", help="study tables (CSV) with method, K and videos_per_s")
    p.add_argument("--config", required=True, help="config.json of a run the tables summarise")
    p.add_argument("--videos", type=int, default=64, help="test videos timed per row")
    p.add_argument("--backend", default=None, choices=["pyav", "decord"],
                   help="decoder (default: the kit's default, not the one the runs were made with)")
    args = p.parse_args(argv)

    from mofkit.config import Config, DataConfig
    from mofkit.eval.cost import describe_throughput
    from mofkit.lab.names import COMPRESSORS
    from mofkit.lab.speed import measured_throughput

    cfg = Config.from_dict(json.loads(Path(args.config).read_text()))
    cfg.data.backend = args.backend or DataConfig().backend  # today's decoder unless named
    cfg.device = "cpu" if cfg.device == "auto" else cfg.device
    device = describe_throughput(cfg.device, args.videos)
    print(f"model {cfg.model.arch} at {cfg.data.decode_size} px, {cfg.data.backend}, test videos of "
          f"{cfg.data.root}; {device}\n")
    print("| table | method | K | videos/s before | now |\n|---|---|---|---|---|")
    speeds: dict[tuple[str, int], float] = {}
    for table in args.tables:
        df = pd.read_csv(table)
        if "videos_per_s" not in df:
            print(f"| {table} | (no videos_per_s column) | | | |")
            continue
        now = []
        for method, k, before in df[["method", "K", "videos_per_s"]].itertuples(index=False):
            compress = COMPRESSORS.get(str(method))  # None: K uniform frames (MOF, controls)
            # what inference runs: a compressor's kind (trained end to end, amortised or distilled
            # alike) or uniform sampling, at K; timed once per table set, as the studies do
            spec = {key: v for key, v in (compress or {}).items() if key in ("compress.name", "compress.mode")}
            key = (json.dumps(spec, sort_keys=True), int(k))
            if key not in speeds:
                speeds[key] = measured_throughput(cfg, cfg.data.root, int(k), videos=args.videos,
                                                  compress=compress)
                print(f"| {Path(table).name} | {method} | {k} | {before:.0f} | {speeds[key]:.0f} |",
                      flush=True)
            now.append(speeds[key])
        df["videos_per_s"] = now
        if "videos_per_s_device" in df:
            df["videos_per_s_device"] = device
        df.to_csv(table, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
