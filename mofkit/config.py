"""Run configuration: commented dataclasses and named profiles.

Every run is described by one :class:`Config`. Profiles are plain Python functions returning a
``Config``: ``smoke`` (seconds, what the tests run), ``cpu`` (the default main job: the synthetic
corpus with a CPU-sized model on 2 cores) and ``paper`` (MSR-VTT with pretrained ViT-B-32 on a GPU,
the reference's K = 8, N = 32). Overrides use dotted keys::

    cfg = get_config("cpu", {"data.num_frames": 8, "train.epochs": 10})

Every checkpoint and metrics file stores ``cfg.to_dict()``; ``Config.from_dict`` reads it back.
This module imports nothing from the rest of mofkit.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class SyntheticConfig:
    """The built-in synthetic video-text corpus (see ``mofkit.data.synthetic``)."""

    n_train: int = 1000  # training videos
    n_test: int = 500  # test videos (one caption each, MSR-VTT 1k-A style)
    frames: int = 32  # frames per video
    size: int = 64  # frame side in pixels (square videos)
    fps: int = 8  # frame rate written into the mp4 container
    family_size: int = 4  # videos per hard-negative family (same timeline; one event's object differs)
    captions_per_video: int = 5  # paraphrases per training video
    short_prob: float = 0.75  # chance that a family's decisive event is short
    short_frames: tuple[int, int] = (2, 3)  # length range (frames) of a short event (a flash)
    seed: int = 0  # everything in the corpus follows from this seed
    camera: str = "static"  # static | moving: a per-video pan, slow zoom and shake over the whole scene
    clutter: int = 0  # moving grey/brown background blobs drawn under the events (0: none)


@dataclass
class DataConfig:
    """Where videos and captions come from and how frames are sampled, decoded and cached."""

    dataset: str = "synthetic"  # annotation reader: synthetic | msrvtt | msvd | didemo
    root: str = "data/synthetic"  # folder with the annotation files (and videos/ unless video_dir is set)
    video_dir: str | None = None  # folder with the video files; None means <root>/videos
    train_split: str = "9k"  # MSR-VTT training list: 9k or 7k
    num_frames: int = 4  # K: frames per video the model sees, in training and at test time
    train_sampling: str = "uniform"  # baseline training frames: uniform (segment mid-points) | rand
    dense_frames: int = 32  # frames per video in the cached dense grid that rand sampling draws from
    decode_size: int = 64  # short side (px) that frames are resized to on decode and cached at
    backend: str = "pyav"  # video decoder: pyav (default: one open costs 1.1-1.2x a bare decode loop, decord 1.5-2.2x) | decord (the reference's); the same pixels at native size
    cache_dir: str = "data/cache"  # decoded-frame caches (uint8 memory maps), shared by runs
    num_workers: int = 0  # DataLoader worker processes (0 reads in the main process)
    hflip: bool = False  # random horizontal flip in training; off by default, captions say left/right
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area range of the random resized crop in training


@dataclass
class ModelConfig:
    """The retrieval model: an open_clip dual encoder with a temporal head over frames."""

    arch: str = "mof-tiny"  # open_clip architecture (ViT-B-32, ViT-B-16, ...) or a mofkit tiny one
    pretrained: str | None = None  # None, an open_clip pretrained tag (e.g. openai), a checkpoint file, or "stills": the towers of `mofkit pretrain` for this config (pretrained first if missing)
    temporal_head: str = "meanP"  # meanP (mean over frames) | seqTransf (temporal transformer + residual)
    temporal_layers: int = 2  # seqTransf depth
    max_frames: int = 64  # seqTransf position embeddings: the most frames a video may have
    context_length: int = 32  # text tokens: 32 for captions, 64 for DiDeMo paragraphs
    fixed_temperature: float | None = None  # None: CLIP's learnable logit scale; 0.05: the reference's


@dataclass
class TrainConfig:
    """The base level: optimisation of the model weights."""

    epochs: int = 20  # passes over the training videos
    batch_size: int = 32  # videos per step (one caption sampled per video)
    lr: float = 1e-3  # learning rate of new modules, and of the towers when training from scratch
    tower_lr: float | None = None  # learning rate of pretrained towers; None: same as lr
    weight_decay: float = 0.1  # AdamW decay on matrices (not on biases, norms, embeddings)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas (CLIP's)
    eps: float = 1e-6  # AdamW epsilon (CLIP's)
    warmup_fraction: float = 0.1  # share of all steps spent in linear warmup before the cosine decay
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimiser step
    precision: str = "auto"  # auto (bf16 on CUDA if supported, else fp32) | fp32 | bf16 | fp16
    seed: int = 0  # seeds python, numpy and torch; sampling and init follow from it
    family_batches: bool = False  # synthetic corpus: batches hold whole hard-negative families (base and meta level), so each video meets its hard negatives; False: random batches
    eval_every: int = 1  # evaluate on the test split every this many epochs (0: only at the end)
    eval_batch_size: int = 64  # videos per batch when encoding the test split
    tensorboard: bool = True  # write TensorBoard scalars to <out_dir>/tensorboard (rank 0)
    dist_timeout_minutes: float = 120.0  # process-group timeout (several processes): how long ranks wait in a collective while one rank works alone, e.g. rank 0 stepping a shared bank of 9,000 videos (~16 min) or a cache being built; NCCL's own default is 10


@dataclass
class MOFConfig:
    """The meta level: Meta-Optimized Frames (see shared MOF.md and ``mofkit.bilevel``)."""

    enabled: bool = False  # train on compressed frames with meta updates; False is the uniform baseline
    meta_frames: int = 32  # N: whole-video frames in the meta loss
    meta_sampling: str = "rand"  # how the N frames are drawn: rand (reference) | uniform
    alpha: float = 1e-2  # inner (virtual) step size w' = w - alpha * dL1/dw; reference 1.0 (overshoots here)
    meta_batch_size: int | None = None  # videos per meta step (per rank); None: train batch / world size
    hypergrad: str = "exact"  # exact (second order through one virtual step) | fd (finite differences)
    meta_chunk: int = 0  # videos per piece of the meta step's N-frame pass (0: the whole meta batch at once); the same hypergradient to float rounding, at one more N-frame forward, with one piece's memory
    fd_eps: float = 1e-2  # finite-difference radius, relative to the weights' norm over dL2/dw' norm
    frame_lr: float = 8e-4  # Adam learning rate on the frames (reference 8e-4)
    frame_betas: tuple[float, float] = (0.5, 0.999)  # Adam betas on the frames (reference)
    frame_eps: float = 1e-3  # Adam epsilon on the frames, read as frame_eps_scale says: with row, a pixel whose gradient is under 1e-3 of its video's RMS moves less than frame_lr (rounding noise is not blown up to full steps); runs before these options had 1e-8 absolute
    frame_eps_scale: str = "row"  # row (default): frame_eps times each video's gradient scale (RMS of its bias-corrected second moment), so a frame step moves pixels by about frame_lr whatever the hypergradient's size (it scales with alpha: ~1e-10 per pixel at the paper's 1e-7) | absolute: torch's Adam (with frame_eps=1e-8: the runs before this option; steps shrink to about |grad| / eps * frame_lr once gradients fall under frame_eps)
    frame_step_cap: float | None = None  # cap on a pixel's change per frame step (normalised units; None: Adam's step): lets a large frame_lr move frames far over many steps, never far in one
    frame_lr_step: int = 30  # StepLR period in frame-optimiser steps (reference 30; one step per epoch)
    frame_lr_gamma: float = 0.5  # StepLR factor (reference 0.5)
    update: str = "epoch"  # epoch: one Adam step on all frames per meta epoch (reference) | batch | none (frozen bank: a control)
    meta_every: int = 1  # run the meta epoch every E epochs
    bank_dtype: str = "float32"  # storage of frames and Adam moments on disk: float32 | float16
    bank_shards: int = 0  # the MOF bank tasks (the others ignore it): 0: one bank every process shares (one filesystem); S > 0: the training videos in S fixed shards (video i in shard i mod S), each process owning S / world_size of them on its own disk and drawing batches from its own videos; -1: one shard per process
    bank_dir: str = ""  # where the bank lives: "" = <out_dir>/bank (sharded: <out_dir>/bank-shards); else <bank_dir>/<run tag>, e.g. a node-local disk; "{rank}" in it is the process's global rank
    init: str = "uniform"  # frame initialisation: uniform (eval preprocessing) | train_crop (one random crop) | oracle (synthetic: frames inside the captioned events)
    augment: bool = False  # base steps crop (and flip, with data.hflip) bank frames as the baseline crops its frames; the meta step sees them uncropped
    snapshot_videos: int = 8  # save these first training videos' frames after every frame update


@dataclass
class CompressConfig:
    """A frame compressor (``mofkit.compress``): every video, at training and test time, is decoded
    at N frames and compressed to the K the image tower sees. ``name=None`` decodes K frames."""

    name: str | None = None  # None | uniform | keyframes | segment_max | segment_mean | segment_deviation | dynamic_image | slots
    input_frames: int = 32  # N: frames decoded per video (uniform positions of the data.dense_frames grid)
    mode: str = "soft"  # slots: soft (blend of frames) | hard (one real frame per slot, straight-through)
    criterion: str = "difference"  # keyframes: difference (to neighbouring frames) | histogram (colour histograms)
    training: str = "end_to_end"  # a learned compressor: end_to_end (the retrieval loss through it) | amortised (MOF amortised: the hypergradient of the whole-video loss through mofkit.bilevel)
    lr: float = 1e-3  # AdamW learning rate of a learned compressor (warm-up and cosine as the model's)
    distill: float = 0.0  # end to end: weight of 1 - cos(embedding of the K frames, stop-gradient embedding of all N frames) added to the loss (0: none)


@dataclass
class PretrainConfig:
    """``mofkit pretrain``: the towers trained CLIP-style on synthetic stills (``mofkit.data.stills``),
    the start of the regime study's ``pretrained start`` (MOF's and CLIP4Clip's real regime)."""

    root: str = "data/stills"  # folder of the stills corpus (images.npy, stills.json)
    dir: str = "runs/pretrain"  # where pretrainings live, one folder per arch and settings (<dir>/<arch>-<digest>/towers.pt)
    n_train: int = 20000  # training stills (one object, one action, one caption each)
    n_test: int = 1000  # held-out stills for the zero-shot class accuracy
    size: int = 64  # still side in pixels (the video corpus's frame size)
    seed: int = 0  # corpus and training seed
    epochs: int = 8  # passes over the training stills
    batch_size: int = 128  # stills per contrastive batch
    lr: float = 1e-3  # AdamW peak learning rate (warm-up then cosine, as the video training)
    weight_decay: float = 0.05  # AdamW weight decay on matrices
    attribute_weight: float = 1.0  # weight of the colour/shape/action classification heads on the image embedding added to the contrastive loss (0: CLIP's loss alone, which a small tower satisfies with colour)
    gate: float = 90.0  # zero-shot colour, shape and action accuracy (%) on the held-out stills that `mofkit pretrain` requires (it exits with code 1 below it)


