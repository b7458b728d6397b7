"""Where a run's compressed-frame bank lives across processes: one shared bank, or one shard per rank.

Two placements with one interface (``bank``, ``create``, ``restore``, ``commit``, ``prune``,
``begin_generation``, ``step_accumulated``, ``owned_rows``, ``base_batches``, ``meta_batches``);
the MOF tasks (:mod:`mofkit.train.tasks`) use whichever :func:`bank_placement` picks and do not
branch on it.

* :class:`SharedBank` (``mof.bank_shards = 0``, the default): one :class:`FrameBank` that every
  process opens on a filesystem they all see. Rank 0 creates, steps, begins generations and
  commits; after each change of generation the others reopen it. Every rank reads frames; in the
  per-batch mode every rank also writes its own rows. Batches are cut from one global order
  (:func:`mofkit.train.batches.epoch_batches`), so N processes see the global batches one process sees.

* :class:`RankShards` (``mof.bank_shards = S``, or -1 for one shard per process): the training
  videos are split into S fixed shards (:mod:`mofkit.bilevel.shards`: video ``i`` in shard
  ``i mod S``) and rank ``r`` of ``W`` owns the block of shards ``r*S/W .. (r+1)*S/W - 1``, in
  folders on its own disk (``mof.bank_dir``). No machine needs a filesystem holding the whole bank:
  each rank reads, accumulates, steps, commits and prunes only its own shards. Its sampler draws
  only its own videos: each shard's videos in an order seeded by (seed, epoch, shard), cut into
  ``batch_size / S`` per shard and batch; a rank's batch is its shards' pieces in shard order, so
  the global batch (the ranks' batches in rank order) is the same for any W that divides S, one
  process owning all S shards included. Checkpoints record every shard's sealed generation
  (gathered to rank 0) and the world size; a resume restores each rank's shards exactly, and a
  resume with another world size is refused with an error that says why (the shards sit on the
  disks of the ranks that wrote them).

A job that spans several machines (torchrun ``--nnodes`` > 1) with ``mof.bank_shards = 0`` gets
the sharded placement anyway, one shard per process: with one shared bank, rank 0 alone would step
all of it at every meta epoch (about 16 minutes for MSR-VTT's 9,000 videos) while every other rank
waits at a barrier, over a filesystem all the machines share.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from mofkit.bilevel.bank import FrameBank
from mofkit.bilevel.shards import ShardedBank, combine_step_stats, shard_members, shard_sizes
from mofkit.train import distributed as D
from mofkit.train.checkpoint import ResumeError

# the training loop's Trainer (mofkit.train.loop), named without importing the loop, which imports
# this module: only its attributes are read here
Trainer = Any

if TYPE_CHECKING:
    from mofkit.config import Config


def bank_location(cfg: "Config", rank: int = 0, sharded: bool | None = None) -> Path:
    """The folder of a run's bank (shared placement) or of this rank's shards (sharded).

    ``mof.bank_dir`` empty: inside the run folder (``bank`` or ``bank-shards``; ``sharded`` None
    reads which from ``mof.bank_shards``). Otherwise
    ``<bank_dir>/<run tag>``, the tag being the run folder's name and a hash of its absolute path
    (two runs never share a bank), ``{rank}`` in ``bank_dir`` replaced by the global rank.
    """
    out = Path(cfg.out_dir)
    if not cfg.mof.bank_dir:
        sharded = bool(cfg.mof.bank_shards) if sharded is None else sharded
        return out / ("bank-shards" if sharded else "bank")
    try:
        base = cfg.mof.bank_dir.format(rank=rank)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"mof.bank_dir={cfg.mof.bank_dir!r}: the only placeholder it may hold is "
                         f"{{rank}} ({e})") from None
    tag = hashlib.sha1(os.path.abspath(out).encode()).hexdigest()[:10]
    return Path(base).expanduser() / f"{out.name}-{tag}"


def num_bank_shards(cfg: "Config", world_size: int, spans_machines: bool = False) -> int:
    """S of a run: 0 for a shared bank; ``mof.bank_shards``, or the world size when it is -1, or
    when it is 0 and the job spans several machines (see the module docstring)."""
    s = int(cfg.mof.bank_shards)
    if s == -1 or (s == 0 and spans_machines):
        return world_size
    if s < 0:
        raise ValueError(f"mof.bank_shards={s}: 0 (one shared bank), -1 (one shard per process) or "
                         f"a number of shards")
    return s


def check_sharding(cfg: "Config", world_size: int, spans_machines: bool = False) -> int:
    """S, after checking that it fits the world size and the batch sizes (ValueError otherwise)."""
    s = num_bank_shards(cfg, world_size, spans_machines)
    if not s:
        return 0
    if s % world_size:
        raise ValueError(f"mof.bank_shards={s} shards cannot be split evenly over {world_size} "
                         f"processes; use a multiple of the world size (or -1: one per process)")
    if cfg.train.batch_size % s:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by the number "
                         f"of bank shards ({s}): every batch takes the same number of videos from "
                         f"each shard")
    return s


def sharded_batches_per_epoch(num_videos: int, batch_size: int, num_shards: int) -> int:
    """Full batches in a sharded epoch: as many as the smallest shard fills."""
    return min(shard_sizes(num_videos, num_shards)) // (batch_size // num_shards)


def shard_batches(num_videos: int, batch_size: int, num_shards: int, shard: int, seed: int,
                  epoch: int, *, drop_last: bool = True, salt: int = 0,
                  groups: np.ndarray | None = None) -> list[np.ndarray]:
    """One shard's videos (global training rows) in an order seeded by (seed, epoch, salt, shard),
    cut into batches of ``batch_size`` (:func:`mofkit.train.batches.epoch_batches` on the shard).

    Args:
        groups: one label per training video (``train.family_batches``), kept together within the shard.
    """
    from mofkit.train.batches import epoch_batches

    members = shard_members(num_videos, num_shards, shard)
    g = None if groups is None else np.asarray(groups)[members]
    cut = epoch_batches(len(members), batch_size, seed, epoch, D.DistInfo(), drop_last=drop_last,
                        salt=salt, groups=g, stream=shard)
    return [members[b] for b in cut]


def sharded_epoch_batches(num_videos: int, batch_size: int, num_shards: int, shards, seed: int,
                          epoch: int, *, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The base batches (global training rows) of some shards in one epoch.

    Each shard's videos are cut by :func:`shard_batches` into pieces of ``batch_size / S``; batch
    ``b`` is the ``b``-th piece of every shard in ``shards``, in shard order, and every rank has
    :func:`sharded_batches_per_epoch` of them (as many as the smallest shard fills).

    Args:
        shards: the shard numbers to draw from (a rank's own, see :class:`RankShards`).
    """
    piece = batch_size // num_shards
    per_shard = [shard_batches(num_videos, piece, num_shards, s, seed, epoch, groups=groups)
                 for s in shards]
    n = sharded_batches_per_epoch(num_videos, batch_size, num_shards)
    return [np.concatenate([p[b] for p in per_shard]) for b in range(n)]


