"""Symmetric InfoNCE: hand-computed values, a naive loop, and second derivatives in float64."""
import math

import pytest
import torch
import torch.nn.functional as F

from mofkit.models.loss import contrastive_loss, similarity_logits


def _naive(t: torch.Tensor, v: torch.Tensor, s) -> torch.Tensor:
    """Both directions of the cross entropy written out caption by caption, video by video."""
    b = len(t)
    total = 0.0
    for i in range(b):
        row = torch.stack([s * torch.dot(t[i], v[j]) for j in range(b)])  # caption i vs all videos
        col = torch.stack([s * torch.dot(t[j], v[i]) for j in range(b)])  # video i vs all captions
        total = total - torch.log(torch.exp(row[i]) / torch.exp(row).sum())
        total = total - torch.log(torch.exp(col[i]) / torch.exp(col).sum())
    return total / (2 * b)


def test_two_orthogonal_pairs_by_hand():
    # logits = s * I: each row's cross entropy is -log(e^s / (e^s + 1)) = log(1 + e^-s)
    e = torch.eye(2, dtype=torch.float64)
    for s in (1.0, 8.0):
        assert float(contrastive_loss(e, e, torch.tensor(s))) == pytest.approx(math.log1p(math.exp(-s)))
    # swapped pairs: the correct video always scores 0 against s for the wrong one
    assert float(contrastive_loss(e, e.flip(0), 5.0)) == pytest.approx(math.log1p(math.exp(5.0)))


@pytest.mark.parametrize("b", [1, 3, 8])
def test_matches_naive_loop(b):
    torch.manual_seed(b)
    t, v = F.normalize(torch.randn(b, 6), dim=-1), F.normalize(torch.randn(b, 6), dim=-1)
    s = torch.tensor(12.5)
    torch.testing.assert_close(contrastive_loss(t, v, s), _naive(t, v, s))
    assert float(contrastive_loss(t, v, s)) == pytest.approx(float(contrastive_loss(v, t, s)))


def test_similarity_logits_shape_and_values():
    t = F.normalize(torch.randn(3, 4), dim=-1)
    v = F.normalize(torch.randn(5, 4), dim=-1)
    logits = similarity_logits(t, v, 2.0)
    assert logits.shape == (3, 5)
    torch.testing.assert_close(logits[2, 4], 2.0 * torch.dot(t[2], v[4]))
    with pytest.raises(ValueError, match="share D"):
        similarity_logits(t, torch.randn(5, 3))
    with pytest.raises(ValueError, match="one caption per video"):
        contrastive_loss(t, v, 1.0)


def test_gradients_and_second_derivatives_match_finite_differences():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=-1).requires_grad_()
    v = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=-1).requires_grad_()
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(contrastive_loss, (t, v, s))
    assert torch.autograd.gradgradcheck(contrastive_loss, (t, v, s))


def test_loss_falls_as_pairs_align():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(6, 8), dim=-1)
    noise = F.normalize(torch.randn(6, 8), dim=-1)
    losses = [float(contrastive_loss(t, F.normalize(a * t + (1 - a) * noise, dim=-1), 10.0))
              for a in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2]
