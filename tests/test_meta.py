"""The meta step: exact hypergradient vs finite differences and vs the earlier implementation, in
pieces, under gradient checkpointing and mixed precision; weights untouched, descent, first order."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mofkit.bilevel.meta import hypergradient, math_attention, whole_video_loss


class _ToyRetrieval(torch.nn.Module):
    """A small dual encoder with attention over patches and frames (float64-friendly)."""

    def __init__(self, dim=8, vocab=20, pixels=3 * 4 * 4):
        super().__init__()
        self.patch = torch.nn.Linear(pixels, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.tok = torch.nn.Embedding(vocab, dim)
        self.text_proj = torch.nn.Linear(dim, dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def encode_video(self, frames):
        b, t = frames.shape[:2]
        h = torch.tanh(self.patch(frames.reshape(b, t, -1)))  # (B, T, D)
        q, k, v = self.qkv(self.norm(h)).chunk(3, dim=-1)
        h = h + F.scaled_dot_product_attention(q, k, v)
        return F.normalize(self.proj(h.mean(1)), dim=-1)

    def encode_text(self, tokens):
        return F.normalize(self.text_proj(self.tok(tokens).mean(1)), dim=-1)

    def forward(self, tokens, frames):
        return self.encode_text(tokens), self.encode_video(frames), self.logit_scale.exp()


def _loss(text, video, scale):
    logits = scale * text @ video.t()
    labels = torch.arange(len(text))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def _batch(dtype=torch.float64, b=4, k=2, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 20, (b, 5), generator=g)
    x = torch.randn(b, k, 3, 4, 4, generator=g, dtype=dtype)
    v = torch.randn(b, n, 3, 4, 4, generator=g, dtype=dtype)
    return tokens, x, v


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return _ToyRetrieval().double().eval()


def test_exact_hypergradient_matches_central_differences(toy):
    tokens, x, v = _batch()
    res = hypergradient(toy, _loss, tokens, x, v, alpha=0.5, method="exact")
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        d = torch.randn(x.shape, generator=g, dtype=x.dtype)
        h = 1e-5
        lp = whole_video_loss(toy, _loss, tokens, x + h * d, v, alpha=0.5)
        lm = whole_video_loss(toy, _loss, tokens, x - h * d, v, alpha=0.5)
        fd = (lp - lm).item() / (2 * h)
        analytic = (res.grad * d).sum().item()
        assert abs(fd - analytic) / max(abs(fd), 1e-12) < 1e-6, (fd, analytic)


def test_exact_hypergradient_matches_autograd_through_unrolled_step(toy):
    tokens, x, v = _batch()
    xr = x.clone().requires_grad_(True)
    loss2 = whole_video_loss(toy, _loss, tokens, xr, v, alpha=0.3)
    (ref,) = torch.autograd.grad(loss2, [xr])
    res = hypergradient(toy, _loss, tokens, x, v, alpha=0.3)
    torch.testing.assert_close(res.grad, ref, rtol=1e-10, atol=1e-12)
    assert res.loss_whole == pytest.approx(loss2.item(), rel=1e-12)


def test_meta_step_leaves_weights_bit_identical(toy):
    before = copy.deepcopy(toy.state_dict())
    tokens, x, v = _batch()
    x0 = x.clone()
    for method in ("exact", "fd"):
        hypergradient(toy, _loss, tokens, x, v, alpha=1.0, method=method)
    for name, tensor in toy.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(p.grad is None for p in toy.parameters())
    assert torch.equal(x, x0)


def test_step_against_hypergradient_lowers_whole_video_loss(toy):
    tokens, x, v = _batch(seed=3)
    res = hypergradient(toy, _loss, tokens, x, v, alpha=0.5)
    before = whole_video_loss(toy, _loss, tokens, x, v, alpha=0.5).item()
    after = whole_video_loss(toy, _loss, tokens, x - 0.05 * res.grad / res.grad.norm(), v,
                             alpha=0.5).item()
    assert after < before


def test_finite_difference_variant_agrees_with_exact(toy):
    tokens, x, v = _batch(seed=5)
    exact = hypergradient(toy, _loss, tokens, x, v, alpha=0.5, method="exact").grad
    approx = hypergradient(toy, _loss, tokens, x, v, alpha=0.5, method="fd", fd_eps=1e-4).grad
    cos = F.cosine_similarity(exact.flatten(), approx.flatten(), dim=0)
    assert cos > 0.9999
    torch.testing.assert_close(approx, exact, rtol=1e-3, atol=1e-8)


def test_nonfinite_rows_are_flagged(toy):
    tokens, x, v = _batch()
    x[1, 0, 0, 0, 0] = float("nan")
    res = hypergradient(toy, _loss, tokens, x, v, alpha=0.5)
    assert not bool(res.finite.all())


def test_batch_mismatch_is_named(toy):
    tokens, x, v = _batch()
    with pytest.raises(ValueError, match="batch sizes differ"):
        hypergradient(toy, _loss, tokens[:2], x, v, alpha=0.5)


def test_frames_move_by_frame_lr_at_the_paper_alpha(tmp_path):
    """At alpha = 1e-7 a pixel's hypergradient is under Adam's eps of 1e-8 (about 1e-10 on ViT-B-32 at
    224 px, a few 1e-9 on this tiny model); the frame optimiser's default (eps relative to each
    video's gradient scale) still moves every pixel by frame_lr in a first frame update, where
    torch's absolute eps moves it by lr * |g| / (|g| + eps), about 1 % of it on ViT-B-32."""
    import numpy as np

    from mofkit.bilevel.bank import FrameBank
    from mofkit.config import get_config
    from mofkit.models import contrastive_loss, create_retrieval_model

    torch.manual_seed(0)
    bundle = create_retrieval_model("mof-tiny-32", None)
    model = bundle.model.eval()
    m = get_config("paper").mof
    assert m.alpha == 1e-7 and m.frame_eps_scale == "row"
    g = torch.Generator().manual_seed(0)
    b, k, n, s = 4, 2, 6, bundle.image_size
    tokens = bundle.tokenizer([f"caption number {i}" for i in range(b)])
    x, v = torch.randn(b, k, 3, s, s, generator=g), torch.randn(b, n, 3, s, s, generator=g)
    res = hypergradient(model, contrastive_loss, tokens, x, v, alpha=m.alpha)
    assert 0 < res.grad.abs().mean() < 1e-8  # under torch's eps (ViT-B-32 at 224 px: ~1e-10)
    change, moved = {}, {}
    # the paper's bank stores float16 frames (stochastically rounded: the spacing near 2 is 2e-3,
    # above frame_lr); the float32 bank and torch's absolute eps beside it
    for name, eps_scale, eps, dtype in (("paper", "row", m.frame_eps, m.bank_dtype),
                                        ("row", "row", m.frame_eps, "float32"),
                                        ("absolute", "absolute", 1e-8, "float32")):
        bank = FrameBank.create(tmp_path / name, [f"v{i}" for i in range(b)], k, s, dtype=dtype,
                                init=lambda rows: x[torch.from_numpy(rows)])
        before = bank.read(np.arange(b))
        bank.accumulate(np.arange(b), res.grad)
        stats = bank.step_accumulated(lr=m.frame_lr, betas=tuple(m.frame_betas), eps=eps,
                                      eps_scale=eps_scale, max_change=m.frame_step_cap)
        change[name] = stats["mean_abs_change"]
        moved[name] = (bank.read(np.arange(b)) - before).abs().mean().item()  # as stored
    assert m.bank_dtype == "float16"
    assert change["row"] == pytest.approx(m.frame_lr, rel=0.02)
    assert moved["row"] == pytest.approx(m.frame_lr, rel=0.02)
    # stochastic rounding keeps the step in expectation: the stored frames move by frame_lr too
    assert moved["paper"] == pytest.approx(m.frame_lr, rel=0.05)
    # torch's Adam: lr * |g| / (|g| + eps), a fraction that falls with alpha
    expect = (m.frame_lr * res.grad.abs() / (res.grad.abs() + 1e-8)).mean().item()
    assert change["absolute"] == pytest.approx(expect, rel=0.02)
    assert change["absolute"] < 0.5 * m.frame_lr


