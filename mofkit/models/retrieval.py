"""The retrieval model: open_clip's image and text towers with a temporal head over frames.

``RetrievalModel(tokens, frames, mask)`` returns ``(text_emb, video_emb, logit_scale)``, the
inputs of :func:`mofkit.models.loss.contrastive_loss`. Every step of it is a plain differentiable
function of the parameters, so ``torch.func.functional_call`` can run it on virtual weights and
autograd can take second derivatives through it (MOF's meta step), provided attention runs on
PyTorch's math kernel there (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``): the fused
kernels have no double backward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# CLIP clamps its learned logit scale at 100 (temperature 0.01).
MAX_LOGIT_SCALE = 100.0


class RetrievalModel(nn.Module):
    """CLIP4Clip-style dual encoder: per-frame image tower, temporal head, text tower.

    Args:
        clip: an open_clip ``CLIP`` model (``encode_image``, ``encode_text``, ``logit_scale``,
            ``context_length``), built with the text context length it will be used with.
        temporal: head mapping frame embeddings (B, T, D) and a mask (B, T) to (B, D).
        fixed_temperature: None learns CLIP's logit scale; a number t (the reference uses 0.05)
            fixes the scale at 1 / t and freezes ``clip.logit_scale``.
    """

    def __init__(self, clip: nn.Module, temporal: nn.Module, fixed_temperature: float | None = None):
        super().__init__()
        self.clip = clip
        self.temporal = temporal
        self.fixed_temperature = fixed_temperature
        if fixed_temperature is not None:
            if not fixed_temperature > 0:
                raise ValueError(f"fixed_temperature must be > 0 (e.g. 0.05) or None, "
                                 f"got {fixed_temperature}")
            self.clip.logit_scale.requires_grad_(False)
            self.sync_fixed_temperature()

    def sync_fixed_temperature(self) -> None:
        """Write log(1 / t) into ``clip.logit_scale`` (after loading weights that overwrote it)."""
        if self.fixed_temperature is not None:
            with torch.no_grad():
                self.clip.logit_scale.fill_(math.log(1.0 / self.fixed_temperature))

    @property
    def context_length(self) -> int:
        """Tokens per caption the text tower takes."""
        return int(self.clip.context_length)

    @property
    def embed_dim(self) -> int:
        """Width D of the joint embedding space."""
        proj = getattr(self.clip, "text_projection", None)
        if isinstance(proj, nn.Linear):
            return proj.out_features
        if isinstance(proj, torch.Tensor):
            return proj.shape[1]
        return int(self.clip.visual.output_dim)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Image tower on every frame.

        Args:
            frames: (B, T, 3, S, S) normalised pixels.

        Returns:
            (B, T, D) per-frame embeddings (not normalised).
        """
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, T, 3, S, S), got shape {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])  # (B, T, 3, S, S) -> (B*T, 3, S, S)
        emb = self.clip.encode_image(flat)  # (B*T, D)
        return emb.reshape(b, t, -1)  # (B*T, D) -> (B, T, D)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Video embedding.

        Args:
            frames: (B, T, 3, S, S) normalised pixels.
            mask: optional (B, T) bool, True for real frames (padded ones are ignored).

        Returns:
            (B, D) L2-normalised.
        """
        return F.normalize(self.temporal(self.encode_frames(frames), mask), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Caption embedding.

        Args:
            tokens: (B, L) token ids from the bundle's tokenizer, L = ``context_length``.

        Returns:
            (B, D) L2-normalised.
        """
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be (B, {self.context_length}) for this model "
                             f"(context_length={self.context_length}), got shape {tuple(tokens.shape)}; "
                             f"tokenize with the bundle's tokenizer")
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        """Scalar multiplier of the cosine similarities.

        Returns:
            exp of the learned log-scale clamped at 100 as CLIP does, or exactly 1 / t for a fixed
            temperature t (no clamp: t = 0.005 means 200).
        """
        if self.fixed_temperature is not None:
            return self.clip.logit_scale.new_tensor(1.0 / self.fixed_temperature).reshape(())
        return self.clip.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE).reshape(())

    def forward(self, tokens: torch.Tensor, frames: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed captions and their videos.

        Args:
            tokens: (B, L) token ids.
            frames: (B, T, 3, S, S) normalised pixels.
            mask: optional (B, T) bool frame mask.

        Returns:
            ``(text (B, D), video (B, D), logit_scale ())``, embeddings L2-normalised.
        """
        return self.encode_text(tokens), self.encode_video(frames, mask), self.logit_scale()


# Substrings of parameter names that AdamW must not decay, whatever their shape: embeddings
# (token, positional, class, frame position) and CLIP's logit scale; 1-d tensors (biases, norm
# weights) are excluded by shape.
_NO_DECAY_NAMES = ("embedding", "positional", "position", "logit_scale", "logit_bias")


def param_groups(model: RetrievalModel, lr: float, tower_lr: float | None = None,
                 weight_decay: float = 0.0) -> list[dict]:
    """AdamW parameter groups: pretrained towers vs new modules, with and without weight decay.

    Args:
        model: the retrieval model.
        lr: learning rate of the new modules (temporal head, logit scale).
        tower_lr: learning rate of the open_clip towers (``model.clip`` except its logit scale);
            None means ``lr`` (towers trained from scratch).
        weight_decay: applied to matrices only, not to biases, norms, embeddings or the logit scale.

    Returns:
        Up to four groups, each ``{"params", "lr", "weight_decay", "name"}`` with name ``tower``,
        ``tower_no_decay``, ``new`` or ``new_no_decay``; empty groups and frozen parameters are
        left out.
    """
    tower_lr = lr if tower_lr is None else tower_lr
    groups: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = not name.startswith("clip.") or name in ("clip.logit_scale", "clip.logit_bias")
        decay = p.ndim >= 2 and not any(k in name for k in _NO_DECAY_NAMES)
        key = ("new" if new else "tower") + ("" if decay else "_no_decay")
        groups.setdefault(key, []).append(p)
    order = ("tower", "tower_no_decay", "new", "new_no_decay")
    return [{"params": groups[k], "lr": tower_lr if k.startswith("tower") else lr,
             "weight_decay": weight_decay if k in ("tower", "new") else 0.0, "name": k}
            for k in order if k in groups]
