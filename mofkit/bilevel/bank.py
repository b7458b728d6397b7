"""The compressed-frame bank: K learnable frames per training video, on disk, with their Adam state.

MOF learns, for every training video, K frames ``(K, 3, S, S)`` in the model's normalised input
space (pixels after resize, crop and normalisation), initialised from K uniformly sampled frames and
never clamped (shared MOF.md, "What the compressed frames are"). The reference keeps them as CPU
fp32 tensors in a Python list and loses them (and their optimiser state) on resume. Here they live
in memory-mapped ``.npy`` files: a batch reads and writes only its own rows, so RAM holds a batch,
not the bank.

Directory layout::

    <dir>/bank.json                     video ids, K, S, dtype, seed, the current generation and
                                        what each generation is (parent, origin, complete, sealed)
    <dir>/gen-000000/frames.npy         (V, K, 3, S, S) in the bank dtype (float32 | float16)
    <dir>/gen-000000/exp_avg.npy        (V, K, 3, S, S) float32: Adam first moment
    <dir>/gen-000000/exp_avg_sq.npy     (V, K, 3, S, S) float32: Adam second moment
    <dir>/gen-000000/steps.npy          (V,) int64: Adam step count of each video
    <dir>/grad_accum.npy                (V, K, 3, S, S) float32: gradient summed over a meta epoch
    <dir>/grad_count.npy                (V,) int64: gradients summed into each row since the last step

The Adam moments are float32 even in a float16 bank: hypergradients of pixels are tiny (1e-6 and
below), so their squares (1e-12) fall under float16's smallest subnormal (6e-8) and would be stored
as zero, which turns Adam's normalised step ``m / (sqrt(v) + eps)`` (about 1) into ``m / eps``
(about 100 for a gradient of 1e-6 and eps = 1e-8).
The step count is kept per video because in per-batch mode rows are updated at different times,
and Adam's bias correction depends on how many updates that row has had.

Float16 frames are written back from Adam with stochastic rounding: the float16 spacing near 2.0
is 2e-3, larger than a step of the reference learning rate (8e-4, halved every 30 epochs), so
round-to-nearest would freeze most pixels. Stochastic rounding keeps every update in expectation.
It is seeded by (bank seed, row, that row's Adam step), so a resumed run reproduces it bit for bit.

Generations (copy-on-write) make the bank crash-consistent with the model checkpoint.
:meth:`FrameBank.commit` *seals* the current generation and returns the small dict the training
checkpoint stores; a sealed generation is never modified again. :meth:`FrameBank.step_accumulated`
(the reference's once-per-epoch Adam step) streams the current generation into a new directory and
only then switches ``bank.json`` to it (temporary file + ``os.replace``). Per-batch updates
(:meth:`FrameBank.step_rows`) and :meth:`FrameBank.write` on a sealed generation first copy it to a
new one (:meth:`FrameBank.begin_generation`). A crash between a bank update and the next checkpoint
therefore leaves the generation that the last checkpoint names intact, and
:meth:`FrameBank.restore` reopens exactly that one: the frames are as they were when the model
checkpoint was written. :meth:`FrameBank.prune` deletes generations nobody references.

The gradient accumulator is one pair of files outside the generations. :meth:`FrameBank.accumulate`
raises a row's count before it adds the row's gradient, so a row holding gradient always has a
count, even after a crash between the two writes; that is what lets :meth:`FrameBank.restore` zero
only the counted rows. :func:`mofkit.faults.crash_point` marks the places where
``tests/test_crash.py`` kills a process (inside a streamed update, between its files and
``bank.json``, inside a per-batch step, a commit or a prune) and checks that the resumed run ends
with the same frames and moments, bit for bit, as one never interrupted.

In multi-process runs one process (the main one) creates, steps, begins generations and commits;
the others write only their own rows (:meth:`accumulate`, or :meth:`step_rows` once the main process
has begun an unsealed generation) and :meth:`FrameBank.open` the bank again whenever the main
process changed the generation. A handle does not see another process's :meth:`commit`, and two
processes beginning generations on their own would fork the bank; so with per-batch updates the
main process calls :meth:`begin_generation` right after each :meth:`commit`, and the others reopen
after a barrier.

Disk cost (MSR-VTT 9k at the reference's K = 8, 224 px: 9,000 x 8 x 3 x 224 x 224 = 10.8e9 values,
see :func:`bank_nbytes`): frames 43.4 GB in float32 / 21.7 GB in float16; Adam moments
2 x 43.4 GB; the accumulator 43.4 GB. One generation is 130 GB (float32) / 108 GB (float16); with
the accumulator a run holds 173 / 152 GB, and while an update writes the next generation
304 / 260 GB. The reference holds the frames, their gradient and the two moments (173 GB) in RAM.

This module does no logging and no printing; long operations take an optional ``progress(done,
total)`` callable.
"""
from __future__ import annotations

import collections
import datetime
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mofkit.faults import crash_point

FORMAT_VERSION = 1
DTYPES = ("float32", "float16")
META_FILE = "bank.json"
FRAMES_FILE, EXP_AVG_FILE, EXP_AVG_SQ_FILE, STEPS_FILE = (
    "frames.npy", "exp_avg.npy", "exp_avg_sq.npy", "steps.npy")
