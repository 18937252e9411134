"""Small helpers that let the book's functions take this package's models and tokenizers too.

- `encode_text`: the book's `tokenizer.encode(text, allowed_special={"<|endoftext|>"})` for a tiktoken
  encoding; any other tokenizer (transformers, `SimpleTokenizer`) through the package's `encode`.
- `logits_of` (from `hf_scratchgpt.generation`): the book's `model(idx)` logits for any causal LM.
- `context_size_of`: the book's `model.pos_emb.weight.shape[0]`, or `config.context_length`.
- `average_batch_loss`, `train_and_val_loss`: the book's `calc_loss_loader` and `evaluate_model`, the
  same in chapters 5 and 6 but for the batch loss each chapter defines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
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


BatchLoss = Callable[[torch.Tensor, torch.Tensor, nn.Module, Any], torch.Tensor]


def average_batch_loss(
    calc_loss_batch: BatchLoss, data_loader: Any, model: nn.Module, device: Any, num_batches: int | None = None
) -> float:
    """Average `calc_loss_batch` over the first `num_batches` batches (all by default); NaN for an empty loader."""
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total_loss = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total_loss += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total_loss / num_batches


def train_and_val_loss(
    calc_loss_batch: BatchLoss, model: nn.Module, train_loader: Any, val_loader: Any, device: Any, eval_iter: int
) -> tuple[float, float]:
    """Training and validation loss on the first `eval_iter` batches of each loader, in eval mode."""
    model.eval()
    with torch.no_grad():
        train_loss = average_batch_loss(calc_loss_batch, train_loader, model, device, num_batches=eval_iter)
        val_loss = average_batch_loss(calc_loss_batch, val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


__all__ = [
    "ENDOFTEXT",
    "is_tiktoken",
    "encode_text",
    "logits_of",
    "context_size_of",
    "average_batch_loss",
    "train_and_val_loss",
]
