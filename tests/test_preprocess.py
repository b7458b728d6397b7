"""Preprocessing: eval transform, per-video random resized crop, normalisation round trips."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mofkit.data.preprocess import (OPENAI_MEAN, OPENAI_STD, Preprocessor,
                                    random_resized_crop_params)

S = 16


@pytest.fixture
def pre():
    return Preprocessor(S, OPENAI_MEAN, OPENAI_STD)


def _video_batch(b=3, t=4, h=24, w=32, seed=0):
    """(B, T, H, W, 3) uint8: one random image per video, frame t brightened by 8 * t."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 200, (b, 1, h, w, 3), generator=g)
    return (base + 8 * torch.arange(t).view(1, t, 1, 1, 1)).to(torch.uint8)


def test_eval_constant_image_is_mean_std_exact(pre):
    frames = torch.full((2, 3, 20, 30, 3), 128, dtype=torch.uint8)
    frames[..., 1] = 10
    frames[..., 2] = 250
    x = pre.eval(frames)
    assert x.shape == (2, 3, 3, S, S) and x.dtype == torch.float32
    for c, v in enumerate((128, 10, 250)):
        expected = (v / 255 - OPENAI_MEAN[c]) / OPENAI_STD[c]
        assert torch.allclose(x[:, :, c], torch.full_like(x[:, :, c], expected), atol=1e-5)


@pytest.mark.parametrize("shape", [(S, S), (24, 32), (32, 24), (7, 50), (S, 2 * S)])
def test_eval_shapes_any_aspect(pre, shape):
    frames = torch.randint(0, 256, (5, *shape, 3), dtype=torch.uint8)
    assert pre.eval(frames).shape == (5, 3, S, S)
    assert pre.eval(frames[0]).shape == (3, S, S)  # a single image works too


