"""Temporal heads: frame embeddings (B, T, D) -> one video embedding (B, D), CLIP4Clip style.

Both heads take a boolean ``mask`` (B, T), True for real frames, so videos padded to a common T
are pooled over their own frames only; whatever the padded positions hold (zeros, NaN, another
video's frames) does not reach the output.

* :class:`MeanPool` (CLIP4Clip *meanP*): L2-normalise each frame, masked mean.
* :class:`SeqTransformer` (CLIP4Clip *seqTransf*): add frame position embeddings, run a small
  transformer over the frames (padded frames masked out of attention), add the input frame
  features back (residual), then normalise each frame and take the masked mean.

  Initialisation: the output projection of every block's attention and MLP starts at zero, so each
  block starts as the identity and the head starts as meanP over ``2 * frame + position``; the
  position embeddings start small (std 0.01, norm ~0.1, against frame embeddings of norm ~10), so
  the initial video embedding is within about a degree of meanP's and training departs from the
  baseline smoothly. CLIP4Clip instead copies the first layers of CLIP's text transformer; with
  towers trained from scratch there is nothing to copy, and a copied text block is not the
  identity at the start.

The caller L2-normalises the pooled output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("meanP", "seqTransf")


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the frame axis counting only real frames.

    Args:
        x: (B, T, D) per-frame features.
        mask: (B, T) bool, True for real frames; None means all frames are real.

    Returns:
        (B, D). A video without any real frame gives a zero vector (not NaN).
    """
    if mask is None:
        return x.mean(dim=1)
    # where() rather than a product with the mask: padded frames may hold inf/NaN, and 0 * NaN = NaN.
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)  # (B, 1)
    return x.sum(dim=1) / count


def _check(frames: torch.Tensor, mask: torch.Tensor | None) -> None:
    if frames.ndim != 3:
        raise ValueError(f"temporal head expects frame embeddings (B, T, D), got shape {tuple(frames.shape)}")
    if mask is not None and (mask.shape != frames.shape[:2] or mask.dtype != torch.bool):
        raise ValueError(f"mask must be a bool tensor of shape (B, T) = {tuple(frames.shape[:2])}, "
                         f"got {mask.dtype} {tuple(mask.shape)}")


class MeanPool(nn.Module):
    """CLIP4Clip meanP: masked mean of L2-normalised frame embeddings (no parameters)."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool frame embeddings.

        Args:
            frames: (B, T, D) frame embeddings.
            mask: optional (B, T) bool, True for real frames.

        Returns:
            (B, D) pooled embedding (not yet normalised).
        """
        _check(frames, mask)
        return masked_mean(F.normalize(frames, dim=-1), mask)


class SeqTransformer(nn.Module):
    """CLIP4Clip seqTransf: a temporal transformer over frames with a residual to the input.

    Args:
        dim: embedding width D (the retrieval model's embed dim).
        layers: transformer blocks.
        heads: attention heads; default D // 64 (at least 1), as CLIP4Clip uses for D = 512.
        max_frames: most frames a video may have (number of position embeddings).
    """

    def __init__(self, dim: int, layers: int = 2, heads: int | None = None, max_frames: int = 64):
        super().__init__()
        heads = heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"seqTransf: embedding width {dim} is not divisible by heads={heads}")
        if layers < 1 or max_frames < 1:
            raise ValueError(f"seqTransf needs layers >= 1 and max_frames >= 1, got layers={layers}, "
                             f"max_frames={max_frames}")
        self.max_frames = max_frames
        self.position = nn.Parameter(torch.randn(max_frames, dim) * 0.01)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        # No final norm: with the zero-initialised projections below every block is then exactly
        # the identity at the start.
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        for blk in self.blocks.layers:
            for lin in (blk.self_attn.out_proj, blk.linear2):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool frame embeddings.

        Args:
            frames: (B, T, D) frame embeddings, T <= ``max_frames``.
            mask: optional (B, T) bool, True for real frames.

        Returns:
            (B, D) pooled embedding (not yet normalised).
        """
        _check(frames, mask)
        t = frames.shape[1]
        if t > self.max_frames:
            raise ValueError(f"video has {t} frames but the seqTransf head was built for at most "
                             f"max_frames={self.max_frames}; raise model.max_frames")
        pad = None
        if mask is not None:
            # Padded frames may hold garbage; zero them so no NaN reaches the attention sums.
            frames = torch.where(mask.unsqueeze(-1), frames,
                                 torch.zeros((), dtype=frames.dtype, device=frames.device))
            # True = ignore (nn.Transformer's convention). A video with no real frame attends to
            # all of its (zeroed) frames instead of to nothing, which would give NaN; masked_mean
            # then gives it a zero vector. Built without a host sync so it can run in graphs.
            pad = ~mask & mask.any(dim=1, keepdim=True)  # (B, T)
        x = frames + self.position[:t].to(frames.dtype)  # (B, T, D) + (T, D)
        x = self.blocks(x, src_key_padding_mask=pad)  # (B, T, D)
        return masked_mean(F.normalize(x + frames, dim=-1), mask)


def create_temporal_head(name: str, dim: int, *, layers: int = 2, max_frames: int = 64) -> nn.Module:
    """Build a temporal head by name.

    Args:
        name: ``meanP`` or ``seqTransf``.
        dim: embedding width D.
        layers: seqTransf depth (ignored by meanP).
        max_frames: seqTransf position embeddings (ignored by meanP).

    Returns:
        The head, an ``nn.Module`` mapping ((B, T, D), mask (B, T) | None) -> (B, D).
    """
    if name == "meanP":
        return MeanPool()
    if name == "seqTransf":
        return SeqTransformer(dim, layers=layers, max_frames=max_frames)
    raise ValueError(f"unknown temporal head {name!r} (model.temporal_head); choose one of {HEADS}")
