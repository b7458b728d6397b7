"""Fingerprints of finished training runs: a check that a refactoring changed no result, bit for bit.

Trains (or reads, where finished) one run per method and prints, for each, the SHA-256 of its model
weights (every tensor of the checkpoint's model state, in name order), of its frame bank's frames
and Adam state where it has one, and of its final metrics (``metrics.json``'s ``final``, as JSON
with sorted keys). Run it before and after a change into two folders and compare the two outputs
(``--json`` writes them to a file; ``--compare A.json B.json`` says which differ):

    python benchmarks/fingerprint_runs.py --out /tmp/fp-before --json before.json
    ...change the code...
    python benchmarks/fingerprint_runs.py --out /tmp/fp-after --json after.json
    python benchmarks/fingerprint_runs.py --compare before.json after.json

Profile ``smoke`` by default (seconds per run): uniform, rand, MOF with one frame update per epoch
and per batch, MOF first order, ``slots soft`` and ``segment_max``. ``--profile cpu --methods
uniform MOF`` fingerprints the main job's two runs (minutes each). Runs are deterministic on the
CPU for a given torch thread count: compare runs made with the same ``OMP_NUM_THREADS``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

METHODS = {
    "uniform": {},
    "rand": {"data.train_sampling": "rand"},
    "MOF": {"mof.enabled": True},
    "MOF per batch": {"mof.enabled": True, "mof.update": "batch"},
    "MOF first order": {"mof.enabled": True, "mof.hypergrad": "fd"},
    "slots soft": {"compress.name": "slots", "compress.mode": "soft"},
    "segment_max": {"compress.name": "segment_max"},
}


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Hashes of a finished run's weights, bank and final metrics."""
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    state = ckpt.get("model") or ckpt.get("model_state") or {}
    out = {"weights": _sha(name.encode() + _tensor_bytes(t) for name, t in sorted(state.items())
                           if isinstance(t, torch.Tensor))}
    for extra in ("compressor", "compressor_state"):
        if isinstance(ckpt.get(extra), dict):
            out["compressor"] = _sha(n.encode() + _tensor_bytes(t) for n, t in sorted(ckpt[extra].items()))
    bank_dir = run_dir / "bank"
    if (bank_dir / "bank.json").is_file():
        from mofkit.bilevel.bank import FrameBank

        bank = FrameBank.open(bank_dir)
        rows = np.arange(bank.num_videos)
        out["bank_frames"] = _sha([bank.read(rows).numpy().tobytes()])
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    out["final_metrics"] = _sha([json.dumps(final, sort_keys=True).encode()])
    out["t2v_R1"] = f"{final['t2v']['R1']:.4f}" if isinstance(final.get("t2v"), dict) else ""
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="smoke")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--out", default="runs/fingerprints", help="where the runs go")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override applied to every run (e.g. data.root=...)")
    p.add_argument("--json", default=None, help="write the fingerprints to this file")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="compare two --json files and exit 1 where any fingerprint differs")
    args = p.parse_args(argv)
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.compare)
        bad = [(m, k) for m in sorted(set(a) | set(b)) for k in sorted(set(a.get(m, {})) | set(b.get(m, {})))
               if a.get(m, {}).get(k) != b.get(m, {}).get(k)]
        for m, k in bad:
            print(f"{m}: {k} differs: {a.get(m, {}).get(k)} against {b.get(m, {}).get(k)}")
        print("identical" if not bad else f"{len(bad)} fingerprints differ")
        return 1 if bad else 0

    from mofkit.cli import parse_overrides
    from mofkit.config import get_config
    from mofkit.data.datasets import prepare_dataset
    from mofkit.train.loop import train

    common = parse_overrides(args.set)
    results = {}
    print("| method | weights | compressor | bank frames | final metrics | t2v R@1 |\n|---|---|---|---|---|---|")
    for name in args.methods:
        cfg = get_config(args.profile, {**METHODS[name], **common})
        cfg.out_dir = str(Path(args.out) / name.replace(" ", "_"))
        prepare_dataset(cfg, progress=False)
        train(cfg, progress=False)
        fp = fingerprint(Path(cfg.out_dir))
        results[name] = fp
        print(f"| {name} | {fp['weights']} | {fp.get('compressor', '')} | {fp.get('bank_frames', '')} | "
              f"{fp['final_metrics']} | {fp['t2v_R1']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
