"""Small helpers that let the book's functions take this package's models and tokenizers too.

- `encode_text`: the book's `tokenizer.encode(text, allowed_special={"<|endoftext|>"})` for a tiktoken
  encoding; any other tokenizer (transformers, `SimpleTokenizer`) through the package's `encode`.
- `logits_of` (from `hf_scratchgpt.generation`): the book's `model(idx)` logits for any causal LM.
- `context_size_of`: the book's `model.pos_emb.weight.shape[0]`, or `config.context_length`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..data.tokenize import encode
from ..generation import logits_of

ENDOFTEXT = "<|endoftext|>"


def is_tiktoken(tokenizer: Any) -> bool:
    """Whether `tokenizer` is a tiktoken `Encoding` (checked without importing tiktoken)."""
    return type(tokenizer).__module__.split(".")[0] == "tiktoken"


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text`, `<|endoftext|>` allowed (and encoded as its special id), no added BOS/EOS."""
    if is_tiktoken(tokenizer):
        return tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return list(encode(tokenizer, text))


def context_size_of(model: nn.Module) -> int:
    """The longest input the model's position embedding covers."""
    pos_emb = getattr(model, "pos_emb", None)
    if isinstance(pos_emb, nn.Embedding):
        return pos_emb.weight.shape[0]
    return model.config.context_length


__all__ = ["ENDOFTEXT", "is_tiktoken", "encode_text", "logits_of", "context_size_of"]
