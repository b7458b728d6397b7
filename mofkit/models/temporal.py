"""Temporal heads: frame embeddings (B, T, D) -> one video embedding (B, D), CLIP4Clip style.

Both heads take a boolean ``mask`` (B, T), True for real frames, so videos padded to a common T
are pooled over their own frames only.

* :class:`MeanPool` (CLIP4Clip *meanP*): L2-normalise each frame, masked mean.
* :class:`SeqTransformer` (CLIP4Clip *seqTransf*): add frame position embeddings, run a small
  transformer over the frames (padded frames masked out of attention), add the input back
  (residual to the frame features), then normalise each frame and take the masked mean. Its blocks'
  output projections start at zero, so at initialisation it is meanP plus a small position term
  and training departs from the baseline smoothly. (CLIP4Clip instead copies the first layers of
  CLIP's text transformer; with towers trained from scratch there is nothing to copy.)

The caller L2-normalises the pooled output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("meanP", "seqTransf")


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``x`` (B, T, D) counting only frames where ``mask`` (B, T) is True."""
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    # where() rather than multiplication: padded frames may hold inf/NaN garbage.
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class MeanPool(nn.Module):
    """Masked mean of L2-normalised frame embeddings (no parameters)."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) frame embeddings, optional (B, T) mask -> (B, D)."""
        return masked_mean(F.normalize(frames, dim=-1), mask)


class SeqTransformer(nn.Module):
    """Temporal transformer over frames with position embeddings and a residual to the input.

    Args:
        dim: embedding width D.
        layers: transformer blocks.
        heads: attention heads (default: D // 64, at least 1).
        max_frames: most frames a video may have (position embeddings).
    """

    def __init__(self, dim: int, layers: int = 2, heads: int | None = None, max_frames: int = 64):
        super().__init__()
        heads = heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"temporal head width {dim} is not divisible by heads={heads}")
        self.max_frames = max_frames
        self.position = nn.Parameter(torch.randn(max_frames, dim) * 0.01)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        for block in self.blocks.layers:
            nn.init.zeros_(block.self_attn.out_proj.weight)
            nn.init.zeros_(block.self_attn.out_proj.bias)
            nn.init.zeros_(block.linear2.weight)
            nn.init.zeros_(block.linear2.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) frame embeddings, optional (B, T) mask -> (B, D)."""
        b, t, _ = frames.shape
        if t > self.max_frames:
            raise ValueError(f"video has {t} frames but the seqTransf head was built for at most "
                             f"max_frames={self.max_frames}; raise model.max_frames")
        if mask is not None:
            # Padded frames may hold garbage; zero them so no NaN reaches the attention sums.
            frames = torch.where(mask.unsqueeze(-1), frames, torch.zeros((), dtype=frames.dtype,
                                                                          device=frames.device))
        x = frames + self.position[:t].to(frames.dtype)  # (B, T, D)
        pad = None if mask is None else ~mask  # True = ignore, as nn.Transformer expects
        x = self.blocks(x, src_key_padding_mask=pad)  # (B, T, D)
        return masked_mean(F.normalize(x + frames, dim=-1), mask)


def create_temporal_head(name: str, dim: int, *, layers: int = 2, max_frames: int = 64) -> nn.Module:
    """``meanP`` or ``seqTransf`` for embeddings of width ``dim``."""
    if name == "meanP":
        return MeanPool()
    if name == "seqTransf":
        return SeqTransformer(dim, layers=layers, max_frames=max_frames)
    raise ValueError(f"unknown temporal head {name!r}; choose one of {HEADS}")
