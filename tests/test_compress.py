"""Frame compressors against naive loops, planted signals and the interface's promises."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from mofkit.compress import (
    COMPRESSORS,
    Compressor,
    create_compressor,
    list_compressors,
    rank_pooling_coefficients,
)
from mofkit.data.sampling import sample_indices, segment_bounds

NAMES = ("uniform", "keyframes", "segment_max", "segment_mean", "segment_deviation", "dynamic_image",
         "slots")
# every registered compressor, plus the option values that change what it computes
VARIANTS = [(name, {}) for name in NAMES] + [("keyframes", {"criterion": "histogram"}),
                                             ("slots", {"mode": "hard"})]
VARIANT_IDS = [name + "".join(f"-{v}" for v in opts.values()) for name, opts in VARIANTS]
SELECTORS = [("uniform", {}), ("keyframes", {}), ("keyframes", {"criterion": "histogram"}),
             ("slots", {"mode": "hard"})]

CPU_FRAME_FLOPS = 60_786_176  # image tower, one 64 px frame of the `cpu` profile's model (mof-tiny-p8; mof-tiny: 16,991,744)
VIT_B32_FRAME_FLOPS = 4.4e9  # ViT-B-32 image tower, one 224 px frame (multiply-adds, open_clip's table)


def _frames(b, n, h=6, w=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, h, w, generator=g, dtype=torch.float64).to(dtype)  # (B, N, 3, H, W)


def _build(name, k, opts):
    torch.manual_seed(0)
    return create_compressor(name, k, **opts)


def _source_frame(out_frame, video):
    """Index of the input frame (N, 3, H, W) equal to out_frame (3, H, W), or None."""
    hits = [i for i in range(video.shape[0]) if torch.equal(video[i], out_frame)]
    return hits[0] if hits else None


# ----------------------------------------------------------------------------------------------
# The interface, for every compressor
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,opts", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("b,n,k,dtype", [(1, 4, 4, torch.float32), (2, 10, 4, torch.float32),
                                         (3, 7, 3, torch.float64), (2, 33, 8, torch.float64)])
def test_shape_dtype_device(name, opts, b, n, k, dtype):
    comp = _build(name, k, opts)
    x = _frames(b, n, dtype=dtype)
    y = comp(x)
    assert y.shape == (b, k, 3, 6, 5) and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()
    sel = comp.selection(x)
    assert sel.shape == (b, k, n) and sel.dtype == dtype
    assert torch.allclose(sel.sum(-1), torch.ones(b, k, dtype=dtype), atol=1e-5)
    assert (sel >= 0).all()
    # videos are compressed independently of their batch
    torch.testing.assert_close(comp(x[1:2]) if b > 1 else y, y[1:2] if b > 1 else y)


@pytest.mark.parametrize("name,opts", VARIANTS, ids=VARIANT_IDS)
def test_fewer_frames_than_k_is_an_error(name, opts):
    comp = _build(name, 4, opts)
    with pytest.raises(ValueError, match="K=4.*got N=3"):
        comp(_frames(1, 3))
    with pytest.raises(ValueError, match="N=3"):
        comp.flops(3, 8)
    with pytest.raises(ValueError, match=r"\(B, N, 3, H, W\)"):
        comp(torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        comp(torch.zeros(1, 4, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name,opts", VARIANTS, ids=VARIANT_IDS)
def test_class_flags(name, opts):
    comp = _build(name, 3, opts)
    assert isinstance(comp, Compressor) and comp.num_frames == 3
    assert comp.learned == (name == "slots") == any(True for _ in comp.parameters())
    assert comp.real_frames == ((name, opts) in SELECTORS)


# ----------------------------------------------------------------------------------------------
# Selectors: exact copies of input frames from the right place
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(4, 4), (10, 4), (7, 3), (32, 8), (31, 12)])
def test_uniform_picks_the_sampler_frames(n, k):
    x = _frames(2, n)
    comp = create_compressor("uniform", k)
    idx = sample_indices(n, k, "uniform")
    assert torch.equal(comp(x), x[:, idx])
    assert comp.selection(x).argmax(-1).tolist() == [idx.tolist()] * 2


@pytest.mark.parametrize("name,opts", SELECTORS, ids=[f"{n}{''.join(o.values())}" for n, o in SELECTORS])
@pytest.mark.parametrize("n,k", [(4, 4), (10, 4), (13, 5)])
def test_selectors_output_exact_input_frames(name, opts, n, k):
    x = _frames(3, n, seed=n)
    comp = _build(name, k, opts)
    y = comp(x)
    chosen = comp.selection(x).argmax(-1)  # (B, K)
    starts, ends = segment_bounds(n, k)
    for v in range(3):
        for j in range(k):
            src = _source_frame(y[v, j], x[v])
            assert src is not None, f"{name}: output frame {j} of video {v} is not an input frame"
            assert src == chosen[v, j].item()
            if name != "slots":
                assert starts[j] <= src < ends[j], f"{name} took frame {src} for segment {j}"


@pytest.mark.parametrize("criterion", ["difference", "histogram"])
def test_keyframes_finds_a_flash(criterion):
    # segments [0, 4), [4, 8), [8, 12); all frames the same grey but frame 6, a flash
    x = torch.full((1, 12, 3, 8, 8), -0.5)
    x += 0.01 * _frames(1, 12, 8, 8, seed=1)
    x[0, 6] = 1.8
    comp = create_compressor("keyframes", 3, criterion=criterion)
    y = comp(x)
    assert _source_frame(y[0, 1], x[0]) == 6
    assert comp.selection(x)[0, 1].argmax().item() == 6


def test_keyframes_ties_take_the_earliest_frame():
    x = torch.zeros(1, 12, 3, 4, 4)
    for criterion in ("difference", "histogram"):
        comp = create_compressor("keyframes", 3, criterion=criterion)
        assert comp.selection(x)[0].argmax(-1).tolist() == [0, 4, 8]


def test_keyframes_scores_hand_computed():
    # one pixel, per-frame values 0, 0, 3, 3: mean |diff| per step is 0, 3, 0
    x = torch.tensor([0.0, 0.0, 3.0, 3.0]).view(1, 4, 1, 1, 1).expand(1, 4, 3, 1, 1)
    scores = create_compressor("keyframes", 2).scores(x)
    assert scores[0].tolist() == [0.0, 1.5, 1.5, 0.0]  # ends have one neighbour


def test_keyframes_histograms_are_batched_counts():
    comp = create_compressor("keyframes", 1, criterion="histogram", bins=4)
    # values 0, 1, 2, 3 over the range [0, 3]: bins of width 0.75 -> 0, 1, 2, 3 (top value clamped)
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0, 0.1]).view(1, 1, 1, 2, 3).expand(1, 1, 3, 2, 3)
    hist = comp.histograms(x)
    assert hist.shape == (1, 1, 3, 4)
    assert torch.allclose(hist[0, 0, 0], torch.tensor([2, 1, 1, 2]) / 6.0)


# ----------------------------------------------------------------------------------------------
# Per-segment reductions against naive loops
# ----------------------------------------------------------------------------------------------

def _naive_segment_ops(x: np.ndarray, k: int) -> dict:
    """segment_max / mean / deviation one pixel at a time. x: (B, N, C, H, W)."""
    b, n, c, h, w = x.shape
    starts, ends = segment_bounds(n, k)
    out = {key: np.zeros((b, k, c, h, w)) for key in ("segment_max", "segment_mean", "segment_deviation")}
    for v in range(b):
        for j in range(k):
            for ch in range(c):
                for yy in range(h):
                    for xx in range(w):
                        vals = [x[v, t, ch, yy, xx] for t in range(starts[j], ends[j])]
                        out["segment_max"][v, j, ch, yy, xx] = max(vals)
                        out["segment_mean"][v, j, ch, yy, xx] = sum(vals) / len(vals)
                        median = sorted(vals)[(len(vals) - 1) // 2]  # the lower median
                        dev = [abs(a - median) for a in vals]
                        out["segment_deviation"][v, j, ch, yy, xx] = vals[dev.index(max(dev))]
    return out


@pytest.mark.parametrize("n,k", [(7, 3), (4, 4), (9, 2)])
def test_segment_ops_match_naive_loop(n, k):
    x = _frames(2, n, 2, 3, dtype=torch.float64, seed=3)
    naive = _naive_segment_ops(x.numpy(), k)
    for name, expected in naive.items():
        got = create_compressor(name, k)(x).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=name)


def test_segment_deviation_picks_the_outlier():
    x = torch.zeros(1, 5, 3, 2, 2)
    x[0, :, 0, 0, 0] = torch.tensor([0.1, 0.2, -1.5, 0.15, 0.12])  # one outlier
    x[0, :, 1, 1, 1] = torch.tensor([0.3, 0.3, 0.3, 0.3, 0.3])  # static: keeps its value
    x[0, :, 2, 0, 1] = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0])  # tie |1| = |-1|: the earlier one
    y = create_compressor("segment_deviation", 1)(x)
    assert y[0, 0, 0, 0, 0].item() == pytest.approx(-1.5)
    assert y[0, 0, 1, 1, 1].item() == pytest.approx(0.3)
    assert y[0, 0, 2, 0, 1].item() == 1.0


def test_pixel_share_selection():
    x = torch.zeros(1, 4, 3, 2, 2)
    x[0, 1] = 1.0  # frame 1 holds every max of segment 0 = [0, 2)
    x[0, 3, 0] = 1.0  # frame 3 holds a third of segment 1's maxima ([2, 4)), the rest tie -> frame 2
    sel = create_compressor("segment_max", 2).selection(x)[0]
    assert sel[0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.allclose(sel[1], torch.tensor([0.0, 0.0, 2 / 3, 1 / 3]))


def test_segment_mean_selection_is_one_over_length():
    sel = create_compressor("segment_mean", 3).selection(_frames(1, 7))[0]  # segments [0,2) [2,4) [4,7)
    expected = torch.tensor([[.5, .5, 0, 0, 0, 0, 0], [0, 0, .5, .5, 0, 0, 0], [0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3]])
    assert torch.allclose(sel, expected)


# ----------------------------------------------------------------------------------------------
# Dynamic images
# ----------------------------------------------------------------------------------------------

def test_rank_pooling_coefficients():
    np.testing.assert_allclose(rank_pooling_coefficients(1), [0.0], atol=1e-15)
    np.testing.assert_allclose(rank_pooling_coefficients(2), [-0.5, 0.5])
    np.testing.assert_allclose(rank_pooling_coefficients(3), [-4 / 3, 2 / 3, 2 / 3])
    for t in range(1, 40):
        a = rank_pooling_coefficients(t)
        assert abs(a.sum()) < 1e-9
        if t > 1:
            # early frames negative, later ones positive, one change of sign (not monotone: for
            # T >= 4 the last frame weighs less than the ones before it)
            signs = np.sign(a)
            assert signs[0] < 0 < signs[-1] and (np.diff(signs) >= 0).all()
            assert (a * np.arange(t)).sum() > 0  # correlates with time
        # the same weights from their definition: the RankSVM step on running means,
        # sum_s beta_s psi_s with beta_s = 2s - T - 1 and psi_s = mean(V_1..V_s)
        direct = [sum((2 * s - t - 1) / s for s in range(tau, t + 1)) for tau in range(1, t + 1)]
        np.testing.assert_allclose(a, direct, atol=1e-9)


def test_dynamic_image_single_frame_segments_return_the_frame():
    x = _frames(2, 5)  # K = 4: segments [0,1) [1,2) [2,3) [3,5)
    y = create_compressor("dynamic_image", 4)(x)
    assert torch.equal(y[:, :3], x[:, :3])
    assert torch.equal(create_compressor("dynamic_image", 5)(x), x)


def test_dynamic_image_follows_a_ramp():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 1, 3, 8, 8, generator=g)
    direction = torch.randn(1, 1, 3, 8, 8, generator=g)
    t = torch.arange(12, dtype=torch.float32).view(1, 12, 1, 1, 1)
    x = base + 0.05 * t * direction  # (1, 12, 3, 8, 8)
    y = create_compressor("dynamic_image", 2)(x)
    mean_frame = x[:, :6].mean(1)
    for ch in range(3):
        out, d = y[0, 0, ch].flatten(), direction[0, 0, ch].flatten()
        assert torch.corrcoef(torch.stack([out, d]))[0, 1] > 0.99
        # the rescale puts it at the mean frame's mean and spread
        assert out.mean().item() == pytest.approx(mean_frame[0, ch].mean().item(), abs=1e-5)
        assert out.std(correction=0).item() == pytest.approx(mean_frame[0, ch].std(correction=0).item(), rel=1e-4)
    # reversing time flips the pattern
    y_rev = create_compressor("dynamic_image", 2)(x.flip(1))
    out = y_rev[0, 1, 0].flatten()
    assert torch.corrcoef(torch.stack([out, direction[0, 0, 0].flatten()]))[0, 1] < -0.99


def test_dynamic_image_of_a_static_segment_is_the_frame():
    x = _frames(1, 1).expand(1, 6, 3, 6, 5)
    y = create_compressor("dynamic_image", 2)(x)
    torch.testing.assert_close(y, x[:, :2])


def test_dynamic_image_selection_is_the_coefficient_share():
    sel = create_compressor("dynamic_image", 2).selection(_frames(1, 5))[0]  # segments [0,2) [2,5)
    assert torch.allclose(sel[0, :2], torch.tensor([0.5, 0.5]))
    a = np.abs(rank_pooling_coefficients(3))
    assert torch.allclose(sel[1, 2:], torch.tensor(a / a.sum(), dtype=torch.float32))


# ----------------------------------------------------------------------------------------------
# The learned compressor
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(32, 4), (32, 8), (8, 8), (10, 3), (64, 12)])
def test_slots_start_near_their_own_segment(n, k):
    comp = _build("slots", k, {})
    sel = comp.selection(_frames(2, n, 16, 16))  # (B, K, N)
    starts, ends = segment_bounds(n, k)
    for j in range(k):
        own = sel[:, j, starts[j]:ends[j]].sum(-1)
        assert (own > 0.5).all(), f"slot {j} puts {own.tolist()} inside its segment"


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_slots_gradients_reach_parameters_and_frames(mode):
    comp = _build("slots", 3, {"mode": mode})
    x = _frames(2, 9, 8, 8).requires_grad_(True)
    target = _frames(2, 3, 8, 8, seed=5)
    loss = (comp(x) * target).sum()
    loss.backward()
    for pname, p in comp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{mode}: no gradient reaches {pname}"
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_slots_hard_forward_is_exact_and_backward_is_the_soft_one():
    soft, hard = _build("slots", 3, {"mode": "soft"}), _build("slots", 3, {"mode": "hard"})
    hard.load_state_dict(soft.state_dict())
    x = _frames(1, 9, 8, 8)
    target = _frames(1, 3, 8, 8, seed=5)
    y = hard(x)
    chosen = hard.selection(x).argmax(-1)[0]
    assert torch.equal(y[0], x[0, chosen])
    # d loss / d queries: the blend's gradient, the frames being the straight-through's rows
    for comp in (soft, hard):
        (comp(x) * target).sum().backward()
    torch.testing.assert_close(hard.queries.grad, soft.queries.grad)
    with torch.no_grad():
        assert torch.equal(hard(x), y)  # without gradients the blend is skipped, same output


def test_slots_gradcheck_float64():
    comp = _build("slots", 2, {"dim": 8, "channels": (4,), "descriptor_size": 4}).double()
    x = _frames(1, 4, 4, 4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(comp, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["dynamic_image", "segment_mean", "segment_max"])
def test_fixed_gradcheck_float64(name):
    x = _frames(1, 5, 3, 3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(create_compressor(name, 2), (x,), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Cost
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cpu_frame_flops():
    from mofkit.config import get_config
    from mofkit.eval.cost import video_flops
    from mofkit.models import create_from_config

    cfg = get_config("cpu")
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), "cpu")  # FLOPs: no weights
    per_frame = video_flops(bundle.model, 1, bundle.image_size)["image_tower_per_frame"]
    assert per_frame == CPU_FRAME_FLOPS  # the constant the module documents
    return per_frame


@pytest.mark.parametrize("name,opts", VARIANTS, ids=VARIANT_IDS)
def test_flops_are_counted(name, opts):
    comp = _build(name, 4, opts)
    f = comp.flops(32, 64)
    assert set(f) == {"counted", "elementwise", "total"}
    assert f["total"] == f["counted"] + f["elementwise"]
    assert all(isinstance(v, int) and v >= 0 for v in f.values())
    if name == "uniform":
        assert f["total"] == 0  # a gather costs no arithmetic
    else:
        assert f["total"] > 0
    assert comp.flops(32, 128)["total"] >= f["total"]


def test_flops_hand_computed():
    n, s, k, px = 32, 64, 4, 3 * 64 * 64
    assert create_compressor("segment_max", k).flops(n, s) == {"counted": 0, "elementwise": (n - k) * px,
                                                                "total": (n - k) * px}
    assert create_compressor("segment_mean", k).flops(n, s)["total"] == n * px
    # the rank-pooling sum is a product the counter sees: 2 FLOPs per frame and value
    assert create_compressor("dynamic_image", k).flops(n, s)["counted"] == 2 * n * px
    # the soft blend: K * N * 3 * S * S multiply-adds, counted
    soft = create_compressor("slots", k).flops(n, s)["counted"]
    hard = create_compressor("slots", k, mode="hard").flops(n, s)["counted"]
    assert soft - hard == 2 * k * n * px


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_slots_cost_budgets(mode, cpu_frame_flops):
    comp = create_compressor("slots", 4, mode=mode)
    assert comp.flops(32, 64)["total"] < 0.4 * cpu_frame_flops  # under 40 % of one image-tower frame
    big = create_compressor("slots", 8, mode=mode)
    assert big.flops(32, 224)["total"] < 0.01 * 8 * VIT_B32_FRAME_FLOPS


# ----------------------------------------------------------------------------------------------
# The factory
# ----------------------------------------------------------------------------------------------

def test_factory():
    assert list_compressors() == list(NAMES) and set(COMPRESSORS) == set(NAMES)
    with pytest.raises(ValueError, match="unknown compressor 'nope'.*uniform.*slots"):
        create_compressor("nope", 4)
    with pytest.raises(TypeError, match="compressor 'uniform' has no option 'mode'"):
        create_compressor("uniform", 4, mode="hard")
    with pytest.raises(TypeError, match="no option 'critrion'.*criterion"):
        create_compressor("keyframes", 4, critrion="histogram")
    with pytest.raises(ValueError, match="mode='firm'"):
        create_compressor("slots", 4, mode="firm")
    with pytest.raises(ValueError, match="criterion='colour'"):
        create_compressor("keyframes", 4, criterion="colour")
    with pytest.raises(ValueError, match="num_frames"):
        create_compressor("uniform", 0)
    hard = create_compressor("slots", 4, mode="hard")
    assert hard.mode == "hard" and hard.real_frames and hard.learned
    assert hard(_frames(1, 6)).shape == (1, 4, 3, 6, 5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,opts", VARIANTS, ids=VARIANT_IDS)
def test_cuda_matches_cpu(name, opts):
    comp = _build(name, 4, opts)
    x = _frames(2, 11, 16, 16)
    cpu = comp(x)
    gpu = comp.cuda()(x.cuda())
    assert gpu.is_cuda and gpu.dtype == cpu.dtype
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert math.isfinite(comp.flops(8, 32)["total"])