def _previous_exact(model, loss_fn, tokens, x, v, alpha):
    """The exact step as it was before its restructuring (the K-frame double-backward graph alive
    during the N-frame pass, -alpha inside the vector-Jacobian product): the reference the new
    order must reproduce."""
    from torch.func import functional_call

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    names = list(params)
    x = x.detach().requires_grad_(True)
    with math_attention():
        loss1 = loss_fn(*functional_call(model, {**params, **buffers}, (tokens, x)))
        g = torch.autograd.grad(loss1, [params[n] for n in names], create_graph=True)
        w_virtual = {n: (params[n] - alpha * gi).detach().requires_grad_(True) for n, gi in zip(names, g)}
        loss2 = loss_fn(*functional_call(model, {**w_virtual, **buffers}, (tokens, v)))
        d_w = torch.autograd.grad(loss2, [w_virtual[n] for n in names])
        (grad,) = torch.autograd.grad(g, [x], grad_outputs=[-alpha * d for d in d_w])
    return grad, loss1.item(), loss2.item()


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_exact_step_reproduces_the_previous_implementation(toy, chunk):
    tokens, x, v = _batch(seed=7)
    ref, l1, l2 = _previous_exact(toy, _loss, tokens, x, v, alpha=0.4)
    res = hypergradient(toy, _loss, tokens, x, v, alpha=0.4, chunk=chunk)
    torch.testing.assert_close(res.grad, ref, rtol=1e-10, atol=1e-14)
    assert (res.loss_compressed, res.loss_whole) == (pytest.approx(l1, rel=1e-12), pytest.approx(l2, rel=1e-12))


