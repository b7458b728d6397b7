"""The frame bank's files: their names and sizes, and the generation journal ``bank.json``.

``bank.json`` holds the bank's description (video ids, K, S, dtype, seed), the current generation
and one entry per generation (its parent, what made it, whether it is complete and sealed). It is
only ever replaced whole and atomically, read afresh before every change (another process may have
changed it), and written before a generation folder is deleted, so it never names a folder that is
gone. The bank (``mofkit.bilevel.bank``) decides what the generations hold; this module keeps their
record.

Directory layout::

    <dir>/bank.json                     video ids, K, S, dtype, seed, the current generation and
                                        what each generation is (parent, origin, complete, sealed)
    <dir>/gen-000000/frames.npy         (V, K, 3, S, S) in the bank dtype (float32 | float16)
    <dir>/gen-000000/exp_avg.npy        (V, K, 3, S, S) float32: Adam first moment
    <dir>/gen-000000/exp_avg_sq.npy     (V, K, 3, S, S) float32: Adam second moment
    <dir>/gen-000000/steps.npy          (V,) int64: Adam step count of each video
    <dir>/grad_accum.npy                (V, K, 3, S, S) float32: gradient summed over a meta epoch
    <dir>/grad_count.npy                (V,) int64: gradients summed into each row since the last step
"""
from __future__ import annotations

import collections
import datetime
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mofkit.rowstore import new_memmap, read_json_versioned, write_json_atomic

FORMAT_VERSION = 1
META_FILE = "bank.json"
FRAMES_FILE, EXP_AVG_FILE, EXP_AVG_SQ_FILE, STEPS_FILE = (
    "frames.npy", "exp_avg.npy", "exp_avg_sq.npy", "steps.npy")
GENERATION_FILES = (FRAMES_FILE, EXP_AVG_FILE, EXP_AVG_SQ_FILE, STEPS_FILE)
ACCUM_FILE, COUNT_FILE = "grad_accum.npy", "grad_count.npy"
GEN_PREFIX = "gen-"
DTYPES = ("float32", "float16")  # storage of the frames (the Adam moments are always float32)


def check_dtype(dtype: str) -> None:
    """ValueError unless ``dtype`` is one a bank can store frames in."""
    if dtype not in DTYPES:
        raise ValueError(f"frame bank dtype {dtype!r} is not supported; use one of {DTYPES} "
                         "(MOFConfig.bank_dtype)")


def bank_nbytes(num_videos: int, num_frames: int, image_size: int,
                dtype: str = "float32") -> dict[str, int]:
    """Disk bytes a bank of this size needs (logical file sizes, before any sparseness).

    Disk cost (MSR-VTT 9k at the reference's K = 8, 224 px: 9,000 x 8 x 3 x 224 x 224 = 10.8e9 values,
    see :func:`bank_nbytes`): frames 43.4 GB in float32 / 21.7 GB in float16; Adam moments
    2 x 43.4 GB; the accumulator 43.4 GB. One generation is 130 GB (float32) / 108 GB (float16); with
    the accumulator a run holds 173 / 152 GB, and while an update writes the next generation
    304 / 260 GB. The reference holds the frames, their gradient and the two moments (173 GB) in RAM.

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
    check_dtype(dtype)
    n = num_videos * num_frames * 3 * image_size * image_size
    frames = n * np.dtype(dtype).itemsize
    moments = 2 * n * 4
    generation = frames + moments + 8 * num_videos
    accumulator = 4 * n + 8 * num_videos
    return {"frames": frames, "moments": moments, "generation": generation,
            "accumulator": accumulator, "steady": generation + accumulator,
            "during_update": 2 * generation + accumulator}


def gen_name(g: int) -> str:
    """Folder name of generation ``g`` (``gen-000003``)."""
    return f"{GEN_PREFIX}{g:06d}"


def gen_entry(parent: int | None, origin: str, **info: Any) -> dict[str, Any]:
    """The journal entry of a new, complete, unsealed generation."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"parent": parent, "origin": origin, "complete": True, "sealed": False, "created": now,
            **info}


