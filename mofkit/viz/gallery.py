"""A gallery of the synthetic corpus: frame strips with captions and the events' time spans."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mofkit.data.synthetic import COLOURS, load_timeline


def corpus_gallery(root, n_videos: int = 6, frames_per_video: int = 8, *, split: str = "train",
                   seed: int = 0, backend: str = "decord") -> Figure:
    """Frame strips of a few videos of one family each, captions beneath, event spans marked.

    Args:
        root: corpus folder (``mofkit.data.synthetic.generate_corpus``).
        n_videos: videos shown (consecutive ids, so hard negatives of one family sit together).
        frames_per_video: frames per strip (uniformly spread, every frame index labelled).
        split: ``train`` or ``test``.
        seed: which videos are picked.
        backend: video decoder.

    Returns:
        The figure.
    """
    from mofkit.data.datasets import load_dataset
    from mofkit.data.video import read_frames

    ds = load_dataset("synthetic", root, split)
    timeline = load_timeline(root)
    start = int(np.random.default_rng(seed).integers(0, max(1, len(ds) - n_videos)))
    records = ds.records[start:start + n_videos]
    fig = Figure(figsize=(1.1 * frames_per_video + 0.4, 1.75 * len(records)))
    for i, rec in enumerate(records):
        events = timeline[rec.video_id]
        n = events[-1]["end"]
        idx = np.linspace(0, n - 1, frames_per_video).round().astype(int)
        frames = read_frames(rec.path, idx, backend=backend).numpy()  # (F, H, W, 3)
        ax = fig.add_axes([0.02, 1 - (i + 1) / len(records) + 0.36 / len(records), 0.96,
                           0.6 / len(records)])
        ax.imshow(np.concatenate(list(frames), axis=1))
        h, w = frames.shape[1:3]
        ax.set_xticks([w * (j + 0.5) for j in range(len(idx))], [str(j) for j in idx], fontsize=6)
        ax.set_yticks([])
        bar = fig.add_axes([0.02, 1 - (i + 1) / len(records) + 0.3 / len(records), 0.96,
                            0.05 / len(records)])
        for ev in events:
            c = np.asarray(COLOURS[ev["colour"]]) / 255
            bar.add_patch(Rectangle((ev["start"], 0), ev["end"] - ev["start"], 1, color=c,
                                    ec="black", lw=1.5 if ev.get("decisive") else 0.3))
        bar.set_xlim(0, n)
        bar.set_ylim(0, 1)
        bar.axis("off")
        text = textwrap.fill(f"{rec.video_id}: {rec.captions[0]}", 110)
        fig.text(0.02, 1 - (i + 1) / len(records) + 0.2 / len(records), text, fontsize=7, va="top")
    return fig


def save_gallery(root, out_png, **kw) -> Path:
    """Write :func:`corpus_gallery` to a PNG and return its path."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus_gallery(root, **kw).savefig(out, dpi=110)
    return out