@dataclass
class StudyConfig:
    """The grids that the notebooks and benchmark scripts train (sweeps, ablations, seeds)."""

    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds of the K sweep and of the MOF comparison
    k_values: tuple[int, ...] = (2, 4, 8, 16)  # uniform-K sweep (the trade-off MOF tries to escape)
    ablation_seeds: tuple[int, ...] = (0, 1)  # training seeds of each ablation setting
    ablation_epochs: int | None = None  # epochs of each ablation run; None: train.epochs
    ablation_lr: float | None = 1e-4  # fine-tuning learning rate of the ablations, no warm-up (None: train.lr re-warmed, which damages the start)
    meta_frames_values: tuple[int, ...] = (8, 16, 32)  # N values of the ablation
    alpha_values: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # inner step sizes of the ablation
    frame_lr_values: tuple[float, ...] = (8e-4, 1e-2)  # frame learning rates of the ablation
    capped_frame_lr: tuple[float, float] | None = (0.3, 0.05)  # ablation "frames that move": per-batch updates at this frame lr with this per-step cap (None: left out)
    # the paired studies (controls, regimes: mofkit.lab.grids)
    paired_seeds: tuple[int, ...] = (0,)  # training seeds of every paired setting (5 behind a claim)
    test_videos: int | None = None  # their corpus's test split (None: synthetic.n_test); 2,000 puts one seed's R@1 standard error under a point
    regimes: tuple[str, ...] | None = None  # regimes of the regime study, in order (None: every one of mofkit.lab.names.REGIMES)
    finetune_lr: float = 1e-3  # pretrained start: learning rate of the new modules (temporal head, logit scale)
    finetune_tower_lr: float = 1e-4  # pretrained start: learning rate of the pretrained towers
    compressors: tuple[str, ...] | None = None  # the compressors study's compressors, in run order (None: every one of mofkit.lab.names.COMPRESSORS)
    compressor_k_values: tuple[int, ...] = (16, 5, 6, 8)  # the compressors study's uniform K at higher cost (besides data.num_frames)
    compressor_corpora: tuple[str, ...] = ("static", "camera")  # its corpora (mofkit.lab.names.COMPRESSOR_CORPORA)
    eval_every: int = 2  # the paired studies' runs evaluate every this many epochs and at the end (0: at the end only), so metrics.json shows how each run converged
    keep_dir: str | None = None  # where paired studies keep finished runs' small files (None: nowhere)
    results_dir: str | None = None  # where `mofkit study` writes a paired study's summary CSV (None: the results folder)