def read_meta(root: Path) -> dict[str, Any]:
    """``bank.json`` of the bank in ``root``."""
    return read_json_versioned(root / META_FILE, "format", FORMAT_VERSION,
                               missing=f"{root / META_FILE}: no frame bank here (create one with "
                                       f"FrameBank.create)",
                               stale="this bank was written by another version")


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Replace ``bank.json`` atomically."""
    write_json_atomic(root / META_FILE, meta, crash_name="bank.meta.before_replace")


def update_meta(root: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read ``bank.json`` afresh, apply ``change`` to it, write it back; return the new meta."""
    meta = read_meta(root)  # another process may have changed it since this one last read it
    change(meta)
    write_meta(root, meta)
    return meta


def generation_dirs(root: Path) -> dict[int, Path]:
    """Generation folders on disk (complete or not), by number."""
    out = {}
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(GEN_PREFIX) and p.name[len(GEN_PREFIX):].isdigit():
            out[int(p.name[len(GEN_PREFIX):])] = p
    return out


def next_generation(root: Path) -> int:
    """A number no generation has used, in the journal or on disk."""
    used = {int(g) for g in read_meta(root)["generations"]} | set(generation_dirs(root))
    return max(used) + 1


def remove_bank_files(root: Path) -> None:
    """Delete a bank's own files from ``root`` (nothing else there)."""
    for p in generation_dirs(root).values():
        shutil.rmtree(p)
    for name in (META_FILE, ACCUM_FILE, COUNT_FILE):
        (root / name).unlink(missing_ok=True)


def remove_stale_temporaries(root: Path) -> None:
    """Temporary ``bank.json`` files that killed writers left behind."""
    for p in root.glob(f".{META_FILE}.*.tmp"):
        p.unlink(missing_ok=True)


def check_new_bank(directory, video_ids, num_frames: int, image_size: int, dtype: str,
                   seed: int) -> list[str]:
    """The ids of a bank about to be created, as strings; ValueError naming a bad argument."""
    check_dtype(dtype)
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
    return ids


def create_bank_files(root: Path, num_videos: int, frame_shape: tuple[int, ...], dtype: str):
    """Generation 0's files and the accumulator, zero-filled and sparse; generation 0's frames.

    ``bank.json`` is not written here: the caller writes it last, once the frames are filled, so a
    ``bank.json`` exists only for a complete bank.
    """
    root.mkdir(parents=True, exist_ok=True)
    v, shape = num_videos, tuple(frame_shape)
    gdir = root / gen_name(0)
    if gdir.exists():  # leftover of a create interrupted before bank.json was written
        shutil.rmtree(gdir)
    gdir.mkdir()
    # open_memmap only seeks to the end, so untouched regions stay sparse (cheap to create).
    frames = new_memmap(gdir / FRAMES_FILE, dtype, (v, *shape))
    for name in (EXP_AVG_FILE, EXP_AVG_SQ_FILE):
        new_memmap(gdir / name, "float32", (v, *shape)).flush()
    new_memmap(gdir / STEPS_FILE, "int64", (v,)).flush()
    new_memmap(root / ACCUM_FILE, "float32", (v, *shape)).flush()
    new_memmap(root / COUNT_FILE, "int64", (v,)).flush()
    return frames


def open_generation(root: Path, meta: dict[str, Any], g: int, shape: tuple[int, ...], dtype: str):
    """Memory maps of generation ``g`` (frames, exp_avg, exp_avg_sq, steps) and whether it is sealed.

    A sealed generation opens read-only, so it cannot be written by accident.
    """
    entry = meta["generations"].get(str(g))
    gdir = root / gen_name(g)
    if entry is None or not entry.get("complete") or not gdir.is_dir():
        have = sorted(int(k) for k, e in meta["generations"].items() if e.get("complete"))
        raise FileNotFoundError(f"frame bank {root}: generation {g} does not exist or is incomplete "
                                f"(pruned, or an interrupted update); complete generations: {have}")
    sealed = bool(entry.get("sealed"))
    mode = "r" if sealed else "r+"
    arrays = tuple(np.load(gdir / name, mmap_mode=mode) for name in GENERATION_FILES)
    frames = arrays[0]
    if frames.shape != tuple(shape) or frames.dtype != np.dtype(dtype):
        raise ValueError(f"{gdir / FRAMES_FILE}: shape {frames.shape} {frames.dtype}, bank.json says "
                         f"{tuple(shape)} {dtype}")
    return arrays, sealed
