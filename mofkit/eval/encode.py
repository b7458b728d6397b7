"""Test-time encoding: every test video (K uniform frames) and every caption once, then metrics.

The similarity matrix is computed in blocks (:func:`mofkit.eval.metrics.similarity_matrix`) and
scored with the field's metrics, raw and with dual-softmax re-ranking reported apart. Videos that
could not be decoded never reach this point; the caller passes their ids as ``dropped`` so the
result says how many test videos the numbers cover.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from mofkit.device import autocast
from mofkit.eval.metrics import metrics_from_counts, rank_counts, similarity_matrix


@torch.no_grad()
def encode_videos(model, frames_of: Callable[[np.ndarray], torch.Tensor], num_videos: int, *,
                  preprocess: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  precision: str = "fp32", batch_size: int = 64) -> torch.Tensor:
    """Embed videos in batches.

    Args:
        model: retrieval model with ``encode_video(frames (B, T, 3, S, S)) -> (B, D)``.
        frames_of: rows -> uint8 frames (B, T, H, W, 3) (e.g. a frame cache's ``rows``).
        num_videos: rows ``0 .. num_videos - 1`` are encoded.
        preprocess: uint8 (B, T, H, W, 3) -> float (B, T, 3, S, S) on ``device`` (eval transform).
        device, precision: where and how to run.
        batch_size: videos per forward pass.

    Returns:
        (V, D) float32 L2-normalised embeddings on the CPU.
    """
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, num_videos, batch_size):
        rows = np.arange(start, min(start + batch_size, num_videos))
        frames = preprocess(frames_of(rows).to(device, non_blocking=True))  # (B, T, 3, S, S)
        with autocast(device, precision):
            out.append(model.encode_video(frames).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def encode_texts(model, tokens: torch.Tensor, *, device: torch.device, precision: str = "fp32",
                 batch_size: int = 256) -> torch.Tensor:
    """Embed tokenised captions (Q, L) in batches; returns (Q, D) float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(tokens), batch_size):
        with autocast(device, precision):
            out.append(model.encode_text(tokens[start:start + batch_size].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_model(model, *, frames_of: Callable[[np.ndarray], torch.Tensor], num_videos: int,
                   tokens: torch.Tensor, caption_video: np.ndarray | None,
                   preprocess: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                   precision: str = "fp32", batch_size: int = 64,
                   dropped: Sequence[str] = ()) -> dict:
    """Encode a test split and score it.

    Args:
        model, frames_of, num_videos, preprocess, device, precision, batch_size: see
            :func:`encode_videos`.
        tokens: (Q, L) tokenised test captions (paragraphs for DiDeMo).
        caption_video: (Q,) video row of each caption; None when caption i belongs to video i.
        dropped: ids of test videos excluded as unreadable (reported, not scored).

    Returns:
        ``{"t2v", "v2t", "t2v_dsl", "v2t_dsl"}`` metric dicts plus ``n_videos``, ``n_queries``,
        ``dropped`` (list of ids), the raw ``sim`` matrix (torch, Q x V), ``counts``, each
        direction's per-query ``(higher, tied)`` (:func:`mofkit.eval.metrics.rank_counts`), and
        the embeddings ``video`` (V, D) and ``text`` (Q, D).
    """
    video = encode_videos(model, frames_of, num_videos, preprocess=preprocess, device=device,
                          precision=precision, batch_size=batch_size)
    text = encode_texts(model, tokens, device=device, precision=precision)
    sim = similarity_matrix(text, video)
    q2v = None
    if caption_video is not None and not np.array_equal(caption_video, np.arange(num_videos)):
        q2v = np.asarray(caption_video)
    counts = rank_counts(sim, query_to_video=q2v, dsl=True)
    res = {direction: metrics_from_counts(*c) for direction, c in counts.items()}
    res.update(n_videos=int(num_videos), n_queries=int(len(tokens)), dropped=list(dropped), sim=sim,
               counts=counts, video=video, text=text)
    return res
