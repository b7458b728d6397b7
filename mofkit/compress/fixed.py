"""Compressors that learn nothing: each output frame is a fixed function of its segment's frames.

* :class:`Uniform` (``uniform``): the segment's mid-point frame, i.e. ``sample_indices(N, K,
  "uniform")``.
* :class:`Keyframes` (``keyframes``): the segment's frame that differs most from its neighbours.
* :class:`SegmentMax` / :class:`SegmentMean` (``segment_max`` / ``segment_mean``): per pixel and
  channel, the max / mean over the segment.
* :class:`SegmentDeviation` (``segment_deviation``): per pixel and channel, the segment's value
  furthest from the segment's median.
* :class:`DynamicImage` (``dynamic_image``): approximate rank pooling of the segment (Bilen et al.,
  "Dynamic Image Networks for Action Recognition", CVPR 2016), rescaled into the input range.

Selectors (``uniform``, ``keyframes``) output exact copies of input frames; the others build new
images. All are differentiable with respect to the frames where the operation is (max, mean,
median gather, rank pooling), so they can sit in front of a model that is being trained.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mofkit.compress.base import Compressor, one_hot_selection, pixel_share_selection

CRITERIA = ("difference", "histogram")


class Uniform(Compressor):
    """The mid-point frame ``(start + end - 1) // 2`` of each segment.

    ``selection`` rows are one-hot at the chosen frame.

    Args:
        num_frames: K.
    """

    name = "uniform"
    real_frames = True

    def _index(self, n: int, device: torch.device) -> torch.Tensor:
        starts, ends = self.segments(n)
        return torch.as_tensor((starts + ends - 1) // 2, dtype=torch.long, device=device)  # (K,)

    def _compress(self, frames: torch.Tensor) -> torch.Tensor:
        return frames[:, self._index(frames.shape[1], frames.device)]  # (B, K, 3, H, W)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        b, n = frames.shape[:2]
        index = self._index(n, frames.device).expand(b, -1)  # (B, K)
        return one_hot_selection(index, n, frames.dtype)

    def _elementwise_flops(self, n: int, s: int) -> float:
        return 0.0  # a gather: no arithmetic


class Keyframes(Compressor):
    """Per segment, the frame that differs most from its neighbours.

    The score of frame t is the mean of its distances to frames t - 1 and t + 1, neighbours taken
    within the whole video (so a segment's first frame is compared with the previous segment's
    last); the first and last frames of the video have one neighbour and use that distance alone.
    Each output frame is the highest-scoring frame of its segment, the earliest one on ties (a
    static segment gives its first frame).

    Distances:

    * ``difference``: mean absolute difference over channels and pixels;
    * ``histogram``: L1 distance between the frames' per-channel colour histograms (``bins`` bins
      over each video's own value range, each channel's histogram normalised to sum to 1), summed
      over channels; insensitive to motion that keeps the colours, sensitive to cuts and flashes.

    ``selection`` rows are one-hot at the chosen frame.

    Args:
        num_frames: K.
        criterion: ``difference`` or ``histogram``.
        bins: histogram bins per channel (``histogram`` only).
    """

    name = "keyframes"
    real_frames = True

    def __init__(self, num_frames: int, criterion: str = "difference", bins: int = 16):
        super().__init__(num_frames)
        if criterion not in CRITERIA:
            raise ValueError(f"compressor 'keyframes': unknown criterion={criterion!r}; choose one of "
                             f"{CRITERIA}")
        if int(bins) != bins or bins < 1:
            raise ValueError(f"compressor 'keyframes': bins must be a positive integer, got {bins!r}")
        self.criterion = criterion
        self.bins = int(bins)

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, criterion={self.criterion!r}, bins={self.bins}"

    def histograms(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame, per-channel colour histograms over each video's value range.

        Args:
            frames: (B, N, C, H, W).

        Returns:
            (B, N, C, bins) in ``frames``' dtype, each histogram summing to 1.
        """
        b, n, c = frames.shape[:3]
        flat = frames.detach().reshape(b, n, c, -1)  # (B, N, C, H*W)
        lo = flat.amin(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        hi = flat.amax(dim=(1, 2, 3), keepdim=True)
        span = hi - lo
        # A constant video (span 0) puts every value in bin 0.
        scale = torch.where(span > 0, self.bins / span.clamp_min(torch.finfo(frames.dtype).tiny),
                            torch.zeros_like(span))
        index = ((flat - lo) * scale).floor().clamp_(0, self.bins - 1).long()  # (B, N, C, H*W)
        counts = torch.zeros(b, n, c, self.bins, dtype=frames.dtype, device=frames.device)
        counts.scatter_add_(3, index, torch.ones((), dtype=frames.dtype, device=frames.device)
                            .expand_as(index))  # (B, N, C, bins)
        return counts / flat.shape[-1]

    def scores(self, frames: torch.Tensor) -> torch.Tensor:
        """How much each frame differs from its neighbours.

        Args:
            frames: (B, N, C, H, W).

        Returns:
            (B, N) scores in ``frames``' dtype (zeros when N = 1).
        """
        b, n = frames.shape[:2]
        frames = frames.detach()
        if n == 1:
            return frames.new_zeros(b, 1)
        if self.criterion == "difference":
            step = (frames[:, 1:] - frames[:, :-1]).abs().flatten(2).mean(-1)  # (B, N-1)
        else:
            hist = self.histograms(frames)  # (B, N, C, bins)
            step = (hist[:, 1:] - hist[:, :-1]).abs().sum(dim=(2, 3))  # (B, N-1)
        # step[t] is the distance between frames t and t+1.
        total = F.pad(step, (1, 0)) + F.pad(step, (0, 1))  # (B, N)
        count = torch.full((n,), 2.0, dtype=frames.dtype, device=frames.device)
        count[0] = count[-1] = 1.0
        return total / count

    def _index(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        scores = self.scores(frames)  # (B, N)
        starts, ends = self.segments(n)
        pos = torch.arange(n, device=frames.device)
        inside = ((pos >= torch.as_tensor(starts, device=frames.device)[:, None])
                  & (pos < torch.as_tensor(ends, device=frames.device)[:, None]))  # (K, N)
        masked = scores.unsqueeze(1).masked_fill(~inside, -math.inf)  # (B, K, N)
        return masked.argmax(dim=-1)  # (B, K); argmax returns the first of equal maxima

    def _compress(self, frames: torch.Tensor) -> torch.Tensor:
        index = self._index(frames)  # (B, K)
        rows = torch.arange(frames.shape[0], device=frames.device)[:, None]  # (B, 1)
        return frames[rows, index]  # (B, K, 3, H, W)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        return one_hot_selection(self._index(frames), frames.shape[1], frames.dtype)

    def _elementwise_flops(self, n: int, s: int) -> float:
        values = 3 * s * s  # per frame
        if self.criterion == "difference":
            return 3 * (n - 1) * values  # subtract, abs, add into the mean, per adjacent pair
        # min and max over the video (2 compares), binning (subtract, multiply, floor, 2 clamps),
        # one add into the histogram; the distances between histograms are per bin, not per pixel.
        return 8 * n * values


class _PerSegment(Compressor):
    """A compressor that reduces each segment (B, T, 3, H, W) to one frame (B, 3, H, W) on its own."""

    def _reduce(self, segment: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compress(self, frames: torch.Tensor) -> torch.Tensor:
        out = [self._reduce(frames[:, s:e]) for s, e in self._bounds(frames.shape[1])]  # K x (B, 3, H, W)
        return torch.stack(out, dim=1)  # (B, K, 3, H, W)


class SegmentMax(_PerSegment):
    """Per pixel and channel, the max over the segment's frames.

    ``selection``: the share of the segment's pixels and channels that each frame supplies (the
    first of equal maxima counts).

    Args:
        num_frames: K.
    """

    name = "segment_max"

    def _reduce(self, segment: torch.Tensor) -> torch.Tensor:
        return segment.amax(dim=1)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        rows = [pixel_share_selection(frames[:, s:e].argmax(dim=1), s, n) for s, e in self._bounds(n)]
        return torch.stack(rows, dim=1).to(frames.dtype)  # (B, K, N)

    def _elementwise_flops(self, n: int, s: int) -> float:
        return (n - self.num_frames) * 3 * s * s  # T - 1 compares per pixel and segment


class SegmentMean(_PerSegment):
    """Per pixel and channel, the mean over the segment's frames.

    ``selection`` rows are 1 / T over the segment's T frames.

    Args:
        num_frames: K.
    """

    name = "segment_mean"

    def _reduce(self, segment: torch.Tensor) -> torch.Tensor:
        return segment.mean(dim=1)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        rows = torch.zeros(self.num_frames, n, dtype=frames.dtype, device=frames.device)
        for k, (s, e) in enumerate(self._bounds(n)):
            rows[k, s:e] = 1.0 / (e - s)
        return rows.expand(frames.shape[0], -1, -1)  # (B, K, N)

    def _elementwise_flops(self, n: int, s: int) -> float:
        return n * 3 * s * s  # T - 1 adds and one multiply per pixel and segment


class SegmentDeviation(_PerSegment):
    """Per pixel and channel, the segment's value furthest from the segment's per-pixel median.

    The median is ``torch.median``'s (the lower of the two middle values for an even count); on
    ties the earliest frame's value is taken. A pixel that never changes keeps its value; one that
    flashes in a single frame takes the flash.

    ``selection``: the share of the segment's pixels and channels taken from each frame.

    Args:
        num_frames: K.
    """

    name = "segment_deviation"

    def _index(self, segment: torch.Tensor) -> torch.Tensor:
        # time as the last, contiguous dimension: torch's median, argmax and gather run far faster
        # there than over dimension 1; kthvalue((T + 1) // 2) is torch.median's lower median
        y = segment.movedim(1, -1).contiguous()  # (B, 3, H, W, T)
        median = y.kthvalue((y.shape[-1] + 1) // 2, dim=-1, keepdim=True).values
        return (y - median).abs().argmax(dim=-1)  # (B, 3, H, W); first of equal maxima

    def _reduce(self, segment: torch.Tensor) -> torch.Tensor:
        index = self._index(segment.detach()).unsqueeze(1)  # (B, 1, 3, H, W)
        return segment.gather(1, index).squeeze(1)  # (B, 3, H, W)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        rows = [pixel_share_selection(self._index(frames[:, s:e]), s, n) for s, e in self._bounds(n)]
        return torch.stack(rows, dim=1).to(frames.dtype)  # (B, K, N)

    def _elementwise_flops(self, n: int, s: int) -> float:
        total = 0.0
        for a, b in self._bounds(n):
            t = b - a
            # median (T log2 T compares), subtract and abs (2T), argmax (T - 1 compares)
            total += t * math.log2(t) + 2 * t + (t - 1)
        return total * 3 * s * s


def rank_pooling_coefficients(num_frames: int) -> np.ndarray:
    """Approximate rank pooling weights of Bilen et al. (CVPR 2016, eq. 4 with time-averaged frames).

    ``alpha_t = 2 (T - t + 1) - (T + 1) (H_T - H_{t-1})`` for ``t = 1..T``, ``H_t`` the t-th
    harmonic number and ``H_0 = 0``. This is the first gradient step of the RankSVM that orders the
    running means ``psi_t = mean(V_1..V_t)``, written on the frames themselves:
    ``sum_{s>=t} (2s - T - 1) / s``. The weights sum to zero (static content cancels); the early
    frames weigh negative and the later ones positive, with one change of sign (not monotone: for
    T >= 4 the last frame weighs less than those just before it).

    Args:
        num_frames: T (>= 1).

    Returns:
        float64 array of length T (``[0.]`` for T = 1).
    """
    if num_frames < 1:
        raise ValueError(f"rank pooling needs at least one frame, got T={num_frames}")
    t = np.arange(1, num_frames + 1, dtype=np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / t)])  # H_0 .. H_T
    return 2 * (num_frames - t + 1) - (num_frames + 1) * (harmonic[-1] - harmonic[:-1])


class DynamicImage(_PerSegment):
    """A dynamic image per segment: approximate rank pooling, rescaled into the input range.

    ``d = sum_t alpha_t V_t`` (:func:`rank_pooling_coefficients`) has an arbitrary scale and zero
    mean under static content, so each channel of ``d`` is standardised over its pixels and given
    the mean and standard deviation of the same channel of the segment's mean frame (per video,
    segment and channel). A segment of one frame, or one whose ``d`` is flat (no motion: ``d`` is
    zero up to rounding), returns its mean frame (for one frame, that frame).

    ``selection``: each frame's share ``|alpha_t| / sum |alpha|`` of the rank-pooling sum (the
    sign, earlier frames negative and later positive, is dropped so rows sum to 1).

    Args:
        num_frames: K.
    """

    name = "dynamic_image"

    def _reduce(self, segment: torch.Tensor) -> torch.Tensor:
        t = segment.shape[1]
        if t == 1:
            return segment[:, 0]
        mean = segment.mean(dim=1)  # (B, 3, H, W)
        coeffs = rank_pooling_coefficients(t)
        alpha = torch.as_tensor(coeffs, dtype=segment.dtype, device=segment.device)  # (T,)
        d = torch.tensordot(alpha, segment, dims=([0], [1]))  # (B, 3, H, W): sum_t alpha_t V_t
        mu_d = d.mean(dim=(2, 3), keepdim=True)  # (B, 3, 1, 1)
        sd_d = d.std(dim=(2, 3), keepdim=True, correction=0)
        mu_m = mean.mean(dim=(2, 3), keepdim=True)
        sd_m = mean.std(dim=(2, 3), keepdim=True, correction=0)
        # Rounding leaves d of a static channel at ~eps * sum|alpha| * |V|; rescaling that noise to
        # the frame's spread would invent an image, so such channels keep the mean frame.
        eps = torch.finfo(segment.dtype).eps
        scale = segment.detach().abs().amax(dim=(1, 3, 4), keepdim=True).squeeze(1)  # (B, 3, 1, 1)
        flat = sd_d <= 64 * eps * float(np.abs(coeffs).sum()) * (1 + scale)
        rescaled = (d - mu_d) / sd_d.clamp_min(torch.finfo(segment.dtype).tiny) * sd_m + mu_m
        return torch.where(flat, mean, rescaled)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        rows = torch.zeros(self.num_frames, n, dtype=torch.float64)
        for k, (s, e) in enumerate(self._bounds(n)):
            a = np.abs(rank_pooling_coefficients(e - s))
            rows[k, s:e] = torch.from_numpy(a / a.sum()) if a.sum() > 0 else 1.0
        return rows.to(frames.device, frames.dtype).expand(frames.shape[0], -1, -1)  # (B, K, N)

    def _elementwise_flops(self, n: int, s: int) -> float:
        total = 0.0
        for a, b in self._bounds(n):
            t = b - a
            if t == 1:
                continue
            # mean frame (T), mean and variance of d and of the mean frame (4 + 4), rescale (3);
            # the weighted sum d is a matrix product and counted.
            total += t + 11
        return total * 3 * s * s