@dataclass
class Config:
    """One run: data, model, base-level training and meta level, plus where it writes."""

    profile: str = "cpu"  # the named profile this config started from
    out_dir: str = "runs/default"  # checkpoints, metrics.json/csv, figures of this run
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mof: MOFConfig = field(default_factory=MOFConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys raise, missing keys keep defaults, except the
        settings of :data:`BEFORE_ADDED`, which take the value that reproduces what a config stored
        before them did."""
        cfg = cls()
        flat = _flatten(d)
        for key, value in BEFORE_ADDED.items():
            flat.setdefault(key, value)
        apply_overrides(cfg, flat)
        return cfg

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


# Settings added with a default that changes what a run does, and the value that keeps the
# behaviour from before them: a stored config (checkpoint, metrics, kept run) without the key was
# trained that way, and is read so.
BEFORE_ADDED: dict[str, Any] = {"mof.frame_eps_scale": "absolute", "mof.frame_eps": 1e-8}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply_overrides(cfg: Config, overrides: dict[str, Any] | None) -> Config:
    """Set dotted keys (``"train.epochs": 5``) on ``cfg`` in place and return it.

    Args:
        cfg: the config to change.
        overrides: dotted key -> value. Lists become tuples where the field holds a tuple.

    Returns:
        ``cfg``.

    Raises:
        KeyError: a key names no field; the message lists the fields of that section.
        TypeError: a value of the wrong type for its field (``train.epochs="abc"``); the message
            names the field and the type it takes. An int is taken for a float field (as a
            float), a list for a tuple field.
    """
    for key, value in (overrides or {}).items():
        obj: Any = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
                raise KeyError(f"config override {key!r}: no section {p!r}; sections: "
                               f"{[f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]}")
            obj = getattr(obj, p)
        names = {f.name: f for f in dataclasses.fields(obj)}
        if parts[-1] not in names:
            raise KeyError(f"config override {key!r}: {type(obj).__name__} has no field {parts[-1]!r}; "
                           f"fields: {sorted(names)}")
        hint = typing.get_type_hints(type(obj))[parts[-1]]
        setattr(obj, parts[-1], _typed(key, hint, value))
    return cfg


def _type_name(hint) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _typed(key: str, hint, value):
    """``value`` as the field's type ``hint`` wants it, or a TypeError naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _typed(key, arm, value)
            except TypeError as e:
                errors.append(e)
        raise TypeError(f"config override {key!r}: expects {_type_name(hint)}, got {value!r} "
                        f"({type(value).__name__})")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config override {key!r}: expects {_type_name(hint)} (a list or tuple), "
                            f"got {value!r} ({type(value).__name__})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(key, args[0], v) for v in value)
        if len(value) != len(args):
            raise TypeError(f"config override {key!r}: expects {len(args)} values "
                            f"({_type_name(hint)}), got {len(value)}: {value!r}")
        return tuple(_typed(key, a, v) for a, v in zip(args, value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        if not ok:
            raise TypeError(f"config override {key!r}: expects {hint.__name__}, got {value!r} "
                            f"({type(value).__name__})")
    return value


# ----------------------------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------------------------

def smoke() -> Config:
    """Seconds on 2 cores: a tiny synthetic corpus and model. What the tests and CI run."""
    return Config(
        profile="smoke",
        out_dir="runs/smoke",
        data=DataConfig(root="data/synthetic-smoke", num_frames=4, dense_frames=16, decode_size=32),
        synthetic=SyntheticConfig(n_train=64, n_test=32, frames=16, size=32, captions_per_video=3),
        model=ModelConfig(arch="mof-tiny-32"),
        train=TrainConfig(epochs=2, batch_size=16, eval_batch_size=32),
        mof=MOFConfig(meta_frames=8),
        compress=CompressConfig(input_frames=16),  # every frame of the smoke corpus's videos
        pretrain=PretrainConfig(root="data/stills-smoke", n_train=256, n_test=64, size=32, epochs=1,
                                batch_size=32),
        study=StudyConfig(seeds=(0,), k_values=(2, 4), ablation_seeds=(0,), ablation_epochs=1,
                          meta_frames_values=(4,), alpha_values=(1e-1,), frame_lr_values=(1e-2,)),
    )


def cpu() -> Config:
    """The default main job: the synthetic corpus and a CPU-sized model, minutes per run on 2 cores.

    The towers start from ``mofkit pretrain`` (``model.pretrained="stills"``, pretrained once and
    reused): the patch-8 tiny model (``mof-tiny-p8``) trained on captioned stills with colour,
    shape and action heads, so that the video model reads shape and motion, not only colour (the
    16-pixel-patch model trained from scratch matched colours and little else). Fine-tuning is
    CLIP4Clip-like: the new modules at ``train.lr``, the towers ten times slower, 10 epochs, batches
    of whole hard-negative families. MOF's meta epoch costs several base epochs at N = 16, so it
    runs every third epoch, and the main job's K sweep is K = 4, 8, 16: with the patch-8 towers
    the main job took 51.5 minutes on 2 shared cores with MOF every other epoch and K = 2 in the
    sweep, over its 45-minute budget.
    """
    return Config(
        profile="cpu", out_dir="runs/cpu",
        model=ModelConfig(arch="mof-tiny-p8", pretrained="stills"),
        train=TrainConfig(epochs=10, lr=1e-3, tower_lr=1e-4, family_batches=True, eval_every=1),
        mof=MOFConfig(meta_frames=16, meta_every=3, frame_lr=3e-2),
        pretrain=PretrainConfig(epochs=6),
        study=StudyConfig(seeds=(0,), k_values=(4, 8, 16), ablation_seeds=(0, 1), ablation_epochs=4,
                          meta_frames_values=(8,), alpha_values=(1e-3, 1e-1),
                          frame_lr_values=(8e-4,), paired_seeds=(0, 1, 2, 3, 4), test_videos=2000,
                          compressors=("segment_deviation", "slots soft", "slots hard",
                                       "slots soft (MOF amortised)", "keyframes", "segment_max",
                                       "segment_mean"),
                          keep_dir="docs/results/runs/cpu", results_dir="docs/results"),
    )


def paper() -> Config:
    """MSR-VTT 1k-A with pretrained ViT-B-32 on a GPU: the reference's K = 8, N = 32.

    Needs the MSR-VTT videos and CLIP4Clip's annotation files under data/msrvtt (see data/README.md)
    and the OpenAI ViT-B-32 weights (downloaded by open_clip, or a local file in model.pretrained).

    The frame bank stores float16 frames: a base step reads half the bytes (150 MB per batch
    instead of 300, the difference between a GPU fed and one waiting on the host, see
    ``benchmarks/bench_feed.py``) and the bank's frames take 22 GB on disk instead of 43. Nothing
    is lost that the step keeps: it computes in bfloat16 (8 bits of mantissa, float16 has 10), and
    the frame optimiser's moments stay float32 and its results are stochastically rounded, so a
    step smaller than float16's spacing still moves the frames by it in expectation.
    """
    return Config(
        profile="paper",
        out_dir="runs/paper",
        device="cuda",
        data=DataConfig(dataset="msrvtt", root="data/msrvtt", num_frames=8, dense_frames=64,
                        decode_size=224, num_workers=8, crop_scale=(0.5, 1.0), hflip=True),
        model=ModelConfig(arch="ViT-B-32-quickgelu", pretrained="openai", temporal_head="meanP",
                          context_length=32),
        train=TrainConfig(epochs=5, batch_size=64, lr=1e-4, tower_lr=1e-7, weight_decay=0.2,
                          precision="auto", eval_batch_size=128),
        mof=MOFConfig(enabled=True, meta_frames=32, alpha=1e-7, frame_lr=8e-4, meta_chunk=16,
                      bank_dtype="float16"),
    )


PROFILES: dict[str, Callable[[], Config]] = {"smoke": smoke, "cpu": cpu, "paper": paper}


def list_profiles() -> list[str]:
    """Names accepted by :func:`get_config`."""
    return list(PROFILES)


def get_config(profile: str = "cpu", overrides: dict[str, Any] | None = None) -> Config:
    """Build the named profile and apply dotted-key overrides.

    Args:
        profile: one of :func:`list_profiles`.
        overrides: e.g. ``{"data.num_frames": 8, "mof.enabled": True}``.

    Returns:
        A fresh :class:`Config`.
    """
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose one of {list_profiles()}")
    return apply_overrides(PROFILES[profile](), overrides)
