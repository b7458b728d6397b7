"""Test-time cost of a retrieval model: FLOPs, parameters, encoding throughput.

FLOPs convention: counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass, at
**2 FLOPs per multiply-add** (a Linear(i, o) on N rows costs 2 * N * i * o). Only matrix products
and convolutions (including attention's two batched products) are counted; normalisation, softmax,
activations and bias additions are not. Tables that quote "FLOPs" from fvcore or thop (open_clip's
model profile, many papers) count one per multiply-add, i.e. half of these numbers: open_clip lists
ViT-B-32's image tower at 4.41 G (multiply-adds), which is 8.82 GFLOPs here.

Two details make the count match the arithmetic on every device: ``nn.MultiheadAttention``'s fused
inference path (one opaque kernel the counter cannot see into) is switched off while counting, and
scaled-dot-product attention runs on its math backend, whose batched matrix products the counter
sees (the CPU flash kernel has no FLOP formula). Neither changes the model's output.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch
from torch import nn

from mofkit.data.video import DEFAULT_BACKEND
from mofkit.device import autocast, get_device, resolve_precision, synchronize
from mofkit.models.flops import count_flops  # noqa: F401  (part of this module's API)


def _clip_of(model: nn.Module) -> nn.Module:
    """The open_clip model inside a retrieval model, or the model itself if it is one."""
    return getattr(model, "clip", model)


def _image_tower(model: nn.Module) -> nn.Module:
    clip = _clip_of(model)
    visual = getattr(clip, "visual", None)
    if visual is None:
        raise AttributeError(f"{type(model).__name__} has no image tower: expected model.clip.visual "
                             "(or model.visual for a bare open_clip model)")
    return visual


def _module_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def video_flops(model: nn.Module, num_frames: int, image_size: int,
                device: torch.device | str = "cpu") -> dict:
    """FLOPs to embed one video of K frames.

    The image tower is counted on one frame; the whole ``model.encode_video`` on one (1, K, 3, S, S)
    clip. Per-frame cost is independent of the batch, so the K frame passes cost exactly K times the
    single frame, and ``temporal_head`` is the rest: everything ``encode_video`` adds on top of them
    (the temporal head, pooling, any final projection). This needs no knowledge of the temporal
    head's signature, and is 0 for mean pooling.

    Args:
        model: a retrieval model with ``clip.visual`` (images (N, 3, S, S)) and
            ``encode_video(frames (B, K, 3, S, S))``; its weights should already be on ``device``.
        num_frames: K, frames per video.
        image_size: S, the frame side in pixels.
        device: where the dummy inputs are made.

    Returns:
        ``{"image_tower_per_frame", "temporal_head", "total"}`` in FLOPs (ints), per video.
    """
    if num_frames < 1 or image_size < 1:
        raise ValueError(f"num_frames and image_size must be positive, got {num_frames} and {image_size}")
    if not hasattr(model, "encode_video"):
        raise AttributeError(f"{type(model).__name__} has no encode_video(frames (B, K, 3, S, S)); "
                             "video_flops needs a retrieval model")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        frame = torch.zeros(1, 3, image_size, image_size, device=device)  # (1, 3, S, S)
        per_frame = count_flops(_image_tower(model), frame)
        clip = frame.unsqueeze(1).expand(1, num_frames, 3, image_size, image_size)  # (1, K, 3, S, S)
        total = count_flops(model.encode_video, clip.contiguous())
    finally:
        model.train(was_training)
    return {"image_tower_per_frame": per_frame, "temporal_head": total - num_frames * per_frame,
            "total": total}


def text_flops(model: nn.Module, context_length: int = 77, device: torch.device | str | None = None) -> int:
    """FLOPs to embed one caption of ``context_length`` tokens.

    The text tower always runs over the full context (padding included), so the count does not
    depend on the caption's words; open_clip's causal mask does not change it either, since the
    masked attention entries are still multiplied.

    Args:
        model: anything with ``encode_text(tokens (B, L))``, e.g. the retrieval model or a bare
            open_clip model.
        context_length: L, tokens per caption (77 for open_clip's CLIP tokenizer).
        device: where the dummy tokens are made; default the model's parameter device.

    Returns:
        FLOPs per caption (int).
    """
    if context_length < 1:
        raise ValueError(f"context_length must be positive, got {context_length}")
    if not hasattr(model, "encode_text"):
        raise AttributeError(f"{type(model).__name__} has no encode_text(tokens (B, L))")
    device = torch.device(device) if device is not None else _module_device(model)
    tokens = torch.zeros(1, context_length, dtype=torch.long, device=device)  # (1, L)
    was_training = model.training
    model.eval()
    try:
        return count_flops(model.encode_text, tokens)
    finally:
        model.train(was_training)


def _param_ids(*modules_or_params) -> dict[int, nn.Parameter]:
    out = {}
    for m in modules_or_params:
        if m is None:
            continue
        params = m.parameters() if isinstance(m, nn.Module) else [m]
        for p in params:
            out[id(p)] = p
    return out


def _text_tower_params(clip: nn.Module) -> dict[int, nn.Parameter]:
    """open_clip keeps the text tower as ``clip.text`` (custom towers) or as loose attributes (CLIP)."""
    text = getattr(clip, "text", None)
    if isinstance(text, nn.Module):
        return _param_ids(text)
    parts = [getattr(clip, name, None) for name in
             ("transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection")]
    return _param_ids(*[p for p in parts if isinstance(p, (nn.Module, nn.Parameter))])


def param_counts(model: nn.Module) -> dict:
    """Parameter counts by part.

    Args:
        model: a retrieval model (``clip.visual``, the open_clip text tower, ``temporal``) or a bare
            open_clip model. Missing parts count 0; shared tensors are counted once.

    Returns:
        ``{"total", "trainable", "visual", "text", "temporal"}`` (ints, numbers of scalars).
    """
    clip = _clip_of(model)
    everything = _param_ids(model)
    groups = {
        "visual": _param_ids(getattr(clip, "visual", None)),
        "text": _text_tower_params(clip),
        "temporal": _param_ids(getattr(model, "temporal", None)),
    }
    out = {"total": sum(p.numel() for p in everything.values()),
           "trainable": sum(p.numel() for p in everything.values() if p.requires_grad)}
    out.update({k: sum(p.numel() for p in v.values()) for k, v in groups.items()})
    return out


@torch.no_grad()
def encode_throughput(model: nn.Module, num_frames: int, image_size: int, batch_size: int = 32,
                      iters: int = 10, warmup: int = 2, device: torch.device | str = "cpu",
                      precision: str = "fp32") -> dict:
    """Videos embedded per second by ``model.encode_video`` on random frames.

    Decoding and preprocessing are not included: this is the model's share of test-time cost.
    Warm-up batches (kernel selection, allocator growth, lazy init) are run and not timed; on CUDA
    the clock is read only after the queued kernels have finished.

    Args:
        model: a retrieval model with ``encode_video(frames (B, K, 3, S, S))``, already on ``device``.
        num_frames: K, frames per video.
        image_size: S, frame side in pixels.
        batch_size: videos per forward pass.
        iters: timed forward passes.
        warmup: untimed forward passes before them.
        device: where to run (a name as :func:`mofkit.device.get_device` takes, or a device).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :func:`mofkit.device.resolve_precision`).

    Returns:
        ``{"videos_per_s", "frames_per_s", "seconds_per_batch", "batch_size", "device", "precision"}``.
    """
    if iters < 1 or batch_size < 1 or warmup < 0:
        raise ValueError(f"iters and batch_size must be >= 1 and warmup >= 0, got iters={iters}, "
                         f"batch_size={batch_size}, warmup={warmup}")
    device = get_device(device) if isinstance(device, str) else torch.device(device)
    precision = resolve_precision(precision, device)
    frames = torch.randn(batch_size, num_frames, 3, image_size, image_size, device=device)  # (B, K, 3, S, S)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, precision):
            for _ in range(warmup):
                model.encode_video(frames)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(iters):
                model.encode_video(frames)
            synchronize(device)
            elapsed = time.perf_counter() - start
    finally:
        model.train(was_training)
    per_batch = elapsed / iters
    videos_per_s = batch_size / per_batch
    return {"videos_per_s": videos_per_s, "frames_per_s": videos_per_s * num_frames,
            "seconds_per_batch": per_batch, "batch_size": batch_size, "device": str(device),
            "precision": precision}


@torch.no_grad()
def end_to_end_throughput(model: nn.Module, paths, num_frames: int, *, preprocess: Callable,
                          decode_size: int | None = None, backend: str = DEFAULT_BACKEND,
                          batch_size: int = 32, device: torch.device | str = "cpu",
                          precision: str = "fp32", compressor: nn.Module | None = None,
                          input_frames: int | None = None, workers: int | None = None) -> dict:
    """Videos per second from file to embedding: decode K uniform frames, preprocess, encode; with
    a frame ``compressor``, decode its ``input_frames`` (N) uniform frames, preprocess, compress to
    K, encode.

    This is what a test video costs a deployed model on this machine: the decoder's work, any
    compressor's and the image tower's, as the kit does it when it reads many videos: decode
    processes (:func:`mofkit.data.decoding.decode_many`, one open per video) work ahead while this
    process preprocesses, compresses and encodes, with the torch threads the workers leave. One
    untimed batch (decoded here) warms the model and the decoders up first; the timed pass
    includes starting the workers.

    Args:
        model: a retrieval model with ``encode_video``, already on ``device``.
        paths: video files (a few dozen give a stable figure); every one must be readable.
        num_frames: K, uniform frames decoded per video.
        preprocess: uint8 (B, K, H, W, 3) -> float (B, K, 3, S, S) (the eval transform).
        decode_size: short side to resize to on decode, as training and evaluation do.
        backend: ``decord`` or ``pyav``.
        batch_size: videos per forward pass.
        device, precision: where and how the model runs.
        compressor: ``(B, N, 3, S, S) -> (B, num_frames, 3, S, S)`` (``mofkit.compress``), on
            ``device``; None decodes ``num_frames`` frames.
        input_frames: N, frames decoded per video for the compressor.
        workers: decode processes; None: one per core (at most 8); 0: decode in this process,
            one batch after another.

    Returns:
        ``{"videos_per_s", "decode_seconds", "compress_seconds", "encode_seconds", "videos",
        "workers", "device"}``: the three parts of this process's wall time (decode: waiting for
        decoded frames, and preprocessing them), which add up to the timed pass.

    Raises:
        VideoReadError: a video could not be read.
    """
    from mofkit.data.decoding import ReadJob, decode_many, default_workers, encoder_threads, read_job
    from mofkit.data.video import VideoReadError

    paths = list(paths)
    if not paths:
        raise ValueError("end_to_end_throughput needs at least one video file")
    device = get_device(device) if isinstance(device, str) else torch.device(device)
    precision = resolve_precision(precision, device)
    if compressor is not None and not input_frames:
        raise ValueError("end_to_end_throughput: a compressor needs input_frames (N)")
    decoded = input_frames if compressor is not None else num_frames
    jobs = [ReadJob(str(p), decoded, "uniform", size=decode_size, backend=backend) for p in paths]
    chunk = max(1, min(8, batch_size))
    workers = default_workers(len(jobs), chunk) if workers is None else int(workers)
    was_training = model.training
    comp_training = compressor.training if compressor is not None else False

    def frames_of(done: list) -> torch.Tensor:
        for job, res in done:
            if not res.ok:
                raise VideoReadError(job.path, res.error)
        return torch.stack([res.frames for _, res in done])  # (B, K or N, H, W, 3)

    def run(frames: torch.Tensor) -> tuple[float, float]:
        x = preprocess(frames.to(device))  # (B, K or N, 3, S, S)
        synchronize(device)
        t1 = time.perf_counter()
        with autocast(device, precision):
            if compressor is not None:
                x = compressor(x)  # (B, K, 3, S, S)
                synchronize(device)
        t2 = time.perf_counter()
        with autocast(device, precision):
            model.encode_video(x)
        synchronize(device)
        return t1, t2

    model.eval()
    if compressor is not None:
        compressor.eval()
    try:
        with encoder_threads(workers):
            run(frames_of([(j, read_job(j)) for j in jobs[:batch_size]]))  # warm-up, not timed
            compress = encode = 0.0
            start = time.perf_counter()
            with contextlib.closing(decode_many(jobs, read_job, workers=workers, chunk=chunk,
                                                ahead=2 * batch_size)) as results:
                batch: list = []
                for i, res in enumerate(results):
                    batch.append((jobs[i], res))
                    if len(batch) == batch_size or i == len(jobs) - 1:
                        t1, t2 = run(frames_of(batch))
                        compress, encode = compress + t2 - t1, encode + time.perf_counter() - t2
                        batch = []
            total = time.perf_counter() - start
            decode = total - compress - encode
    finally:
        model.train(was_training)
        if compressor is not None:
            compressor.train(comp_training)
    return {"videos_per_s": len(paths) / total, "decode_seconds": decode,
            "compress_seconds": compress, "encode_seconds": encode, "videos": len(paths),
            "workers": workers, "device": str(device)}


def describe_throughput(device: str = "auto", videos: int = 64, batch_size: int = 32) -> str:
    """The setup :func:`end_to_end_throughput` measures ``videos`` videos on, in words (for a
    table's footnote): the machine, the decode workers and the encoder's torch threads."""
    from mofkit.data.decoding import default_workers, usable_cpus
    from mofkit.device import describe_device

    dev = get_device(device)
    workers = default_workers(videos, max(1, min(8, batch_size)))
    threads = max(1, usable_cpus() - workers) if workers else torch.get_num_threads()
    machine = describe_device(device).rsplit(", ", 1)[0] if dev.type == "cpu" else describe_device(device)
    return f"{machine}, {workers} decode workers, encoder on {threads} torch thread{'s' if threads > 1 else ''}"


def cost_table(cfg, paths, k_values=None) -> "pd.DataFrame":
    """The whole inference cost per test video of a config's model at each K.

    GFLOPs (image tower x K + temporal head) and throughput measured on this machine, both the
    model's alone (random frames) and end to end (decode K frames of ``paths``, preprocess,
    encode).

    Args:
        cfg: a :class:`mofkit.config.Config` (its model, device, decode size and backend).
        paths: test video files for the end-to-end figure (a few dozen).
        k_values: the K to measure; default ``cfg.study.k_values``.

    Returns:
        One row per K; ``attrs["params"]`` (parameter counts) and ``attrs["text_gflops"]``
        (GFLOPs per caption).
    """
    import pandas as pd

    from mofkit.data.preprocess import Preprocessor
    from mofkit.models import create_from_config

    import dataclasses

    device = get_device(cfg.device)
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), device)  # costs only
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    rows = []
    for k in k_values or cfg.study.k_values:
        v = video_flops(bundle.model, k, bundle.image_size)
        tp = encode_throughput(bundle.model, k, bundle.image_size, batch_size=32, iters=3, device=device)
        e2e = end_to_end_throughput(bundle.model, paths, k, preprocess=pre.eval,
                                    decode_size=cfg.data.decode_size, backend=cfg.data.backend,
                                    device=device)
        rows.append({"K": k, "GFLOPs/video": v["total"] / 1e9,
                     "GFLOPs/frame (image tower)": v["image_tower_per_frame"] / 1e9,
                     "GFLOPs temporal head": v["temporal_head"] / 1e9,
                     "videos/s (end to end)": e2e["videos_per_s"],
                     "videos/s (encode only)": tp["videos_per_s"],
                     "frames/s (encode only)": tp["frames_per_s"], "device": str(device)})
    df = pd.DataFrame(rows)
    df.attrs["params"] = param_counts(bundle.model)
    df.attrs["text_gflops"] = text_flops(bundle.model, cfg.model.context_length) / 1e9
    return df
