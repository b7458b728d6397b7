"""The retrieval model: open_clip's image and text towers with a temporal head over frames."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# CLIP clamps its learned logit scale at 100 (temperature 0.01).
MAX_LOGIT_SCALE = 100.0


class RetrievalModel(nn.Module):
    """CLIP4Clip-style dual encoder.

    Args:
        clip: an open_clip ``CLIP`` model (``.visual``, ``encode_image``, ``encode_text``,
            ``logit_scale``).
        temporal: head mapping frame embeddings (B, T, D) and a mask to (B, D).
        fixed_temperature: None learns CLIP's logit scale; a number (the reference uses 0.05)
            fixes the scale at its inverse.
    """

    def __init__(self, clip: nn.Module, temporal: nn.Module, fixed_temperature: float | None = None):
        super().__init__()
        self.clip = clip
        self.temporal = temporal
        self.fixed_temperature = fixed_temperature
        if fixed_temperature is not None:
            if fixed_temperature <= 0:
                raise ValueError(f"fixed_temperature must be > 0, got {fixed_temperature}")
            self.clip.logit_scale.requires_grad_(False)
            with torch.no_grad():
                self.clip.logit_scale.fill_(math.log(1.0 / fixed_temperature))

    @property
    def context_length(self) -> int:
        return int(self.clip.context_length)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Image tower on every frame: (B, T, 3, S, S) normalised pixels -> (B, T, D)."""
        b, t = frames.shape[:2]
        emb = self.clip.encode_image(frames.reshape(b * t, *frames.shape[2:]))  # (B*T, D)
        return emb.reshape(b, t, -1)  # (B, T, D)

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 3, S, S) frames, optional (B, T) bool mask -> (B, D) L2-normalised."""
        return F.normalize(self.temporal(self.encode_frames(frames), mask), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, D) L2-normalised."""
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        """exp of the learned log-scale, clamped at 100 as CLIP does (or 1 / fixed temperature)."""
        return self.clip.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, tokens: torch.Tensor, frames: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text (B, D), video (B, D), logit scale (scalar)) for captions and their videos."""
        return self.encode_text(tokens), self.encode_video(frames, mask), self.logit_scale()


_NO_DECAY_NAMES = ("bias", "ln_", "norm", "embedding", "position", "logit_scale", "class_embedding")


def param_groups(model: RetrievalModel, *, lr: float, tower_lr: float | None = None,
                 weight_decay: float = 0.0) -> list[dict]:
    """AdamW parameter groups: pretrained towers vs new modules, with and without weight decay.

    Args:
        model: the retrieval model.
        lr: learning rate of the new modules (temporal head, logit scale).
        tower_lr: learning rate of the open_clip towers; None means ``lr`` (training from scratch).
        weight_decay: applied to matrices only, not to biases, norms, embeddings or the logit scale.

    Returns:
        Up to four groups (``name`` says which), skipping empty ones and frozen parameters.
    """
    tower_lr = lr if tower_lr is None else tower_lr
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = not name.startswith("clip.") or name == "clip.logit_scale"
        decay = p.ndim >= 2 and not any(k in name for k in _NO_DECAY_NAMES)
        groups.setdefault(("new" if new else "tower", decay), []).append(p)
    out = []
    for (kind, decay), params in sorted(groups.items()):
        out.append({"params": params, "lr": lr if kind == "new" else tower_lr,
                    "weight_decay": weight_decay if decay else 0.0,
                    "name": f"{kind}{'' if decay else '_no_decay'}"})
    return out
