"""The lab's names, written once: the methods, regimes, compressors and corpora that studies
compare, the config's own runs and the labels of a table's rows. Each maps a name to the dotted config
overrides it stands for; the CLI, the study grids, their summaries and the notebooks read them here.
"""
from __future__ import annotations

from typing import Any

from mofkit.config import Config


OWN_RUNS = ("uniform", "mof")  # the config's own runs, at its K and seed
# setting keys that label table rows (or name the run's folder), not overrides
LABEL_KEYS = ("label", "ablation", "value", "regime", "folder")
# what a paired study's runs differ by: the methods, at the config's K (the bank methods get the
# baseline's random crop on their frames, mof.augment, so that every method sees the same augmentation)
_BANK = {"mof.enabled": True, "mof.augment": True}
METHODS: dict[str, dict[str, Any]] = {
    "uniform": {"mof.enabled": False},  # segment mid-points, every epoch
    "rand": {"mof.enabled": False, "data.train_sampling": "rand"},  # a random frame per segment
    "frozen": {**_BANK, "mof.update": "none"},  # MOF's bank, initialised as MOF's, never updated
    "oracle": {**_BANK, "mof.update": "none", "mof.init": "oracle"},  # frames inside the captioned events
    "MOF": dict(_BANK),
    "MOF (first order)": {**_BANK, "mof.hypergrad": "fd"},
}
CONTROLS = tuple(METHODS)  # the controls study: every method, in the base regime
REGIME_METHODS = ("uniform", "rand", "MOF")  # the regime study: MOF against both baselines
PAIRED_BASELINES = ("uniform", "rand")  # what the controls' and regimes' intervals compare against
# one axis at a time away from the profile: the corpus (its own folder), or the model's start
REGIMES: dict[str, dict[str, Any]] = {
    "base": {},
    "fewer short events": {"synthetic.short_prob": 0.25},
    "longer short events": {"synthetic.short_frames": (4, 6)},
    "small training set": {"synthetic.n_train": 250},
    "pretrained start": {"pretrain": True},  # the towers of `mofkit pretrain`, CLIP4Clip-like lrs
    "family batches": {"train.family_batches": True},  # batches of whole hard-negative families
}


# the compressors study: every video compressed from N decoded frames to K (mofkit.compress), at
# train and test time; label -> overrides at the config's K. Ordered by what a partial table needs
# first (the study runs seed-major): the strongest fixed compressor, then the learned ones.
COMPRESSORS: dict[str, dict[str, Any]] = {
    "segment_deviation": {"compress.name": "segment_deviation"},
    "slots soft": {"compress.name": "slots", "compress.mode": "soft"},
    "slots hard": {"compress.name": "slots", "compress.mode": "hard"},
    "slots soft (MOF amortised)": {"compress.name": "slots", "compress.mode": "soft",
                                   "compress.training": "amortised"},
    "keyframes": {"compress.name": "keyframes"},
    "segment_max": {"compress.name": "segment_max"},
    "segment_mean": {"compress.name": "segment_mean"},
    "dynamic_image": {"compress.name": "dynamic_image"},
    "slots hard (MOF amortised)": {"compress.name": "slots", "compress.mode": "hard",
                                   "compress.training": "amortised"},
    "slots soft (distilled)": {"compress.name": "slots", "compress.mode": "soft", "compress.distill": 1.0},
}
# its corpora: the paired studies' base corpus, and the same with a moving camera and background
# clutter, where per-pixel pooling smears and events stay visible in single frames
COMPRESSOR_CORPORA: dict[str, dict[str, Any]] = {
    "static": {},
    "camera": {"synthetic.camera": "moving", "synthetic.clutter": 4},
}


def uniform_label(k: int) -> str:
    """The compressors study's label of uniform sampling at K frames: ``uniform K=4``."""
    return f"uniform K={k}"


def compressor_baselines(cfg: Config) -> tuple[str, str]:
    """The compressors study's two baselines: uniform at the config's K and at 16 frames (or the
    largest K of ``study.compressor_k_values``)."""
    top = max(cfg.study.compressor_k_values, default=cfg.data.num_frames)
    return uniform_label(cfg.data.num_frames), uniform_label(max(top, cfg.data.num_frames))
