"""The model: the remote code that every saved folder carries.

The `*_scratchgpt.py` modules here import only torch, transformers and each other (single-dot
relative imports), so `save_pretrained` copies them into a folder that loads with
`trust_remote_code=True` where `hf_scratchgpt` is not installed. `REMOTE_CODE_FILES` names them.
"""

from pathlib import Path

from .configuration_scratchgpt import AUTO_MAP, PRESETS, ScratchGPTConfig
from .layers_scratchgpt import (
    GELU,
    CausalAttention,
    FeedForward,
    LayerNorm,
    MultiHeadAttention,
    SelfAttention,
    TransformerBlock,
    causal_mask,
    masked_softmax_attention,
    simplified_self_attention,
)
from .loss_scratchgpt import fused_linear_cross_entropy
from .modeling_scratchgpt import (
    ScratchGPTForCausalLM,
    ScratchGPTForSequenceClassification,
    ScratchGPTModel,
    ScratchGPTPreTrainedModel,
)

REMOTE_CODE_FILES = tuple(sorted(p.name for p in Path(__file__).parent.glob("*_scratchgpt.py")))

__all__ = [
    "AUTO_MAP",
    "PRESETS",
    "REMOTE_CODE_FILES",
    "ScratchGPTConfig",
    "ScratchGPTPreTrainedModel",
    "ScratchGPTModel",
    "ScratchGPTForCausalLM",
    "ScratchGPTForSequenceClassification",
    "fused_linear_cross_entropy",
    "simplified_self_attention",
    "causal_mask",
    "masked_softmax_attention",
    "SelfAttention",
    "CausalAttention",
    "MultiHeadAttention",
    "LayerNorm",
    "GELU",
    "FeedForward",
    "TransformerBlock",
]