def test_eval_center_crops_the_long_side(pre):
    # Short side already S: no resampling, so the output is exactly the centre S columns.
    frames = torch.randint(0, 256, (2, S, 2 * S, 3), dtype=torch.uint8)
    x = pre.eval(frames)
    ref = pre.normalize(frames[:, :, S // 2: S // 2 + S].permute(0, 3, 1, 2))
    assert torch.allclose(x, ref, atol=1e-6)


def test_eval_resize_matches_antialiased_bilinear(pre):
    frames = torch.randint(0, 256, (3, 2 * S, 3 * S, 3), dtype=torch.uint8)
    x = pre.eval(frames)
    f = frames.permute(0, 3, 1, 2).float() / 255  # (3, 3, 2S, 3S)
    ref = F.interpolate(f, size=(S, int(3 * S / 2)), mode="bilinear", antialias=True, align_corners=False)
    left = (ref.shape[-1] - S) // 2
    ref = pre.normalize(ref[..., left:left + S])
    assert torch.allclose(x, ref, atol=1e-5)


def test_normalize_round_trips(pre):
    frames = torch.randint(0, 256, (2, 3, S, S, 3), dtype=torch.uint8)
    x = pre.eval(frames)  # S x S input: no resampling
    assert torch.equal(pre.to_uint8_image(x), frames)
    y = torch.rand(4, 3, 5, 5)
    assert torch.allclose(pre.denormalize(pre.normalize(y)), y, atol=1e-6)
    assert torch.allclose(pre.normalize((y * 255).round().to(torch.uint8)),
                          pre.normalize((y * 255).round() / 255), atol=1e-6)


def test_denormalize_clips():
    pre = Preprocessor(S, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.tensor([-100.0, 0.0, 100.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    d = pre.denormalize(x)
    assert d[0, 0].max() == 0 and d[0, 1].min() == 0.5 and d[0, 2].min() == 1
    img = pre.to_uint8_image(x)
    assert img.dtype == torch.uint8 and img.shape == (1, 2, 2, 3)
    assert img[0, 0, 0].tolist() == [0, 128, 255]


def test_train_same_crop_for_all_frames_of_a_video(pre):
    frames = _video_batch()
    x = pre.train(frames, torch.Generator().manual_seed(0), scale=(0.3, 0.6))
    assert x.shape == (3, 4, 3, S, S) and x.dtype == torch.float32
    std = torch.tensor(OPENAI_STD).view(3, 1, 1)
    for b in range(3):
        for t in range(1, 4):
            # frame t is frame 0 + 8t everywhere; resampling is linear, so with the same box the
            # difference stays 8t/255/std at every pixel (up to the uint8 clip at 255: none here)
            diff = (x[b, t] - x[b, 0]) * std * 255
            assert torch.allclose(diff, torch.full_like(diff, 8.0 * t), atol=1e-3)


def test_train_different_crops_for_different_videos(pre):
    same = _video_batch(b=1).expand(6, -1, -1, -1, -1)
    x = pre.train(same, torch.Generator().manual_seed(1), scale=(0.2, 0.5))
    assert all(not torch.allclose(x[0], x[i]) for i in range(1, 6))


def test_train_generator_reproducible(pre):
    frames = _video_batch()
    a = pre.train(frames, torch.Generator().manual_seed(5))
    b = pre.train(frames, torch.Generator().manual_seed(5))
    c = pre.train(frames, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    n1 = pre.train(frames, np.random.default_rng(3))
    n2 = pre.train(frames, np.random.default_rng(3))
    assert torch.equal(n1, n2)
    torch.manual_seed(0)
    g1 = pre.train(frames)
    torch.manual_seed(0)
    assert torch.equal(g1, pre.train(frames))


def test_train_with_seeds_is_per_video(pre):
    frames = _video_batch(b=3)
    seeds = [(0, 1, 10), (0, 1, 11), (0, -1, 12)]
    x = pre.train_with_seeds(frames, seeds)
    # each video's result depends only on its own seed, not on its batch companions or position
    y = pre.train_with_seeds(frames[[2, 0]], [seeds[2], seeds[0]])
    assert torch.equal(x[2], y[0]) and torch.equal(x[0], y[1])
    with pytest.raises(ValueError, match="one per video"):
        pre.train_with_seeds(frames, seeds[:2])


def test_train_full_crop_and_flip(pre):
    # scale 1 and the frame's own aspect: the box is the whole frame; only the flip varies.
    frames = _video_batch(b=1, h=S, w=S).expand(16, -1, -1, -1, -1)
    x = pre.train(frames, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=True)
    ref = pre.eval(frames[0])
    flipped = [bool(torch.allclose(v, ref.flip(-1), atol=1e-4)) for v in x]
    plain = [bool(torch.allclose(v, ref, atol=1e-4)) for v in x]
    assert all(f != p for f, p in zip(flipped, plain))  # each is exactly one of the two
    assert 0 < sum(flipped) < 16
    no_flip = pre.train(frames, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert all(torch.allclose(v, ref, atol=1e-4) for v in no_flip)


def test_train_non_square_and_images(pre):
    x = pre.train(_video_batch(b=2, t=3, h=24, w=40), torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 3, S, S)
    imgs = torch.randint(0, 256, (4, 30, 20, 3), dtype=torch.uint8)
    assert pre.train(imgs, torch.Generator().manual_seed(0)).shape == (4, 3, S, S)
    assert pre.train(imgs[:0]).shape == (0, 3, S, S)


def test_crop_params_respect_scale_ratio_and_bounds():
    rng = np.random.default_rng(0)
    h, w = 48, 64
    for _ in range(300):
        top, left, ch, cw = random_resized_crop_params(h, w, rng, (0.3, 0.9), (0.5, 2.0))
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        assert 0.3 * 0.8 < ch * cw / (h * w) < 0.9 * 1.2  # rounding of the box's sides
        assert 0.5 * 0.8 < cw / ch < 2.0 * 1.2
    # impossible request (square crop of most of a 1:10 strip): the centred fallback
    top, left, ch, cw = random_resized_crop_params(10, 100, np.random.default_rng(0), (0.9, 1.0), (1.0, 1.0))
    assert (top, left, ch, cw) == (0, 45, 10, 10)


def test_bad_inputs(pre):
    with pytest.raises(ValueError, match="H, W, 3"):
        pre.eval(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))  # channels first is a mistake
    with pytest.raises(ValueError, match="image_size"):
        Preprocessor(0)
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop_params(8, 8, np.random.default_rng(0), scale=(0.5, 1.5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(pre):
    frames = _video_batch(h=24, w=40)
    cpu = pre.eval(frames)
    gpu = pre.eval(frames.cuda())
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    a = pre.train_with_seeds(frames, [1, 2, 3])
    b = pre.train_with_seeds(frames.cuda(), [1, 2, 3])
    assert torch.allclose(b.cpu(), a, atol=1e-4)
