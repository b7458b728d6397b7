"""The meta step of MOF: the hypergradient of the whole-video loss with respect to compressed frames.

For a batch of videos with one caption each (notation of MOF.md):

1. ``L1 = loss(f_w(text, x))`` on the compressed frames ``x`` (B, K, 3, S, S);
2. ``g = dL1/dw`` (kept differentiable in ``x``);
3. the virtual step ``w' = w - alpha * g``;
4. ``L2 = loss(f_w'(text, v))`` on ``N`` raw frames ``v`` (B, N, 3, S, S) of the same videos;
5. the hypergradient ``dL2/dx = -alpha * (d^2 L1 / dx dw)^T dL2/dw'``.

``exact`` computes step 5 by reverse-mode through the unrolled virtual step: ``dL2/dw'`` first
(first order, the N-frame pass), then one vector-Jacobian product of ``g`` with respect to ``x``
along ``-alpha * dL2/dw'``, exactly what the reference does with
``autograd.grad(g, x, grad_outputs=...)``. The model runs through
``torch.func.functional_call`` on the virtual weights, so no module or weight is copied, and
PyTorch's fused attention kernels (which have no double backward) are swapped for the math kernel
inside this step only.

``fd`` is the first-order alternative DARTS uses: the mixed second derivative applied to
``u = dL2/dw'`` is replaced by a central difference of ``dL1/dx`` at ``w +/- eps * u``::

    (d^2 L1/dx dw)^T u  ~=  (dL1/dx (w + eps u) - dL1/dx (w - eps u)) / (2 eps)

with ``eps = fd_eps / ||u||``. It needs no second-order graph (less memory, fused attention
allowed) at the price of two extra K-frame passes and an approximation error.

Both leave the model's weights untouched (nothing is written to a parameter or its ``.grad``); the
caller puts the model in eval mode (no dropout) for the meta epoch. This module does no I/O and no
logging.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import functional_call

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("exact", "fd")


@dataclass
class MetaResult:
    """What one meta step produced."""

    grad: torch.Tensor  # dL2/dx, same shape as the compressed frames (B, K, 3, S, S)
    loss_compressed: float  # L1: loss of the current model on the compressed frames
    loss_whole: float  # L2: loss of the virtually stepped model on the N whole-video frames
    finite: torch.Tensor  # (B,) bool: rows whose hypergradient is all finite


def math_attention():
    """Context that forces PyTorch's math attention kernel (the only one with a double backward)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False,
                                              enable_math=True)
    return sdpa_kernel(SDPBackend.MATH)


def _params_and_buffers(model: torch.nn.Module) -> tuple[dict, dict]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    return params, buffers


def _loss(model, weights: dict, buffers: dict, tokens, frames, loss_fn: LossFn) -> torch.Tensor:
    text, video, scale = functional_call(model, {**weights, **buffers}, (tokens, frames))
    return loss_fn(text, video, scale)


