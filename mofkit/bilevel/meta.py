"""The meta step of MOF: the hypergradient of the whole-video loss with respect to compressed frames.

For a batch of videos with one caption each (notation of MOF.md):

1. ``L1 = loss(f_w(text, x))`` on the compressed frames ``x`` (B, K, 3, S, S);
2. ``g = dL1/dw`` (kept differentiable in ``x``);
3. the virtual step ``w' = w - alpha * g``;
4. ``L2 = loss(f_w'(text, v))`` on ``N`` raw frames ``v`` (B, N, 3, S, S) of the same videos;
5. the hypergradient ``dL2/dx = -alpha * (d^2 L1 / dx dw)^T dL2/dw'``.

``exact`` computes step 5 by reverse mode through the unrolled virtual step, in an order whose peak
memory is the larger of one N-frame pass and one K-frame double backward, not their sum:

a. ``g`` without a graph (fused attention allowed), so ``w' = w - alpha * g`` holds no graph;
b. ``u = dL2/dw'`` from the N-frame pass on ``w'``, first order (fused attention allowed), in pieces
   of ``chunk`` videos if asked (below), then freed;
c. the K-frame graph rebuilt under the math attention kernel (the fused ones have no double
   backward), ``g`` taken again with ``create_graph``, and one vector-Jacobian product
   ``(dg/dx)^T u``, which is what the reference computes with ``autograd.grad(g, x,
   grad_outputs=...)``; ``-alpha`` multiplies its result, not ``u``: at the paper's
   ``alpha = 1e-7`` the product ``alpha * u`` underflows in a float16 backward and gives a zero
   hypergradient that still looks finite.

With ``chunk`` the N-frame pass of step b runs in two sweeps (the gradient cache of contrastive
learning): every piece's embeddings without a graph, the loss and its gradient with respect to the
embeddings, then every piece again with a graph, its embeddings' gradient pushed into ``w'``. The
gradient is the same to float rounding, at one more N-frame forward; the memory is one piece's.

The model runs through ``torch.func.functional_call`` on the virtual weights, so no module or
weight is copied. A pass on virtual weights runs its backward inside the same ``functional_call``:
gradient checkpointing (open_clip's ``set_grad_checkpointing``) recomputes activations during the
backward, and they must be recomputed with the virtual weights, not the module's own (taken outside,
the hypergradient of a checkpointed model is wrong without any error).

``fd`` is the first-order alternative DARTS uses: the mixed second derivative applied to
``u = dL2/dw'`` is replaced by a central difference of ``dL1/dx`` at ``w +/- eps * u``::

    (d^2 L1/dx dw)^T u  ~=  (dL1/dx (w + eps u) - dL1/dx (w - eps u)) / (2 eps)

with ``eps = fd_eps / ||u||``. It needs no second-order graph (less memory, fused attention
allowed) at the price of two extra K-frame passes and an approximation error.

Both leave the model's weights untouched (nothing is written to a parameter or its ``.grad``); the
caller puts the model in eval mode (no dropout) for the meta epoch. Neither reads a value back to
the host except the two losses, in one transfer. This module does no I/O and no logging.
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
    finite: torch.Tensor  # (B,) bool, on the frames' device: rows whose hypergradient is all finite


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


class _Bound(torch.nn.Module):
    """``fn(model, *args)`` as a module's forward, so ``functional_call`` keeps the weights it was
    given in place for everything ``fn`` does, a backward and its checkpoint recomputation included."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args):
        return fn(self.model, *args)


def _on_weights(model: torch.nn.Module, weights: dict, buffers: dict, fn, *args):
    """``fn(model, *args)`` with ``model`` running on ``weights`` (and ``buffers``), forward and backward."""
    swapped = {f"model.{n}": t for n, t in {**weights, **buffers}.items()}
    return functional_call(_Bound(model), swapped, (fn, *args))


def _float_loss(loss_fn: LossFn, out) -> torch.Tensor:
    """The loss of the model's outputs in float32, outside autocast, as the base step takes it (a
    bfloat16 similarity matrix times a logit scale of 100 is off by tenths)."""
    return loss_fn(*(_widen(t) for t in out))


