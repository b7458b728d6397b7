"""A run's data: datasets, frame caches, tokenised captions and the loaders built on them.

Caches are built once by rank 0 (other ranks wait, then open them): the training split's K uniform
frames, its dense grid (when ``rand`` sampling, MOF's N whole-video frames or a frame compressor
need it), the test split's K uniform frames and, with a compressor, the test split's grid too.
Decoding runs in ``data.num_workers`` processes. At MSR-VTT scale (about 99 GB of frames at
224 px) that takes long enough to build them before the processes of a multi-GPU job start:
``mofkit prepare`` (:func:`prepare_caches`) builds them in one process; the job then only opens
them. Unreadable videos are left out of both splits, with one warning each, and the test videos
left out are reported with every evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from mofkit.config import Config
from mofkit.data.datasets import dataset_spec
from mofkit.train import distributed as D

if TYPE_CHECKING:
    from mofkit.data.cache import FrameCache
    from mofkit.data.datasets import VideoTextDataset
    from mofkit.data.loaders import EvalClips


@dataclass(frozen=True)
class DataNeeds:
    """What a training method reads beyond each split's K uniform frames: the method's task says
    (:meth:`mofkit.train.tasks.Task.data_needs`), so this module never reads a method's settings."""

    train_grid: bool = False  # the training videos' dense grid of data.dense_frames frames
    item_source: str = "k"  # a training item's frames: "k" (the K-frame cache) or "grid"
    item_frames: int | None = None  # frames per training item (None: data.num_frames)
    item_sampling: str = "uniform"  # how they are drawn from the source: uniform | rand
    meta_frames: int = 0  # whole-video frames per item of a meta pass (drawn from the grid)
    meta_sampling: str = "rand"  # how those are drawn: rand | uniform
    test_frames: int | None = None  # frames per test video the model's input is made from (a
    #   compressor's N, read from a test grid); None: the K uniform frames


@dataclass
class RunData:
    """Everything the training loop reads."""

    cfg: Config
    needs: DataNeeds  # what the method reads (its task's DataNeeds)
    train: VideoTextDataset  # the training videos that could be decoded
    test: VideoTextDataset  # the test videos that could be decoded
    train_clips: EvalClips  # the training videos' K uniform frames (bank initialisation)
    test_clips: EvalClips  # the test videos' K uniform frames
    train_k: FrameCache  # uniform, T = K, of the training split
    train_grid: FrameCache | None  # uniform, T = dense_frames, or None when not needed
    train_tokens: torch.Tensor  # (num_captions, L) every training caption
    train_caption_video: np.ndarray  # (num_captions,) training row of each caption
    test_tokens: torch.Tensor  # (Q, L)
    test_caption_video: np.ndarray  # (Q,) test row of each query
    train_dropped: list[str] = field(default_factory=list)  # unreadable training video ids
    test_dropped: list[str] = field(default_factory=list)  # unreadable test video ids
    # name -> bool mask over test videos; evaluations report t2v R@1 within each group (synthetic
    # corpus: whether the K uniform test frames see the video's decisive event)
    test_groups: dict[str, np.ndarray] = field(default_factory=dict)
    # synthetic corpus: the attribute caption test (mofkit.eval.probes), attribute -> (query rows,
    # tokens (n, L) of those queries with one visible event's attribute changed)
    test_probes: dict[str, tuple[np.ndarray, torch.Tensor]] = field(default_factory=dict)
    # the test videos' N input frames where the method makes the K from them (needs.test_frames)
    test_inputs: EvalClips | None = None
    _clips: dict = field(default_factory=dict, repr=False)

    @property
    def aug(self) -> dict:
        """Keyword arguments of the training crop (``Preprocessor.train_with_seeds``)."""
        return {"scale": tuple(self.cfg.data.crop_scale), "hflip": self.cfg.data.hflip}

    def train_loader(self, batches: list[np.ndarray], epoch: int, *, with_meta: bool,
                     frames: bool = True):
        """DataLoader over the given batches of training rows, items drawn for ``epoch``."""
        from mofkit.data.loaders import TrainClips, make_loader

        d, n = self.cfg.data, self.needs
        key = (with_meta, frames)
        if key not in self._clips:
            source = self.train_grid if n.item_source == "grid" else self.train_k
            k = n.item_frames or d.num_frames
            self._clips[key] = TrainClips(
                source, self.train, self.train_tokens, self.train_caption_video,
                num_frames=k if frames else 0, sampling=n.item_sampling,
                meta_frames=n.meta_frames if with_meta else 0, meta_sampling=n.meta_sampling,
                meta_cache=self.train_grid, seed=self.cfg.train.seed)
        return make_loader(self._clips[key], batch_size=1, epoch=epoch, batches=batches,
                           num_workers=d.num_workers, pin_memory=torch.cuda.is_available())


def _tokenize(tokenizer: Callable, captions: list[str], batch: int = 4096) -> torch.Tensor:
    parts = [tokenizer(captions[i:i + batch]) for i in range(0, len(captions), batch)]
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.long)


