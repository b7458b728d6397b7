"""Models: the open_clip-based retrieval model, temporal heads, loss, and the one factory."""
from mofkit.models.factory import (PretrainedUnavailableError, RetrievalBundle, TINY_ARCHS,
                                   create_from_config, create_retrieval_model, list_models,
                                   quickgelu_mismatch)
from mofkit.models.loss import contrastive_loss
from mofkit.models.retrieval import RetrievalModel, param_groups
from mofkit.models.temporal import MeanPool, SeqTransformer, create_temporal_head

__all__ = ["PretrainedUnavailableError", "RetrievalBundle", "TINY_ARCHS", "create_from_config",
           "create_retrieval_model", "list_models", "quickgelu_mismatch", "contrastive_loss",
           "RetrievalModel", "param_groups", "MeanPool", "SeqTransformer", "create_temporal_head"]
