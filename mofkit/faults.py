"""Fault injection for tests: kill this process at a named point of a checkpoint or bank write.

Checkpoint writing (``mofkit.train.checkpoint``) and frame-bank updates (``mofkit.bilevel.bank``)
call :func:`crash_point` at the places where a crash is most likely to break a resume: a temporary
file written in part, a new bank generation half streamed, ``bank.json`` switched but the
accumulator not yet zeroed, and so on. Normally the call does nothing. When the environment variable
``MOFKIT_CRASH_AT`` names a point, as ``name`` (its first hit) or ``name:N`` (its N-th hit in this
process), that hit sends SIGKILL to the process itself: no ``finally`` block or ``atexit`` handler
runs and unflushed Python file buffers are lost, as when a machine loses power, except that the page
cache survives (what ``np.memmap`` and ``write`` handed to the kernel is kept). If
``MOFKIT_CRASH_LOG`` names a file, one line ``<name> <N>`` is appended to it first, so a test can
tell that the kill landed where it meant it to. For a write made inside a library call
(``torch.save``), :class:`MidWriteCrash` wraps the file and :func:`armed` says when to wrap it.

The environment is read once per process, at the first call (a forked child keeps what its parent
read); unset, a call costs one global lookup and one comparison (about 20 ns). The names are
listed in :data:`POINTS`.

This is a hook for tests (``tests/test_crash.py`` kills training runs and checks that resuming them
ends bit for bit where an uninterrupted run does); a real run never sets the variable. This module
imports nothing from the rest of mofkit.
"""
from __future__ import annotations

import os
import signal

ENV_AT = "MOFKIT_CRASH_AT"
ENV_LOG = "MOFKIT_CRASH_LOG"

POINTS = (
    # mofkit.train.checkpoint.atomic_torch_save / atomic_write_text
    "checkpoint.save.partial",  # the temporary file about half written (see MidWriteCrash)
    "checkpoint.save.before_rename",  # temporary file complete and fsynced, target not replaced
    "checkpoint.save.renamed",  # target replaced, stale temporary files not yet removed
    "text.before_rename",  # atomic_write_text: temporary file written, target not replaced
    # mofkit.bilevel.bank.FrameBank
    "bank.create.before_meta",  # generation 0 filled, bank.json not yet written
    "bank.accumulate.mid",  # the rows' gradient counts raised, their gradients not yet added
    "bank.step_accumulated.chunk",  # after each chunk of rows streamed into the new generation
    "bank.step_accumulated.written",  # new generation complete on disk, bank.json not switched
    "bank.step_accumulated.switched",  # bank.json names the new generation, accumulator not zeroed
    "bank.begin_generation.copying",  # after each file copied into the new generation
    "bank.begin_generation.copied",  # new generation complete on disk, bank.json not switched
    "bank.step_rows.mid",  # the rows' new frames written, their Adam moments and steps not yet
    "bank.commit.before_seal",  # flushed, bank.json not yet marking the generation sealed
    "bank.commit.sealed",  # bank.json marks the generation sealed, no checkpoint names it yet
    "bank.prune.dropped",  # bank.json no longer lists the old generations, their folders remain
    "bank.prune.removed",  # after each old generation folder deleted
    "bank.meta.before_replace",  # any bank.json update: temporary file fsynced, not yet renamed
)

_UNREAD = object()
_target: object = _UNREAD  # (name, n) once read; None when no crash is asked for
_hits = 0


def crash_point(name: str) -> None:
    """Fault-injection hook for tests: SIGKILL this process if ``MOFKIT_CRASH_AT`` names this hit.

    Args:
        name: one of :data:`POINTS`.
    """
    global _target, _hits
    if _target is None:
        return
    if _target is _UNREAD:
        _target = _parse(os.environ.get(ENV_AT, ""))
        if _target is None:
            return
    want, n = _target  # type: ignore[misc]
    if name != want:
        return
    _hits += 1
    if _hits < n:
        return
    log = os.environ.get(ENV_LOG)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{name} {_hits}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """Whether ``MOFKIT_CRASH_AT`` names ``name``, to set up a costlier hook only when it can fire."""
    global _target
    if _target is _UNREAD:
        _target = _parse(os.environ.get(ENV_AT, ""))
    return _target is not None and _target[0] == name  # type: ignore[index]


class MidWriteCrash:
    """A binary file wrapper that reaches crash point ``name`` once, in the middle of a write.

    After the write that brings the bytes written to ``after`` or more, it flushes the file (so the
    file on disk really is cut there) and calls :func:`crash_point`. Wrap a file with it only when
    :func:`armed` says so.

    Args:
        f: the open binary file.
        name: the crash point (one of :data:`POINTS`).
        after: bytes to write first (at least one write is always made).
    """

    def __init__(self, f, name: str, after: int):
        self._f, self._name, self._after, self._written = f, name, after, 0

    def write(self, data) -> int:
        n = self._f.write(data)
        before, self._written = self._written, self._written + n
        if before < max(1, self._after) <= self._written:
            self._f.flush()
            crash_point(self._name)
        return n

    def flush(self) -> None:
        self._f.flush()


def _parse(spec: str) -> tuple[str, int] | None:
    spec = spec.strip()
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV_AT}={spec!r}: unknown crash point {name!r}; known points: "
                         f"{list(POINTS)}")
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV_AT}={spec!r}: the hit count after ':' must be an integer >= 1")
    return name, n
