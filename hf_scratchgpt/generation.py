"""The book's text-generation helpers (chapters 4.7 and 5.3), and batched responses to prompts.

`generate_text_simple` and `generate_text` recompute the whole (cropped) context every step, exactly
as the book does; `model.generate()` is the fast path with a KV cache, sampling strategies and beam
search. Put the model in `eval()` mode first, as the book does, or dropout makes greedy decoding
random. `generate_responses` answers many prompts with `model.generate()` in left-padded batches
(the test split of an instruction run, a judge's inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass
class Response:
    """One generated response.

    Attributes:
        text: The decoded new tokens, up to (not including) the end token, special tokens skipped.
        ended: The model produced the end token within the token budget.
        prompt_tokens: Length of the prompt in tokens.
        new_tokens: Tokens generated, the end token included.
    """

    text: str
    ended: bool
    prompt_tokens: int
    new_tokens: int


@torch.no_grad()
def generate_responses(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int | None = None,
    batch_size: int = 16,
) -> list[Response]:
    """Greedy responses to token-id prompts, in batches of similar length, left-padded, with the KV cache.

    Each prompt gets at most `max_new_tokens` new tokens, and no more than the room the longest
    prompt of its batch leaves in the context (batches group prompts by length); it stops at
    `eos_token_id`.

    Args:
        model: A transformers causal LM (its config's `max_position_embeddings` is the context).
        tokenizer: Decodes the new tokens.
        prompts: Token ids of each prompt; each must leave room for one new token.
        max_new_tokens: Most tokens per response.
        eos_token_id: The end token.
        pad_token_id: Padding id (default: the end token).
        batch_size: Prompts per `generate` call.

    Raises:
        ValueError: A prompt that fills the context (its index is named).
    """
    context = model.config.max_position_embeddings
    pad = eos_token_id if pad_token_id is None else pad_token_id
    for i, ids in enumerate(prompts):
        if not 0 < len(ids) < context:
            raise ValueError(
                f"prompt {i} has {len(ids)} tokens; it must have 1 to {context - 1} (the context is {context})"
            )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Response | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):  # left padding: every prompt ends at the last column
            ids[r, width - len(prompts[i]) :] = torch.tensor(list(prompts[i]), dtype=torch.long)
            mask[r, width - len(prompts[i]) :] = 1
        budget = min(max_new_tokens, context - width)
        out = model.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=budget,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad,
        )
        for r, i in enumerate(rows):
            new = out[r, width:].tolist()
            ended = eos_token_id in new
            new = new[: new.index(eos_token_id) + 1] if ended else new
            text_ids = new[:-1] if ended else new
            text = tokenizer.decode(text_ids, skip_special_tokens=True)
            results[i] = Response(text, ended, len(prompts[i]), len(new))
    model.train(was_training)
    return [r for r in results if r is not None]


__all__ = ["Response", "generate_responses", "generate_text", "generate_text_simple", "logits_of"]
