"""hf_scratchgpt: the GPT of *Build a Large Language Model (From Scratch)* as a Hugging Face model.

Importing the package registers `ScratchGPTConfig` and the three model classes with transformers'
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM` and `AutoModelForSequenceClassification`.
"""

from importlib.metadata import PackageNotFoundError, version

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from .generation import generate_text, generate_text_simple
from .model import (
    GELU,
    PRESETS,
    CausalAttention,
    FeedForward,
    LayerNorm,
    MultiHeadAttention,
    ScratchGPTConfig,
    ScratchGPTForCausalLM,
    ScratchGPTForSequenceClassification,
    ScratchGPTModel,
    ScratchGPTPreTrainedModel,
    SelfAttention,
    TransformerBlock,
    causal_mask,
    masked_softmax_attention,
    simplified_self_attention,
)

try:
    __version__ = version("hf-scratchgpt")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

AutoConfig.register(ScratchGPTConfig.model_type, ScratchGPTConfig, exist_ok=True)
AutoModel.register(ScratchGPTConfig, ScratchGPTModel, exist_ok=True)
AutoModelForCausalLM.register(ScratchGPTConfig, ScratchGPTForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(ScratchGPTConfig, ScratchGPTForSequenceClassification, exist_ok=True)

__all__ = [
    "PRESETS",
    "ScratchGPTConfig",
    "ScratchGPTPreTrainedModel",
    "ScratchGPTModel",
    "ScratchGPTForCausalLM",
    "ScratchGPTForSequenceClassification",
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
    "generate_text",
    "generate_text_simple",
]
