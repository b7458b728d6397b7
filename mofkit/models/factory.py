"""One factory for retrieval models, on open_clip.

``create_retrieval_model(arch, pretrained, ...)`` builds an open_clip ``CLIP`` of any registered
architecture (ViT-B-32, ViT-B-16, ... and mofkit's small CPU ones, registered below from
``configs/*.json`` with ``open_clip.add_model_config``), wraps it with a temporal head, and returns
it with its tokenizer and preprocessing constants in a :class:`RetrievalBundle`.

``pretrained`` is one of:

* ``None``: random initialisation;
* an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...): the weights come from
  open_clip's cache, or are downloaded when the network allows; offline and not cached, a
  :class:`PretrainedUnavailableError` says at once which file to fetch elsewhere and how to pass it;
* a local file: an open_clip/OpenAI state dict (plain, ``{"state_dict": ...}``, ``module.``
  prefixes, safetensors, or an OpenAI TorchScript archive such as ``ViT-B-32.pt``) loaded into the
  towers (``model.clip``), or a mofkit checkpoint (``{"model": ..., "config": ...}``) loaded into the
  whole retrieval model. Pickled files that need the full unpickler (mofkit checkpoints hold numpy
  RNG state) are read with it: only pass files you trust.

Text context length is configurable (32 for captions, 64 for DiDeMo paragraphs). The text tower is
built with that length, so its positional embedding and causal mask have exactly L positions, and a
longer positional embedding in the weights (OpenAI's 77) is truncated to its first L rows as
CLIP4Clip does. (open_clip itself would linearly *interpolate* 77 positions onto L, which moves
every token's position; so tagged weights are read here rather than by ``open_clip.create_model``.)

The architectures in ``configs/`` (JSON cannot hold comments, so they are described here):

* ``mof-tiny-32``: 32 px frames, 8 px patches (16 tokens), width 64, 2 layers per tower, MLP ratio 2,
  embed dim 64. The ``smoke`` profile's model (frames decoded at 32 px).
* ``mof-tiny``: 64 px frames, 16 px patches (16 tokens), width 128, 4 heads, 3 layers per tower,
  MLP ratio 2, embed dim 128. The ``cpu`` profile's model; MLP ratio 2 instead of CLIP's 4 cuts a
  third of the FLOPs for a training step that fits 2 CPU cores.
* ``mof-tiny-p8``: ``mof-tiny`` with 8 px patches (64 tokens at 64 px). The ``cpu`` profile's
  model: at 16 px a patch holds most of an object and the tower tells colours, not shapes
  (``mofkit.train.pretrain``).
* ``mof-small``: 64 px frames, 8 px patches (64 tokens), width 256, 4 heads, 4 layers per tower,
  embed dim 256: a larger model for longer CPU or small GPU runs.

All use open_clip's default BPE tokenizer (vocabulary 49,408, shipped with open_clip: nothing to
download) and keep ``context_length`` 77 in the JSON, as open_clip's own configs do.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import open_clip
import torch
from open_clip.convert import convert_state_dict

from mofkit.models.retrieval import RetrievalModel
from mofkit.models.temporal import create_temporal_head

CONFIG_DIR = Path(__file__).with_name("configs")
open_clip.add_model_config(CONFIG_DIR)


def _tiny_order(path: Path) -> tuple[int, str]:
    return int(json.loads(path.read_text())["embed_dim"]), path.stem


# Smallest first: mof-tiny-32, mof-tiny, mof-small.
TINY_ARCHS = tuple(p.stem for p in sorted(CONFIG_DIR.glob("*.json"), key=_tiny_order))

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# model.pretrained's name for the towers of `mofkit pretrain` (resolved by the training side)
STILLS_TAG = "stills"

# Keys of OpenAI TorchScript state dicts that are metadata, not weights.
_JIT_META_KEYS = ("input_resolution", "context_length", "vocab_size")


class PretrainedUnavailableError(RuntimeError):
    """Pretrained weights were asked for by tag but cannot be had here (offline and not cached)."""


@dataclass
class RetrievalBundle:
    """What the rest of the kit needs from a model."""

    model: RetrievalModel  # the retrieval model (on the requested device)
    tokenizer: Callable  # list[str] -> LongTensor (N, context_length)
    image_size: int  # square input side in pixels
    mean: tuple[float, float, float]  # RGB normalisation mean
    std: tuple[float, float, float]  # RGB normalisation std
    arch: str  # open_clip architecture name
    pretrained: str | None  # what the weights came from: None, a tag or a file path


def list_models() -> list[str]:
    """Architectures the factory accepts.

    Returns:
        mofkit's small CPU architectures first (smallest first), then open_clip's.
    """
    return list(TINY_ARCHS) + [m for m in open_clip.list_models() if m not in TINY_ARCHS]


def get_arch_config(arch: str) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...) of an architecture.

    Args:
        arch: a name from :func:`list_models`.

    Returns:
        A copy of the config dict.

    Raises:
        ValueError: unknown architecture (names a few valid ones).
    """
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown architecture {arch!r} (model.arch); mofkit's small ones are "
                         f"{list(TINY_ARCHS)}, open_clip's include ViT-B-32, ViT-B-32-quickgelu, "
                         f"ViT-B-16 (mofkit.models.list_models() lists all)")
    return cfg


