"""Symmetric InfoNCE over a batch's text x video cosine similarities (CLIP's loss).

Both functions are compositions of matmul, log-softmax and mean, so they are differentiable any
number of times; MOF's meta step differentiates through the loss twice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_logits(text: torch.Tensor, video: torch.Tensor,
                      logit_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Scaled cosine similarities of every caption with every video.

    Args:
        text: (Bt, D) L2-normalised caption embeddings.
        video: (Bv, D) L2-normalised video embeddings.
        logit_scale: scalar multiplier (1 / temperature).

    Returns:
        (Bt, Bv) logits; row i holds caption i against every video.
    """
    if text.ndim != 2 or video.ndim != 2 or text.shape[1] != video.shape[1]:
        raise ValueError(f"text (Bt, D) and video (Bv, D) embeddings must share D, got "
                         f"{tuple(text.shape)} and {tuple(video.shape)}")
    return logit_scale * (text @ video.t())  # (Bt, D) @ (D, Bv) -> (Bt, Bv)


def contrastive_loss(text: torch.Tensor, video: torch.Tensor,
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean of the text->video and video->text cross entropies over the batch.

    Args:
        text: (B, D) L2-normalised caption embeddings; caption i belongs to video i.
        video: (B, D) L2-normalised video embeddings.
        logit_scale: scalar multiplier of the cosine similarities (1 / temperature).

    Returns:
        Scalar loss, twice differentiable.
    """
    if text.shape != video.shape:
        raise ValueError(f"text {tuple(text.shape)} and video {tuple(video.shape)} embeddings must "
                         f"have the same shape (B, D): one caption per video")
    logits = similarity_logits(text, video, logit_scale)  # (B, B)
    labels = torch.arange(text.shape[0], device=text.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
