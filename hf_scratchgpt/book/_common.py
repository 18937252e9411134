"""Small helpers that let the book's functions take this package's models and tokenizers too.

- `encode_text`: the book's `tokenizer.encode(text, allowed_special={"<|endoftext|>"})` for a tiktoken
  encoding; any other tokenizer (transformers, `SimpleTokenizer`) through the package's `encode`.
- `logits_of`: the book's `model(idx)` logits for the book's models, ScratchGPT/transformers models
  (which return an output object) and peft-wrapped ones.
- `context_size_of`: the book's `model.pos_emb.weight.shape[0]`, or `config.context_length`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.tokenize import encode

ENDOFTEXT = "<|endoftext|>"


def is_tiktoken(tokenizer: Any) -> bool:
    """Whether `tokenizer` is a tiktoken `Encoding` (checked without importing tiktoken)."""
    return type(tokenizer).__module__.split(".")[0] == "tiktoken"


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text`, `<|endoftext|>` allowed (and encoded as its special id), no added BOS/EOS."""
    if is_tiktoken(tokenizer):
        return tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return list(encode(tokenizer, text))


def logits_of(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """`(b, T, vocab)` logits of `idx` `(b, T)`, whatever kind of causal LM `model` is."""
    if hasattr(model, "generation_config"):
        out = model(input_ids=idx, use_cache=False)  # a transformers (or peft) model: no cache for one pass
    else:
        out = model(idx)  # the book's call
    return out.logits if hasattr(out, "logits") else out


def context_size_of(model: nn.Module) -> int:
    """The longest input the model's position embedding covers."""
    pos_emb = getattr(model, "pos_emb", None)
    if isinstance(pos_emb, nn.Embedding):
        return pos_emb.weight.shape[0]
    return model.config.context_length


__all__ = ["ENDOFTEXT", "is_tiktoken", "encode_text", "logits_of", "context_size_of"]
