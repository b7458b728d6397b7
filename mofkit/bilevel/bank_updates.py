"""How the compressed-frame bank changes: gradients, Adam steps and new generations.

:class:`BankUpdates` is the half of :class:`mofkit.bilevel.bank.FrameBank` that moves frames: the
once-per-epoch step (:meth:`~BankUpdates.accumulate` then :meth:`~BankUpdates.step_accumulated`,
streamed into a new generation), the per-batch step (:meth:`~BankUpdates.step_rows`, in place in an
unsealed generation) and :meth:`~BankUpdates.begin_generation` (the copy that keeps a sealed
generation intact). The arithmetic is in :mod:`mofkit.bilevel.adam`; the journal they write to in
:mod:`mofkit.bilevel.layout`. See the bank's module docstring for why the order of the writes
makes a crash at any point recoverable.

The gradient accumulator is one pair of files outside the generations, and a row's gradient there
counts only while its count is non-zero. :meth:`FrameBank.accumulate` raises a row's count before it
writes the row's gradient (adding to the stored one if the count was non-zero, overwriting it if it
was zero), so resetting the accumulator after a step, or in :meth:`FrameBank.restore` after a crash
between the two writes, only zeroes counts: no pass over the accumulator's gigabytes.
:func:`mofkit.faults.crash_point` marks the places where
``tests/test_crash.py`` kills a process (inside a streamed update, between its files and
``bank.json``, inside a per-batch step, a commit or a prune) and checks that the resumed run ends
with the same frames and moments, bit for bit, as one never interrupted.
"""
from __future__ import annotations

import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from mofkit.bilevel.adam import adam_rows_, check_adam, stochastic_round_fp16
from mofkit.bilevel.layout import (ACCUM_FILE, GENERATION_FILES, STEPS_FILE, gen_entry, gen_name,
                                   next_generation)
from mofkit.faults import crash_point
from mofkit.rowstore import NpyRows, contiguous_runs, new_memmap

_CHUNK_BYTES = 32 * 2**20  # per float32 array in streaming passes: under 1 GB of RAM in all

Progress = Callable[[int, int], None]


