"""The book's text-generation helpers (chapters 4.7 and 5.3), as thin functions over any model.

They recompute the whole (cropped) context every step, exactly as the book does; `model.generate()`
is the fast path with a KV cache, sampling strategies and beam search. Put the model in `eval()`
mode first, as the book does, or dropout makes greedy decoding random.
"""

from __future__ import annotations

import torch
from torch import nn


def logits_of(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """`(b, T, vocab)` logits of `idx` `(b, T)`, whatever kind of causal LM `model` is.

    A transformers (or peft) model is called with keywords and no cache, for one full pass; anything
    else the book's way, `model(idx)`.
    """
    out = model(input_ids=idx, use_cache=False) if hasattr(model, "generation_config") else model(idx)
    return out.logits if hasattr(out, "logits") else out


def _next_token_logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Logits of the last position, `(b, vocab)`."""
    return logits_of(model, idx)[:, -1, :]


@torch.no_grad()
def generate_text_simple(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int) -> torch.Tensor:
    """Greedy decoding (chapter 4.7).

    Args:
        model: A causal LM returning logits (ScratchGPT, any transformers LM, or the book's `GPTModel`).
        idx: `(b, T)` token ids of the prompt.
        max_new_tokens: How many tokens to append.
        context_size: The model's context length; the input is cropped to its last `context_size` ids.

    Returns:
        `(b, T + max_new_tokens)` ids.
    """
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # crop to the supported context
        logits = _next_token_logits(model, idx_cond)  # (b, vocab)
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)  # (b, 1)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


@torch.no_grad()
def generate_text(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Decoding with temperature and top-k sampling (chapter 5.3), the book's `generate`.

    Args:
        model: A causal LM returning logits.
        idx: `(b, T)` prompt ids.
        max_new_tokens: Most tokens to append.
        context_size: The input is cropped to its last `context_size` ids.
        temperature: 0 means greedy (argmax); above 0 scales the logits before sampling.
        top_k: Keep only the `top_k` most likely tokens before sampling.
        eos_id: Stop (without appending it) once every row produced this id.

    Returns:
        The prompt followed by the generated ids.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        logits = _next_token_logits(model, idx_cond)  # (b, vocab)
        if top_k is not None:
            top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
            min_val = top_logits[:, -1:]
            logits = torch.where(logits < min_val, torch.tensor(float("-inf"), device=logits.device), logits)
        if temperature > 0.0:
            probs = torch.softmax(logits / temperature, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)  # (b, 1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        if eos_id is not None and bool((idx_next == eos_id).all()):
            break
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


__all__ = ["generate_text", "generate_text_simple", "logits_of"]
