"""torch Datasets over frame caches, and the DataLoader builder.

Training items are functions of ``(seed, epoch, video row)`` only: every random choice of an item
(its caption, its frame positions, its meta frames) comes from
``np.random.default_rng([seed, epoch, row, stream])``. A batch therefore holds the same tensors
whether it is loaded in the main process or by any of N DataLoader workers, on one rank or another,
in a fresh run or after a resume.

Frames come from a :class:`~mofkit.data.cache.FrameCache` whose ``T`` frames per video form a grid;
``K`` of them are picked with :func:`mofkit.data.sampling.sample_from_grid`. With a uniform cache of
``T = K``, ``uniform`` picks the cached frames themselves (the K uniform frames of the video); with a
dense grid (``T = dense_frames``), ``rand`` draws one grid frame per segment.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mofkit.data.sampling import MODES, sample_from_grid

# Independent random streams of one item, so that asking for meta frames (or not) leaves the
# caption and the K frames of that item unchanged.
_CAPTION, _FRAMES, _META = 0, 1, 2


def item_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of one item's random choices.

    Args:
        seed: the run's seed.
        epoch: the epoch (may be negative, e.g. -1 for an initialisation pass).
        index: the video's row in the dataset.
        stream: which choice (caption 0, frames 1, meta frames 2).

    Returns:
        ``np.random.default_rng`` over ``[seed, epoch, index, stream]`` (entries taken mod 2**64).
    """
    return np.random.default_rng([int(k) % 2**64 for k in (seed, epoch, index, stream)])


def _check_sampling(name: str, mode: str) -> None:
    if mode not in ("uniform", "rand"):
        raise ValueError(f"{name} must be 'uniform' or 'rand' (dense has no fixed K), got {mode!r}; "
                         f"sampling modes: {MODES}")


def _warn_if_fixed(what: str, cache, rows, k: int, mode: str) -> None:
    """rand over a grid of T <= K frames always picks the same ones; say so unless the grid
    holds every frame of the videos anyway (then rand over the video would not vary either)."""
    if not k or mode != "rand" or cache.num_frames > k:
        return
    source = getattr(cache, "num_source_frames", None)
    if source is not None and len(rows) and (np.asarray(source)[rows] <= cache.num_frames).all():
        return
    warnings.warn(f"rand sampling of {k} {what} from a cache of only {cache.num_frames} frames per "
                  f"video picks the same frames every epoch; build a denser grid "
                  f"(T = data.dense_frames > {k})", RuntimeWarning, stacklevel=3)


