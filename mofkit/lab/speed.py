"""End-to-end speed for the studies' tables: videos per second from file to embedding (decode,
compress, encode), measured on this machine with a config's model (:func:`measured_throughput`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mofkit.config import Config, apply_overrides


def measured_throughput(cfg: Config, root: str | Path, k: int, videos: int = 64,
                        compress: dict[str, Any] | None = None) -> float:
    """End-to-end test videos per second (decode K uniform frames, preprocess, encode; decode
    workers overlapped with the encoder, :func:`mofkit.eval.cost.end_to_end_throughput`) of the
    config's model on ``videos`` test files of the corpus at ``root``, measured now. With
    ``compress`` (``compress.*`` overrides naming a compressor), N frames are decoded and
    compressed to K first; its weights do not change its speed, so a fresh one is timed."""
    import dataclasses

    from mofkit.data.datasets import load_dataset
    from mofkit.data.preprocess import Preprocessor
    from mofkit.device import get_device
    from mofkit.eval.cost import end_to_end_throughput
    from mofkit.models import create_from_config

    device = get_device(cfg.device)
    test = load_dataset(cfg.data.dataset, root, "test", video_dir=cfg.data.video_dir)
    paths = [r.path for r in list(test)[:videos]]
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), device)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    comp, n = None, None
    if compress and compress.get("compress.name"):
        from mofkit.compress import compressor_from_config

        run = apply_overrides(Config.from_dict(cfg.to_dict()), compress)
        comp, n = compressor_from_config(run.compress, k).to(device), run.compress.input_frames
    return end_to_end_throughput(bundle.model, paths, k, preprocess=pre.eval,
                                 decode_size=cfg.data.decode_size, backend=cfg.data.backend,
                                 device=device, compressor=comp, input_frames=n)["videos_per_s"]


def timing_root(cfg: Config, runs: pd.DataFrame) -> str:
    """The corpus whose test videos :func:`measured_throughput` times for a study's table: the runs'
    own corpus if this machine has it, else the config's. Any corpus of the config's video format
    will do, and kept runs (``docs/results/runs``) come from corpora a fresh clone has not generated."""
    roots = (list(dict.fromkeys(runs["data.root"].dropna())) if "data.root" in runs else []) + [cfg.data.root]
    have = [r for r in roots if (Path(r) / "splits").is_dir() or (Path(r) / "corpus.json").is_file()
            or any(Path(r).glob("*.csv")) or any(Path(r).glob("*.json"))]
    return str(have[0] if have else roots[0])