def trains_on_bank(cfg: "Config") -> bool:
    """Whether a run trains on a compressed-frame bank (MOF and its frozen control; a compressor
    makes its frames instead). The config's task has been checked by the trainer first."""
    return bool(cfg.mof.enabled) and cfg.compress.name is None


def batches_per_epoch(cfg: "Config", num_videos: int, world_size: int,
                      spans_machines: bool = False) -> int:
    """Base batches in one epoch of a run: all full global batches, or with a sharded bank as many
    as the smallest shard fills (the other tasks ignore ``mof.bank_shards``)."""
    s = check_sharding(cfg, world_size, spans_machines) if trains_on_bank(cfg) else 0
    if s:
        return sharded_batches_per_epoch(num_videos, cfg.train.batch_size, s)
    return num_videos // cfg.train.batch_size


def bank_init(trainer: "Trainer") -> Callable[[np.ndarray], torch.Tensor]:
    """``init(rows)``: the start frames (B, K, 3, S, S) of training rows, as ``mof.init`` says."""
    tr, cfg = trainer, trainer.cfg
    data = tr.data
    oracle = _oracle_positions(cfg, data) if cfg.mof.init == "oracle" else None

    def init(rows: np.ndarray) -> torch.Tensor:
        if oracle is not None:  # frames inside the captioned events, from the dense grid
            grid_rows, positions = oracle
            frames = data.train_grid.rows(grid_rows[rows], positions[rows])  # (B, K, H, W, 3)
            return tr.preprocess.eval(frames).cpu()
        frames = data.train_clips.frames_of(rows)  # (B, K, H, W, 3) uint8
        if cfg.mof.init == "train_crop":
            seeds = [(cfg.train.seed, -1, int(r)) for r in rows]
            return tr.preprocess.train_with_seeds(frames, seeds, **data.aug).cpu()
        return tr.preprocess.eval(frames).cpu()  # (B, K, 3, S, S)

    return init


