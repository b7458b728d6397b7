"""Frame compressors: N decoded frames of each video -> the K frames the image tower sees.

A compressor is an ``nn.Module`` (:class:`Compressor`) applied to decoded, normalised frames
``(B, N, 3, H, W)`` (values in the model's input space, roughly [-2, 2]) and returning
``(B, K, 3, H, W)`` of the same dtype and device, identically at training and test time. The N
frames are cut into K contiguous segments as frame sampling cuts a video
(:func:`mofkit.data.sampling.segment_bounds`); output frame k summarises segment k. N >= K is
required.

Every compressor has

* ``num_frames`` (K);
* ``real_frames``: its outputs are always exact copies of input frames;
* ``learned``: it has trainable parameters;
* ``selection(frames) -> (B, K, N)``: how much each output frame draws on each input frame;
* ``flops(N, S) -> {"counted", "elementwise", "total"}``: test-time FLOPs per video
  (:mod:`mofkit.compress.base` gives the convention).

Registered names (:func:`list_compressors`): ``uniform``, ``keyframes``, ``segment_max``,
``segment_mean``, ``segment_deviation``, ``dynamic_image`` (:mod:`mofkit.compress.fixed`, nothing
learned) and ``slots`` (:mod:`mofkit.compress.learned`). Build one with
``create_compressor(name, num_frames, **options)``, or from a run's settings with
:func:`compressor_from_config`. These are pure torch modules: no file I/O.
"""
from __future__ import annotations

import inspect

from mofkit.compress.base import Compressor
from mofkit.compress.fixed import (
    DynamicImage,
    Keyframes,
    SegmentDeviation,
    SegmentMax,
    SegmentMean,
    Uniform,
    rank_pooling_coefficients,
)
from mofkit.compress.learned import Slots

COMPRESSORS: dict[str, type] = {cls.name: cls for cls in (
    Uniform, Keyframes, SegmentMax, SegmentMean, SegmentDeviation, DynamicImage, Slots)}


def list_compressors() -> list[str]:
    """Names :func:`create_compressor` accepts.

    Returns:
        The registered names, fixed compressors first, then the learned one.
    """
    return list(COMPRESSORS)


def compressor_options(name: str) -> dict:
    """The options a compressor takes and their defaults.

    Args:
        name: a name from :func:`list_compressors`.

    Returns:
        ``{option: default}`` (``num_frames`` excluded).
    """
    cls = _lookup(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    return {p.name: p.default for p in params if p.name != "num_frames"}


def create_compressor(name: str, num_frames: int, **options) -> Compressor:
    """Build a compressor by name.

    Args:
        name: a name from :func:`list_compressors`.
        num_frames: K, frames out per video.
        **options: the compressor's own options (:func:`compressor_options` lists them), e.g.
            ``criterion="histogram"`` for ``keyframes`` or ``mode="hard"`` for ``slots``.

    Returns:
        The compressor (an ``nn.Module``; learned ones on the CPU in float32, as ``nn`` builds them).

    Raises:
        ValueError: unknown name, or a bad value of K or of an option.
        TypeError: an option the compressor does not take (names it and the valid ones).
    """
    known = compressor_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"compressor {name!r} has no option {', '.join(map(repr, unknown))}; its options "
                        f"are {sorted(known) or 'none'}")
    return COMPRESSORS[name](num_frames, **options)


def _lookup(name: str) -> type:
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; choose one of {list_compressors()}")
    return COMPRESSORS[name]


__all__ = [
    "COMPRESSORS",
    "Compressor",
    "DynamicImage",
    "Keyframes",
    "SegmentDeviation",
    "SegmentMax",
    "SegmentMean",
    "Slots",
    "Uniform",
    "compressor_from_config",
    "compressor_options",
    "create_compressor",
    "list_compressors",
    "rank_pooling_coefficients",
]


def compressor_from_config(c, num_frames: int) -> Compressor | None:
    """The compressor a run's ``compress`` settings name (``mofkit.config.CompressConfig``).

    Args:
        c: the settings: ``name`` (None: no compressor), and the options a compressor takes
            (``mode`` of ``slots``, ``criterion`` of ``keyframes``) as fields of the same name.
        num_frames: K (``data.num_frames``).

    Returns:
        The compressor, or None when ``c.name`` is None.
    """
    if c.name is None:
        return None
    options = {k: getattr(c, k) for k in compressor_options(c.name) if hasattr(c, k)}
    return create_compressor(c.name, num_frames, **options)