def _widen(t: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 to float32; float32 and float64 as they are."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def _zeros_for_unused(grads, like: list[torch.Tensor]) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, like)]


def _pieces(n: int, chunk: int | None) -> list[slice]:
    if not chunk or chunk >= n:
        return [slice(0, n)]
    return [slice(i, min(n, i + chunk)) for i in range(0, n, chunk)]


def first_order_grad(model: torch.nn.Module, loss_fn: LossFn, weights: dict, buffers: dict,
                     tokens: torch.Tensor, frames: torch.Tensor, *,
                     amp: contextlib.AbstractContextManager | None = None,
                     chunk: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The loss of ``model`` on ``weights`` and its gradient with respect to them (no graph kept).

    The forward and backward run inside one ``functional_call`` on ``weights`` (right under
    gradient checkpointing). With ``chunk`` the batch runs in pieces of that many videos: every
    piece's embeddings without a graph, the loss and its gradient with respect to all embeddings,
    then each piece again with a graph and that gradient; the result equals the one-pass gradient
    to float rounding and the memory is one piece's (the gradient cache of contrastive learning).

    Args:
        model: ``forward(tokens, frames) -> (text_emb, video_emb, logit_scale)``; each video's and
            caption's embedding depends on that video or caption alone (eval mode).
        loss_fn: ``loss_fn(text_emb, video_emb, logit_scale) -> scalar``.
        weights: name -> tensor the gradient is taken with respect to (requires grad).
        buffers: the model's buffers.
        tokens: (B, L) captions.
        frames: (B, T, 3, S, S) frames.
        amp: autocast context of the forward passes (None: none).
        chunk: videos per piece (None or 0: the whole batch in one pass).

    Returns:
        ``(loss, grads)``: the detached scalar loss and one gradient per entry of ``weights``, in
        its order (zeros for weights the loss does not reach).
    """
    amp = amp if amp is not None else contextlib.nullcontext()
    names = list(weights)
    wlist = [weights[n] for n in names]
    pieces = _pieces(frames.shape[0], chunk)

    if len(pieces) == 1:
        def one_pass(m):
            with amp:
                out = m(tokens, frames)
            loss = _float_loss(loss_fn, out)
            return loss.detach(), torch.autograd.grad(loss, wlist, allow_unused=True)

        loss, grads = _on_weights(model, weights, buffers, one_pass)
        return loss, _zeros_for_unused(grads, wlist)

    def embed(m):
        with torch.no_grad(), amp:
            outs = [m(tokens[p], frames[p]) for p in pieces]
        return outs

    outs = _on_weights(model, weights, buffers, embed)
    text = _widen(torch.cat([o[0] for o in outs])).requires_grad_(True)  # (B, D)
    video = _widen(torch.cat([o[1] for o in outs])).requires_grad_(True)  # (B, D)
    scale = _widen(outs[0][2].detach()).requires_grad_(True)
    del outs
    loss = loss_fn(text, video, scale)
    d_text, d_video, d_scale = torch.autograd.grad(loss, [text, video, scale])

    def sweep(m):
        for j, p in enumerate(pieces):
            with amp:
                t, v, sc = m(tokens[p], frames[p])
            t, v, sc = _widen(t), _widen(v), _widen(sc)
            outputs, seeds = [t, v], [d_text[p], d_video[p]]
            if j == 0:  # the logit scale is shared: its gradient enters once
                outputs.append(sc)
                seeds.append(d_scale)
            pairs = [(o, g) for o, g in zip(outputs, seeds) if o.requires_grad]  # a fixed scale has none
            # accumulated in place in .grad: no second weight-sized buffer per piece
            torch.autograd.backward([o for o, _ in pairs], grad_tensors=[g for _, g in pairs],
                                    inputs=wlist)

    kept = [w.grad for w in wlist]  # the caller's .grad, put back below
    for w in wlist:
        w.grad = None
    try:
        _on_weights(model, weights, buffers, sweep)
        grads = [w.grad for w in wlist]
    finally:
        for w, g in zip(wlist, kept):
            w.grad = g
    return loss.detach(), _zeros_for_unused(grads, wlist)


def hypergradient(model: torch.nn.Module, loss_fn: LossFn, tokens: torch.Tensor, x: torch.Tensor,
                  v: torch.Tensor, *, alpha: float, method: str = "exact", fd_eps: float = 1e-2,
                  autocast: contextlib.AbstractContextManager | None = None,
                  chunk: int | None = None) -> MetaResult:
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
        autocast: optional autocast context for the forward passes (CUDA mixed precision). A
            context manager object is entered once per pass, so pass one that can be re-entered
            (``torch.autocast`` can).
        chunk: videos per piece of the N-frame pass (None or 0: the whole batch at once); see
            :func:`first_order_grad`.

    Returns:
        :class:`MetaResult` with ``grad`` detached, of ``x``'s shape and dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown hypergradient method {method!r}; choose one of {METHODS}")
    if x.shape[0] != v.shape[0] or x.shape[0] != tokens.shape[0]:
        raise ValueError(f"batch sizes differ: tokens {tuple(tokens.shape)}, compressed frames "
                         f"{tuple(x.shape)}, whole-video frames {tuple(v.shape)}")
    if chunk is not None and chunk < 0:
        raise ValueError(f"hypergradient: chunk must be None, 0 (one pass) or a number of videos, "
                         f"got {chunk}")
    amp = autocast if autocast is not None else contextlib.nullcontext()
    params, buffers = _params_and_buffers(model)
    names = list(params)
    plist = [params[n] for n in names]
    x = x.detach()

    # w' = w - alpha * dL1/dw from a gradient without a graph: nothing of the K-frame pass stays.
    loss1, g = first_order_grad(model, loss_fn, params, buffers, tokens, x, amp=amp)
    w_virtual = {n: (params[n].detach() - alpha * gi).requires_grad_(True) for n, gi in zip(names, g)}
    del g
    loss2, u = first_order_grad(model, loss_fn, w_virtual, buffers, tokens, v, amp=amp, chunk=chunk)
    del w_virtual

    if method == "exact":
        xg = x.requires_grad_(True)
        with math_attention():
            with amp:
                out = model(tokens, xg)
            loss = _float_loss(loss_fn, out)
            # g = dL1/dw as a differentiable function of x (create_graph): the costly part.
            g = torch.autograd.grad(loss, plist, create_graph=True, allow_unused=True)
            pairs = [(gi, ui) for gi, ui in zip(g, u) if gi is not None and gi.requires_grad]
            grad = None
            if pairs:
                # (dg/dx)^T u; -alpha is applied after the product (see the module docstring)
                (grad,) = torch.autograd.grad([p[0] for p in pairs], [xg],
                                              grad_outputs=[p[1] for p in pairs], allow_unused=True)
            del g, pairs, loss, out
        grad = torch.zeros_like(x) if grad is None else grad.mul_(-alpha)
    else:
        norm = torch.sqrt(sum((ui.float() ** 2).sum() for ui in u))
        eps = fd_eps / norm.clamp_min(1e-12)  # a tensor: no read-back to the host
        grads = []
        for sign in (1.0, -1.0):
            w_shift = {n: params[n].detach() + (sign * eps).to(ui.dtype) * ui for n, ui in zip(names, u)}
            xs = x.detach().requires_grad_(True)

            def dl1_dx(m, xs=xs):
                with amp:
                    out = m(tokens, xs)
                loss_s = _float_loss(loss_fn, out)
                return torch.autograd.grad(loss_s, [xs])[0]

            grads.append(_on_weights(model, w_shift, buffers, dl1_dx))
        grad = (grads[0] - grads[1]).div_(2 * eps.to(grads[0].dtype)).mul_(-alpha)

    grad = grad.detach()
    finite = torch.isfinite(grad.flatten(1)).all(dim=1)  # (B,)
    l1, l2 = torch.stack([loss1.double(), loss2.double()]).tolist()  # one read-back
    return MetaResult(grad=grad, loss_compressed=l1, loss_whole=l2, finite=finite)


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
