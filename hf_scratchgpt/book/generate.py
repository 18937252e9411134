"""Generation helpers of the book's package not covered in the chapters (`llms_from_scratch.generate`)."""

from __future__ import annotations

import torch


def trim_input_tensor(input_ids_tensor: torch.Tensor, context_len: int, max_new_tokens: int) -> torch.Tensor:
    """Keep the last `context_len - max_new_tokens` (at least 1) prompt tokens, so the answer still fits.

    Args:
        input_ids_tensor: `(b, T)` prompt ids.
        context_len: The model's context length.
        max_new_tokens: Tokens to be generated; must be below `context_len`.
    """
    if max_new_tokens >= context_len:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) must be below the context length ({context_len})")
    keep_len = max(1, context_len - max_new_tokens)
    return input_ids_tensor[:, -keep_len:]  # left-truncate a long prompt (a short one is kept whole)


__all__ = ["trim_input_tensor"]