class TrainClips(Dataset):
    """One item per training video: K frames, one random caption, optionally N meta frames.

    Args:
        cache: frame cache of the training videos (a dense grid, or a uniform cache with T = K).
        dataset: the training dataset; item ``i`` is its video ``i`` (``dataset.video_ids[i]``).
            Every video must be in ``cache`` (use ``cache.dataset_view(dataset)``).
        tokens: LongTensor (num_captions, L), every caption of the dataset tokenised.
        caption_video: (num_captions,) int, the dataset row of each caption's video.
        num_frames: K, frames per item (0: no ``frames`` entry, e.g. for a meta-only pass).
        sampling: ``uniform`` or ``rand``: how the K positions are picked in the cache's grid.
        meta_frames: N, whole-video frames for MOF's meta loss (0: none).
        meta_sampling: ``uniform`` or ``rand`` for the N frames.
        meta_cache: cache the meta frames come from (default ``cache``), e.g. the dense grid when
            ``cache`` is the uniform K-frame cache.
        seed: the run's seed.

    Items are dicts: ``index`` (int, the dataset row), ``caption`` (int, row in ``tokens``),
    ``tokens`` (LongTensor (L,)), ``frames`` (uint8 (K, S, S, 3)) and, if ``meta_frames > 0``,
    ``meta_frames`` (uint8 (N, S, S, 3)).
    """

    def __init__(self, cache, dataset, tokens: torch.Tensor, caption_video: Sequence[int] | np.ndarray,
                 *, num_frames: int, sampling: str = "uniform", meta_frames: int = 0,
                 meta_sampling: str = "rand", meta_cache=None, seed: int = 0):
        _check_sampling("sampling", sampling)
        _check_sampling("meta_sampling", meta_sampling)
        if num_frames < 0 or meta_frames < 0:
            raise ValueError(f"num_frames and meta_frames must be >= 0, got {num_frames} and {meta_frames}")
        video_ids = list(dataset.video_ids)
        n = len(video_ids)
        tokens = torch.as_tensor(tokens)
        caption_video = np.asarray(caption_video, dtype=np.int64).reshape(-1)
        if tokens.ndim != 2 or len(tokens) != len(caption_video):
            raise ValueError(f"tokens must be (num_captions, L) with one caption_video entry per caption; "
                             f"got tokens {tuple(tokens.shape)} and caption_video ({len(caption_video)},)")
        if len(caption_video) and (caption_video.min() < 0 or caption_video.max() >= n):
            raise ValueError(f"caption_video holds rows outside [0, {n}) for a dataset of {n} videos")
        counts = np.bincount(caption_video, minlength=n)
        if n and counts.min() == 0:
            missing = [video_ids[i] for i in np.flatnonzero(counts == 0)[:5]]
            raise ValueError(f"{int((counts == 0).sum())} videos of {dataset.name}/{dataset.split} have no "
                             f"caption (e.g. {missing}); every training video needs at least one")
        self.video_ids = video_ids
        self.tokens = tokens
        self.caption_video = caption_video
        self._caption_order = np.argsort(caption_video, kind="stable")
        self._caption_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._caption_count = counts
        self.cache = cache
        self.meta_cache = meta_cache if meta_cache is not None else cache
        self.num_frames, self.sampling = int(num_frames), sampling
        self.meta_frames, self.meta_sampling = int(meta_frames), meta_sampling
        self.seed = int(seed)
        self.epoch = 0
        self.cache_rows = cache.rows_of(video_ids) if self.num_frames else None
        self.meta_rows = self.meta_cache.rows_of(video_ids) if self.meta_frames else None
        for what, c, rows, k, mode in (("frames", cache, self.cache_rows, self.num_frames, sampling),
                                       ("meta frames", self.meta_cache, self.meta_rows, self.meta_frames,
                                        meta_sampling)):
            _warn_if_fixed(what, c, rows, k, mode)

    def set_epoch(self, epoch: int) -> None:
        """Draw items of this epoch from now on (:func:`make_loader` binds the epoch itself)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int) -> dict:
        """Item ``index`` as drawn in ``epoch``.

        Args:
            index: dataset row of the video.
            epoch: the epoch whose draw to return.

        Returns:
            The item dict (see the class docstring).
        """
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"TrainClips has {len(self)} videos, asked for item {i}")
        r = item_rng(self.seed, epoch, i, _CAPTION)
        caption = int(self._caption_order[self._caption_start[i] + r.integers(self._caption_count[i])])
        item = {"index": i, "caption": caption, "tokens": self.tokens[caption]}
        if self.num_frames:
            pos = sample_from_grid(self.cache.num_frames, self.num_frames, self.sampling,
                                   rng=item_rng(self.seed, epoch, i, _FRAMES))
            item["frames"] = self.cache.rows(self.cache_rows[i:i + 1], pos)[0]  # (K, S, S, 3)
        if self.meta_frames:
            pos = sample_from_grid(self.meta_cache.num_frames, self.meta_frames, self.meta_sampling,
                                   rng=item_rng(self.seed, epoch, i, _META))
            item["meta_frames"] = self.meta_cache.rows(self.meta_rows[i:i + 1], pos)[0]  # (N, S, S, 3)
        return item


class EvalClips(Dataset):
    """One item per test video: its K uniform frames.

    Args:
        cache: frame cache of the videos: a uniform cache with T = K (its frames are used as they
            are) or a denser grid (K uniform positions of the grid are taken).
        dataset: item ``i`` is ``dataset.video_ids[i]``; every video must be in ``cache``.
        num_frames: K.

    Items are dicts: ``index`` (int) and ``frames`` (uint8 (K, S, S, 3)).
    """

    def __init__(self, cache, dataset, num_frames: int):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.cache = cache
        self.video_ids = list(dataset.video_ids)
        self.cache_rows = cache.rows_of(self.video_ids)
        self.num_frames = int(num_frames)
        self.positions = sample_from_grid(cache.num_frames, self.num_frames, "uniform")

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        return {"index": i, "frames": self.cache.rows(self.cache_rows[i:i + 1], self.positions)[0]}

    def frames_of(self, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Frames of several dataset rows in one gather: uint8 (B, K, S, S, 3)."""
        return self.cache.rows(self.cache_rows[np.asarray(rows, dtype=np.int64)], self.positions)


class _AtEpoch(Dataset):
    """A view of a dataset with ``get(index, epoch)`` frozen at one epoch."""

    def __init__(self, ds, epoch: int):
        self.ds, self.epoch = ds, int(epoch)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int):
        return self.ds.get(index, self.epoch)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of ``n`` items in one epoch: a permutation drawn from ``(seed, epoch)``.

    Args:
        n: number of items.
        seed, epoch: what the order follows from.

    Returns:
        int64 (n,) permutation.
    """
    return np.random.default_rng([int(seed) % 2**64, int(epoch) % 2**64]).permutation(n)


def make_loader(ds: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, drop_last: bool = False, sampler=None,
                batches: Sequence[Sequence[int]] | None = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader for one epoch whose batches do not depend on ``num_workers``.

    Args:
        ds: a :class:`TrainClips` (its items are drawn for ``epoch``), :class:`EvalClips` or any
            map-style dataset.
        batch_size: items per batch (ignored when ``batches`` is given).
        shuffle: visit items in :func:`epoch_order` ``(seed, epoch)``; else in index order.
        seed, epoch: what the order and the items follow from.
        num_workers: loader processes (0: load in this process).
        drop_last: drop the last, smaller batch.
        sampler: e.g. a ``DistributedSampler``; replaces ``shuffle`` (its ``set_epoch(epoch)`` is
            called here).
        batches: explicit index lists, one per batch (e.g. this rank's share of each global batch);
            replaces ``batch_size``, ``shuffle``, ``sampler`` and ``drop_last``.
        pin_memory: pin batches for faster host-to-GPU copies.

    Returns:
        ``torch.utils.data.DataLoader`` yielding collated item dicts.
    """
    if hasattr(ds, "get") and hasattr(ds, "set_epoch"):
        ds = _AtEpoch(ds, epoch)  # workers see this epoch, whatever set_epoch does later
    # The loader's own generator: iterating never consumes the global torch RNG of the caller.
    common = {"num_workers": int(num_workers), "pin_memory": pin_memory,
              "generator": torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % 2**63)}
    if batches is not None:
        return DataLoader(ds, batch_sampler=[[int(i) for i in b] for b in batches], **common)
    if sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
    order = epoch_order(len(ds), seed, epoch) if shuffle else np.arange(len(ds))
    return DataLoader(ds, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last, **common)
