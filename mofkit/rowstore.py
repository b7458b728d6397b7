"""Rows on disk: what the frame cache and the compressed-frame bank share.

Both keep one row per video in memory-mapped ``.npy`` files next to a JSON file that names the
videos and the format version. This module holds the pieces they have in common, and nothing
else: the id -> row lookup, row-index checks, new memory maps (sparse until written), and JSON
written atomically (a temporary file renamed over the target, so a reader sees the old file or the
new one, never half of one), and positional reads and writes of whole rows (:class:`NpyRows`) for
streaming passes, which move large blocks with one system call each instead of faulting a memory
map in page by page. It imports nothing from the rest of mofkit but the fault-injection
hook, so ``data`` and ``bilevel`` can both build on it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mofkit.faults import crash_point

RowsLike = Sequence[int] | np.ndarray | int  # torch tensors too (anything with .numpy())


class RowIndex:
    """Video id -> row, in the order the rows are stored.

    Args:
        ids: the videos, one per row, in row order.
        missing: ``missing(video_id)`` -> the message of the KeyError for an unknown id.
    """

    def __init__(self, ids: Iterable[str], missing: Callable[[str], str]):
        self.ids: list[str] = [str(v) for v in ids]
        self._row = {v: i for i, v in enumerate(self.ids)}
        self._missing = missing

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._row

    def row_of(self, video_id: str) -> int:
        """The row of a video; KeyError with the owner's message when it has none."""
        try:
            return self._row[video_id]
        except KeyError:
            raise KeyError(self._missing(video_id)) from None

    def rows_of(self, video_ids: Iterable[str]) -> np.ndarray:
        """int64 rows of several videos (see :meth:`row_of`)."""
        return np.asarray([self.row_of(v) for v in video_ids], dtype=np.int64)

    def digest(self) -> str:
        """SHA-1 of the ids in order: two stores hold the same rows iff their digests match."""
        return hashlib.sha1("\n".join(self.ids).encode()).hexdigest()


def check_rows(rows, num_rows: int, where: str, owner: str = "the store") -> np.ndarray:
    """Row indices as a 1-D int64 array, each in ``[0, num_rows)``.

    Args:
        rows: an int, a sequence, a numpy array or a torch tensor of integers.
        num_rows: how many rows the store has.
        where: the caller, for messages (e.g. ``"FrameBank.read(/runs/x/bank)"``).
        owner: what holds the rows, for messages (``"the bank"``).

    Raises:
        TypeError: not integers, or not 1-D.
        IndexError: a row outside the store.
    """
    if hasattr(rows, "detach"):
        rows = rows.detach().cpu().numpy()
    r = np.asarray(rows)
    if r.ndim == 0:
        r = r.reshape(1)
    if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise TypeError(f"{where}: rows must be a 1-D sequence of integer row indices (see row_of), "
                        f"got dtype {r.dtype} shape {r.shape}")
    r = r.astype(np.int64)
    bad = r[(r < 0) | (r >= num_rows)]
    if bad.size:
        raise IndexError(f"{where}: rows {bad[:10].tolist()} out of range; {owner} has rows "
                         f"0..{num_rows - 1}")
    return r