def _oracle_positions(cfg: "Config", data) -> tuple[np.ndarray, np.ndarray]:
    """Per training row: its row in the dense grid and the K grid positions inside its events."""
    from mofkit.data.synthetic import event_frames, load_timeline

    timeline = load_timeline(cfg.data.root)
    grid = data.train_grid
    ids = data.train.video_ids
    grid_rows = grid.rows_of(ids)
    positions = np.empty((len(ids), cfg.data.num_frames), dtype=np.int64)
    for r, (vid, g) in enumerate(zip(ids, grid_rows)):
        wanted = np.asarray(event_frames(timeline[vid], cfg.data.num_frames))  # source frame indices
        have = grid.frame_indices[g]  # (T,) the source frame of each cached grid frame
        positions[r] = np.abs(have[None, :] - wanted[:, None]).argmin(axis=1)  # nearest cached frame
    return grid_rows, positions


class SharedBank:
    """One bank on a filesystem every process sees (see the module docstring)."""

    sharded = False

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.info = trainer.info
        self.bank = None

    @property
    def directory(self) -> Path:
        return bank_location(self.trainer.cfg)

    def create(self) -> None:
        tr, cfg = self.trainer, self.trainer.cfg
        if self.info.is_main:
            self.bank = FrameBank.create(self.directory, tr.data.train.video_ids, cfg.data.num_frames,
                                         tr.bundle.image_size, dtype=cfg.mof.bank_dtype,
                                         init=bank_init(tr), seed=cfg.train.seed, overwrite=True)
        D.barrier(self.info)
        if not self.info.is_main:
            self.bank = FrameBank.open(self.directory)

    def restore(self, state: dict) -> None:
        """Point the bank back at a checkpoint's generation; drop what killed sessions wrote later."""
        if state.get("sharded"):
            raise ResumeError("this checkpoint's frame bank is sharded (mof.bank_shards="
                             f"{state.get('num_shards')}); resume with that setting")
        self.bank = FrameBank.restore(state, self.directory if self.trainer.cfg.mof.bank_dir else None)
        D.barrier(self.info)  # every rank has restored before the main one prunes
        if self.info.is_main:  # generations a killed session wrote after this checkpoint
            self.bank.prune(keep={self.bank.generation})

    def reopen(self) -> None:
        """On ranks other than 0, after rank 0 switched the bank to a new generation."""
        D.barrier(self.info)
        if not self.info.is_main:
            self.bank = FrameBank.open(self.directory)

    def commit(self) -> dict | None:
        """Seal the current generation (rank 0 only); the state the checkpoint stores."""
        return self.bank.commit() if self.info.is_main else None

    def prune(self) -> None:
        if self.info.is_main:
            self.bank.prune(keep={self.bank.generation})

    def begin_generation(self) -> None:
        """A writable copy of the sealed generation that every rank then writes its rows into."""
        if self.info.enabled:
            if self.info.is_main:
                self.bank.begin_generation()
            self.reopen()

    def step_accumulated(self, **adam) -> dict[str, Any]:
        """The once-per-meta-epoch Adam step (rank 0), then every rank reopens; its statistics."""
        D.barrier(self.info)
        stats = self.bank.step_accumulated(**adam) if self.info.is_main else {}
        self.reopen()
        return stats

    def owned_rows(self) -> np.ndarray:
        return np.arange(self.bank.num_videos)

    def base_batches(self, epoch: int, groups: np.ndarray | None) -> list[np.ndarray]:
        from mofkit.train.batches import epoch_batches

        t = self.trainer.cfg.train
        return epoch_batches(len(self.trainer.data.train), t.batch_size, t.seed, epoch, self.info,
                             groups=groups)

    def meta_batches(self, epoch: int, groups: np.ndarray | None) -> list[np.ndarray]:
        """This rank's meta batches: cut from one global order and dealt round-robin, so each
        video's hypergradient is computed by exactly one rank and reaches the bank exactly once."""
        from mofkit.train.batches import epoch_batches

        cfg, info = self.trainer.cfg, self.info
        mb = cfg.mof.meta_batch_size or cfg.train.batch_size // info.world_size
        batches = epoch_batches(len(self.trainer.data.train), mb, cfg.train.seed, epoch, D.DistInfo(),
                                drop_last=False, salt=1, groups=groups)
        return [b for j, b in enumerate(batches) if j % info.world_size == info.rank]


