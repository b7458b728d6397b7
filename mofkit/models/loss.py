"""Symmetric InfoNCE over a batch's text x video cosine similarities (CLIP's loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(text: torch.Tensor, video: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the text->video and video->text cross entropies.

    Args:
        text: (B, D) L2-normalised caption embeddings; caption i belongs to video i.
        video: (B, D) L2-normalised video embeddings.
        logit_scale: scalar multiplier of the cosine similarities (1 / temperature).

    Returns:
        Scalar loss, twice differentiable (MOF's meta step differentiates through it).
    """
    if text.shape != video.shape:
        raise ValueError(f"text {tuple(text.shape)} and video {tuple(video.shape)} embeddings differ in shape")
    logits = logit_scale * text @ video.t()  # (B, B)
    labels = torch.arange(len(text), device=text.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
