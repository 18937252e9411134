"""Greedy generation with the book's KV cache (`llms_from_scratch.kv_cache.generate`).

The prompt is fed once to fill the cache; after that each step feeds only the newest token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..generate import trim_input_tensor
from .utils import KVCache


def generate_text_simple(
    model: Any, idx: torch.Tensor, max_new_tokens: int, context_size: int | None = None, use_cache: bool = True
) -> torch.Tensor:
    """Greedy decoding with (or, `use_cache=False`, without) a KV cache.

    Args:
        model: The book's KV-cache `GPTModel` (`kv_cache.gpt2.GPTModel`).
        idx: `(b, T)` prompt ids.
        max_new_tokens: How many tokens to append.
        context_size: The prompt is cropped to its last `context_size` ids; default `model.cfg["context_length"]`.
        use_cache: Feed only the newest token each step, the earlier ones' keys and values cached.

    Returns:
        `(b, T + max_new_tokens)` ids.
    """
    model.eval()
    ctx_len = context_size or model.cfg["context_length"]
    with torch.no_grad():
        if use_cache:
            cache = KVCache(n_layers=model.cfg["n_layers"])
            model.reset_kv_cache()
            logits = model(idx[:, -ctx_len:], cache=cache)  # fill the cache with the prompt
            for _ in range(max_new_tokens):
                next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)  # (b, 1)
                idx = torch.cat([idx, next_idx], dim=1)
                logits = model(next_idx, cache=cache)  # only the new token; the rest is cached
        else:
            for _ in range(max_new_tokens):
                logits = model(idx[:, -ctx_len:], cache=None)
                next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
                idx = torch.cat([idx, next_idx], dim=1)
    return idx


def generate_text_simple_stream(
    model: Any,
    token_ids: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None = None,
    context_size: int | None = None,
) -> Iterator[torch.Tensor]:
    """Greedy decoding with a KV cache that yields each new token `(b, 1)` as soon as it is chosen.

    Stops early once every row produced `eos_token_id` (which is not yielded). The prompt is cropped to
    its last `context_size` ids when that is given.
    """
    model.eval()
    if context_size:
        token_ids = token_ids[:, -context_size:]
    with torch.no_grad():
        cache = KVCache(n_layers=model.cfg["n_layers"])
        model.reset_kv_cache()
        logits = model(token_ids, cache=cache)  # fill the cache with the prompt
        for _ in range(max_new_tokens):
            next_token = torch.argmax(logits[:, -1], dim=-1, keepdim=True)  # (b, 1)
            if eos_token_id is not None and torch.all(next_token == eos_token_id):
                break
            yield next_token
            logits = model(next_token, cache=cache)


__all__ = ["KVCache", "generate_text_simple", "generate_text_simple_stream", "trim_input_tensor"]