@pytest.mark.parametrize("method", ["exact", "fd"])
def test_the_whole_video_pass_in_pieces_gives_the_same_hypergradient(toy, method):
    tokens, x, v = _batch(b=5, seed=9)
    one = hypergradient(toy, _loss, tokens, x, v, alpha=0.5, method=method, fd_eps=1e-4)
    for chunk in (1, 2, 4, 5, 8):
        res = hypergradient(toy, _loss, tokens, x, v, alpha=0.5, method=method, fd_eps=1e-4, chunk=chunk)
        torch.testing.assert_close(res.grad, one.grad, rtol=1e-9, atol=1e-14)
        assert res.loss_whole == pytest.approx(one.loss_whole, rel=1e-12)
    with pytest.raises(ValueError, match="chunk"):
        hypergradient(toy, _loss, tokens, x, v, alpha=0.5, chunk=-1)


def _tiny_clip(seed=0, dtype=torch.float32):
    from mofkit.models import create_retrieval_model

    torch.manual_seed(seed)
    bundle = create_retrieval_model("mof-tiny-32", None)
    return bundle, bundle.model.to(dtype).eval()


def test_gradient_checkpointing_gives_the_same_hypergradient():
    """open_clip's checkpointing recomputes activations in the backward; on virtual weights that
    backward runs inside the same functional_call, so the recomputation sees them (it used to see
    the module's own weights: a wrong hypergradient, cosine 0.83 here, without an error)."""
    from mofkit.models import contrastive_loss

    bundle, model = _tiny_clip(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    b, s = 4, bundle.image_size
    tokens = bundle.tokenizer([f"caption {i}" for i in range(b)])
    x = torch.randn(b, 2, 3, s, s, generator=g, dtype=torch.float64)
    v = torch.randn(b, 6, 3, s, s, generator=g, dtype=torch.float64)
    want = {m: hypergradient(model, contrastive_loss, tokens, x, v, alpha=0.5, method=m).grad
            for m in ("exact", "fd")}
    model.clip.set_grad_checkpointing(True)
    assert model.clip.visual.transformer.grad_checkpointing
    for method in ("exact", "fd"):
        for chunk in (None, 3):
            got = hypergradient(model, contrastive_loss, tokens, x, v, alpha=0.5, method=method,
                                chunk=chunk).grad
            torch.testing.assert_close(got, want[method], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_hypergradient_follows_float32_at_the_paper_alpha(dtype):
    """At alpha = 1e-7, -alpha * dL2/dw' underflows in a float16 backward (the earlier order gave an
    all-zero hypergradient here, and on ViT-B-32, 'finite' all the same); alpha is applied after
    the product now.
    bfloat16 keeps 8 bits of mantissa: its cosine to float32 is about 0.9998 (0.998 to 0.99991 over
    12 draws of model and batch here), float16's above 0.99998."""
    from mofkit.models import contrastive_loss

    bundle, model = _tiny_clip()
    g = torch.Generator().manual_seed(0)
    b, s = 16, bundle.image_size
    tokens = bundle.tokenizer([f"caption {i} of a video" for i in range(b)])
    x = torch.randn(b, 4, 3, s, s, generator=g)
    v = torch.randn(b, 8, 3, s, s, generator=g)
    ref = hypergradient(model, contrastive_loss, tokens, x, v, alpha=1e-7).grad
    assert ref.abs().mean() < 1e-8  # the paper's regime: pixel hypergradients under 1e-8
    for chunk in (None, 5):
        res = hypergradient(model, contrastive_loss, tokens, x, v, alpha=1e-7, chunk=chunk,
                            autocast=torch.autocast("cpu", dtype=dtype))
        assert bool(res.finite.all()) and res.grad.dtype == torch.float32
        cos = F.cosine_similarity(res.grad.flatten(), ref.flatten(), dim=0).item()
        assert cos > 0.999, (dtype, chunk, cos)
        assert 0.97 < (res.grad.norm() / ref.norm()).item() < 1.03
