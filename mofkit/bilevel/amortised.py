"""MOF amortised: the hypergradient of the whole-video loss pushed into a frame compressor.

MOF moves each training video's compressed frames ``x`` along ``dL2/dx``, the gradient of the
whole-video loss after one virtual model step taken on ``x`` (:func:`mofkit.bilevel.meta.hypergradient`).
Amortised, the frames are made by a compressor from the video, ``x = C_theta(V)``, for every video
at training and at test time, and the meta level moves ``theta`` instead:

    dL2/dtheta = (dx/dtheta)^T dL2/dx,

one vector-Jacobian product through the compressor after the usual hypergradient. The model's
weights are not changed; only the compressor's parameters receive gradients.
"""
from __future__ import annotations

import contextlib

import torch

from mofkit.bilevel.meta import LossFn, MetaResult, hypergradient


def amortised_hypergradient(model: torch.nn.Module, compressor: torch.nn.Module, loss_fn: LossFn,
                            tokens: torch.Tensor, frames: torch.Tensor, v: torch.Tensor, *,
                            alpha: float, method: str = "exact", fd_eps: float = 1e-2,
                            autocast: contextlib.AbstractContextManager | None = None,
                            chunk: int | None = None) -> MetaResult:
    """Accumulate ``dL2/dtheta`` into the compressor's parameters' ``.grad``.

    Args:
        model: the retrieval model (``forward(tokens, frames) -> (text, video, scale)``).
        compressor: ``frames (B, N, 3, S, S) -> x (B, K, 3, S, S)``, differentiable in its parameters.
        loss_fn: ``loss_fn(text, video, scale) -> scalar``.
        tokens: (B, L) one caption per video.
        frames: (B, N, 3, S, S) the compressor's input frames of the videos.
        v: (B, N', 3, S, S) whole-video frames for the meta loss (may be ``frames`` themselves).
        alpha, method, fd_eps, autocast, chunk: as :func:`mofkit.bilevel.meta.hypergradient`.

    Returns:
        The :class:`MetaResult` of the frames (``grad`` is ``dL2/dx``). Rows whose hypergradient is
        not finite (``finite`` False) contribute nothing to the compressor's gradient.
    """
    x = compressor(frames)  # (B, K, 3, S, S), attached to the compressor's parameters
    res = hypergradient(model, loss_fn, tokens, x.detach(), v, alpha=alpha, method=method,
                        fd_eps=fd_eps, autocast=autocast, chunk=chunk)
    keep = res.finite.to(x.device).view(-1, *([1] * (x.ndim - 1)))
    grad = torch.where(keep, res.grad.to(x.dtype), torch.zeros((), dtype=x.dtype, device=x.device))
    x.backward(grad)
    return res
