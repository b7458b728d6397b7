"""What a trained frame compressor does to test videos: the tensors notebook 07 draws.

:func:`compressor_examples` reads a finished compressor run (``config.json``, ``checkpoint.pt``),
decodes a few test videos at the run's N input frames, and returns the compressor's K output
frames next to the K uniform frames, the whole video and the compressor's selection weights over
the N frames (which frames each output frame was made from); on the synthetic corpus also each
video's events. :func:`event_coverage` says which events uniform sampling and the compressor
catch. The figures are :func:`mofkit.viz.frames.compressor_outputs`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mofkit.config import Config
from mofkit.runfiles import CONFIG_FILE


def load_compressor(run_dir: str | Path, device: str | torch.device = "cpu"):
    """``(config, compressor)`` of a finished run that has one (its trained weights for ``slots``).

    Raises:
        FileNotFoundError: no ``config.json`` in ``run_dir``.
        ValueError: the run has no compressor (``compress.name`` unset).
    """
    from mofkit.compress import compressor_from_config
    from mofkit.train.checkpoint import checkpoint_path, load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no config.json in {run_dir}: not a finished training run")
    cfg = Config.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    comp = compressor_from_config(cfg.compress, cfg.data.num_frames)
    if comp is None:
        raise ValueError(f"the run in {run_dir} has no frame compressor (compress.name is unset): "
                         f"it reads K uniform frames")
    if comp.learned:
        ckpt = load_checkpoint(checkpoint_path(run_dir), map_location="cpu")
        if "compressor" not in ckpt:
            raise ValueError(f"{checkpoint_path(run_dir)} holds no compressor weights")
        comp.load_state_dict(ckpt["compressor"])
    return cfg, comp.to(device).eval()


def event_coverage(positions: np.ndarray, selection: np.ndarray | None, uniform: np.ndarray,
                   events: Sequence[dict], threshold: float = 0.5) -> list[dict]:
    """Which events uniform frames and the compressor's output frames show.

    Args:
        positions: (N,) the video frame index of each compressor input frame.
        selection: (K, N) the compressor's weights over its input frames (rows sum to 1), or None.
        uniform: (K,) the video frame indices of the uniform frames.
        events: dicts with ``start`` and ``end`` (exclusive) video frames.
        threshold: an output frame shows an event when at least this share of its weight lies on
            input frames inside the event.

    Returns:
        Per event: ``uniform`` (a uniform frame falls inside it), ``compressor`` (some output frame
        puts ``threshold`` of its weight inside it; None without a selection) and ``slot`` (that
        output frame's index, else None).
    """
    out = []
    positions = np.asarray(positions)
    for ev in events:
        inside = (positions >= ev["start"]) & (positions < ev["end"])
        rec = {"uniform": bool(((uniform >= ev["start"]) & (uniform < ev["end"])).any()),
               "compressor": None, "slot": None}
        if selection is not None:
            mass = np.asarray(selection)[:, inside].sum(axis=1)  # (K,)
            best = int(mass.argmax()) if len(mass) else 0
            rec["compressor"] = bool(len(mass) and mass[best] >= threshold)
            rec["slot"] = best if rec["compressor"] else None
        out.append(rec)
    return out


@torch.no_grad()
def compressor_examples(run_dir: str | Path, *, n_videos: int = 3, video_ids: Sequence[str] | None = None,
                        prefer_missed: bool = True, device: str | torch.device = "cpu") -> list[dict]:
    """A few test videos through a finished compressor run.

    Args:
        run_dir: the run (``config.json``, ``checkpoint.pt``).
        n_videos: videos to return when ``video_ids`` is None.
        video_ids: the test videos to show (default: the first ``n_videos``; on the synthetic
            corpus with ``prefer_missed``, first those whose decisive event the K uniform frames miss).
        prefer_missed: see ``video_ids``.
        device: where the compressor runs.

    Returns:
        One dict per video: ``video_id``, ``caption``, ``whole`` (uint8 (N, S, S, 3): the
        compressor's input frames), ``positions`` ((N,) their video frame indices), ``uniform``
        (uint8 (K, S, S, 3)), ``uniform_positions`` ((K,)), ``outputs`` (uint8 (K, S, S, 3): the
        compressor's frames, denormalised), ``selection`` ((K, N) float or None), ``events`` (list
        of event dicts, empty off the synthetic corpus) and ``coverage`` (:func:`event_coverage`).
    """
    from mofkit.data.datasets import dataset_spec, load_dataset
    from mofkit.data.preprocess import Preprocessor
    from mofkit.data.sampling import sample_from_grid, sample_indices
    from mofkit.data.video import probe_video, read_video
    from mofkit.models import create_from_config

    cfg, comp = load_compressor(run_dir, device)
    d = cfg.data
    test = load_dataset(d.dataset, d.root, "test", video_dir=d.video_dir)
    timeline = {}
    if dataset_spec(d.dataset).timelines:
        from mofkit.data.synthetic import load_timeline

        timeline = load_timeline(d.root)
    ids = list(video_ids) if video_ids is not None else list(test.video_ids)
    grid = sample_from_grid(d.dense_frames, cfg.compress.input_frames, "uniform")  # N of the grid
    if video_ids is None and prefer_missed and timeline:
        def missed(vid):
            n = int(probe_video(test.record(vid).path, d.backend).num_frames)
            u = sample_indices(n, d.num_frames, "uniform")
            return not any(((u >= e["start"]) & (u < e["end"])).any()
                           for e in timeline.get(vid, []) if e.get("decisive"))
        ids = sorted(ids, key=lambda v: not missed(v))  # stable: the missed ones first, in order
    ids = ids[:n_videos] if video_ids is None else ids
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None))  # its preprocessing only
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    out = []
    for vid in ids:
        rec = test.record(vid)
        dense, idx = read_video(rec.path, d.dense_frames, "uniform", size=d.decode_size, backend=d.backend)
        x = pre.eval(dense[grid][None].to(device))  # (1, N, 3, S, S)
        y = comp(x)
        sel = comp.selection(x)
        positions = np.asarray(idx)[grid]
        u_frames, u_idx = read_video(rec.path, d.num_frames, "uniform", size=d.decode_size, backend=d.backend)
        events = list(timeline.get(vid, []))
        selection = sel[0].float().cpu().numpy() if sel is not None else None
        out.append({
            "video_id": vid, "caption": rec.captions[0] if rec.captions else "",
            "whole": pre.to_uint8_image(x[0]).cpu().numpy(), "positions": positions,
            "uniform": pre.to_uint8_image(pre.eval(u_frames[None])[0]).cpu().numpy(),
            "uniform_positions": np.asarray(u_idx),
            "outputs": pre.to_uint8_image(y[0]).cpu().numpy(), "selection": selection,
            "events": events,
            "coverage": event_coverage(positions, selection, np.asarray(u_idx), events),
        })
    return out
