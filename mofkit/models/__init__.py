"""Models: the open_clip-based retrieval model, temporal heads, loss, and the one factory.

Importing this package registers mofkit's small CPU architectures (``mof-tiny-32``, ``mof-tiny``,
``mof-small``) with open_clip, so they and open_clip's own (``ViT-B-32``, ...) go through the
same code.
"""
from mofkit.models.factory import (PretrainedUnavailableError, RetrievalBundle, TINY_ARCHS,
                                   create_from_config, create_retrieval_model, get_arch_config,
                                   list_models, quickgelu_mismatch, read_weights,
                                   resolve_pretrained)
from mofkit.models.loss import contrastive_loss, similarity_logits
from mofkit.models.retrieval import RetrievalModel, param_groups
from mofkit.models.temporal import HEADS, MeanPool, SeqTransformer, create_temporal_head

__all__ = ["PretrainedUnavailableError", "RetrievalBundle", "TINY_ARCHS", "create_from_config",
           "create_retrieval_model", "get_arch_config", "list_models", "quickgelu_mismatch",
           "read_weights", "resolve_pretrained", "contrastive_loss", "similarity_logits",
           "RetrievalModel", "param_groups", "HEADS", "MeanPool", "SeqTransformer",
           "create_temporal_head"]
