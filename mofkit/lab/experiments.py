"""What a study's table is made of: run folder names and one row per finished run.

:func:`run_name` names a setting's folder; :func:`result_row` flattens a finished run into the
table row every study writes (the final test metrics of every direction, training time, inference
GFLOPs per video and per caption). The studies themselves are in :mod:`mofkit.lab.grids`.
"""
from __future__ import annotations

from typing import Any

from mofkit.config import Config
from mofkit.eval.metrics import DIRECTIONS, METRIC_KEYS


def run_name(overrides: dict[str, Any]) -> str:
    """A folder name for a setting: ``{"mof.enabled": True, "data.num_frames": 4}`` ->
    ``mof.enabled-True_data.num_frames-4``.

    The whole dotted key is kept: two sections' fields of the same name (``train.seed`` and
    ``synthetic.seed``) are different settings and must not share a folder, where a study would
    reuse the other's finished run.
    """
    if not overrides:
        return "default"
    parts = [f"{k}-{v}" for k, v in overrides.items()]
    return "_".join(parts).replace("/", "-").replace(" ", "")


_FLOPS_CACHE: dict[tuple, tuple[float, float]] = {}


def inference_gflops(cfg: Config) -> tuple[float, float]:
    """(GFLOPs per test video at K frames, GFLOPs per caption) of ``cfg``'s model (2 FLOPs per MAC)."""
    import dataclasses

    from mofkit.eval.cost import text_flops, video_flops
    from mofkit.models import create_from_config

    m = cfg.model
    key = (m.arch, m.temporal_head, m.temporal_layers, m.context_length, cfg.data.num_frames)
    if key not in _FLOPS_CACHE:
        # no weights are needed to count FLOPs: the same architecture, randomly initialised
        bundle = create_from_config(dataclasses.replace(m, pretrained=None))
        v = video_flops(bundle.model, cfg.data.num_frames, bundle.image_size)["total"]
        t = text_flops(bundle.model, m.context_length)
        _FLOPS_CACHE[key] = (v / 1e9, t / 1e9)
    return _FLOPS_CACHE[key]


def compressor_gflops(cfg: Config) -> float:
    """GFLOPs per test video of ``cfg``'s frame compressor (0 without one): N frames in, K out, at
    the model's input size (``mofkit.compress``: counted and elementwise FLOPs)."""
    if cfg.compress.name is None:
        return 0.0
    from mofkit.compress import compressor_from_config
    from mofkit.models import get_arch_config

    size = int(get_arch_config(cfg.model.arch)["vision_cfg"]["image_size"])
    comp = compressor_from_config(cfg.compress, cfg.data.num_frames)
    return comp.flops(cfg.compress.input_frames, size)["total"] / 1e9


def result_row(cfg: Config, final: dict, train_seconds: float) -> dict[str, Any]:
    """Flatten a run's final metrics into one table row. ``gflops`` is the whole inference cost per
    test video: the image tower on the K frames, the temporal head and any frame compressor
    (``compressor_gflops``)."""
    row: dict[str, Any] = {}
    for direction in DIRECTIONS:
        for k in METRIC_KEYS:
            row[f"{direction}_{k}"] = final[direction][k]
    gv, gt = inference_gflops(cfg)
    gc = compressor_gflops(cfg)
    row.update(train_seconds=train_seconds, gflops=gv + gc, compressor_gflops=gc, text_gflops=gt,
               n_test_videos=final.get("n_videos"), dropped_test_videos=len(final.get("dropped", [])))
    return row