def quickgelu_mismatch(arch: str, tag: str) -> str | None:
    """Advice when an architecture's activation differs from the one a pretrained tag was trained with.

    OpenAI's CLIP weights use QuickGELU; loading them into ``ViT-B-32`` (exact GELU) runs but
    silently costs accuracy (open_clip only warns). Decided from the configs alone, no download.

    Args:
        arch: open_clip architecture.
        tag: pretrained tag (anything that is not a tag of ``arch``, e.g. a file path, gives None).

    Returns:
        A message with the fix, or None when they agree.
    """
    arch_quick = bool(get_arch_config(arch).get("quick_gelu", False))
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if not tag_cfg:
        return None
    tag_quick = bool(tag_cfg.get("quick_gelu", False))
    if arch_quick == tag_quick:
        return None
    if tag_quick:
        alt = f"{arch}-quickgelu"
        fix = (f"use arch '{alt}'" if open_clip.get_model_config(alt) is not None
               else "use a -quickgelu variant of this architecture")
    else:
        fix = f"use arch '{arch.replace('-quickgelu', '')}'"
    return (f"pretrained tag '{tag}' was trained with quick_gelu={tag_quick} but architecture "
            f"'{arch}' has quick_gelu={arch_quick}: the weights load but the activations differ, "
            f"which lowers accuracy; {fix} (model.arch)")


# ----------------------------------------------------------------------------------------------
# Pretrained tags -> local files
# ----------------------------------------------------------------------------------------------

def _hf_repo_and_files(tag_cfg: dict) -> tuple[str, list[str]]:
    """(repo id, candidate filenames) of a tag's hub entry, in open_clip's order of preference."""
    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        return "", []
    # open_clip's convention: 'org/name/' means the default file, 'org/name/file.pt' names one.
    repo, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        return repo, ["open_clip_model.safetensors", filename]  # open_clip tries safetensors first
    if filename.endswith((".bin", ".pth")):
        return repo, [filename[:-4] + ".safetensors", filename]
    return repo, [filename]


def _cached_file(tag_cfg: dict, cache_dir: str | None) -> str | None:
    """Path of a tag's weights if they are already on disk (no network)."""
    if tag_cfg.get("file") and os.path.isfile(tag_cfg["file"]):
        return tag_cfg["file"]
    repo, files = _hf_repo_and_files(tag_cfg)
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for name in files:
            hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = tag_cfg.get("url", "")
    if url:
        root = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
        candidate = root / os.path.basename(urlparse(url).path)
        if candidate.is_file():
            return str(candidate)
    return None


def _hf_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _unreachable_reason(tag_cfg: dict, timeout: float = 3.0) -> str | None:
    """Why a tag's weights cannot be downloaded from here, or None when the host answers.

    Name resolution has no timeout of its own and can stall for long on a machine without
    network, so the probe runs in a daemon thread that is abandoned after ``timeout`` seconds.
    """
    if tag_cfg.get("hf_hub"):
        if _hf_offline():
            return "HF_HUB_OFFLINE is set"
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname
    else:
        host = urlparse(tag_cfg.get("url", "")).hostname
    if not host:
        return "the tag names no download location"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a direct connection says nothing about the proxy; let the download try
    result: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(None)
        except BaseException as e:  # noqa: BLE001 - any failure means unreachable
            result.append(e)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return f"no answer from {host} within {timeout:.0f} s"
    if result[0] is not None:
        return f"no network connection to {host} ({type(result[0]).__name__})"
    return None