def prepare_caches(cfg: Config, needs: DataNeeds, info: D.DistInfo | None = None, *, progress: bool = True):
    """Locate (or generate) the corpus and build or open the frame caches a run of ``cfg`` reads.

    Args:
        cfg: the run's config (``data``, ``synthetic``).
        needs: what the run's method reads (``task_class(cfg).data_needs(cfg)``).
        info: distributed context; rank 0 builds, the others wait and reuse.
        progress: progress bars while generating and decoding.

    Returns:
        ``(train, test, caches)``: the two splits as listed and a dict of
        :class:`~mofkit.data.cache.FrameCache` (``train_k``, ``test_k``, and ``grid`` and
        ``test_grid`` where the run needs them).
    """
    from mofkit.data.cache import FrameCache
    from mofkit.data.datasets import load_splits, prepare_dataset

    info = info or D.DistInfo()
    d = cfg.data
    if dataset_spec(d.dataset).generated and info.is_main:  # written here, once, by the main process
        prepare_dataset(cfg, progress=progress)
    D.barrier(info)
    train, test = load_splits(cfg)

    build = dict(size=d.decode_size, backend=d.backend, cache_dir=d.cache_dir,
                 progress=progress and info.is_main, workers=d.num_workers)
    caches = {}
    # Rank 0 decodes; the others then find the finished caches (a lock also guards concurrent builds).
    for turn in ((True,) if not info.enabled else (info.is_main, not info.is_main)):
        if turn:
            caches["train_k"] = FrameCache.build(train, num_frames=d.num_frames, mode="uniform", **build)
            caches["test_k"] = FrameCache.build(test, num_frames=d.num_frames, mode="uniform", **build)
            if needs.train_grid:
                caches["grid"] = FrameCache.build(train, num_frames=d.dense_frames, mode="uniform",
                                                  **build)
            if needs.test_frames:
                caches["test_grid"] = FrameCache.build(test, num_frames=d.dense_frames, mode="uniform",
                                                       **build)
        D.barrier(info)
    return train, test, caches


def prepare_data(cfg: Config, needs: DataNeeds, tokenizer: Callable, info: D.DistInfo | None = None, *,
                 progress: bool = True) -> RunData:
    """Locate (or generate) the corpus, build or open the frame caches, tokenise captions.

    Args:
        cfg: the run's config (``data``, ``synthetic``).
        needs: what the run's method reads (``task_class(cfg).data_needs(cfg)``).
        tokenizer: captions -> LongTensor (N, L) (the model bundle's tokenizer).
        info: distributed context; rank 0 builds, the others wait and reuse.
        progress: progress bars while generating and decoding.

    Returns:
        :class:`RunData`.
    """
    from mofkit.data.loaders import EvalClips

    d = cfg.data
    train, test, caches = prepare_caches(cfg, needs, info, progress=progress)
    compress = needs.test_frames is not None
    need_grid = "grid" in caches
    train_all_ids = list(train.video_ids)
    train = caches["train_k"].dataset_view(train)
    if need_grid:
        train = caches["grid"].dataset_view(train)
    test_all_ids = list(test.video_ids)
    test = caches["test_k"].dataset_view(test)
    if compress:
        test = caches["test_grid"].dataset_view(test)
    train_dropped = sorted(set(train_all_ids) - set(train.video_ids))
    test_dropped = sorted(set(test_all_ids) - set(test.video_ids))

    train_caps, train_cv = train.caption_pairs()
    test_caps, test_cv = test.caption_pairs()
    groups, probes = {}, {}
    if dataset_spec(d.dataset).timelines:
        from mofkit.data.synthetic import load_timeline
        from mofkit.eval.ceiling import decisive_seen
        from mofkit.eval.probes import altered_queries

        timeline = load_timeline(d.root)
        seen = decisive_seen(timeline, test.video_ids, d.num_frames)
        groups = {"decisive_seen": seen, "decisive_missed": ~seen}
        ids = list(test.video_ids)
        visible = needs.test_frames or d.num_frames  # the frames a video shows the model's input
        altered = altered_queries(test_caps, [timeline[ids[v]] for v in test_cv], visible)
        probes = {a: (qs, _tokenize(tokenizer, texts)) for a, (qs, texts) in altered.items()}
    return RunData(cfg=cfg, needs=needs, train=train, test=test,
                   train_clips=EvalClips(caches["train_k"], train, d.num_frames),
                   test_clips=EvalClips(caches["test_k"], test, d.num_frames),
                   train_k=caches["train_k"], train_grid=caches.get("grid"),
                   train_tokens=_tokenize(tokenizer, train_caps), train_caption_video=np.asarray(train_cv),
                   test_tokens=_tokenize(tokenizer, test_caps), test_caption_video=np.asarray(test_cv),
                   train_dropped=train_dropped, test_dropped=test_dropped, test_groups=groups,
                   test_probes=probes,
                   test_inputs=EvalClips(caches["test_grid"], test, needs.test_frames)
                   if compress else None)
