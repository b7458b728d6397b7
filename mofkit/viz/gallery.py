"""A gallery of the synthetic corpus: what K uniform frames show of each video, and what they miss.

Each video gets a strip of its K uniform frames (segment mid-points, what a K-frame model sees),
its event timeline below (one bar per event in the object's colour; a thick black edge marks the
event that tells the video apart from its family, hatching a short flash; ticks mark the sampled
frames, and events no frame hits are crossed out), and its caption. Videos are shown family by
family, so hard negatives sit next to each other.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mofkit.data.sampling import sample_indices
from mofkit.data.synthetic import COLOURS, events_hit, load_families, load_timeline
from mofkit.data.video import DEFAULT_BACKEND


def _pick_videos(ids: list[str], families: dict[str, int], timeline: dict[str, list[dict]], n: int,
                 k: int, seed: int) -> list[str]:
    """``n`` ids, whole families, in a ``seed``-shuffled order of families.

    Families whose decisive event K uniform frames miss come first: they are the point of the
    corpus (their members look the same to a K-frame model).
    """
    by_family: dict[int, list[str]] = {}
    for v in ids:
        by_family.setdefault(families[v], []).append(v)
    order = list(np.random.default_rng(seed).permutation(sorted(by_family)))

    def missed(f) -> bool:
        events = timeline[by_family[f][0]]
        hit = events_hit(events, sample_indices(events[-1]["end"], k, "uniform"))
        return not hit[[e["decisive"] for e in events].index(True)]

    order.sort(key=lambda f: not missed(f))  # stable: keeps the shuffled order within each group
    out: list[str] = []
    for f in order:
        out += by_family[f]
        if len(out) >= n:
            break
    return out[:n]


def corpus_gallery(root, n_videos: int = 6, frames_per_video: int = 8, *, split: str = "train",
                   seed: int = 0, backend: str = DEFAULT_BACKEND) -> Figure:
    """Frame strips of a few videos with their timelines and captions.

    Args:
        root: corpus folder (``mofkit.data.synthetic.generate_corpus``).
        n_videos: videos shown, whole families first.
        frames_per_video: K, the uniform frames per strip.
        split: ``train`` or ``test``.
        seed: shuffles the order of families (those whose decisive event the K frames miss
            come first).
        backend: video decoder, ``decord`` or ``pyav``.

    Returns:
        The figure (not attached to pyplot, so nothing opens a window).
    """
    from mofkit.data.datasets import load_dataset
    from mofkit.data.video import read_frames

    ds = load_dataset("synthetic", root, split)
    timeline, families = load_timeline(root), load_families(root)
    records = {r.video_id: r for r in ds}
    k = frames_per_video
    chosen = _pick_videos(list(records), families, timeline, n_videos, k, seed)
    fig = Figure(figsize=(0.95 * k + 0.3, 1.9 * len(chosen) + 0.2))
    heights = [h for _ in chosen for h in (1.0, 0.22, 0.42)]
    grid = fig.add_gridspec(3 * len(chosen), 1, height_ratios=heights, hspace=0.08,
                            left=0.03, right=0.97, top=0.99, bottom=0.01)
    for row, vid in enumerate(chosen):
        events = timeline[vid]
        n = events[-1]["end"]
        idx = sample_indices(n, k, "uniform")
        frames = read_frames(records[vid].path, idx, backend=backend).numpy()  # (K, H, W, 3)
        ax = fig.add_subplot(grid[3 * row])
        ax.imshow(np.concatenate(list(frames), axis=1), interpolation="nearest")  # (H, K*W, 3)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{vid}\nfamily {families[vid]}", fontsize=6)

        bar = fig.add_subplot(grid[3 * row + 1])
        hit = events_hit(events, idx)
        for ev, seen in zip(events, hit):
            bar.add_patch(Rectangle((ev["start"], 0), ev["end"] - ev["start"], 1,
                                    facecolor=np.asarray(COLOURS[ev["colour"]]) / 255,
                                    edgecolor="black", lw=2.0 if ev["decisive"] else 0.6,
                                    hatch="////" if ev["short"] else None))
            if not seen:
                mid = (ev["start"] + ev["end"]) / 2
                bar.plot([mid], [0.5], marker="x", color="black", ms=7, mew=2)
        bar.plot(idx + 0.5, np.full(len(idx), 1.25), "v", color="black", ms=3, clip_on=False)
        bar.set_xlim(0, n)
        bar.set_ylim(0, 1)
        bar.set_xticks([])
        bar.set_yticks([])

        text = fig.add_subplot(grid[3 * row + 2])
        text.axis("off")
        note = f"{n} frames; the K={k} uniform frames (ticks) hit {sum(hit)} of {len(events)} events"
        text.text(0, 1, f"{textwrap.fill(records[vid].captions[0], 115)}\n({note})", fontsize=6.5,
                  va="top", ha="left", transform=text.transAxes)
    return fig


def save_gallery(root, out_png, **kw) -> Path:
    """Write :func:`corpus_gallery` to a PNG.

    Args:
        root: corpus folder.
        out_png: output file (parent folders are created).
        **kw: passed to :func:`corpus_gallery`, plus ``dpi`` (default 110).

    Returns:
        The PNG's path.
    """
    dpi = kw.pop("dpi", 110)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus_gallery(root, **kw).savefig(out, dpi=dpi)
    return out
