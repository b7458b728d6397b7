"""The compressed-frame bank: K learnable frames per training video, on disk, with their Adam state.

MOF learns, for every training video, K frames ``(K, 3, S, S)`` in the model's normalised input
space (pixels after resize, crop and normalisation), initialised from K uniformly sampled frames and
never clamped (shared MOF.md, "What the compressed frames are"). The reference keeps them as CPU
fp32 tensors in a Python list and loses them (and their optimiser state) on resume. Here they live
in memory-mapped ``.npy`` files: a batch reads and writes only its own rows, so RAM holds a batch,
not the bank.

The files are listed in :mod:`mofkit.bilevel.layout`; why the moments are float32 and float16
frames are stochastically rounded, in :mod:`mofkit.bilevel.adam`.

Generations (copy-on-write) make the bank crash-consistent with the model checkpoint.
:meth:`FrameBank.commit` *seals* the current generation and returns the small dict the training
checkpoint stores; a sealed generation is never modified again. :meth:`FrameBank.step_accumulated`
(the reference's once-per-epoch Adam step) streams the current generation into a new directory and
only then switches ``bank.json`` to it (temporary file + ``os.replace``). Per-batch updates
(:meth:`FrameBank.step_rows`) and :meth:`FrameBank.write` on a sealed generation first copy it to a
new one (:meth:`FrameBank.begin_generation`). A crash between a bank update and the next checkpoint
therefore leaves the generation that the last checkpoint names intact, and
:meth:`FrameBank.restore` reopens exactly that one: the frames are as they were when the model
checkpoint was written. :meth:`FrameBank.prune` deletes generations nobody references. The
gradient accumulator and the crash tests: see :mod:`mofkit.bilevel.bank_updates`.

In multi-process runs one process (the main one) creates, steps, begins generations and commits;
the others write only their own rows (:meth:`accumulate`, or :meth:`step_rows` once the main process
has begun an unsealed generation) and :meth:`FrameBank.open` the bank again whenever the main
process changed the generation. A handle does not see another process's :meth:`commit`, and two
processes beginning generations on their own would fork the bank; so with per-batch updates the
main process calls :meth:`begin_generation` right after each :meth:`commit`, and the others reopen
after a barrier.

The bank is three modules: this one (the store: layout, generations opened, rows read and
written, commits and prunes), :mod:`mofkit.bilevel.bank_updates` (gradients, Adam steps and
generation copies) and :mod:`mofkit.bilevel.layout` (``bank.json``); the arithmetic is in
:mod:`mofkit.bilevel.adam`, the row store it shares with the frame cache in :mod:`mofkit.rowstore`.
No logging and no printing; long operations take an optional ``progress(done, total)`` callable.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mofkit.bilevel.adam import step_lr  # noqa: F401  (part of the bank's public API)
from mofkit.bilevel.bank_updates import (BankUpdates, Progress, as_float_tensor, auto_chunk,
                                         cast_finite)
from mofkit.bilevel.layout import (ACCUM_FILE, COUNT_FILE, DTYPES, FORMAT_VERSION, META_FILE,
                                   bank_nbytes, check_new_bank, create_bank_files, gen_entry,
                                   generation_dirs, open_generation, read_meta, remove_bank_files,
                                   remove_stale_temporaries, update_meta, write_meta)
from mofkit.faults import crash_point
from mofkit.rowstore import NpyRows, RowIndex, check_rows

__all__ = ["FrameBank", "bank_nbytes", "step_lr", "DTYPES"]

RowsLike = Sequence[int] | np.ndarray | torch.Tensor | int


class FrameBank(BankUpdates):
    """K learnable frames per training video in memory-mapped files, with Adam state and generations.

    Build one with :meth:`create`, :meth:`open` or :meth:`restore`; see the module docstring for the
    layout and why generations exist. Rows are the positions of the videos in ``video_ids``.
    """

    def __init__(self, directory: str | Path, meta: dict[str, Any], generation: int):
        self.directory = Path(directory).resolve()
        self._meta = meta
        self._ids: list[str] = list(meta["video_ids"])
        self._index = RowIndex(self._ids, lambda v: (
            f"video id {v!r} is not in the frame bank {self.directory} ({self.num_videos} training "
            f"videos, e.g. {self._ids[:3]}); only training videos have compressed frames"))
        self._frame_shape = (int(meta["num_frames"]), 3, int(meta["image_size"]),
                             int(meta["image_size"]))
        self._open_generation(generation)
        self._accum = NpyRows(self.directory / ACCUM_FILE, writable=True)  # read in streamed blocks
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
        ids = check_new_bank(directory, video_ids, num_frames, image_size, dtype, seed)
        root = Path(directory).resolve()
        if (root / META_FILE).exists():
            if not overwrite:
                raise FileExistsError(f"FrameBank.create: {root} already holds a bank; use "
                                      "FrameBank.open / restore, or pass overwrite=True")
            remove_bank_files(root)
        v, shape = len(ids), (int(num_frames), 3, int(image_size), int(image_size))
        frames = create_bank_files(root, v, shape, dtype)  # generation 0's frames, writable
        if init is not None:
            step = chunk or auto_chunk(shape)
            for a in range(0, v, step):
                rows = np.arange(a, min(v, a + step), dtype=np.int64)
                x = as_float_tensor(init(rows), f"FrameBank.create({root}): init({a}:{rows[-1] + 1})",
                                     (len(rows), *shape))
                stored = cast_finite(x, dtype, rows, ids, f"FrameBank.create({root}): init")
                frames[a:a + len(rows)] = stored
                if progress is not None:
                    progress(a + len(rows), v)
        frames.flush()
        del frames
        meta = {"format": FORMAT_VERSION, "video_ids": ids, "num_frames": shape[0],
                "image_size": shape[2], "dtype": dtype, "seed": int(seed), "current": 0,
                "generations": {"0": gen_entry(None, "create")}}
        crash_point("bank.create.before_meta")
        write_meta(root, meta)  # last: a bank.json exists only for a complete bank
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
        meta = read_meta(root)
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
    def torch_dtype(self) -> torch.dtype:
        """The frames' storage as a torch dtype: a host buffer of it takes a read as stored (a
        float16 bank moves half the bytes and is widened on the device)."""
        return torch.float16 if self.dtype == "float16" else torch.float32

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
        meta = read_meta(self.directory)
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
        return self._index.row_of(video_id)

    def rows_of(self, video_ids: Sequence[str]) -> np.ndarray:
        """Rows of several training videos (int64 array), see :meth:`row_of`."""
        return self._index.rows_of(video_ids)

    def __repr__(self) -> str:
        return (f"FrameBank({str(self.directory)!r}, videos={self.num_videos}, "
                f"frames={self._frame_shape}, dtype={self.dtype}, generation={self.generation}"
                f"{', sealed' if self._sealed else ''})")

    # -- reading and writing rows --------------------------------------------------------------

    def read(self, rows: RowsLike, out: torch.Tensor | None = None,
             at: np.ndarray | None = None) -> torch.Tensor:
        """Frames of some rows, read from disk (only those rows).

        Each row is copied once, from the page cache straight into ``out`` (a float16 bank is
        widened in the same pass), so a reader thread can fill a pinned buffer for the next base
        step while this one runs (``numpy`` copies without holding the GIL).

        Args:
            rows: row indices (see :meth:`row_of`).
            out: optional CPU tensor to fill, C-contiguous, of shape (M, K, 3, S, S) with M >= B
                (e.g. pinned memory), float32 or the bank's own dtype (a float16 bank read as it
                is stored: half the bytes to move, widened later, e.g. on the GPU); None allocates
                a float32 one of B rows.
            at: optional (B,) positions in ``out`` of the rows (default ``0 .. B-1``).

        Returns:
            ``out`` (or a new (B, K, 3, S, S) float32 tensor), rows in the order of ``rows``.
        """
        r = self._rows(rows, "read")
        if out is None:
            out = torch.empty((len(r), *self._frame_shape), dtype=torch.float32)
        elif (out.dtype not in (torch.float32, getattr(torch, self.dtype)) or out.device.type != "cpu"
              or not out.is_contiguous() or tuple(out.shape[1:]) != self._frame_shape):
            raise ValueError(f"FrameBank.read({self.directory}): out must be a contiguous float32 (or "
                             f"{self.dtype}) CPU tensor of shape (M, "
                             f"{', '.join(map(str, self._frame_shape))}), got {out.dtype} "
                             f"{tuple(out.shape)} on {out.device}")
        at = np.arange(len(r)) if at is None else np.asarray(at, dtype=np.int64)
        if len(at) != len(r) or (len(at) and not 0 <= at.min() <= at.max() < len(out)):
            raise ValueError(f"FrameBank.read({self.directory}): at must hold one position in out "
                             f"(0 .. {len(out) - 1}) per row, got {len(at)} for {len(r)} rows")
        dst = out.numpy()
        if dst.dtype == self._frames.dtype and isinstance(self._frames, np.memmap):
            # one positional read per row, straight into out: no page faults of a mapping to pay
            with NpyRows(self._frames.filename) as f:
                for i, row in zip(at.tolist(), r.tolist()):
                    f.read(row, row + 1, out=dst[i:i + 1])
        else:
            for i, row in zip(at.tolist(), r.tolist()):
                np.copyto(dst[i], self._frames[row], casting="same_kind")
        return out

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
        x = as_float_tensor(frames, f"FrameBank.write({self.directory}): frames",
                             (len(r), *self._frame_shape))
        stored = cast_finite(x, self.dtype, r, self._ids, f"FrameBank.write({self.directory})")
        self._ensure_writable()
        self._frames[r] = stored

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
        meta = read_meta(self.directory)
        keep_all = {int(g) for g in keep} | {self.generation, int(meta["current"])}
        on_disk = generation_dirs(self.directory)
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
        remove_stale_temporaries(self.directory)
        return gone

    def close(self) -> None:
        """Flush and release the memory maps (the handle is unusable afterwards)."""
        self._flush()
        if self._accum is not None:
            self._accum.close()
        for name in ("_frames", "_exp_avg", "_exp_avg_sq", "_steps", "_accum", "_count"):
            setattr(self, name, None)

    # -- private -------------------------------------------------------------------------------

    def _open_generation(self, g: int) -> None:
        arrays, self._sealed = open_generation(self.directory, self._meta, g,
                                               (self.num_videos, *self._frame_shape), self.dtype)
        self._generation = g
        self._frames, self._exp_avg, self._exp_avg_sq, self._steps = arrays

    def _ensure_writable(self) -> None:
        if self._sealed:
            self.begin_generation()

    def _flush(self) -> None:
        for arr in (self._frames, self._exp_avg, self._exp_avg_sq, self._steps, self._count):
            if isinstance(arr, np.memmap) and arr.mode != "r":
                arr.flush()

    def _update_meta(self, change: Callable[[dict[str, Any]], None]) -> None:
        self._meta = update_meta(self.directory, change)

    def _ids_digest(self) -> str:
        return self._index.digest()

    def _rows(self, rows: RowsLike, what: str) -> np.ndarray:
        return check_rows(rows, self.num_videos, f"FrameBank.{what}({self.directory})", "the bank")