def contiguous_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique rows as ``[(start, stop), ...]`` runs of consecutive rows."""
    r = np.asarray(rows, dtype=np.int64)
    if not r.size:
        return []
    cut = np.flatnonzero(np.diff(r) != 1) + 1
    starts, stops = np.r_[r[0], r[cut]], np.r_[r[cut - 1] + 1, r[-1] + 1]
    return list(zip(starts.tolist(), stops.tolist()))


class NpyRows:
    """Whole rows of a C-ordered ``.npy`` file, read and written at their offsets, no memory map.

    A memory map moves data one page fault at a time; a streaming pass over gigabytes (the frame
    bank's Adam step) reads and writes blocks of tens of megabytes with one call each instead.
    Reads and writes go through the page cache, so they see, and are seen by, memory maps of the
    same file. Where the platform has them, reads and writes are positional (``preadv``,
    ``pwrite``), so threads and forked processes may share a handle.

    Args:
        path: an existing ``.npy`` file (see :func:`new_memmap`).
        writable: open for writing too.
    """

    def __init__(self, path: str | os.PathLike, writable: bool = False):
        self.path = Path(path)
        self._fh = open(self.path, "r+b" if writable else "rb", buffering=0)
        try:
            major, minor = np.lib.format.read_magic(self._fh)
            read_header = (np.lib.format.read_array_header_1_0 if major == 1
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(self._fh)
        except Exception:
            self._fh.close()
            raise
        if fortran or not shape:
            self._fh.close()
            raise ValueError(f"{self.path}: rows need a C-ordered array of at least one dimension")
        self.offset = self._fh.tell()
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start:stop`` (into ``out`` if given: C-contiguous, of the file's dtype and shape)."""
        n = stop - start
        if out is None:
            out = np.empty((n, *self.row_shape), self.dtype)
        if out.dtype != self.dtype or out.shape != (n, *self.row_shape) or not out.flags.c_contiguous:
            raise ValueError(f"{self.path}: read({start}, {stop}) needs a C-contiguous {self.dtype} "
                             f"buffer of shape {(n, *self.row_shape)}, got {out.dtype} {out.shape}")
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos, done = self.offset + start * self.row_bytes, 0
        while done < len(view):
            got = self._pread(view[done:], pos + done)
            if not got:
                raise EOFError(f"{self.path}: rows {start}:{stop} run past the end of the file")
            done += got
        return out

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (of the file's dtype) at rows ``start:start + len(rows)``."""
        a = np.ascontiguousarray(rows, dtype=self.dtype)
        if a.shape[1:] != self.row_shape or start < 0 or start + len(a) > self.shape[0]:
            raise ValueError(f"{self.path}: write({start}, {a.shape}) does not fit rows of "
                             f"{self.row_shape} in {self.shape[0]}")
        view = memoryview(a.reshape(-1).view(np.uint8))
        pos, done = self.offset + start * self.row_bytes, 0
        while done < len(view):
            done += self._pwrite(view[done:], pos + done)

    def _pread(self, view: memoryview, pos: int) -> int:
        if hasattr(os, "preadv"):  # positional: no shared file offset, safe across threads and forks
            return os.preadv(self._fh.fileno(), [view], pos)
        self._fh.seek(pos)
        return self._fh.readinto(view)

    def _pwrite(self, view: memoryview, pos: int) -> int:
        if hasattr(os, "pwrite"):
            return os.pwrite(self._fh.fileno(), view, pos)
        self._fh.seek(pos)
        return self._fh.write(view)

    def sync(self) -> None:
        """Write this file's dirty pages to the disk and wait for it (fsync)."""
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "NpyRows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def new_memmap(path: str | os.PathLike, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` memory map, zero-filled; untouched regions stay sparse on disk."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=shape)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, crash_name: str | None = None) -> None:
    """Write JSON to a temporary file next to ``path``, fsync it, rename it over ``path``.

    Args:
        path: the target.
        obj: JSON-serialisable.
        crash_name: a :func:`mofkit.faults.crash_point` to pass between the write and the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if crash_name:
        crash_point(crash_name)
    os.replace(tmp, path)  # atomic: readers see the old or the new file, never half


def read_json_versioned(path: str | os.PathLike, key: str, version: int, *, missing: str,
                        stale: str) -> dict:
    """A JSON file whose ``key`` must equal ``version``.

    Args:
        path: the file.
        key: the name of its version field.
        version: the version this code reads.
        missing: the FileNotFoundError message when the file is absent.
        stale: what to do about another version, appended to the ValueError's message.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing)
    meta = json.loads(path.read_text())
    if meta.get(key) != version:
        raise ValueError(f"{path}: format version {meta.get(key)!r}, this mofkit reads {version}; "
                         f"{stale}")
    return meta