def auto_chunk(frame_shape: tuple[int, ...]) -> int:
    """Rows per streamed chunk: about ``_CHUNK_BYTES`` of float32 frames."""
    return max(1, _CHUNK_BYTES // (4 * int(np.prod(frame_shape))))


def finite_rows(x: torch.Tensor) -> np.ndarray:
    """Per row (first dimension), whether every value is finite (bool array).

    ``x - x`` is exactly zero where ``x`` is finite and NaN where it is not, and a sum of zeros is
    zero: two fast passes, where ``isfinite(x).all()`` makes a boolean tensor and is several times
    slower on large blocks.
    """
    if not len(x):
        return np.zeros(0, dtype=bool)
    return ((x - x).flatten(1).sum(dim=1) == 0).numpy()


def as_float_tensor(x, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 CPU tensor of exactly ``shape`` (B, K, 3, S, S); errors name ``what``."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape (B, K, 3, S, S) = {tuple(shape)}, got "
                         f"{tuple(t.shape)}")
    if not (t.is_floating_point()):
        raise TypeError(f"{what} must be floating point, got {t.dtype}")
    return t.to(device="cpu", dtype=torch.float32).contiguous()


def cast_finite(x: torch.Tensor, dtype: str, rows: np.ndarray, ids: list[str], what: str) -> np.ndarray:
    """x in the storage dtype; raises naming the videos whose frames are (or overflow to) non-finite."""
    with np.errstate(over="ignore"):
        stored = x.numpy().astype(dtype)
    bad = ~np.isfinite(stored.reshape(len(rows), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: non-finite frames (after casting to {dtype}) for videos "
                         f"{[ids[int(r)] for r in rows[bad]][:10]}")
    return stored


class BankUpdates:
    """Gradient accumulation, Adam steps and generation copies of a :class:`FrameBank`."""

    def accumulate(self, rows, grads: torch.Tensor | np.ndarray) -> list[int]:
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
            before = np.array(self._count[r])
            # Counts first: a row's accumulator holds gradient only while its count is non-zero, so
            # a row whose count is zero is overwritten, never read (no zeroing pass after a step),
            # and a crash in between leaves a counted row that restore's reset discards.
            self._count[r] = before + 1
            crash_point("bank.accumulate.mid")
            g = g.numpy()
            pos = 0
            for start, stop in contiguous_runs(r):
                n = stop - start
                block, counted = g[pos:pos + n], before[pos:pos + n] != 0
                if counted.any():
                    old = self._accum.read(start, stop)
                    old[~counted] = 0.0
                    block = old + block
                self._accum.write(start, block)
                pos += n
        return skipped

    def pending_rows(self) -> np.ndarray:
        """Rows that received gradient since the last :meth:`step_accumulated` (int64 array)."""
        return np.flatnonzero(np.asarray(self._count) != 0)

    def step_accumulated(self, lr: float, betas: tuple[float, float] = (0.5, 0.999),
                         eps: float = 1e-8, weight_decay: float = 0.0, *,
                         chunk: int | None = None, progress: Progress | None = None,
                         max_change: float | None = None, eps_scale: str = "absolute") -> dict[str, Any]:
        """One Adam step, with the accumulated gradient, on every row that received gradient.

        This is the reference's once-per-epoch frame update. It streams the current generation in
        chunks into a new generation directory, switches ``bank.json`` to it atomically once
        that is complete, then resets the accumulator. The old generation is not modified. Rows
        with no gradient keep their frames, moments and step count. Nothing is written (and no
        generation made) when no row has gradient.

        The stream is a pipeline: a reader thread fetches the next chunk (old frames, moments,
        steps and accumulated gradient, one positional read per array) while the Adam arithmetic
        runs on this one in place, and a writer thread writes and fsyncs the previous one, so the
        update runs at about the disk's speed (``benchmarks/bench_bank.py``). At most six chunks are in
        memory at once.

        Args:
            lr: learning rate of this step (see :func:`mofkit.bilevel.adam.step_lr`).
            betas: Adam's (beta1, beta2); the reference uses (0.5, 0.999).
            eps: Adam's epsilon, added after the square root of the bias-corrected second moment.
            weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.
            chunk: rows per streamed chunk; None: about 32 MB per float32 array.
            progress: called as ``progress(rows_done, num_videos)`` after each chunk.
            max_change: cap on each stored value's change in this step (None: none).
            eps_scale: ``absolute`` (torch's Adam) or ``row`` (``eps`` relative to each row's
                gradient scale: see :mod:`mofkit.bilevel.adam`).

        Returns:
            ``generation`` (new), ``parent``, ``lr``, ``rows_updated``, ``rows_skipped`` (their
            accumulated gradient or the resulting frames or moments were non-finite; they keep
            their old state), ``skipped_rows`` (list), ``mean_abs_change`` and ``max_abs_change``
            (of the stored frames, over updated rows).
        """
        beta1, beta2 = check_adam(lr, betas, eps, weight_decay, eps_scale)
        pending = self.pending_rows()
        stats: dict[str, Any] = {"generation": self.generation, "parent": self.generation,
                                 "lr": float(lr), "rows_updated": 0, "rows_skipped": 0,
                                 "skipped_rows": [], "mean_abs_change": 0.0, "max_abs_change": 0.0}
        if not len(pending):
            return stats
        self._flush()
        old_g, new_g = self.generation, next_generation(self.directory)
        src_dir, gdir = self.directory / gen_name(old_g), self.directory / gen_name(new_g)
        gdir.mkdir()
        v, shape = self.num_videos, self._frame_shape
        for name, dtype in zip(GENERATION_FILES, (self.dtype, "float32", "float32", "int64")):
            new_memmap(gdir / name, dtype, (v, *shape) if name != STEPS_FILE else (v,))  # sparse
        count = np.array(self._count)
        step = chunk or auto_chunk(shape)
        spans = [(a, min(v, a + step)) for a in range(0, v, step)]
        src = [NpyRows(src_dir / name) for name in GENERATION_FILES]
        dst = [NpyRows(gdir / name, writable=True) for name in GENERATION_FILES]
        accum = NpyRows(self.directory / ACCUM_FILE)

        def load(a: int, b: int):
            arrays = [f.read(a, b) for f in src]  # frames, exp_avg, exp_avg_sq, steps
            local = np.flatnonzero(count[a:b] != 0)
            g = np.empty((len(local), *shape), np.float32)
            pos = 0
            for start, stop in contiguous_runs(a + local):
                accum.read(start, stop, out=g[pos:pos + stop - start])
                pos += stop - start
            return arrays, local, torch.from_numpy(g)

        def store(a: int, arrays: list[np.ndarray]) -> None:
            for f, arr in zip(dst, arrays):
                f.write(a, arr)
                f.sync()  # on the disk chunk by chunk, overlapped with the next chunks' work

        skipped: list[int] = []
        updated, abs_sum, abs_max = 0, 0.0, 0.0
        try:
            with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
                ahead = deque(reader.submit(load, a, b) for a, b in spans[:2])
                writes: deque = deque()
                for i, (a, b) in enumerate(spans):
                    arrays, local, g = ahead.popleft().result()
                    if i + 2 < len(spans):
                        ahead.append(reader.submit(load, *spans[i + 2]))
                    if len(local):
                        res = self._adam_chunk(a, arrays, local, g, src, lr, beta1, beta2, eps,
                                               weight_decay, max_change, eps_scale)
                        skipped += res[0]
                        updated += res[1]
                        abs_sum += res[2]
                        abs_max = max(abs_max, res[3])
                    writes.append((b, writer.submit(store, a, arrays)))
                    while writes and (len(writes) > 2 or writes[0][1].done()):
                        done_b, fut = writes.popleft()
                        fut.result()
                        crash_point("bank.step_accumulated.chunk")
                        if progress is not None:
                            progress(done_b, v)
                for done_b, fut in writes:
                    fut.result()
                    crash_point("bank.step_accumulated.chunk")
                    if progress is not None:
                        progress(done_b, v)
        finally:
            for f in (*src, *dst, accum):
                f.close()
        crash_point("bank.step_accumulated.written")
        per_row = int(np.prod(shape))
        stats.update(generation=new_g, rows_updated=updated, rows_skipped=len(skipped),
                     skipped_rows=sorted(skipped),
                     mean_abs_change=abs_sum / max(1, updated * per_row), max_abs_change=abs_max)
        info = {k: stats[k] for k in ("lr", "rows_updated", "rows_skipped", "mean_abs_change",
                                      "max_abs_change")}

        def switch(m: dict[str, Any]) -> None:
            m["generations"][str(new_g)] = gen_entry(old_g, "step_accumulated", **info)
            m["current"] = new_g

        self._update_meta(switch)
        self._open_generation(new_g)
        crash_point("bank.step_accumulated.switched")
        self._zero_accumulator(pending)
        return stats

    def _adam_chunk(self, a: int, arrays: list[np.ndarray], local: np.ndarray, g: torch.Tensor,
                    src: list, lr: float, beta1: float, beta2: float, eps: float,
                    weight_decay: float, max_change: float | None, eps_scale: str = "absolute"):
        """Adam, in place in one streamed chunk's arrays, on its rows ``a + local`` with gradient.

        Returns (skipped rows, rows updated, sum and max of the stored frames' absolute change).
        """
        frames, m1, m2, steps = arrays
        fin = finite_rows(g)
        skipped = (a + local[~fin]).tolist()
        if not fin.all():
            local, g = local[fin], g[torch.from_numpy(fin)]
        if not len(local):
            return skipped, 0, 0.0, 0.0
        full = len(local) == len(frames)  # the usual case: every row of the chunk has gradient
        pick = (lambda x: x) if full else (lambda x: x[local])  # views, or copies put back below
        f = pick(frames)
        old = f.astype(np.float32)  # a copy: the change, and the rows that fail
        # float32 frames and the moments are updated in place in the chunk's (or picked) arrays
        ok, (stored, e1, e2, new_steps) = self._adam_rows(
            a + local, f, pick(m1), pick(m2), pick(steps), g, lr, beta1, beta2, eps, weight_decay,
            max_change, eps_scale)
        if not ok.all():  # keep the old state of those rows: frames from the copy, moments re-read
            bad = np.flatnonzero(~ok)
            stored[bad] = old[bad].astype(stored.dtype)
            for i in bad:
                r = a + int(local[i])
                e1[i], e2[i] = src[1].read(r, r + 1)[0], src[2].read(r, r + 1)[0]
                new_steps[i] -= 1
            skipped += (a + local[bad]).tolist()
        change = (torch.from_numpy(stored[ok]).float() - torch.from_numpy(old[ok])).abs_()
        abs_sum = float(change.sum(dtype=torch.float64)) if change.numel() else 0.0
        abs_max = float(change.max()) if change.numel() else 0.0
        if full:
            if not np.shares_memory(stored, frames):  # float16: a new array
                frames[...] = stored
            steps[...] = new_steps
        else:
            frames[local], m1[local], m2[local], steps[local] = stored, e1, e2, new_steps
        return skipped, int(ok.sum()), abs_sum, abs_max

    def begin_generation(self, *, progress: Progress | None = None) -> None:
        """Copy the current generation to a new, unsealed one that this handle then modifies.

        For per-batch updates: :meth:`step_rows` and ``write`` call it by themselves when the
        generation is sealed, so calling it explicitly is only needed to choose when the copy
        happens (for example on the main process before the others open the bank).

        Args:
            progress: called as ``progress(files_done, 4)`` after each copied file.
        """
        self._flush()
        old_g, new_g = self.generation, next_generation(self.directory)
        src, gdir = self.directory / gen_name(old_g), self.directory / gen_name(new_g)
        gdir.mkdir()
        for i, name in enumerate(GENERATION_FILES):
            shutil.copyfile(src / name, gdir / name)  # kernel-side copy, never the whole file in RAM
            with open(gdir / name, "rb+") as fh:
                os.fsync(fh.fileno())
            crash_point("bank.begin_generation.copying")
            if progress is not None:
                progress(i + 1, len(GENERATION_FILES))
        crash_point("bank.begin_generation.copied")

        def switch(m: dict[str, Any]) -> None:
            m["generations"][str(new_g)] = gen_entry(old_g, "begin_generation")
            m["current"] = new_g

        self._update_meta(switch)
        self._open_generation(new_g)

    def step_rows(self, rows, grads: torch.Tensor | np.ndarray, lr: float,
                  betas: tuple[float, float] = (0.5, 0.999), eps: float = 1e-8,
                  weight_decay: float = 0.0, max_change: float | None = None,
                  eps_scale: str = "absolute") -> list[int]:
        """Per-batch Adam step on some rows, in place in the current (unsealed) generation.

        A row repeated in ``rows`` takes one step with the sum of its gradients. On a sealed
        generation this first calls :meth:`begin_generation`. The accumulator is not touched.

        Args:
            rows: row indices.
            grads: (B, K, 3, S, S) gradients of those rows' frames (any float dtype and device).
            lr: learning rate (see :func:`mofkit.bilevel.adam.step_lr`).
            betas: Adam's (beta1, beta2).
            eps: Adam's epsilon.
            weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.
            max_change: cap on each value's change in this step (None: none).
            eps_scale: ``absolute`` (torch's Adam) or ``row`` (``eps`` relative to each row's
                gradient scale: see :mod:`mofkit.bilevel.adam`).

        Returns:
            Sorted rows left unchanged because their gradient, or the resulting frames or moments,
            were non-finite.
        """
        beta1, beta2 = check_adam(lr, betas, eps, weight_decay, eps_scale)
        r, g, skipped = self._prepare_grads(rows, grads, "step_rows")
        if not len(r):
            return skipped
        self._ensure_writable()
        ok, (f, m1, m2, st) = self._adam_rows(
            r, np.asarray(self._frames[r]), np.asarray(self._exp_avg[r]),
            np.asarray(self._exp_avg_sq[r]), np.asarray(self._steps[r]), g,
            lr, beta1, beta2, eps, weight_decay, max_change, eps_scale)
        keep = r[ok]
        if len(keep):
            self._frames[keep] = f[ok]
            crash_point("bank.step_rows.mid")
            self._exp_avg[keep] = m1[ok]
            self._exp_avg_sq[keep] = m2[ok]
            self._steps[keep] = st[ok]
        return sorted(skipped + r[~ok].tolist())

    # -- private -------------------------------------------------------------------------------

    def _zero_accumulator(self, rows: np.ndarray) -> None:
        """Reset the accumulator of ``rows``: their counts to zero (an uncounted row's gradient is
        never read, and the next :meth:`accumulate` overwrites it)."""
        self._count[rows] = 0
        self._count.flush()

    def _prepare_grads(self, rows, grads: torch.Tensor | np.ndarray,
                       what: str) -> tuple[np.ndarray, torch.Tensor, list[int]]:
        """Sorted unique finite rows, their summed float32 gradients, and the skipped rows."""
        r = self._rows(rows, what)
        g = as_float_tensor(grads, f"FrameBank.{what}({self.directory}): grads",
                            (len(r), *self._frame_shape))
        finite = finite_rows(g)
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
                   max_change: float | None = None, eps_scale: str = "absolute",
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Adam on row blocks; returns (rows whose results are all finite, new stored arrays).

        Writable float32 arrays are updated in place (no copy: the streamed step hands in its
        chunk's buffers); others are copied first.
        """
        param = torch.from_numpy(np.asarray(frames, dtype=np.float32))
        m1 = torch.from_numpy(np.asarray(exp_avg, dtype=np.float32))
        m2 = torch.from_numpy(np.asarray(exp_avg_sq, dtype=np.float32))
        new_steps = np.asarray(steps, dtype=np.int64) + 1
        adam_rows_(param, grad, m1, m2, new_steps, lr, beta1, beta2, eps, weight_decay, max_change,
                   eps_scale)
        stored = self._to_storage(param, rows, new_steps)
        ok = finite_rows(torch.from_numpy(stored)) & finite_rows(m1) & finite_rows(m2)
        return ok, (stored, m1.numpy(), m2.numpy(), new_steps)

    def _to_storage(self, x: torch.Tensor, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return x.numpy()
        seed, n = int(self._meta.get("seed", 0)), x[0].numel()
        # random bits seeded by (bank seed, row, that row's Adam step): a resumed run rounds alike
        bits = np.stack([np.random.default_rng([seed, int(r), int(s)]).bit_generator.random_raw(
            (n + 1) // 2).view(np.int32)[:n] for r, s in zip(rows, steps)]).reshape(x.shape)
        return stochastic_round_fp16(x.contiguous(), torch.from_numpy(bits))
