"""Evaluation: similarity matrices -> retrieval metrics, and test-time cost (FLOPs, throughput).

``retrieval_metrics`` / ``video_to_text_metrics`` / ``evaluate_similarity`` follow the field's
conventions (1-based ranks, recalls in percent, dual-softmax re-ranking reported apart); the tie
rule is documented in :mod:`mofkit.eval.metrics`. FLOPs count 2 per multiply-add
(:mod:`mofkit.eval.cost`).
"""
from mofkit.eval.cost import count_flops, encode_throughput, param_counts, text_flops, video_flops
from mofkit.eval.metrics import (
    DIRECTIONS,
    METRIC_KEYS,
    clip4clip_metrics,
    dual_softmax,
    evaluate_similarity,
    format_metrics,
    metrics_from_counts,
    metrics_table,
    rank_counts,
    retrieval_metrics,
    similarity_matrix,
    video_to_text_metrics,
)
from mofkit.eval.stats import aggregate_seeds, load_ranks, save_ranks, summarise_seeds

__all__ = [
    "DIRECTIONS",
    "METRIC_KEYS",
    "aggregate_seeds",
    "load_ranks",
    "clip4clip_metrics",
    "count_flops",
    "dual_softmax",
    "encode_throughput",
    "evaluate_similarity",
    "format_metrics",
    "metrics_from_counts",
    "metrics_table",
    "rank_counts",
    "save_ranks",
    "summarise_seeds",
    "param_counts",
    "retrieval_metrics",
    "similarity_matrix",
    "text_flops",
    "video_flops",
    "video_to_text_metrics",
]