def _fetch_advice(arch: str, tag: str, tag_cfg: dict) -> str:
    repo, files = _hf_repo_and_files(tag_cfg)
    lines = []
    if repo:
        alt = f" (or {files[1]})" if len(files) > 1 else ""
        lines.append(f"file {files[0]}{alt} of the Hugging Face Hub repository '{repo}', e.g. "
                     f"huggingface_hub.hf_hub_download('{repo}', '{files[0]}')")
    if tag_cfg.get("url"):
        lines.append(f"the original file {tag_cfg['url']}")
    where = "\n      or ".join(lines) or "its published location"
    name = files[0] if repo else os.path.basename(urlparse(tag_cfg.get("url", "")).path) or "weights.bin"
    return (f"  On a machine with internet access download\n      {where}\n"
            f"  copy it here and pass its path instead of the tag:\n"
            f"      create_retrieval_model('{arch}', pretrained='/path/to/{name}')\n"
            f"  or in a config: model.pretrained='/path/to/{name}'. "
            f"Or train from scratch with pretrained=None.")


def resolve_pretrained(arch: str, pretrained: str, cache_dir: str | None = None) -> str:
    """Turn an open_clip tag into a local weights file, or fail fast with what to do instead.

    Args:
        arch: open_clip architecture.
        pretrained: a tag such as ``openai``, or a file path (returned as is).
        cache_dir: open_clip's cache folder (None: its default, the Hugging Face cache).

    Returns:
        A path to a weights file: the given file, a cached file, or one downloaded now.

    Raises:
        FileNotFoundError: ``pretrained`` looks like a path but there is no such file.
        ValueError: unknown tag for this architecture (lists the valid ones).
        PretrainedUnavailableError: not cached and cannot be downloaded from here.
    """
    if os.path.isfile(pretrained):
        return pretrained
    if pretrained == STILLS_TAG:
        raise ValueError(f"pretrained={STILLS_TAG!r} names the towers `mofkit pretrain` trains for a run's "
                         f"config; a training run resolves it (mofkit.train.pretrain.resolve_model_config), "
                         f"elsewhere pass their file: model.pretrained=<pretrain.dir>/{arch}-<digest>/towers.pt")
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag_cfg:
        if os.sep in pretrained or "/" in pretrained or pretrained.endswith(
                (".pt", ".pth", ".bin", ".safetensors", ".ckpt")):
            raise FileNotFoundError(f"pretrained weights file {pretrained!r} (model.pretrained) "
                                    f"does not exist")
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(f"pretrained={pretrained!r} is neither a file nor a pretrained tag of {arch!r}; "
                         f"its tags are {tags if tags else 'none (train from scratch: pretrained=None)'}")
    hit = _cached_file(tag_cfg, cache_dir)
    if hit:
        return hit
    reason = _unreachable_reason(tag_cfg)
    head = f"pretrained weights '{arch}' / '{pretrained}' are not in the local cache and cannot be downloaded"
    if reason:
        raise PretrainedUnavailableError(f"{head} from this machine ({reason}).\n"
                                         + _fetch_advice(arch, pretrained, tag_cfg))
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise PretrainedUnavailableError(f"{head}: the download failed ({first}).\n"
                                         + _fetch_advice(arch, pretrained, tag_cfg)) from None
    if not path or not os.path.isfile(path):
        raise PretrainedUnavailableError(f"{head}: open_clip returned no file.\n"
                                         + _fetch_advice(arch, pretrained, tag_cfg))
    return path


# ----------------------------------------------------------------------------------------------
# Weights files
# ----------------------------------------------------------------------------------------------

def _is_safetensors(path: str) -> bool:
    if path.endswith(".safetensors"):
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length, then the JSON header; torch files are zip
    # ("PK") or legacy pickles.
    return len(head) == 9 and head[:2] != b"PK" and head[8:9] == b"{"


def read_weights(path: str | os.PathLike) -> Any:
    """Read a weights file in any of the formats :func:`create_retrieval_model` accepts.

    Args:
        path: safetensors file, ``torch.save`` file (state dict, ``{"state_dict": ...}`` or a
            mofkit checkpoint) or TorchScript archive (OpenAI's original CLIP files).

    Returns:
        The file's object; TorchScript archives come back as their state dict.
    """
    path = str(path)
    try:
        if _is_safetensors(path):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        try:
            with warnings.catch_warnings():
                # torch announces TorchScript archives before refusing them; handled below.
                warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - sorted out below
            msg = str(e)
            if "TorchScript" in msg:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit deprecation notices
                    return torch.jit.load(path, map_location="cpu").state_dict()
            if "weights_only" not in msg and "Weights only" not in msg:
                raise
        # mofkit checkpoints hold numpy RNG state and config dicts: the full unpickler is needed.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - every reader failure names the file
        raise ValueError(f"cannot read weights file {path} (model.pretrained): "
                         f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}") from None


