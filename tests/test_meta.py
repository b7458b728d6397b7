"""The meta step: exact hypergradient vs finite differences, weights untouched, descent, first order."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mofkit.bilevel.meta import hypergradient, whole_video_loss


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
    change = {}
    for eps_scale, eps in (("row", m.frame_eps), ("absolute", 1e-8)):
        bank = FrameBank.create(tmp_path / eps_scale, [f"v{i}" for i in range(b)], k, s,
                                init=lambda rows: x[torch.from_numpy(rows)])
        bank.accumulate(np.arange(b), res.grad)
        stats = bank.step_accumulated(lr=m.frame_lr, betas=tuple(m.frame_betas), eps=eps,
                                      eps_scale=eps_scale, max_change=m.frame_step_cap)
        change[eps_scale] = stats["mean_abs_change"]
    assert change["row"] == pytest.approx(m.frame_lr, rel=0.02)
    # torch's Adam: lr * |g| / (|g| + eps), a fraction that falls with alpha
    expect = (m.frame_lr * res.grad.abs() / (res.grad.abs() + 1e-8)).mean().item()
    assert change["absolute"] == pytest.approx(expect, rel=0.02)
    assert change["absolute"] < 0.5 * m.frame_lr
