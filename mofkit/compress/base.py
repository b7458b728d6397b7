"""The compressor interface: N decoded frames of each video -> K frames for the image tower.

Segments: the N input frames are cut into K contiguous segments exactly as frame sampling cuts a
video (:func:`mofkit.data.sampling.segment_bounds`), so output frame ``k`` summarises segment ``k``
and a compressor that picks each segment's mid-point is the ``uniform`` sampler.

FLOPs (:meth:`Compressor.flops`), per video:

* ``counted``: what :func:`mofkit.eval.cost.count_flops` reports for one forward pass without
  gradients, i.e. matrix products, convolutions and attention at 2 FLOPs per multiply-add;
* ``elementwise``: an analytic count of the work that counter does not see, at **1 FLOP per
  elementwise add, multiply, compare or absolute value** on one scalar. A reduction over T values
  costs T - 1 (the per-pixel max of a T-frame segment: T - 1 compares per pixel and channel); a
  sort or median of T values costs T * log2(T) compares; an area downsampling costs one add per
  input scalar. Index arithmetic, gathers, copies and anything per frame rather than per pixel
  (a few scalars per frame) are left out;
* ``total``: their sum.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mofkit.data.sampling import segment_bounds


class Compressor(nn.Module):
    """Maps (B, N, 3, H, W) frames to (B, K, 3, H, W) frames of the same dtype and device.

    Subclasses implement ``_compress`` and ``_elementwise_flops`` (and usually ``_selection``);
    ``forward``, ``selection`` and ``flops`` check the input and call them.

    Args:
        num_frames: K, frames out per video (>= 1).
    """

    name: str = ""  # registry name (``create_compressor``)
    real_frames: bool = False  # every output frame is an exact copy of one input frame
    learned: bool = False  # has trainable parameters

    def __init__(self, num_frames: int):
        super().__init__()
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"compressor {self.name!r}: num_frames (K) must be a positive integer, "
                             f"got {num_frames!r}")
        self.num_frames = int(num_frames)

    # ------------------------------------------------------------------------------------------
    # Public interface
    # ------------------------------------------------------------------------------------------

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Compress each video's N frames to K.

        Args:
            frames: (B, N, 3, H, W) float frames in the model's input space, N >= K.

        Returns:
            (B, K, 3, H, W), same dtype and device as ``frames``.
        """
        self._check(frames)
        return self._compress(frames)

    def selection(self, frames: torch.Tensor) -> torch.Tensor | None:
        """How much each output frame draws on each input frame (for plots of where slots looked).

        Computed without gradients; the learned compressor's differentiable weights are its
        ``weights`` method.

        Args:
            frames: (B, N, 3, H, W), as for :meth:`forward`.

        Returns:
            (B, K, N) float tensor in ``frames``' dtype, zero outside each slot's support; see the
            subclass for what a row means (rows sum to 1 for every compressor here).
        """
        self._check(frames)
        with torch.no_grad():
            return self._selection(frames)

    def segments(self, num_input_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Start (inclusive) and end (exclusive) input frame of each of the K segments.

        Args:
            num_input_frames: N (>= K).

        Returns:
            ``(starts, ends)``, int64 arrays of length K.
        """
        self._check_count(num_input_frames)
        return segment_bounds(num_input_frames, self.num_frames)

    def flops(self, num_input_frames: int, image_size: int) -> dict:
        """FLOPs to compress one video at test time (no gradients); see the module docstring.

        Args:
            num_input_frames: N, frames in.
            image_size: S, the square frame side in pixels.

        Returns:
            ``{"counted", "elementwise", "total"}`` in FLOPs (ints), per video.
        """
        from mofkit.models.flops import count_flops

        self._check_count(num_input_frames)
        if image_size < 1:
            raise ValueError(f"compressor {self.name!r}: image_size must be positive, got {image_size}")
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dummy = torch.zeros(1, num_input_frames, 3, image_size, image_size, device=device)  # (1, N, 3, S, S)
        was_training = self.training
        self.eval()
        try:
            counted = count_flops(self, dummy)
        finally:
            self.train(was_training)
        elementwise = int(round(self._elementwise_flops(num_input_frames, image_size)))
        return {"counted": counted, "elementwise": elementwise, "total": counted + elementwise}

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}"

    # ------------------------------------------------------------------------------------------
    # For subclasses
    # ------------------------------------------------------------------------------------------

    def _compress(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _selection(self, frames: torch.Tensor) -> torch.Tensor | None:
        return None

    def _elementwise_flops(self, n: int, s: int) -> float:
        raise NotImplementedError

    def _bounds(self, n: int) -> list[tuple[int, int]]:
        """(start, end) of each segment as Python ints."""
        starts, ends = segment_bounds(n, self.num_frames)
        return list(zip(starts.tolist(), ends.tolist()))

    def _check_count(self, n: int) -> None:
        if n < self.num_frames:
            raise ValueError(f"compressor {self.name!r} makes K={self.num_frames} frames and needs at "
                             f"least that many input frames per video, got N={n}; decode more frames "
                             f"or lower num_frames")

    def _check(self, frames: torch.Tensor) -> None:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"compressor {self.name!r} expects frames (B, N, 3, H, W), got {shape}")
        if not frames.is_floating_point():
            raise ValueError(f"compressor {self.name!r} expects float frames in the model's input space "
                             f"(after normalisation), got {frames.dtype}")
        self._check_count(frames.shape[1])


def one_hot_selection(index: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Selection rows of a selector: (B, K) chosen input frames -> (B, K, N) one-hot rows.

    Args:
        index: (B, K) int64 input frame per output frame.
        n: N, input frames.
        dtype: float dtype of the result.

    Returns:
        (B, K, N).
    """
    return torch.nn.functional.one_hot(index, n).to(dtype)


def pixel_share_selection(index: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """Share of a segment's pixels and channels taken from each input frame.

    Args:
        index: (B, C, H, W) int64 position within the segment (0..T-1) chosen per pixel and channel.
        start: the segment's first input frame.
        n: N, input frames.

    Returns:
        (B, N) float32 shares summing to 1 per video.
    """
    b = index.shape[0]
    flat = index.reshape(b, -1) + start  # (B, C*H*W)
    counts = torch.zeros(b, n, dtype=torch.float32, device=index.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))  # (B, N)
    return counts / flat.shape[1]