def _unwrap_state_dict(obj: Any) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def fit_context_length(state: dict, context_length: int, prefix: str = "", source: str = "weights") -> dict:
    """Truncate a text positional embedding longer than ``context_length`` (as CLIP4Clip does).

    Args:
        state: state dict (not modified).
        context_length: positions the model has.
        prefix: prefix of the text tower's keys (``clip.`` for a retrieval model's state dict).
        source: file name for the error message.

    Returns:
        The state dict with ``positional_embedding`` (or ``text.positional_embedding``) cut to its
        first ``context_length`` rows.

    Raises:
        ValueError: the weights have fewer positions than ``context_length``.
    """
    for key in (f"{prefix}positional_embedding", f"{prefix}text.positional_embedding"):
        if key not in state:
            continue
        n = state[key].shape[0]
        if n < context_length:
            raise ValueError(f"{source} has {n} text positions but context_length={context_length} "
                             f"was asked for; use model.context_length <= {n}")
        if n > context_length:
            state = dict(state)
            state[key] = state[key][:context_length].clone()  # (n, W) -> (L, W)
    return state


def _load_clip_state(clip: torch.nn.Module, state: dict, source: str) -> None:
    """Strictly load an open_clip/OpenAI state dict into a CLIP built for a given context length."""
    # TorchScript archives also carry metadata and non-persistent buffers (the causal mask, sized
    # for their own context length); the model builds its own.
    transient = {n for n, _ in clip.named_buffers()} - set(clip.state_dict())
    state = {k: v for k, v in state.items() if k not in _JIT_META_KEYS and k not in transient}
    state = convert_state_dict(clip, state)  # third-party layouts (MobileCLIP) -> open_clip's
    if "logit_scale" in state and state["logit_scale"].ndim != clip.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(clip.logit_scale.shape)
    state = fit_context_length(state, int(clip.context_length), source=source)
    missing, unexpected = clip.load_state_dict(state, strict=False)
    if missing or unexpected:
        more_m = " ..." if len(missing) > 8 else ""
        more_u = " ..." if len(unexpected) > 8 else ""
        raise ValueError(f"weights in {source} do not fit architecture of this model: missing "
                         f"{missing[:8]}{more_m}, unexpected {unexpected[:8]}{more_u}; check model.arch")


