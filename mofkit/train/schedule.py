"""The learning-rate schedule every training loop of the kit shares."""
from __future__ import annotations

import math


def warmup_cosine(total_steps: int, warmup_steps: int):
    """The learning-rate factor per step (for ``LambdaLR``): a linear warm-up over
    ``warmup_steps``, then a cosine decay to zero at ``total_steps``."""
    def fn(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return fn
