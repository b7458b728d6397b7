"""One factory for retrieval models, on open_clip.

``create_retrieval_model(arch, pretrained, ...)`` builds an open_clip ``CLIP`` of any registered
architecture (ViT-B-32, ViT-B-16, ... and mofkit's tiny ones, registered below from
``configs/*.json`` with ``open_clip.add_model_config``), wraps it with a temporal head, and returns
it with its tokenizer and preprocessing constants. ``pretrained`` is one of:

* ``None``: random initialisation;
* an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...): the weights come from
  open_clip's cache, or are downloaded when the network allows; offline and not cached, a
  :class:`PretrainedUnavailableError` says which file to fetch elsewhere and how to pass it;
* a local file: an open_clip/OpenAI state dict (plain, ``{"state_dict": ...}``, ``module.``
  prefixes, or an OpenAI TorchScript archive) loaded into the towers, or a mofkit checkpoint
  (``{"model": ..., "config": ...}``) loaded into the whole retrieval model.

Text context length is configurable (32 for captions, 64 for DiDeMo paragraphs): the text tower is
built with that length and a longer positional embedding in a checkpoint is truncated, as CLIP4Clip
does with OpenAI's 77.
"""
from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import open_clip
import torch

from mofkit.models.retrieval import RetrievalModel
from mofkit.models.temporal import create_temporal_head

CONFIG_DIR = Path(__file__).with_name("configs")
open_clip.add_model_config(CONFIG_DIR)
TINY_ARCHS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class PretrainedUnavailableError(RuntimeError):
    """Pretrained weights were asked for by tag but cannot be had here (offline, not cached)."""


@dataclass
class RetrievalBundle:
    """What the rest of the kit needs from a model."""

    model: RetrievalModel  # the retrieval model (on the requested device)
    tokenizer: Callable  # list[str] -> LongTensor (N, context_length)
    image_size: int  # square input side in pixels
    mean: tuple[float, float, float]  # RGB normalisation mean
    std: tuple[float, float, float]  # RGB normalisation std
    arch: str  # open_clip architecture name
    pretrained: str | None  # what the weights came from


def list_models() -> list[str]:
    """Architectures the factory accepts: mofkit's tiny ones first, then open_clip's."""
    return list(TINY_ARCHS) + [m for m in open_clip.list_models() if m not in TINY_ARCHS]


def _check_arch(arch: str) -> dict:
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown architecture {arch!r}; mofkit's tiny ones are {list(TINY_ARCHS)}, "
                         f"open_clip has e.g. ViT-B-32, ViT-B-32-quickgelu, ViT-B-16 "
                         f"(mofkit.models.list_models() lists all)")
    return cfg


def quickgelu_mismatch(arch: str, tag: str) -> str | None:
    """Advice when an architecture's activation differs from what a pretrained tag was trained with.

    OpenAI's CLIP weights use QuickGELU; loading them into ``ViT-B-32`` (plain GELU) runs but
    silently costs accuracy. Returns a message, or None when they agree.
    """
    arch_quick = bool(_check_arch(arch).get("quick_gelu", False))
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if not tag_cfg:
        return None
    tag_quick = bool(tag_cfg.get("quick_gelu", False))
    if arch_quick == tag_quick:
        return None
    if tag_quick:
        fix = f"use arch '{arch}-quickgelu'" if open_clip.get_model_config(f"{arch}-quickgelu") else \
            "use the -quickgelu variant of this architecture"
    else:
        fix = f"use arch '{arch.replace('-quickgelu', '')}'"
    return (f"pretrained tag '{tag}' was trained with quick_gelu={tag_quick} but architecture "
            f"'{arch}' uses quick_gelu={arch_quick}: the weights load but the activations differ, "
            f"which lowers accuracy; {fix}")