class RankShards:
    """Each rank owns a fixed block of the bank's shards on its own disk (see the module docstring)."""

    sharded = True

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.info = trainer.info
        self.num_shards = check_sharding(trainer.cfg, self.info.world_size, self.info.spans_machines)
        per = self.num_shards // self.info.world_size
        self.shards = list(range(self.info.rank * per, (self.info.rank + 1) * per))
        self.bank: ShardedBank | None = None

    @property
    def location(self) -> Path:
        return bank_location(self.trainer.cfg, self.info.rank, sharded=True)

    def directory(self, shard: int) -> Path:
        return self.location / f"shard-{shard:04d}-of-{self.num_shards:04d}"

    def create(self) -> None:
        tr, cfg = self.trainer, self.trainer.cfg
        self.bank = ShardedBank.create({s: self.directory(s) for s in self.shards},
                                       tr.data.train.video_ids, self.num_shards, cfg.data.num_frames,
                                       tr.bundle.image_size, dtype=cfg.mof.bank_dtype,
                                       init=bank_init(tr), seed=cfg.train.seed, overwrite=True)
        D.barrier(self.info)

    def restore(self, state: dict) -> None:
        """Reopen this rank's shards at the checkpoint's generations; drop later ones."""
        w = self.info.world_size
        if not state.get("sharded"):
            raise ResumeError("this checkpoint's frame bank is one shared bank; resume with "
                             "mof.bank_shards=0")
        if int(state["world_size"]) != w or int(state["num_shards"]) != self.num_shards:
            raise ResumeError(
                f"this checkpoint's frame bank is split into {state['num_shards']} shards over "
                f"{state['world_size']} processes, each on the disk of the rank that wrote it; this "
                f"job has {w} process(es) ({self.num_shards} shards). Resume with "
                f"{state['world_size']} processes on the same machines, in the same rank order, with "
                f"the same mof.bank_dir (torchrun --nnodes/--nproc_per_node as before), or start "
                f"the run afresh (--fresh)")
        shards = {int(k): v for k, v in state["shards"].items()}
        try:
            self.bank = ShardedBank.restore(shards, {s: self.directory(s) for s in self.shards},
                                            self.num_shards, len(self.trainer.data.train))
        except FileNotFoundError as e:  # the shard is on another machine, or bank_dir changed
            raise ResumeError(f"rank {self.info.rank}: {e}") from None
        self.bank.prune()  # generations a killed session wrote after this checkpoint

    def reopen(self) -> None:
        """Nothing to reopen: no other rank changes this rank's shards."""

    def commit(self) -> dict:
        """Seal every rank's shards; the states of all of them (gathered), for rank 0's checkpoint."""
        states: dict[int, dict] = {}
        for part in D.all_gather_object(self.bank.commit(), self.info):
            states.update(part)
        return {"sharded": True, "num_shards": self.num_shards, "world_size": self.info.world_size,
                "shards": {str(s): states[s] for s in sorted(states)}}

    def prune(self) -> None:
        self.bank.prune()

    def begin_generation(self) -> None:
        """Nothing: a per-batch step on a sealed shard begins that shard's next generation itself."""

    def step_accumulated(self, **adam) -> dict[str, Any]:
        """Every rank steps its own shards; the statistics of all shards combined."""
        mine = self.bank.step_accumulated(**adam)
        stats = combine_step_stats(D.all_gather_object(mine, self.info))
        stats.pop("generations")
        return stats

    def owned_rows(self) -> np.ndarray:
        return self.bank.owned_rows

    def base_batches(self, epoch: int, groups: np.ndarray | None) -> list[np.ndarray]:
        t = self.trainer.cfg.train
        return sharded_epoch_batches(len(self.trainer.data.train), t.batch_size, self.num_shards,
                                     self.shards, t.seed, epoch, groups=groups)

    def meta_batches(self, epoch: int, groups: np.ndarray | None) -> list[np.ndarray]:
        """Meta batches of this rank's own videos, each from one shard (``mof.meta_batch_size``,
        default ``batch_size / S``): every video once, in the same batches whichever rank owns
        its shard, so its hypergradient does not depend on the world size."""
        cfg = self.trainer.cfg
        mb = cfg.mof.meta_batch_size or cfg.train.batch_size // self.num_shards
        n = len(self.trainer.data.train)
        return [b for s in self.shards for b in shard_batches(
            n, mb, self.num_shards, s, cfg.train.seed, epoch, drop_last=False, salt=1, groups=groups)]


def bank_placement(trainer: "Trainer") -> SharedBank | RankShards:
    """The placement a run's config asks for (``mof.bank_shards``)."""
    info = trainer.info
    if check_sharding(trainer.cfg, info.world_size, info.spans_machines):
        if not trainer.cfg.mof.bank_shards and info.is_main:
            warnings.warn(f"this job spans several machines ({info.world_size} processes, "
                          f"{info.local_world_size} per machine): the frame bank is split into one "
                          f"shard per process (as with mof.bank_shards=-1), so that no rank steps "
                          f"the whole bank alone while the others wait", RuntimeWarning)
        return RankShards(trainer)
    return SharedBank(trainer)
