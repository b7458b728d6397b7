"""A learned compressor: K slot queries attend over cheap per-frame descriptors.

:class:`Slots` (``slots``). Each input frame is area-downsampled to ``descriptor_size`` pixels a
side and described by a tiny CNN (strided 3x3 convolutions, global mean pooling, a linear layer to
``dim``) plus an embedding of its position ``t_n = (n + 1/2) / N`` in the video (sinusoidal
features through a linear layer, so any N works). K learned queries attend over the N descriptors:

    logits[k, n] = q_k . key(x_n) / sqrt(dim) - ((t_n - c_k) / w)^2 / 2

with ``c_k`` the centre of segment k in [0, 1] and ``w`` a learned width, initialised to half a
segment (0.5 / K). The key projection starts small, so at initialisation the logits are the
positional prior alone and slot k looks mostly at segment k: the compressor starts close to a soft
uniform sampler and training moves the slots from there.

* ``soft``: output frame k is the weights' blend of the full-resolution input frames.
* ``hard``: output frame k is the input frame of largest weight, an exact copy; the backward pass
  uses the gradient of the soft blend (straight-through: ``onehot - w.detach() + w``). The blend
  is computed only when gradients are wanted, so test-time cost is the descriptors alone.

Cost per video: the descriptor CNN on N frames of ``descriptor_size``^2 pixels, plus, for ``soft``
(and ``hard`` while training), the blend's K * N * 3 * H * W multiply-adds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mofkit.compress.base import Compressor

MODES = ("soft", "hard")


class Slots(Compressor):
    """K learned slots, each a softmax attention over the N frames (see the module docstring).

    ``selection`` returns the attention weights (B, K, N). ``real_frames`` is True in ``hard``
    mode only (an instance attribute here, not a class one).

    Args:
        num_frames: K, slots.
        mode: ``soft`` (blend) or ``hard`` (straight-through choice of one frame per slot).
        descriptor_size: side in pixels the frames are area-downsampled to before the CNN.
        dim: descriptor, query and key width.
        channels: output channels of the strided (stride 2) 3x3 convolutions, in order.
        time_features: sinusoidal features of the frame position (even): sin and cos of
            ``pi * 2^j * t`` for ``j < time_features / 2``.
        key_init_std: standard deviation of the key projection's initial weights; small, so the
            positional prior decides the initial weights.
    """

    name = "slots"
    learned = True

    def __init__(self, num_frames: int, mode: str = "soft", descriptor_size: int = 16, dim: int = 32,
                 channels: tuple[int, ...] = (8, 16), time_features: int = 8,
                 key_init_std: float = 0.01):
        super().__init__(num_frames)
        if mode not in MODES:
            raise ValueError(f"compressor 'slots': unknown mode={mode!r}; choose one of {MODES}")
        channels = tuple(int(c) for c in channels)
        if descriptor_size < 1 or dim < 1 or not channels or min(channels) < 1:
            raise ValueError(f"compressor 'slots': descriptor_size, dim and channels must be positive, "
                             f"got descriptor_size={descriptor_size}, dim={dim}, channels={channels}")
        if time_features < 2 or time_features % 2:
            raise ValueError(f"compressor 'slots': time_features must be even and >= 2, got {time_features}")
        self.mode = mode
        self.real_frames = mode == "hard"
        self.descriptor_size = int(descriptor_size)
        self.dim = int(dim)
        self.time_features = int(time_features)

        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GELU()]
            c_in = c
        self.encoder = nn.Sequential(*layers)
        self.project = nn.Linear(c_in, self.dim)
        self.time = nn.Linear(self.time_features, self.dim)
        self.norm = nn.LayerNorm(self.dim)
        self.key = nn.Linear(self.dim, self.dim, bias=False)
        nn.init.normal_(self.key.weight, std=key_init_std)
        self.queries = nn.Parameter(torch.randn(self.num_frames, self.dim))  # (K, D)
        # Width of the positional prior in units of the video's length; half a segment to start.
        self.log_width = nn.Parameter(torch.tensor(math.log(0.5 / self.num_frames)))

    def extra_repr(self) -> str:
        return (f"num_frames={self.num_frames}, mode={self.mode!r}, "
                f"descriptor_size={self.descriptor_size}, dim={self.dim}")

    def _positions(self, n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_n (N,), c_k (K,)): frame centres and segment centres on [0, 1]."""
        t = (torch.arange(n, dtype=dtype, device=device) + 0.5) / n  # (N,)
        starts, ends = self.segments(n)
        c = torch.as_tensor((starts + ends) / (2.0 * n), dtype=dtype, device=device)  # (K,)
        return t, c

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        freqs = math.pi * 2.0 ** torch.arange(self.time_features // 2, dtype=t.dtype, device=t.device)
        angles = t[:, None] * freqs  # (N, F/2)
        return self.time(torch.cat([angles.sin(), angles.cos()], dim=-1))  # (N, D)

    def weights(self, frames: torch.Tensor) -> torch.Tensor:
        """Attention of each slot over the frames.

        Args:
            frames: (B, N, 3, H, W), N >= K.

        Returns:
            (B, K, N) softmax weights in the parameters' dtype, differentiable with respect to the
            parameters and the frames.
        """
        self._check(frames)
        b, n = frames.shape[:2]
        dtype = self.queries.dtype
        small = F.adaptive_avg_pool2d(frames.flatten(0, 1), self.descriptor_size).to(dtype)  # (B*N, 3, s, s)
        h = self.encoder(small).mean(dim=(2, 3))  # (B*N, C)
        h = self.project(h).view(b, n, self.dim)  # (B, N, D)
        t, c = self._positions(n, dtype, frames.device)
        x = self.norm(h + self._time_embedding(t))  # (B, N, D)
        keys = self.key(x)  # (B, N, D)
        logits = torch.einsum("kd,bnd->bkn", self.queries, keys) / math.sqrt(self.dim)  # (B, K, N)
        prior = -0.5 * ((t[None, :] - c[:, None]) / self.log_width.exp()) ** 2  # (K, N)
        return torch.softmax(logits + prior, dim=-1)

    def _compress(self, frames: torch.Tensor) -> torch.Tensor:
        w = self.weights(frames).to(frames.dtype)  # (B, K, N)
        if self.mode == "soft":
            return torch.einsum("bkn,bnchw->bkchw", w, frames)  # (B, K, 3, H, W)
        index = w.argmax(dim=-1)  # (B, K)
        rows = torch.arange(frames.shape[0], device=frames.device)[:, None]  # (B, 1)
        picked = frames[rows, index]  # (B, K, 3, H, W), exact copies
        if not (torch.is_grad_enabled() and w.requires_grad):
            return picked
        # Straight-through: w - w.detach() is exactly zero, so the output stays an exact copy while
        # the backward pass sees d(blend)/dw; the frames' gradient is the one-hot rows'.
        return picked + torch.einsum("bkn,bnchw->bkchw", w - w.detach(), frames)

    def _selection(self, frames: torch.Tensor) -> torch.Tensor:
        return self.weights(frames).to(frames.dtype)

    def _elementwise_flops(self, n: int, s: int) -> float:
        total = n * 3 * s * s  # area downsampling: one add per input value
        side = self.descriptor_size
        for conv in self.encoder:
            if isinstance(conv, nn.Conv2d):
                side = (side + 1) // 2
                total += n * 2 * conv.out_channels * side * side  # bias and activation
        # projection bias, time embedding, layer norm (~8 per value), key logits' scale and prior,
        # softmax (exp, sum, divide) and the hard mode's argmax: all per frame or per (slot, frame).
        total += n * self.dim * 10 + self.num_frames * n * 8
        return total
