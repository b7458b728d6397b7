"""A frame bank split into fixed shards of the training videos, each shard a bank of its own.

At paper scale (MSR-VTT, K = 8, 224 px) one generation of the bank is about 130 GB. Under torchrun
on several machines no node should need a filesystem holding all of it: the training videos are
split into ``S`` fixed shards, training video ``i`` (its position in the training split) in shard
``i mod S`` at local row ``i // S``, and every shard is an ordinary :class:`FrameBank` in its own
folder, on the local disk of the process that owns it. A striped split keeps the shards within one
video of each other in size and needs no lookup table.

:class:`ShardedBank` holds the shards one process owns and speaks the bank's row API in *global*
rows (positions in the training split), so the training tasks do not care whether the bank is
whole or split. A global row of a shard this process does not own is an error that names the shard.
Every shard keeps its own generations: :meth:`ShardedBank.commit` seals each owned shard and returns
their states, :meth:`ShardedBank.restore` reopens exactly those generations. Which process owns
which shard, and how the states reach the checkpoint, is the training loop's business
(:mod:`mofkit.train.banks`); this module does no I/O beyond the shards' own files and knows nothing
of processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from mofkit.bilevel.bank import FrameBank
from mofkit.bilevel.bank_updates import Progress
from mofkit.rowstore import check_rows

__all__ = ["ShardedBank", "combine_step_stats", "shard_members", "shard_seed", "shard_sizes"]


def shard_members(num_videos: int, num_shards: int, shard: int) -> np.ndarray:
    """Global rows of one shard, in local-row order (int64): ``shard, shard + S, shard + 2S, ...``."""
    _check_shards(num_videos, num_shards)
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range: the bank has shards 0..{num_shards - 1}")
    return np.arange(shard, num_videos, num_shards, dtype=np.int64)


def shard_sizes(num_videos: int, num_shards: int) -> list[int]:
    """Videos per shard (the first ``num_videos mod S`` shards hold one more)."""
    _check_shards(num_videos, num_shards)
    return [len(range(s, num_videos, num_shards)) for s in range(num_shards)]


def shard_seed(seed: int, shard: int) -> int:
    """The stochastic-rounding seed of one shard's float16 frames, from the run's seed."""
    return int(np.random.SeedSequence([int(seed), int(shard)]).generate_state(1)[0])


def _check_shards(num_videos: int, num_shards: int) -> None:
    if num_shards < 1:
        raise ValueError(f"a sharded bank needs at least one shard, got {num_shards}")
    if num_videos < num_shards:
        raise ValueError(f"{num_videos} training videos cannot fill {num_shards} shards; use fewer "
                         f"shards (mof.bank_shards) than training videos")


class ShardedBank:
    """The shards of a frame bank that one process owns, addressed by global training rows.

    Build one with :meth:`create` or :meth:`restore`.

    Args:
        shards: shard number -> its open :class:`FrameBank` (the shards this process owns).
        num_shards: S, the number of shards of the whole bank.
        num_videos: training videos of the whole bank.
    """

    def __init__(self, shards: Mapping[int, FrameBank], num_shards: int, num_videos: int):
        _check_shards(num_videos, num_shards)
        if not shards:
            raise ValueError("a process of a sharded bank must own at least one shard")
        sizes = shard_sizes(num_videos, num_shards)
        for s, bank in shards.items():
            if not 0 <= s < num_shards:
                raise ValueError(f"shard {s} out of range: the bank has shards 0..{num_shards - 1}")
            if bank.num_videos != sizes[s]:
                raise ValueError(f"shard {s} at {bank.directory} has {bank.num_videos} videos; a "
                                 f"bank of {num_videos} videos in {num_shards} shards gives it "
                                 f"{sizes[s]}: it belongs to another split")
        self._shards = dict(sorted(shards.items()))
        self.num_shards = int(num_shards)
        self.num_videos = int(num_videos)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create(cls, directories: Mapping[int, str | Path], video_ids: Sequence[str], num_shards: int,
               num_frames: int, image_size: int, *, dtype: str = "float32",
               init: Callable[[np.ndarray], torch.Tensor | np.ndarray] | None = None,
               seed: int = 0, overwrite: bool = False,
               progress: Progress | None = None) -> "ShardedBank":
        """Create the owned shards, each with :meth:`FrameBank.create`.

        Args:
            directories: shard number -> its folder (the shards this process owns).
            video_ids: every training video, in training order (the whole bank's rows).
            num_shards: S.
            num_frames, image_size, dtype, overwrite: as in :meth:`FrameBank.create`.
            init: ``init(global_rows)`` -> (B, K, 3, S, S) normalised frames of those rows.
            seed: the run's seed; shard ``s`` rounds float16 frames with :func:`shard_seed`.
            progress: called as ``progress(rows_done, rows_owned)``.
        """
        ids = [str(v) for v in video_ids]
        owned_total = sum(len(range(s, len(ids), num_shards)) for s in directories)
        banks, done = {}, 0
        for s, directory in sorted(directories.items()):
            members = shard_members(len(ids), num_shards, s)

            def shard_init(local: np.ndarray, members=members):
                return init(members[local])

            def shard_progress(rows: int, _total: int, base=done):
                if progress is not None:
                    progress(base + rows, owned_total)

            banks[s] = FrameBank.create(directory, [ids[i] for i in members], num_frames, image_size,
                                        dtype=dtype, init=None if init is None else shard_init,
                                        seed=shard_seed(seed, s), overwrite=overwrite,
                                        progress=shard_progress)
            done += len(members)
        return cls(banks, num_shards, len(ids))

    @classmethod
    def restore(cls, states: Mapping[int, dict[str, Any]], directories: Mapping[int, str | Path],
                num_shards: int, num_videos: int, *, reset_accumulator: bool = True) -> "ShardedBank":
        """Reopen the generations a checkpoint recorded for the owned shards.

        Args:
            states: shard number -> the dict its :meth:`FrameBank.commit` returned.
            directories: shard number -> where that shard is now (checked against the state).
            num_shards, num_videos: of the whole bank, as recorded.
            reset_accumulator: as in :meth:`FrameBank.restore`.

        Raises:
            FileNotFoundError: a shard is not in its folder (it lives on another machine's disk).
        """
        banks = {}
        for s, directory in sorted(directories.items()):
            if s not in states:
                raise ValueError(f"the checkpoint records no state for shard {s} (it has shards "
                                 f"{sorted(states)}); it was written with another sharding")
            if not (Path(directory) / "bank.json").is_file():
                raise FileNotFoundError(
                    f"shard {s} of the frame bank is not in {Path(directory).resolve()}: each shard "
                    f"lives on the local disk of the process that wrote it; resume on the same "
                    f"machines with the same ranks and mof.bank_dir")
            banks[s] = FrameBank.restore(states[s], directory, reset_accumulator=reset_accumulator)
        return cls(banks, num_shards, num_videos)

    # -- description ---------------------------------------------------------------------------

    @property
    def shards(self) -> dict[int, FrameBank]:
        """Owned shard number -> its bank."""
        return dict(self._shards)

    @property
    def owned_rows(self) -> np.ndarray:
        """Global rows of every owned shard, sorted (int64)."""
        return np.sort(np.concatenate([shard_members(self.num_videos, self.num_shards, s)
                                       for s in self._shards]))

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        return next(iter(self._shards.values())).frame_shape

    @property
    def dtype(self) -> str:
        return next(iter(self._shards.values())).dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        return next(iter(self._shards.values())).torch_dtype

    def __repr__(self) -> str:
        return (f"ShardedBank(shards {list(self._shards)} of {self.num_shards}, videos="
                f"{self.num_videos}, frames={self.frame_shape}, dtype={self.dtype})")

    # -- rows ----------------------------------------------------------------------------------

    def _split(self, rows, what: str) -> tuple[np.ndarray, list[tuple[int, FrameBank, np.ndarray,
                                                                       np.ndarray]]]:
        """Global rows -> (rows, [(shard, its bank, positions in rows, local rows)])."""
        r = check_rows(rows, self.num_videos, f"ShardedBank.{what}", "the bank")
        shard = r % self.num_shards
        foreign = sorted(set(shard.tolist()) - set(self._shards))
        if foreign:
            bad = r[shard == foreign[0]][:5].tolist()
            raise ValueError(f"ShardedBank.{what}: rows {bad} are in shard {foreign[0]}, which this "
                             f"process does not own (it owns shards {list(self._shards)} of "
                             f"{self.num_shards}); each process reads and writes its own videos only")
        parts = []
        for s, bank in self._shards.items():
            pos = np.flatnonzero(shard == s)
            if len(pos):
                parts.append((s, bank, pos, r[pos] // self.num_shards))
        return r, parts

    def _global(self, s: int, local: Sequence[int]) -> list[int]:
        return [int(v) * self.num_shards + s for v in local]

    def read(self, rows, out: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (B, K, 3, S, S) float32 of global rows, in the order of ``rows``, into ``out`` if
        given (see :meth:`FrameBank.read`)."""
        r, parts = self._split(rows, "read")
        if out is None:
            out = torch.empty((len(r), *self.frame_shape), dtype=torch.float32)  # else see FrameBank.read
        for _, bank, pos, local in parts:
            bank.read(local, out=out, at=pos)
        return out

    def write(self, rows, frames: torch.Tensor | np.ndarray) -> None:
        """Overwrite the frames of global rows (see :meth:`FrameBank.write`)."""
        _, parts = self._split(rows, "write")
        x = torch.as_tensor(frames)
        for _, bank, pos, local in parts:
            bank.write(local, x[torch.from_numpy(pos)])

    def accumulate(self, rows, grads: torch.Tensor | np.ndarray) -> list[int]:
        """Add gradients of global rows to their shards' accumulators; skipped global rows, sorted."""
        _, parts = self._split(rows, "accumulate")
        g = torch.as_tensor(grads)
        skipped: list[int] = []
        for s, bank, pos, local in parts:
            skipped += self._global(s, bank.accumulate(local, g[torch.from_numpy(pos)]))
        return sorted(skipped)

    def step_rows(self, rows, grads: torch.Tensor | np.ndarray, lr: float, **adam) -> list[int]:
        """Per-batch Adam step on global rows (see :meth:`FrameBank.step_rows`); skipped rows."""
        _, parts = self._split(rows, "step_rows")
        g = torch.as_tensor(grads)
        skipped: list[int] = []
        for s, bank, pos, local in parts:
            skipped += self._global(s, bank.step_rows(local, g[torch.from_numpy(pos)], lr, **adam))
        return sorted(skipped)

    def step_accumulated(self, lr: float, **adam) -> dict[str, Any]:
        """:meth:`FrameBank.step_accumulated` on every owned shard; the statistics combined.

        Returns:
            ``lr``, ``rows_updated``, ``rows_skipped``, ``skipped_rows`` (global rows),
            ``mean_abs_change`` (over every updated row), ``max_abs_change`` and ``generations``
            (shard -> its generation after the step).
        """
        parts = []
        for s, bank in self._shards.items():
            st = bank.step_accumulated(lr, **adam)
            parts.append({**st, "skipped_rows": self._global(s, st["skipped_rows"]),
                          "generations": {s: int(st["generation"])}})
        return combine_step_stats(parts)

    def begin_generation(self) -> None:
        for bank in self._shards.values():
            bank.begin_generation()

    # -- checkpoints ---------------------------------------------------------------------------

    def commit(self) -> dict[int, dict[str, Any]]:
        """Seal every owned shard's generation: shard number -> its :meth:`FrameBank.commit` state."""
        return {s: bank.commit() for s, bank in self._shards.items()}

    def prune(self) -> dict[int, list[int]]:
        """Delete every owned shard's generations but its current one; shard -> deleted ones."""
        return {s: bank.prune(keep={bank.generation}) for s, bank in self._shards.items()}

    def close(self) -> None:
        for bank in self._shards.values():
            bank.close()


def combine_step_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One set of frame-step statistics from several parts (shards, or processes).

    Each part has ``lr``, ``rows_updated``, ``rows_skipped``, ``skipped_rows`` (global rows),
    ``mean_abs_change``, ``max_abs_change`` and ``generations`` (shard -> generation); the result
    has the same keys: counts and lists summed, the mean change weighted by rows updated.
    """
    updated = sum(int(p["rows_updated"]) for p in parts)
    return {
        "lr": float(parts[0]["lr"]) if parts else 0.0,
        "rows_updated": updated,
        "rows_skipped": sum(int(p["rows_skipped"]) for p in parts),
        "skipped_rows": sorted(int(v) for p in parts for v in p["skipped_rows"]),
        "mean_abs_change": (sum(float(p["mean_abs_change"]) * int(p["rows_updated"]) for p in parts)
                            / max(1, updated)),
        "max_abs_change": max((float(p["max_abs_change"]) for p in parts), default=0.0),
        "generations": {int(k): int(v) for p in parts for k, v in p["generations"].items()},
    }