def _cached_file(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Path of a pretrained tag's weights if already on disk (no network)."""
    repo = tag_cfg.get("hf_hub", "")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        parts = repo.strip("/").split("/")
        repo_id = "/".join(parts[:2])
        names = [parts[2]] if len(parts) > 2 else ["open_clip_model.safetensors",
                                                   "open_clip_pytorch_model.bin"]
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = tag_cfg.get("url", "")
    if url:
        root = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
        candidate = root / os.path.basename(urlparse(url).path)
        if candidate.is_file():
            return str(candidate)
    return None


def _reachable(tag_cfg: dict, timeout: float = 3.0) -> bool:
    """Whether the host that serves a tag's weights answers a TCP connection within ``timeout``."""
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return False
        host = urlparse(constants.ENDPOINT).hostname
    else:
        host = urlparse(tag_cfg.get("url", "")).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _weights_source(tag_cfg: dict) -> str:
    if tag_cfg.get("hf_hub"):
        return f"the Hugging Face Hub repository '{tag_cfg['hf_hub'].rstrip('/')}'"
    return f"{tag_cfg.get('url', 'its published location')}"


def resolve_pretrained(arch: str, pretrained: str, cache_dir: str | None = None) -> str:
    """Turn an open_clip tag into a local file path, or fail fast with what to do instead.

    Args:
        arch: open_clip architecture.
        pretrained: a tag such as ``openai``, or a file path (returned as is).
        cache_dir: open_clip's cache folder (None: its default).

    Returns:
        A path to a weights file, or the tag itself when the network is reachable and open_clip
        should download it.

    Raises:
        ValueError: unknown tag for this architecture (lists the valid ones).
        PretrainedUnavailableError: offline and not cached.
    """
    if os.path.isfile(pretrained):
        return pretrained
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag_cfg:
        if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise FileNotFoundError(f"pretrained weights file {pretrained!r} does not exist")
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(f"{pretrained!r} is neither a file nor a pretrained tag of {arch!r}; "
                         f"its tags are {tags or 'none (train from scratch: pretrained=None)'}")
    hit = _cached_file(tag_cfg, cache_dir)
    if hit:
        return hit
    if _reachable(tag_cfg):
        return pretrained
    raise PretrainedUnavailableError(
        f"the pretrained weights '{arch}' / '{pretrained}' are not in the local cache and cannot be "
        f"downloaded from this machine (no network).\n"
        f"  Fetch them on a machine with internet access from {_weights_source(tag_cfg)}, copy the "
        f"file here, and pass its path instead of the tag, e.g.\n"
        f"    create_retrieval_model('{arch}', pretrained='/path/to/weights.bin')\n"
        f"  or in a config: model.pretrained=/path/to/weights.bin. Or train from scratch with "
        f"pretrained=None.")


def _unwrap_state_dict(obj) -> dict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError("not a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _read_weights(path: str):
    """A file's contents: a dict (state dict or mofkit checkpoint), also from OpenAI TorchScript."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except RuntimeError as e:
        if "TorchScript" not in str(e) and "constants.pkl" not in str(e):
            raise
    return torch.jit.load(path, map_location="cpu").state_dict()


def fit_context_length(state: dict, context_length: int, prefix: str = "") -> dict:
    """Truncate a text positional embedding longer than ``context_length`` (CLIP4Clip does the same)."""
    key = f"{prefix}positional_embedding"
    if key in state and state[key].shape[0] > context_length:
        state = dict(state)
        state[key] = state[key][:context_length].clone()
    return state


def _load_clip_state(clip: torch.nn.Module, state: dict, path: str) -> None:
    state = fit_context_length(state, int(clip.context_length))
    state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length",
                                                         "vocab_size")}
    missing, unexpected = clip.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise ValueError(f"weights in {path} do not fit this architecture: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}")


def create_retrieval_model(arch: str = "mof-tiny", pretrained: str | None = None, *,
                           temporal_head: str = "meanP", temporal_layers: int = 2,
                           max_frames: int = 64, context_length: int = 32,
                           fixed_temperature: float | None = None,
                           device: str | torch.device = "cpu",
                           cache_dir: str | None = None) -> RetrievalBundle:
    """Build a retrieval model.

    Args:
        arch: open_clip architecture name (see :func:`list_models`).
        pretrained: None, an open_clip tag, or a local weights/checkpoint file.
        temporal_head: ``meanP`` or ``seqTransf``.
        temporal_layers: seqTransf depth.
        max_frames: seqTransf position embeddings.
        context_length: text tokens per caption.
        fixed_temperature: None to learn CLIP's logit scale, else a fixed temperature.
        device: where the model lives.
        cache_dir: open_clip's weights cache (None: its default).

    Returns:
        :class:`RetrievalBundle`.
    """
    arch_cfg = _check_arch(arch)
    if pretrained:
        advice = quickgelu_mismatch(arch, pretrained)
        if advice:
            warnings.warn(advice, UserWarning, stacklevel=2)
    source = resolve_pretrained(arch, pretrained, cache_dir) if pretrained else None
    is_tag = bool(source) and not os.path.isfile(source)
    with warnings.catch_warnings():
        # Our own QuickGELU check above already said it, with advice; open_clip repeats it.
        warnings.filterwarnings("ignore", message="QuickGELU mismatch")
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(max(level, logging.ERROR))  # "initialized randomly" is expected here
        try:
            clip = open_clip.create_model(arch, pretrained=source if is_tag else None,
                                          force_context_length=context_length, cache_dir=cache_dir)
        finally:
            logger.setLevel(level)
    clip.context_length = context_length
    width = int(arch_cfg["embed_dim"])
    temporal = create_temporal_head(temporal_head, width, layers=temporal_layers,
                                    max_frames=max_frames)
    model = RetrievalModel(clip, temporal, fixed_temperature=fixed_temperature)

    if source and not is_tag:
        blob = _read_weights(source)
        if isinstance(blob, dict) and "model" in blob and "config" in blob:
            saved_arch = blob["config"].get("model", {}).get("arch")
            if saved_arch and saved_arch != arch:
                raise ValueError(f"mofkit checkpoint {source} holds a {saved_arch!r} model, not {arch!r}")
            state = fit_context_length(blob["model"], context_length, prefix="clip.")
            model.load_state_dict(state)
        else:
            try:
                state = _unwrap_state_dict(blob)
            except ValueError:
                raise ValueError(f"{source} holds neither an open_clip state dict nor a mofkit "
                                 f"checkpoint") from None
            _load_clip_state(clip, state, source)
        if fixed_temperature is not None:
            model.clip.logit_scale.data.fill_(torch.log(torch.tensor(1.0 / fixed_temperature)))

    model.to(device)
    image_size = clip.visual.image_size
    image_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    mean = tuple(getattr(clip.visual, "image_mean", None) or OPENAI_MEAN)
    std = tuple(getattr(clip.visual, "image_std", None) or OPENAI_STD)
    tokenizer = open_clip.get_tokenizer(arch, context_length=context_length)
    return RetrievalBundle(model=model, tokenizer=tokenizer, image_size=image_size, mean=mean,
                           std=std, arch=arch, pretrained=pretrained)


def create_from_config(model_cfg, device: str | torch.device = "cpu") -> RetrievalBundle:
    """:func:`create_retrieval_model` from a :class:`mofkit.config.ModelConfig`."""
    return create_retrieval_model(model_cfg.arch, model_cfg.pretrained,
                                  temporal_head=model_cfg.temporal_head,
                                  temporal_layers=model_cfg.temporal_layers,
                                  max_frames=model_cfg.max_frames,
                                  context_length=model_cfg.context_length,
                                  fixed_temperature=model_cfg.fixed_temperature, device=device)
