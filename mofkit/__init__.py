"""mofkit: text-to-video retrieval with Meta-Optimized Frames on open_clip.

Rooms: ``mofkit.data`` (videos, sampling, datasets, synthetic corpus, frame cache),
``mofkit.models`` (open_clip factory, temporal heads, loss), ``mofkit.bilevel`` (compressed-frame
bank, hypergradients), ``mofkit.train`` (loops, checkpoints), ``mofkit.eval`` (metrics, cost),
``mofkit.viz`` (figures, widgets). Imports flow data, models -> bilevel -> train.
"""
from mofkit.config import Config, get_config, list_profiles

__version__ = "0.1.0"
__all__ = ["Config", "get_config", "list_profiles", "__version__"]