ACCUM_FILE, COUNT_FILE = "grad_accum.npy", "grad_count.npy"
_GEN_PREFIX = "gen-"
_CHUNK_BYTES = 64 * 2**20  # per float32 array in streaming passes: a few hundred MB of RAM in all

Progress = Callable[[int, int], None]
RowsLike = Sequence[int] | np.ndarray | torch.Tensor | int


def step_lr(base_lr: float, step_index: int, step_size: int = 30, gamma: float = 0.5) -> float:
    """Learning rate of frame-optimiser step ``step_index`` under StepLR (the reference schedule).

    Args:
        base_lr: learning rate of the first ``step_size`` steps (``MOFConfig.frame_lr``).
        step_index: frame-optimiser steps already taken (0 for the first).
        step_size: steps between decays (``MOFConfig.frame_lr_step``).
        gamma: decay factor (``MOFConfig.frame_lr_gamma``).

    Returns:
        ``base_lr * gamma ** (step_index // step_size)``.
    """
    if step_size < 1:
        raise ValueError(f"step_lr: step_size must be >= 1, got {step_size}")
    if step_index < 0:
        raise ValueError(f"step_lr: step_index must be >= 0, got {step_index}")
    return base_lr * gamma ** (step_index // step_size)


def bank_nbytes(num_videos: int, num_frames: int, image_size: int,
                dtype: str = "float32") -> dict[str, int]:
    """Disk bytes a bank of this size needs (logical file sizes, before any sparseness).

    Args:
        num_videos: V, training videos.
        num_frames: K, compressed frames per video.
        image_size: S, the model's input side in pixels.
        dtype: storage of the frames, float32 or float16.

    Returns:
        ``frames``, ``moments`` (both), ``generation`` (frames + moments + steps), ``accumulator``
        (with its counts), ``steady`` (one generation + accumulator) and ``during_update`` (two
        generations + accumulator), in bytes.
    """
    _check_dtype(dtype)
    n = num_videos * num_frames * 3 * image_size * image_size
    frames = n * np.dtype(dtype).itemsize
    moments = 2 * n * 4
    generation = frames + moments + 8 * num_videos
    accumulator = 4 * n + 8 * num_videos
    return {"frames": frames, "moments": moments, "generation": generation,
            "accumulator": accumulator, "steady": generation + accumulator,
            "during_update": 2 * generation + accumulator}


class FrameBank:
    """K learnable frames per training video in memory-mapped files, with Adam state and generations.

    Build one with :meth:`create`, :meth:`open` or :meth:`restore`; see the module docstring for the
    layout and why generations exist. Rows are the positions of the videos in ``video_ids``.
    """

    def __init__(self, directory: str | Path, meta: dict[str, Any], generation: int):
        self.directory = Path(directory).resolve()
        self._meta = meta
        self._ids: list[str] = list(meta["video_ids"])
        self._row: dict[str, int] = {v: i for i, v in enumerate(self._ids)}
        self._frame_shape = (int(meta["num_frames"]), 3, int(meta["image_size"]),
                             int(meta["image_size"]))
        self._open_generation(generation)
        self._accum = np.load(self.directory / ACCUM_FILE, mmap_mode="r+")
        self._count = np.load(self.directory / COUNT_FILE, mmap_mode="r+")

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, video_ids: Sequence[str], num_frames: int,
               image_size: int, *, dtype: str = "float32",
               init: Callable[[np.ndarray], torch.Tensor | np.ndarray] | None = None,
               chunk: int | None = None, progress: Progress | None = None, seed: int = 0,
               overwrite: bool = False) -> "FrameBank":
        """Create a bank on disk (generation 0) and fill its frames.

        Args:
            directory: folder of the bank; created if missing.
            video_ids: training video ids, one row each, in row order; unique.
            num_frames: K, compressed frames per video.
            image_size: S, the model's input side in pixels.
            dtype: storage of the frames, float32 or float16 (moments are always float32).
            init: ``init(rows)`` -> (B, K, 3, S, S) normalised frames of those rows (int64 array);
                None leaves the frames at zero (the files stay sparse until written).
            chunk: rows per ``init`` call; None: about 64 MB of float32 frames per call.
            progress: called as ``progress(rows_done, num_videos)`` after each chunk.
            seed: seed of the stochastic rounding of float16 frames.
            overwrite: replace a bank already in ``directory``; otherwise that is an error.

        Returns:
            The bank, opened on generation 0 (not sealed until :meth:`commit`).
        """
        _check_dtype(dtype)
        ids = [str(v) for v in video_ids]
        if not ids:
            raise ValueError(f"FrameBank.create({directory}): video_ids is empty; pass the training "
                             "video ids, one row each")
        if len(set(ids)) != len(ids):
            dup = sorted(v for v, n in collections.Counter(ids).items() if n > 1)
            raise ValueError(f"FrameBank.create({directory}): video_ids must be unique; repeated: "
                             f"{dup[:10]}")
        if seed < 0:
            raise ValueError(f"FrameBank.create({directory}): seed must be >= 0, got {seed}")
        if num_frames < 1 or image_size < 1:
            raise ValueError(f"FrameBank.create({directory}): num_frames and image_size must be >= 1,"
                             f" got num_frames={num_frames}, image_size={image_size}")
        root = Path(directory).resolve()
        if (root / META_FILE).exists():
            if not overwrite:
                raise FileExistsError(f"FrameBank.create: {root} already holds a bank; use "
                                      "FrameBank.open / restore, or pass overwrite=True")
            _remove_bank_files(root)
        root.mkdir(parents=True, exist_ok=True)
        v, shape = len(ids), (int(num_frames), 3, int(image_size), int(image_size))
        gdir = root / _gen_name(0)
        if gdir.exists():  # leftover of a create interrupted before bank.json was written
            shutil.rmtree(gdir)
        gdir.mkdir()
        # open_memmap only seeks to the end, so untouched regions stay sparse (cheap to create).
        frames = _new_memmap(gdir / FRAMES_FILE, dtype, (v, *shape))
        for name in (EXP_AVG_FILE, EXP_AVG_SQ_FILE):
            _new_memmap(gdir / name, "float32", (v, *shape)).flush()
        _new_memmap(gdir / STEPS_FILE, "int64", (v,)).flush()
        _new_memmap(root / ACCUM_FILE, "float32", (v, *shape)).flush()
        _new_memmap(root / COUNT_FILE, "int64", (v,)).flush()
        if init is not None:
            step = chunk or _auto_chunk(shape)
            for a in range(0, v, step):
                rows = np.arange(a, min(v, a + step), dtype=np.int64)
                x = _as_float_tensor(init(rows), f"FrameBank.create({root}): init({a}:{rows[-1] + 1})",
                                     (len(rows), *shape))
                stored = _cast_finite(x, dtype, rows, ids, f"FrameBank.create({root}): init")
                frames[a:a + len(rows)] = stored
                if progress is not None:
                    progress(a + len(rows), v)
        frames.flush()
        del frames
        meta = {"format": FORMAT_VERSION, "video_ids": ids, "num_frames": shape[0],
                "image_size": shape[2], "dtype": dtype, "seed": int(seed), "current": 0,
                "generations": {"0": _gen_entry(None, "create")}}
        crash_point("bank.create.before_meta")
        _write_meta(root, meta)  # last: a bank.json exists only for a complete bank
        return cls(root, meta, 0)

    @classmethod
    def open(cls, directory: str | Path, generation: int | None = None) -> "FrameBank":
        """Open an existing bank.

        Args:
            directory: folder holding ``bank.json``.
            generation: which generation to open; None: the current one in ``bank.json``.

        Returns:
            The bank. A sealed generation is read-only: writing to it begins a new generation.
        """
        root = Path(directory).resolve()
        meta = _read_meta(root)
        g = int(meta["current"]) if generation is None else int(generation)
        return cls(root, meta, g)

    @classmethod
    def restore(cls, state: dict[str, Any], directory: str | Path | None = None, *,
                reset_accumulator: bool = True) -> "FrameBank":
        """Reopen the generation a checkpoint recorded (the output of :meth:`commit`).

        Newer generations written after that checkpoint (by a run that then crashed) are left on
        disk for :meth:`prune`; ``bank.json`` is pointed back at the restored generation.

        Args:
            state: the dict :meth:`commit` returned.
            directory: where the bank is now, if it moved; None: ``state["directory"]``.
            reset_accumulator: zero the gradient accumulator (its counted rows: see the module
                docstring). A checkpoint is written after the frame step, so a non-empty
                accumulator is left over from an interrupted meta epoch that the resumed run
                repeats; keeping it would count those gradients twice.

        Returns:
            The bank on ``state["generation"]``.
        """
        root = Path(directory if directory is not None else state["directory"]).resolve()
        bank = cls.open(root, int(state["generation"]))
        for key in ("num_videos", "num_frames", "image_size", "dtype", "video_ids_sha1"):
            have = getattr(bank, key) if key != "video_ids_sha1" else bank._ids_digest()
            if key in state and state[key] != have:
                raise ValueError(f"FrameBank.restore: the checkpoint's bank has {key}={state[key]!r} "
                                 f"but {root} has {have!r}; this checkpoint belongs to another bank")
        if bank._meta["current"] != bank.generation:
            bank._update_meta(lambda m: m.__setitem__("current", bank.generation))
        if reset_accumulator:
            bank._zero_accumulator(np.flatnonzero(np.asarray(bank._count) != 0))
        return bank

    # -- description ---------------------------------------------------------------------------

    @property
    def video_ids(self) -> list[str]:
        """Training video ids in row order."""
        return list(self._ids)

    @property
    def num_videos(self) -> int:
        return len(self._ids)

    @property
    def num_frames(self) -> int:
        return self._frame_shape[0]

    @property
    def image_size(self) -> int:
        return self._frame_shape[2]

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """(K, 3, S, S)."""
        return self._frame_shape

    @property
    def dtype(self) -> str:
        return str(self._meta["dtype"])

    @property
    def generation(self) -> int:
        """The generation this handle reads and writes."""
        return self._generation

    @property
    def sealed(self) -> bool:
        """Whether a checkpoint references this generation (then it is never modified)."""
        return self._sealed

    @property
    def generations(self) -> list[int]:
        """Complete generations recorded in ``bank.json``."""
        meta = _read_meta(self.directory)
        return sorted(int(g) for g, e in meta["generations"].items() if e.get("complete"))

    @property
    def nbytes(self) -> int:
        """Logical size in bytes of every file of the bank (all generations, the accumulator)."""
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())

    def row_of(self, video_id: str) -> int:
        """Row of a training video.

        Args:
            video_id: one of :attr:`video_ids`.

        Returns:
            Its row index.
        """
        try:
            return self._row[video_id]
        except KeyError:
            raise KeyError(f"video id {video_id!r} is not in the frame bank {self.directory} "
                           f"({self.num_videos} training videos, e.g. {self._ids[:3]}); only "
                           "training videos have compressed frames") from None

    def rows_of(self, video_ids: Sequence[str]) -> np.ndarray:
        """Rows of several training videos (int64 array), see :meth:`row_of`."""
        return np.asarray([self.row_of(v) for v in video_ids], dtype=np.int64)

    def __repr__(self) -> str:
        return (f"FrameBank({str(self.directory)!r}, videos={self.num_videos}, "
                f"frames={self._frame_shape}, dtype={self.dtype}, generation={self.generation}"
                f"{', sealed' if self._sealed else ''})")

    # -- reading and writing rows --------------------------------------------------------------

    def read(self, rows: RowsLike) -> torch.Tensor:
        """Frames of some rows, read from disk (only those rows).

        Args:
            rows: row indices (see :meth:`row_of`).

        Returns:
            (B, K, 3, S, S) float32, in the order of ``rows``.
        """
        r = self._rows(rows, "read")
        return torch.from_numpy(np.asarray(self._frames[r], dtype=np.float32))

    def write(self, rows: RowsLike, frames: torch.Tensor | np.ndarray) -> None:
        """Overwrite the frames of some rows (rounded to nearest in a float16 bank).

        On a sealed generation this first begins a new one (the checkpointed frames stay intact).

        Args:
            rows: row indices, unique.
            frames: (B, K, 3, S, S), finite.
        """
        r = self._rows(rows, "write")
        if len(np.unique(r)) != len(r):
            raise ValueError(f"FrameBank.write({self.directory}): rows must be unique")
        x = _as_float_tensor(frames, f"FrameBank.write({self.directory}): frames",
                             (len(r), *self._frame_shape))
        stored = _cast_finite(x, self.dtype, r, self._ids, f"FrameBank.write({self.directory})")
        self._ensure_writable()
        self._frames[r] = stored

    def export_images(self, rows: RowsLike, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """Frames of some rows as displayable images.

        Values are denormalised (``x * std + mean``) and clipped to [0, 1] for display only; the
        stored frames are never clamped (as in the reference). Non-finite pixels show as black.

        Args:
            rows: row indices.
            mean: per-channel mean of the model's normalisation (3 values).
            std: per-channel std of the model's normalisation (3 values).

        Returns:
            (B, K, S, S, 3) uint8.
        """
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() != 3 or std_t.numel() != 3:
            raise ValueError(f"FrameBank.export_images: mean and std need 3 values (RGB), got "
                             f"{mean_t.numel()} and {std_t.numel()}")
        x = self.read(rows)  # (B, K, 3, S, S)
        x = x * std_t.view(1, 1, 3, 1, 1) + mean_t.view(1, 1, 3, 1, 1)
        x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
        return (x * 255.0).round_().to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous()  # (B, K, S, S, 3)

    # -- gradients and Adam --------------------------------------------------------------------

    def accumulate(self, rows: RowsLike, grads: torch.Tensor | np.ndarray) -> list[int]:
        """Add gradients to the accumulator (for the once-per-epoch step).

        A row repeated in ``rows`` gets the sum of its gradients. Rows with any non-finite gradient
        value are not added at all.

        Args:
            rows: row indices.
            grads: (B, K, 3, S, S) gradients of those rows' frames (any float dtype and device).

        Returns:
            Sorted rows that were skipped for non-finite gradients (the caller reports their ids).
        """
        r, g, skipped = self._prepare_grads(rows, grads, "accumulate")
        if len(r):
            # Counts first: a row with gradient in the accumulator always has a count, so a crash
            # in between leaves nothing that restore's zeroing of counted rows would miss.
            self._count[r] = np.asarray(self._count[r]) + 1
            crash_point("bank.accumulate.mid")
            self._accum[r] = np.asarray(self._accum[r]) + g.numpy()
        return skipped

    def pending_rows(self) -> np.ndarray:
        """Rows that received gradient since the last :meth:`step_accumulated` (int64 array)."""
        return np.flatnonzero(np.asarray(self._count) != 0)

    def step_accumulated(self, lr: float, betas: tuple[float, float] = (0.5, 0.999),
                         eps: float = 1e-8, weight_decay: float = 0.0, *,
                         chunk: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """One Adam step, with the accumulated gradient, on every row that received gradient.

        This is the reference's once-per-epoch frame update. It streams the current generation in
        chunks into a new generation directory, switches ``bank.json`` to it atomically once
        that is complete, then zeroes the accumulator. The old generation is not modified. Rows
        with no gradient keep their frames, moments and step count. Nothing is written (and no
        generation made) when no row has gradient.

        Args:
            lr: learning rate of this step (see :func:`step_lr`).
            betas: Adam's (beta1, beta2); the reference uses (0.5, 0.999).
            eps: Adam's epsilon, added after the square root of the bias-corrected second moment.
            weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.
            chunk: rows per streamed chunk; None: about 64 MB per float32 array.
            progress: called as ``progress(rows_done, num_videos)`` after each chunk.

        Returns:
            ``generation`` (new), ``parent``, ``lr``, ``rows_updated``, ``rows_skipped`` (their
            accumulated gradient or the resulting frames or moments were non-finite; they keep
            their old state), ``skipped_rows`` (list), ``mean_abs_change`` and ``max_abs_change``
            (of the stored frames, over updated rows).
        """
        beta1, beta2 = _check_adam(lr, betas, eps, weight_decay)
        pending = self.pending_rows()
        stats: dict[str, Any] = {"generation": self.generation, "parent": self.generation,
                                 "lr": float(lr), "rows_updated": 0, "rows_skipped": 0,
                                 "skipped_rows": [], "mean_abs_change": 0.0, "max_abs_change": 0.0}
        if not len(pending):
            return stats
        self._flush()
        old_g, new_g = self.generation, self._next_generation()
        gdir = self.directory / _gen_name(new_g)
        gdir.mkdir()
        v, shape = self.num_videos, self._frame_shape
        dst = {FRAMES_FILE: _new_memmap(gdir / FRAMES_FILE, self.dtype, (v, *shape)),
               EXP_AVG_FILE: _new_memmap(gdir / EXP_AVG_FILE, "float32", (v, *shape)),
               EXP_AVG_SQ_FILE: _new_memmap(gdir / EXP_AVG_SQ_FILE, "float32", (v, *shape)),
               STEPS_FILE: _new_memmap(gdir / STEPS_FILE, "int64", (v,))}
        count = np.asarray(self._count)
        step = chunk or _auto_chunk(shape)
        skipped: list[int] = []
        updated, abs_sum, abs_max = 0, 0.0, 0.0
        for a in range(0, v, step):
            b = min(v, a + step)
            f = np.array(self._frames[a:b])
            m1 = np.array(self._exp_avg[a:b])
            m2 = np.array(self._exp_avg_sq[a:b])
            st = np.array(self._steps[a:b])
            local = np.flatnonzero(count[a:b] != 0)
            if len(local):
                g = torch.from_numpy(np.array(self._accum[a + local]))  # (n, K, 3, S, S)
                fin = torch.isfinite(g.flatten(1)).all(dim=1).numpy()
                skipped += (a + local[~fin]).tolist()
                local, g = local[fin], g[torch.from_numpy(fin)]
            if len(local):
                ok, new = self._adam_rows(a + local, f[local], m1[local], m2[local], st[local], g,
                                          lr, beta1, beta2, eps, weight_decay)
                skipped += (a + local[~ok]).tolist()
                local = local[ok]
                new_f, new_m1, new_m2, new_st = (t[ok] for t in new)
                delta = np.abs(new_f.astype(np.float32) - f[local].astype(np.float32))
                if delta.size:
                    abs_sum += float(delta.sum(dtype=np.float64))
                    abs_max = max(abs_max, float(delta.max()))
                f[local], m1[local], m2[local], st[local] = new_f, new_m1, new_m2, new_st
                updated += len(local)
            dst[FRAMES_FILE][a:b] = f
            dst[EXP_AVG_FILE][a:b] = m1
            dst[EXP_AVG_SQ_FILE][a:b] = m2
            dst[STEPS_FILE][a:b] = st
            crash_point("bank.step_accumulated.chunk")
            if progress is not None:
                progress(b, v)
        for arr in dst.values():
            arr.flush()
        del dst
        crash_point("bank.step_accumulated.written")
        per_row = int(np.prod(shape))
        stats.update(generation=new_g, rows_updated=updated, rows_skipped=len(skipped),
                     skipped_rows=sorted(skipped),
                     mean_abs_change=abs_sum / max(1, updated * per_row), max_abs_change=abs_max)
        info = {k: stats[k] for k in ("lr", "rows_updated", "rows_skipped", "mean_abs_change",
                                      "max_abs_change")}

        def switch(m: dict[str, Any]) -> None:
            m["generations"][str(new_g)] = _gen_entry(old_g, "step_accumulated", **info)
            m["current"] = new_g

        self._update_meta(switch)
        self._open_generation(new_g)
        crash_point("bank.step_accumulated.switched")
        self._zero_accumulator(pending)
        return stats

    def begin_generation(self, *, progress: Progress | None = None) -> None:
        """Copy the current generation to a new, unsealed one that this handle then modifies.

        For per-batch updates: :meth:`step_rows` and :meth:`write` call it by themselves when the
        generation is sealed, so calling it explicitly is only needed to choose when the copy
        happens (for example on the main process before the others :meth:`open` the bank).

        Args:
            progress: called as ``progress(files_done, 4)`` after each copied file.
        """
        self._flush()
        old_g, new_g = self.generation, self._next_generation()
        src, gdir = self.directory / _gen_name(old_g), self.directory / _gen_name(new_g)
        gdir.mkdir()
        names = (FRAMES_FILE, EXP_AVG_FILE, EXP_AVG_SQ_FILE, STEPS_FILE)
        for i, name in enumerate(names):
            shutil.copyfile(src / name, gdir / name)  # kernel-side copy, never the whole file in RAM
            with open(gdir / name, "rb+") as fh:
                os.fsync(fh.fileno())
            crash_point("bank.begin_generation.copying")
            if progress is not None:
                progress(i + 1, len(names))
        crash_point("bank.begin_generation.copied")

        def switch(m: dict[str, Any]) -> None:
            m["generations"][str(new_g)] = _gen_entry(old_g, "begin_generation")
            m["current"] = new_g

        self._update_meta(switch)
        self._open_generation(new_g)

    def step_rows(self, rows: RowsLike, grads: torch.Tensor | np.ndarray, lr: float,
                  betas: tuple[float, float] = (0.5, 0.999), eps: float = 1e-8,
                  weight_decay: float = 0.0) -> list[int]:
        """Per-batch Adam step on some rows, in place in the current (unsealed) generation.

        A row repeated in ``rows`` takes one step with the sum of its gradients. On a sealed
        generation this first calls :meth:`begin_generation`. The accumulator is not touched.

        Args:
            rows: row indices.
            grads: (B, K, 3, S, S) gradients of those rows' frames (any float dtype and device).
            lr: learning rate (see :func:`step_lr`).
            betas: Adam's (beta1, beta2).
            eps: Adam's epsilon.
            weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.

        Returns:
            Sorted rows left unchanged because their gradient, or the resulting frames or moments,
            were non-finite.
        """
        beta1, beta2 = _check_adam(lr, betas, eps, weight_decay)
        r, g, skipped = self._prepare_grads(rows, grads, "step_rows")
        if not len(r):
            return skipped
        self._ensure_writable()
        ok, (f, m1, m2, st) = self._adam_rows(
            r, np.asarray(self._frames[r]), np.asarray(self._exp_avg[r]),
            np.asarray(self._exp_avg_sq[r]), np.asarray(self._steps[r]), g,
            lr, beta1, beta2, eps, weight_decay)
        keep = r[ok]
        if len(keep):
            self._frames[keep] = f[ok]
            crash_point("bank.step_rows.mid")
            self._exp_avg[keep] = m1[ok]
            self._exp_avg_sq[keep] = m2[ok]
            self._steps[keep] = st[ok]
        return sorted(skipped + r[~ok].tolist())

    # -- checkpoints ---------------------------------------------------------------------------

    def commit(self) -> dict[str, Any]:
        """Flush to disk and seal the current generation; return what the checkpoint stores.

        After this the generation is never modified: the next write, per-batch step or
        accumulated step goes to a new generation.

        Returns:
            Plain dict: ``directory``, ``generation``, ``format``, ``num_videos``, ``num_frames``,
            ``image_size``, ``dtype``, ``video_ids_sha1``. Pass it to :meth:`restore`.
        """
        self._flush()
        g = self.generation
        if not self._sealed:
            crash_point("bank.commit.before_seal")
            self._update_meta(lambda m: m["generations"][str(g)].__setitem__("sealed", True))
            self._open_generation(g)
            crash_point("bank.commit.sealed")
        return {"directory": str(self.directory), "generation": g, "format": FORMAT_VERSION,
                "num_videos": self.num_videos, "num_frames": self.num_frames,
                "image_size": self.image_size, "dtype": self.dtype,
                "video_ids_sha1": self._ids_digest()}

    def prune(self, keep: set[int] | Sequence[int]) -> list[int]:
        """Delete generation directories not in ``keep``.

        The generation of this handle and the current one in ``bank.json`` are always kept.
        Directories of interrupted updates (never recorded as complete) are deleted too.

        Args:
            keep: generations to keep (the training loop: the one its latest checkpoint names).

        Returns:
            The generations deleted, sorted.
        """
        meta = _read_meta(self.directory)
        keep_all = {int(g) for g in keep} | {self.generation, int(meta["current"])}
        on_disk = {}
        for p in self.directory.iterdir():
            if p.is_dir() and p.name.startswith(_GEN_PREFIX) and p.name[len(_GEN_PREFIX):].isdigit():
                on_disk[int(p.name[len(_GEN_PREFIX):])] = p
        gone = sorted(g for g in on_disk if g not in keep_all)

        def drop(m: dict[str, Any]) -> None:
            for g in gone:
                m["generations"].pop(str(g), None)

        if gone:
            self._update_meta(drop)  # first: bank.json never names a deleted generation
            crash_point("bank.prune.dropped")
            for g in gone:
                shutil.rmtree(on_disk[g])
                crash_point("bank.prune.removed")
        for p in self.directory.glob(f".{META_FILE}.*.tmp"):
            p.unlink(missing_ok=True)
        return gone

    def close(self) -> None:
        """Flush and release the memory maps (the handle is unusable afterwards)."""
        self._flush()
        for name in ("_frames", "_exp_avg", "_exp_avg_sq", "_steps", "_accum", "_count"):
            setattr(self, name, None)

    # -- private -------------------------------------------------------------------------------

    def _open_generation(self, g: int) -> None:
        entry = self._meta["generations"].get(str(g))
        gdir = self.directory / _gen_name(g)
        if entry is None or not entry.get("complete") or not gdir.is_dir():
            have = sorted(int(k) for k, e in self._meta["generations"].items() if e.get("complete"))
            raise FileNotFoundError(f"frame bank {self.directory}: generation {g} does not exist or "
                                    f"is incomplete (pruned, or an interrupted update); complete "
                                    f"generations: {have}")
        self._generation, self._sealed = g, bool(entry.get("sealed"))
        mode = "r" if self._sealed else "r+"  # a sealed generation cannot be written by accident
        self._frames = np.load(gdir / FRAMES_FILE, mmap_mode=mode)
        self._exp_avg = np.load(gdir / EXP_AVG_FILE, mmap_mode=mode)
        self._exp_avg_sq = np.load(gdir / EXP_AVG_SQ_FILE, mmap_mode=mode)
        self._steps = np.load(gdir / STEPS_FILE, mmap_mode=mode)
        expect = (self.num_videos, *self._frame_shape)
        if self._frames.shape != expect or self._frames.dtype != np.dtype(self.dtype):
            raise ValueError(f"{gdir / FRAMES_FILE}: shape {self._frames.shape} {self._frames.dtype}, "
                             f"bank.json says {expect} {self.dtype}")

    def _ensure_writable(self) -> None:
        if self._sealed:
            self.begin_generation()

    def _flush(self) -> None:
        for arr in (self._frames, self._exp_avg, self._exp_avg_sq, self._steps, self._accum,
                    self._count):
            if isinstance(arr, np.memmap) and arr.mode != "r":
                arr.flush()

    def _update_meta(self, change: Callable[[dict[str, Any]], None]) -> None:
        meta = _read_meta(self.directory)  # another process may have changed it since we opened
        change(meta)
        _write_meta(self.directory, meta)
        self._meta = meta

    def _next_generation(self) -> int:
        meta = _read_meta(self.directory)
        used = {int(g) for g in meta["generations"]}
        used |= {int(p.name[len(_GEN_PREFIX):]) for p in self.directory.glob(f"{_GEN_PREFIX}*")
                 if p.name[len(_GEN_PREFIX):].isdigit()}
        return max(used) + 1

    def _zero_accumulator(self, rows: np.ndarray) -> None:
        step = _auto_chunk(self._frame_shape)
        for a in range(0, len(rows), step):
            self._accum[rows[a:a + step]] = 0.0
        self._count[rows] = 0
        self._accum.flush()
        self._count.flush()

    def _ids_digest(self) -> str:
        return hashlib.sha1("\n".join(self._ids).encode()).hexdigest()

    def _rows(self, rows: RowsLike, what: str) -> np.ndarray:
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().cpu().numpy()
        r = np.asarray(rows)
        if r.ndim == 0:
            r = r.reshape(1)
        if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
            raise TypeError(f"FrameBank.{what}({self.directory}): rows must be a 1-D sequence of "
                            f"integer row indices (see row_of), got dtype {r.dtype} shape {r.shape}")
        r = r.astype(np.int64)
        bad = r[(r < 0) | (r >= self.num_videos)]
        if bad.size:
            raise IndexError(f"FrameBank.{what}({self.directory}): rows {bad[:10].tolist()} out of "
                             f"range; the bank has rows 0..{self.num_videos - 1}")
        return r

    def _prepare_grads(self, rows: RowsLike, grads: torch.Tensor | np.ndarray,
                       what: str) -> tuple[np.ndarray, torch.Tensor, list[int]]:
        """Sorted unique finite rows, their summed float32 gradients, and the skipped rows."""
        r = self._rows(rows, what)
        g = _as_float_tensor(grads, f"FrameBank.{what}({self.directory}): grads",
                             (len(r), *self._frame_shape))
        finite = torch.isfinite(g.flatten(1)).all(dim=1).numpy()
        bad = set(r[~finite].tolist())
        keep = ~np.isin(r, list(bad)) if bad else np.ones(len(r), dtype=bool)
        r, g = r[keep], g[torch.from_numpy(keep)]
        uniq, inv = np.unique(r, return_inverse=True)
        if len(uniq) != len(r):  # a repeated row gets the sum, as autograd would give it
            g = torch.zeros((len(uniq), *self._frame_shape)).index_add_(0, torch.from_numpy(inv), g)
        else:
            g = g[torch.from_numpy(np.argsort(r, kind="stable"))]
        return uniq, g.contiguous(), sorted(bad)

    def _adam_rows(self, rows: np.ndarray, frames: np.ndarray, exp_avg: np.ndarray,
                   exp_avg_sq: np.ndarray, steps: np.ndarray, grad: torch.Tensor, lr: float,
                   beta1: float, beta2: float, eps: float, weight_decay: float,
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Adam on row blocks; returns (rows whose results are all finite, new stored arrays)."""
        param = torch.from_numpy(np.array(frames, dtype=np.float32))
        m1 = torch.from_numpy(np.array(exp_avg, dtype=np.float32))
        m2 = torch.from_numpy(np.array(exp_avg_sq, dtype=np.float32))
        new_steps = np.asarray(steps, dtype=np.int64) + 1
        _adam_(param, grad, m1, m2, new_steps, lr, beta1, beta2, eps, weight_decay)
        stored = self._to_storage(param, rows, new_steps)
        ok = (np.isfinite(stored.reshape(len(rows), -1)).all(axis=1)
              & torch.isfinite(m1.flatten(1)).all(dim=1).numpy()
              & torch.isfinite(m2.flatten(1)).all(dim=1).numpy())
        return ok, (stored, m1.numpy(), m2.numpy(), new_steps)

    def _to_storage(self, x: torch.Tensor, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return x.numpy()
        seed = int(self._meta.get("seed", 0))
        u = np.stack([np.random.default_rng([seed, int(r), int(s)]).random(x[0].numel(), np.float32)
                      for r, s in zip(rows, steps)]).reshape(x.shape)
        return _stochastic_round_fp16(x.numpy(), u)


def _adam_(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
           steps: np.ndarray, lr: float, beta1: float, beta2: float, eps: float,
           weight_decay: float) -> None:
    """torch.optim.Adam's single-tensor update, in its operation order, with a step count per row.

    ``steps`` (B,) already counts this update. Per-row scalars are float64 and rounded to float32
    where torch passes a Python scalar into a float32 kernel, so the result matches it bit for bit.
    """
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    s = steps.astype(np.float64)
    bias_correction1 = 1 - beta1 ** s
    bias_correction2 = 1 - beta2 ** s
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    view = (-1,) + (1,) * (param.dim() - 1)  # (B, 1, 1, 1, 1)
    denom = (exp_avg_sq.sqrt() / torch.from_numpy(bias_correction2_sqrt).float().view(view)).add_(eps)
    # addcdiv_(t1, t2, value=v) computes self + (v * t1) / t2 in float32.
    param.add_(exp_avg * torch.from_numpy(-step_size).float().view(view) / denom)


def _stochastic_round_fp16(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Round float32 to a float16 neighbour with probability by proximity (unbiased); u ~ U[0, 1)."""
    with np.errstate(all="ignore"):  # overflow to inf is detected by the caller, row by row
        near = x.astype(np.float16)
        err = x - near.astype(np.float32)  # exact: near is within a factor 2 of x
        toward = np.where(err > 0, np.float16(np.inf), np.float16(-np.inf)).astype(np.float16)
        other = np.nextafter(near, toward)
        gap = other.astype(np.float32) - near.astype(np.float32)
        p = np.where((err != 0) & np.isfinite(gap), err / gap, 0.0)
    return np.where(u < p, other, near)


def _cast_finite(x: torch.Tensor, dtype: str, rows: np.ndarray, ids: list[str], what: str) -> np.ndarray:
    """x in the storage dtype; raises naming the videos whose frames are (or overflow to) non-finite."""
    with np.errstate(over="ignore"):
        stored = x.numpy().astype(dtype)
    bad = ~np.isfinite(stored.reshape(len(rows), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: non-finite frames (after casting to {dtype}) for videos "
                         f"{[ids[int(r)] for r in rows[bad]][:10]}")
    return stored


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"frame bank dtype {dtype!r} is not supported; use one of {DTYPES} "
                         "(MOFConfig.bank_dtype)")


def _check_adam(lr: float, betas: tuple[float, float], eps: float,
                weight_decay: float) -> tuple[float, float]:
    beta1, beta2 = (float(b) for b in betas)
    if not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"frame Adam: lr must be finite and >= 0, got {lr}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"frame Adam: betas must lie in [0, 1), got {betas}")
    if not eps >= 0 or not weight_decay >= 0:
        raise ValueError(f"frame Adam: eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
    return beta1, beta2


def _as_float_tensor(x: torch.Tensor | np.ndarray, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape (B, K, 3, S, S) = {tuple(shape)}, got "
                         f"{tuple(t.shape)}")
    if not (t.is_floating_point()):
        raise TypeError(f"{what} must be floating point, got {t.dtype}")
    return t.to(device="cpu", dtype=torch.float32).contiguous()


def _auto_chunk(frame_shape: tuple[int, ...]) -> int:
    return max(1, _CHUNK_BYTES // (4 * int(np.prod(frame_shape))))


def _gen_name(g: int) -> str:
    return f"{_GEN_PREFIX}{g:06d}"


def _gen_entry(parent: int | None, origin: str, **info: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"parent": parent, "origin": origin, "complete": True, "sealed": False, "created": now,
            **info}


def _new_memmap(path: Path, dtype: str, shape: tuple[int, ...]) -> np.memmap:
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame bank here (create one with FrameBank.create)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: bank format {meta.get('format')!r}, this mofkit reads "
                         f"{FORMAT_VERSION}")
    return meta


def _write_meta(root: Path, meta: dict[str, Any]) -> None:
    tmp = root / f".{META_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(meta, fh)
        fh.flush()
        os.fsync(fh.fileno())
    crash_point("bank.meta.before_replace")
    os.replace(tmp, root / META_FILE)  # atomic: readers see the old or the new file, never half


def _remove_bank_files(root: Path) -> None:
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(_GEN_PREFIX):
            shutil.rmtree(p)
    for name in (META_FILE, ACCUM_FILE, COUNT_FILE):
        (root / name).unlink(missing_ok=True)
