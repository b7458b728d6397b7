"""Frames to model input: resize, crop, flip and normalise, batched on CPU or GPU tensors.

Frames arrive as ``uint8 (..., H, W, 3)`` (the decoder's and the frame cache's layout) and leave as
``float32 (..., 3, S, S)`` normalised with the model's mean and std, on the frames' device.

* :meth:`Preprocessor.eval`: CLIP's test transform. Short side to ``S`` (bilinear, antialiased),
  centre ``S x S`` crop, normalise.
* :meth:`Preprocessor.train`: random resized crop (area fraction ``scale``, aspect ``ratio``) and an
  optional horizontal flip. The crop and the flip are drawn once per video and applied to all its
  frames, so motion inside the clip is not distorted; different videos get different crops.
* :meth:`Preprocessor.train_with_seeds`: the same, with each video's crop drawn from its own seed,
  e.g. ``(seed, epoch, video_row)``, so a batch's augmentation does not depend on which process or
  in which order the videos were loaded (exact resume, DDP equivalence).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's pixel statistics (open_clip's defaults)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

Seed = int | Sequence[int]


def _seed_entropy(seed: Seed) -> int | list[int]:
    """numpy seeds must be non-negative; ``(seed, -1, row)`` style tuples are mapped into range."""
    if isinstance(seed, (int, np.integer)):
        return int(seed) % 2**64
    return [int(s) % 2**64 for s in seed]


def random_resized_crop_params(height: int, width: int, rng: np.random.Generator,
                               scale: tuple[float, float] = (0.8, 1.0),
                               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """Draw one random resized crop box (Inception-style).

    Up to ten tries draw an area fraction uniformly from ``scale`` and a log-uniform aspect ratio
    (width / height) from ``ratio``; the first box that fits is placed uniformly at random. If none
    fits, the largest centred box whose aspect lies within ``ratio`` is used.

    Args:
        height, width: the image size.
        rng: source of randomness.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's width / height.

    Returns:
        ``(top, left, crop_height, crop_width)`` in pixels.
    """
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            top = int(rng.integers(0, height - ch + 1))
            left = int(rng.integers(0, width - cw + 1))
            return top, left, ch, cw
    aspect = width / height
    if aspect < ratio[0]:
        cw, ch = width, max(1, int(round(width / ratio[0])))
    elif aspect > ratio[1]:
        ch, cw = height, max(1, int(round(height * ratio[1])))
    else:
        ch, cw = height, width
    return (height - ch) // 2, (width - cw) // 2, ch, cw


class Preprocessor:
    """The model's input transforms for a given input size and pixel statistics.

    Args:
        image_size: ``S``, the square side the model takes.
        mean, std: per-channel RGB statistics of the model (in [0, 1] units).
    """

    def __init__(self, image_size: int, mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD):
        if int(image_size) < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 channels with std > 0, got mean={mean} std={std}")
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._stats_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"Preprocessor(image_size={self.image_size}, mean={self.mean}, std={self.std})"

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._stats_cache:
            mean = torch.tensor(self.mean, device=like.device, dtype=like.dtype).view(3, 1, 1)
            std = torch.tensor(self.std, device=like.device, dtype=like.dtype).view(3, 1, 1)
            self._stats_cache[key] = (mean, std)
        return self._stats_cache[key]

    # -- normalisation ---------------------------------------------------------------------------

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel.

        Args:
            x: float (..., 3, H, W) in [0, 1], or uint8 (..., 3, H, W) in 0..255.

        Returns:
            float32 (..., 3, H, W).
        """
        if x.ndim < 3 or x.shape[-3] != 3:
            raise ValueError(f"normalize expects channels third from last (..., 3, H, W), got {tuple(x.shape)}")
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
        """Undo :meth:`normalize` (for display), non-finite values made finite.

        Args:
            x: float (..., 3, H, W) in the model's normalised space (compressed frames included).
            clip: clip to [0, 1]; without it learned frames keep values a little outside, and
                differences below one grey level survive.

        Returns:
            float32 (..., 3, H, W) on the [0, 1] image scale: NaN as 0 (black), +-inf as 1 / 0.
        """
        if x.ndim < 3 or x.shape[-3] != 3:
            raise ValueError(f"denormalize expects (..., 3, H, W), got {tuple(x.shape)}")
        x = x.float()
        mean, std = self._stats(x)
        x = torch.nan_to_num(x * std + mean, nan=0.0, posinf=1.0, neginf=0.0)
        return x.clamp_(0.0, 1.0) if clip else x

    def to_uint8_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised model input to displayable images.

        Args:
            x: float (..., 3, H, W) in the normalised space.

        Returns:
            uint8 (..., H, W, 3) on the CPU.
        """
        img = self.denormalize(x.detach()).mul_(255.0).round_().to(torch.uint8)
        return img.movedim(-3, -1).cpu()  # (..., H, W, 3)

    def _normalized_chw(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) -> normalised float32 (..., 3, H, W) in one pass over the pixels.

        Normalising before resizing is exact (interpolation weights sum to one) and cheaper:
        the affine map runs on the contiguous channels-last layout, then one copy moves channels.
        """
        if frames.ndim < 3 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be laid out (..., H, W, 3) (RGB last), got shape {tuple(frames.shape)}")
        if frames.dtype != torch.uint8 and not frames.is_floating_point():
            raise TypeError(f"frames must be uint8 (0..255) or float (0..1), got {frames.dtype}")
        unit = 255.0 if frames.dtype == torch.uint8 else 1.0
        key = ("hwc", frames.device, unit)
        if key not in self._stats_cache:
            std = torch.tensor(self.std, device=frames.device)
            mean = torch.tensor(self.mean, device=frames.device)
            self._stats_cache[key] = (1.0 / (unit * std), -mean / std)
        scale, offset = self._stats_cache[key]
        x = torch.addcmul(offset, frames.float(), scale)  # (..., H, W, 3)
        return x.movedim(-1, -3).contiguous()  # (..., 3, H, W)

    # -- transforms ------------------------------------------------------------------------------

    def eval(self, frames: torch.Tensor) -> torch.Tensor:
        """Test transform: short side to ``S`` (bilinear, antialias), centre crop, normalise.

        Args:
            frames: uint8 (..., H, W, 3) on any device, e.g. (B, T, H, W, 3).

        Returns:
            float32 (..., 3, S, S) on the same device.
        """
        x = self._normalized_chw(frames)  # (..., 3, H, W)
        lead, (h, w) = x.shape[:-3], x.shape[-2:]
        s = self.image_size
        x = x.reshape(-1, 3, h, w)  # (N, 3, H, W)
        if min(h, w) != s:
            x = TF.resize(x, [s], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if tuple(x.shape[-2:]) != (s, s):
            x = TF.center_crop(x, [s, s])
        return x.reshape(*lead, 3, s, s)  # (..., 3, S, S)

    def train(self, frames: torch.Tensor, generator: torch.Generator | np.random.Generator | None = None,
              scale: tuple[float, float] = (0.8, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
              hflip: bool = False) -> torch.Tensor:
        """Training transform: one random resized crop (and flip) per video, shared by its frames.

        Args:
            frames: uint8 (B, T, H, W, 3) (or (B, H, W, 3) images), on any device.
            generator: a ``torch.Generator`` or numpy ``Generator`` that draws one seed per video;
                None uses torch's global generator (so ``torch.manual_seed`` makes it repeatable).
            scale: range of the crop's area as a fraction of the frame's.
            ratio: range of the crop's aspect ratio (width / height).
            hflip: flip each video horizontally with probability 1/2.

        Returns:
            float32 (B, T, 3, S, S) (or (B, 3, S, S)) on the frames' device.
        """
        b = frames.shape[0] if frames.ndim >= 4 else 0
        if isinstance(generator, np.random.Generator):
            seeds = [int(s) for s in generator.integers(0, 2**63 - 1, size=b)]
        else:
            seeds = torch.randint(0, 2**62, (b,), generator=generator).tolist()
        return self.train_with_seeds(frames, seeds, scale=scale, ratio=ratio, hflip=hflip)

    def train_with_seeds(self, frames: torch.Tensor, seeds: Sequence[Seed],
                         scale: tuple[float, float] = (0.8, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = False) -> torch.Tensor:
        """:meth:`train` with video ``b``'s crop and flip drawn from ``default_rng(seeds[b])``.

        Args:
            frames: uint8 (B, T, H, W, 3) (or (B, H, W, 3)).
            seeds: B seeds, each an int or a tuple of ints such as ``(seed, epoch, video_row)``
                (negative entries are allowed).
            scale, ratio, hflip: as in :meth:`train`.

        Returns:
            float32 (B, T, 3, S, S) (or (B, 3, S, S)) on the frames' device.
        """
        if frames.ndim < 4:
            raise ValueError(f"train expects a batch (B, T, H, W, 3) or (B, H, W, 3), got {tuple(frames.shape)}")
        if len(seeds) != frames.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {frames.shape[0]} videos; pass one per video")
        return self.crop_with_seeds(self._normalized_chw(frames), seeds, scale=scale, ratio=ratio,
                                    hflip=hflip)

    def crop_with_seeds(self, x: torch.Tensor, seeds: Sequence[Seed],
                        scale: tuple[float, float] = (0.8, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = False) -> torch.Tensor:
        """The random resized crop (and flip) of :meth:`train_with_seeds` on normalised frames.

        For frames already in the model's input space, such as MOF's compressed frames: the same
        seed gives the same crop box as :meth:`train_with_seeds` would on frames of that size.

        Args:
            x: float (B, T, 3, H, W) (or (B, 3, H, W)), normalised.
            seeds, scale, ratio, hflip: as in :meth:`train_with_seeds`.

        Returns:
            float32 (B, T, 3, S, S) (or (B, 3, S, S)) on the frames' device.
        """
        if len(seeds) != x.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {x.shape[0]} videos; pass one per video")
        lead = x.shape[1:-3]
        s = self.image_size
        if x.shape[0] == 0:
            return x.new_zeros((0, *lead, 3, s, s))
        if min(x.shape[-2:]) > 1.5 * s:
            # Shrink first with antialiasing; the crop below then never downsamples much.
            flat = x.reshape(-1, 3, *x.shape[-2:])
            flat = TF.resize(flat, [s], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            x = flat.reshape(*x.shape[:-2], *flat.shape[-2:])
        h, w = x.shape[-2:]
        theta = torch.zeros(len(seeds), 2, 3, dtype=torch.float32)
        for b, seed in enumerate(seeds):
            rng = np.random.default_rng(_seed_entropy(seed))
            top, left, ch, cw = random_resized_crop_params(h, w, rng, scale, ratio)
            flip = bool(rng.random() < 0.5)  # drawn whether or not used: crops do not depend on hflip
            # affine map from output coordinates in [-1, 1] to the crop box in input coordinates
            theta[b, 0, 0] = (cw / w) * (-1.0 if hflip and flip else 1.0)
            theta[b, 0, 2] = (2 * left + cw) / w - 1
            theta[b, 1, 1] = ch / h
            theta[b, 1, 2] = (2 * top + ch) / h - 1
        theta = theta.to(x.device)
        grid = F.affine_grid(theta, [len(seeds), 3, s, s], align_corners=False)  # (B, S, S, 2)
        # One grid per video, shared by its frames: fold time into channels.
        planes = x.reshape(x.shape[0], -1, h, w)  # (B, T*3, H, W)
        out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(x.shape[0], *lead, 3, s, s)  # (B, T, 3, S, S)