def _load_mofkit_checkpoint(model: RetrievalModel, blob: dict, arch: str, temporal_head: str,
                            source: str) -> None:
    saved = (blob.get("config") or {}).get("model", {}) if isinstance(blob.get("config"), dict) else {}
    if saved.get("arch") not in (None, arch):
        raise ValueError(f"mofkit checkpoint {source} holds a model with arch={saved['arch']!r}, "
                         f"not {arch!r}; set model.arch={saved['arch']!r}")
    state = fit_context_length(blob["model"], model.context_length, prefix="clip.", source=source)
    towers_only = saved.get("temporal_head") not in (None, temporal_head)
    if towers_only:
        # Another temporal head: start from the checkpoint's towers, with a fresh head.
        warnings.warn(f"mofkit checkpoint {source} was trained with temporal_head="
                      f"{saved['temporal_head']!r}; loading its image and text towers only, the "
                      f"{temporal_head!r} head starts from its initialisation", UserWarning, stacklevel=3)
        state = {k: v for k, v in state.items() if k.startswith("clip.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if towers_only:
        missing = [k for k in missing if not k.startswith("temporal.")]
    if missing or unexpected:
        raise ValueError(f"mofkit checkpoint {source} does not fit this model: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}; check model.arch, model.temporal_head, "
                         f"model.temporal_layers and model.max_frames against the checkpoint's config")


@functools.lru_cache(maxsize=16)
def _tokenizer(arch: str, context_length: int) -> Callable:
    # Reading the BPE vocabulary costs ~0.2 s; the tokenizer keeps no per-call state worth isolating.
    return open_clip.get_tokenizer(arch, context_length=context_length)


class _DropRandomInitNotice(logging.Filter):
    """open_clip logs a warning on every random initialisation, which is what mofkit asks for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


# ----------------------------------------------------------------------------------------------
# The factory
# ----------------------------------------------------------------------------------------------

def create_retrieval_model(arch: str = "mof-tiny", pretrained: str | None = None, *,
                           temporal_head: str = "meanP", temporal_layers: int = 2,
                           max_frames: int = 64, context_length: int = 32,
                           fixed_temperature: float | None = None,
                           device: str | torch.device = "cpu",
                           cache_dir: str | None = None) -> RetrievalBundle:
    """Build a retrieval model with its tokenizer and preprocessing constants.

    Args:
        arch: open_clip architecture name (see :func:`list_models`).
        pretrained: None (random init), an open_clip tag of ``arch``, or a local file: open_clip /
            OpenAI state dict (into the towers) or mofkit checkpoint (into the whole model).
        temporal_head: ``meanP`` or ``seqTransf``.
        temporal_layers: seqTransf depth.
        max_frames: seqTransf position embeddings (most frames per video).
        context_length: text tokens per caption L; the tokenizer pads/truncates to it.
        fixed_temperature: None learns CLIP's logit scale; a number fixes it at 1 / number.
        device: where the model lives.
        cache_dir: open_clip's weights cache (None: its default).

    Returns:
        :class:`RetrievalBundle`.

    Raises:
        ValueError: unknown architecture, tag or head, or weights that do not fit.
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        PretrainedUnavailableError: a tag's weights are not cached and cannot be downloaded.
    """
    arch_cfg = get_arch_config(arch)
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1 (32 for captions, 64 for paragraphs), "
                         f"got {context_length}")
    tag_cfg: dict = {}
    if pretrained:
        advice = quickgelu_mismatch(arch, pretrained)
        if advice:
            warnings.warn(advice, UserWarning, stacklevel=2)
        if not os.path.isfile(pretrained):
            tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
    source = resolve_pretrained(arch, pretrained, cache_dir) if pretrained else None

    # The tagged weights' own normalisation (e.g. SigLIP's 0.5) wins over the default.
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    root = logging.getLogger()
    notice = _DropRandomInitNotice()
    root.addFilter(notice)
    try:
        # Always built without weights: they are loaded below with truncation (see module doc).
        clip = open_clip.create_model(arch, pretrained=None, force_context_length=context_length,
                                      force_preprocess_cfg=preprocess or None,
                                      pretrained_text=source is None, cache_dir=cache_dir)
    finally:
        root.removeFilter(notice)
    clip.context_length = context_length
    temporal = create_temporal_head(temporal_head, int(arch_cfg["embed_dim"]), layers=temporal_layers,
                                    max_frames=max_frames)
    model = RetrievalModel(clip, temporal, fixed_temperature=fixed_temperature)

    if source:
        blob = read_weights(source)
        if isinstance(blob, dict) and "model" in blob and "config" in blob:
            _load_mofkit_checkpoint(model, blob, arch, temporal_head, source)
        else:
            try:
                state = _unwrap_state_dict(blob)
            except ValueError:
                raise ValueError(f"{source} (model.pretrained) holds neither an open_clip state dict nor "
                                 f"a mofkit checkpoint (a dict with 'model' and 'config')") from None
            _load_clip_state(clip, state, source)
        model.sync_fixed_temperature()

    model.to(device)
    image_size = clip.visual.image_size
    image_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    mean = tuple(float(v) for v in (getattr(clip.visual, "image_mean", None) or OPENAI_MEAN))
    std = tuple(float(v) for v in (getattr(clip.visual, "image_std", None) or OPENAI_STD))
    tokenizer = _tokenizer(arch, context_length)
    return RetrievalBundle(model=model, tokenizer=tokenizer, image_size=image_size, mean=mean,
                           std=std, arch=arch, pretrained=pretrained)


def create_from_config(model_cfg, device: str | torch.device = "cpu") -> RetrievalBundle:
    """:func:`create_retrieval_model` from a :class:`mofkit.config.ModelConfig`.

    Args:
        model_cfg: the run's ``cfg.model``.
        device: where the model lives.

    Returns:
        :class:`RetrievalBundle`.
    """
    return create_retrieval_model(model_cfg.arch, model_cfg.pretrained,
                                  temporal_head=model_cfg.temporal_head,
                                  temporal_layers=model_cfg.temporal_layers,
                                  max_frames=model_cfg.max_frames,
                                  context_length=model_cfg.context_length,
                                  fixed_temperature=model_cfg.fixed_temperature, device=device)