def hypergradient(model: torch.nn.Module, loss_fn: LossFn, tokens: torch.Tensor, x: torch.Tensor,
                  v: torch.Tensor, *, alpha: float, method: str = "exact", fd_eps: float = 1e-2,
                  autocast: contextlib.AbstractContextManager | None = None) -> MetaResult:
    """Hypergradient of the whole-video loss with respect to the compressed frames.

    Args:
        model: retrieval model whose ``forward(tokens, frames)`` returns
            ``(text_emb, video_emb, logit_scale)``. Its parameters that require grad are ``w``.
        loss_fn: ``loss_fn(text_emb, video_emb, logit_scale) -> scalar`` (symmetric InfoNCE).
        tokens: (B, L) one caption per video.
        x: (B, K, 3, S, S) compressed frames (not modified).
        v: (B, N, 3, S, S) whole-video frames of the same videos.
        alpha: inner (virtual) step size.
        method: ``exact`` (second order through the virtual step) or ``fd`` (finite differences).
        fd_eps: finite-difference radius relative to ``1 / ||dL2/dw'||`` (``fd`` only).
        autocast: optional autocast context for the forward passes (CUDA mixed precision).

    Returns:
        :class:`MetaResult` with ``grad`` detached, of ``x``'s shape and dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown hypergradient method {method!r}; choose one of {METHODS}")
    if x.shape[0] != v.shape[0] or x.shape[0] != tokens.shape[0]:
        raise ValueError(f"batch sizes differ: tokens {tuple(tokens.shape)}, compressed frames "
                         f"{tuple(x.shape)}, whole-video frames {tuple(v.shape)}")
    amp = autocast if autocast is not None else contextlib.nullcontext()
    params, buffers = _params_and_buffers(model)
    names = list(params)
    x = x.detach().requires_grad_(True)

    if method == "exact":
        with math_attention():
            with amp:
                loss1 = _loss(model, params, buffers, tokens, x, loss_fn)
            # g = dL1/dw as a differentiable function of x (create_graph), the costly part.
            g = torch.autograd.grad(loss1, [params[n] for n in names], create_graph=True,
                                    allow_unused=True)
            g = [gi if gi is not None else torch.zeros_like(params[n]) for gi, n in zip(g, names)]
            # The virtual weights are detached copies of w - alpha*g: the outer gradient dL2/dw'
            # is taken with respect to them, then pushed through g by one VJP below.
            w_virtual = {n: (params[n] - alpha * gi).detach().requires_grad_(True)
                         for n, gi in zip(names, g)}
            with amp:
                loss2 = _loss(model, w_virtual, buffers, tokens, v, loss_fn)
            d_w = torch.autograd.grad(loss2, [w_virtual[n] for n in names], allow_unused=True)
            d_w = [d if d is not None else torch.zeros_like(params[n]) for d, n in zip(d_w, names)]
            # dL2/dx = sum_w dL2/dw' * dw'/dx = sum_w dL2/dw' * (-alpha * dg/dx)
            pairs = [(gi, -alpha * d) for gi, d in zip(g, d_w) if gi.requires_grad]
            if pairs:
                (grad,) = torch.autograd.grad([p[0] for p in pairs], [x],
                                              grad_outputs=[p[1] for p in pairs], allow_unused=True)
            else:
                grad = None
            grad = torch.zeros_like(x) if grad is None else grad
    else:
        with amp:
            loss1 = _loss(model, params, buffers, tokens, x, loss_fn)
        g = torch.autograd.grad(loss1, [params[n] for n in names], allow_unused=True)
        w_virtual = {n: (params[n] - alpha * gi).detach().requires_grad_(True) if gi is not None
                     else params[n].detach().requires_grad_(True) for n, gi in zip(names, g)}
        with amp:
            loss2 = _loss(model, w_virtual, buffers, tokens, v, loss_fn)
        u = torch.autograd.grad(loss2, [w_virtual[n] for n in names], allow_unused=True)
        u = [ui if ui is not None else torch.zeros_like(params[n]) for ui, n in zip(u, names)]
        norm = torch.sqrt(sum((ui.float() ** 2).sum() for ui in u))
        eps = fd_eps / max(norm.item(), 1e-12)
        grads = []
        for sign in (1.0, -1.0):
            w_shift = {n: (params[n].detach() + sign * eps * ui) for n, ui in zip(names, u)}
            with amp:
                loss_s = _loss(model, w_shift, buffers, tokens, x, loss_fn)
            (gx,) = torch.autograd.grad(loss_s, [x])
            grads.append(gx)
        grad = -alpha * (grads[0] - grads[1]) / (2 * eps)

    grad = grad.detach()
    finite = torch.isfinite(grad.flatten(1)).all(dim=1)  # (B,)
    return MetaResult(grad=grad, loss_compressed=float(loss1.detach()),
                      loss_whole=float(loss2.detach()), finite=finite)


def whole_video_loss(model: torch.nn.Module, loss_fn: LossFn, tokens: torch.Tensor, x: torch.Tensor,
                     v: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """``L2(x)``: the whole-video loss after one virtual step taken on ``x``, as a differentiable
    function of ``x`` (the quantity whose gradient :func:`hypergradient` returns).

    Used by the tests (finite-difference checks) and to measure how a frame update changes L2.
    """
    params, buffers = _params_and_buffers(model)
    names = list(params)
    with math_attention():
        loss1 = _loss(model, params, buffers, tokens, x, loss_fn)
        g = torch.autograd.grad(loss1, [params[n] for n in names], create_graph=x.requires_grad,
                                allow_unused=True)
        w_virtual = {n: params[n] - alpha * gi if gi is not None else params[n]
                     for n, gi in zip(names, g)}
        return _loss(model, w_virtual, buffers, tokens, v, loss_fn)
