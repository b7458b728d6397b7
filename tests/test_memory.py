"""Peak memory counted op by op: by hand, real tensors against fake ones, and the meta step's order."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from mofkit.bilevel.meta import hypergradient
from mofkit.eval.memory import LiveMemory, fake_module
from mofkit.models import contrastive_loss, create_retrieval_model


def test_live_storage_by_hand():
    with LiveMemory() as mem:
        a = torch.empty(1000)  # 4,000 bytes
        b = a * 2  # 8,000
        c = b[:10]  # a view: no new storage
        del b
        d = torch.empty(250)  # 9,000: b's storage lives on in c
        del a, c  # 1,000
    assert (mem.live, mem.peak) == (1000, 9000)
    del d
    assert mem.live == 0
    mem.reset_peak()
    assert mem.peak == 0


def _steps(fake: bool) -> dict[str, int]:
    """Peak bytes of a base step and both meta steps of a tiny model, real or fake tensors."""
    torch.manual_seed(0)
    bundle = create_retrieval_model("mof-tiny-32", None)
    model, s, b = bundle.model.eval(), bundle.image_size, 3
    tokens = bundle.tokenizer(["a b c"] * b)
    mode = FakeTensorMode() if fake else None
    if fake:
        model, tokens = fake_module(model, mode), mode.from_tensor(tokens)
    out = {}
    with mode if fake else _null():
        x, v = torch.randn(b, 2, 3, s, s), torch.randn(b, 6, 3, s, s)
        resident = [*model.parameters(), *model.buffers(), tokens, x, v]

        def base():
            loss = contrastive_loss(*model(tokens, x))
            loss.backward()
            for p in model.parameters():
                p.grad = None

        steps = {"base": base}
        for method in ("exact", "fd"):
            for chunk in (None, 1):
                steps[f"{method} {chunk}"] = (lambda m=method, c=chunk: hypergradient(
                    model, contrastive_loss, tokens, x, v, alpha=1e-7, method=m, chunk=c))
        for name, fn in steps.items():
            with LiveMemory(fake_scalars=fake) as mem:
                mem.track(resident)
                fn()
            out[name] = mem.peak
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fake_tensors_count_what_real_tensors_count():
    real, fake = _steps(fake=False), _steps(fake=True)
    assert real == fake


def test_reading_a_value_under_fake_tensors_needs_fake_scalars():
    with FakeTensorMode():
        t = torch.ones(3).sum()
        with LiveMemory(fake_scalars=True):
            assert t.item() == 0.0 and torch.ones(2).tolist() == [0.0, 0.0]
        with LiveMemory(), pytest.raises(Exception):
            t.item()


def test_the_exact_step_peaks_at_the_larger_of_its_passes_not_their_sum():
    """The previous order kept the K-frame double-backward graph alive during the N-frame pass;
    now its peak is under that order's, and under the sum of the two passes counted apart."""
    from test_meta import _previous_exact

    torch.manual_seed(0)
    bundle = create_retrieval_model("mof-tiny-32", None)
    model, s, b = bundle.model.eval(), bundle.image_size, 4
    tokens = bundle.tokenizer(["a b c"] * b)
    x, v = torch.randn(b, 4, 3, s, s), torch.randn(b, 16, 3, s, s)
    resident = [*model.parameters(), *model.buffers(), tokens, x, v]

    def peak(fn):
        with LiveMemory() as mem:
            mem.track(resident)
            fn()
        return mem.peak - mem_resident

    with LiveMemory() as m0:
        m0.track(resident)
    mem_resident = m0.live
    now = peak(lambda: hypergradient(model, contrastive_loss, tokens, x, v, alpha=1e-7))
    before = peak(lambda: _previous_exact(model, contrastive_loss, tokens, x, v, alpha=1e-7))
    k_pass = peak(lambda: hypergradient(model, contrastive_loss, tokens, x, x[:, :1], alpha=1e-7))
    assert now < 0.8 * before, (now, before)
    assert now < before - 0.5 * k_pass
