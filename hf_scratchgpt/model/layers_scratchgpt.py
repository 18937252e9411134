"""The book's building blocks (chapters 3 and 4), the very classes the model is made of.

Stage 4 (attention): `simplified_self_attention`, `SelfAttention`, `CausalAttention`,
`MultiHeadAttention`, all computing through one readable function, `masked_softmax_attention`.
Stage 5 (the model's parts): `LayerNorm`, `GELU`, `FeedForward`, `TransformerBlock`.

`FeedForward` and `TransformerBlock` take the book's config dict (`GPT_CONFIG_124M`) or a
`ScratchGPTConfig`. This file imports only torch so it travels with `trust_remote_code` folders.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


def _cfg(cfg: Any, key: str) -> Any:
    """Read `key` from the book's config dict or from a `ScratchGPTConfig`."""
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


FEW_ROWS = 16  # `Linear`'s decoding route applies to inputs of at most this many rows
MIN_ROUTED_WEIGHTS = 1 << 17  # and to weights this large (smaller ones stay in cache: the plain product wins)
_decoding = threading.local()


@contextmanager
def decoding_products(enabled: bool = True) -> Iterator[None]:
    """While on (in this thread), `Linear` layers take their decoding route for a few rows; see `Linear`."""
    before = getattr(_decoding, "on", False)
    _decoding.on = enabled
    try:
        yield
    finally:
        _decoding.on = before


class Linear(nn.Linear):
    """`nn.Linear`, with the same parameters and state dict, and a faster product for token-by-token decoding.

    With a KV cache each generation step multiplies a few rows (one per sequence) by every weight.
    On the CPU, `x @ W.T` for a few rows runs on one core; the same product written `(W @ x.T).T`
    runs on all of them (measured on 2 cores, a 384 x 1536 weight out of cache: 53 us against 152
    for one row, 109 against 239 for eight; 1.25x at 384 x 384, 3.5x at 128 x 8192, but 0.6x at
    128 x 128, where the plain product stays in cache). So while `decoding_products` is on (the
    model's cached sdpa steps), a float32 CPU input of at most `FEW_ROWS` rows, with gradients off
    and a weight of at least `MIN_ROUTED_WEIGHTS` elements, takes that route. It equals `F.linear` up
    to float rounding; everything else is plain `nn.Linear`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not (
            0 < rows <= FEW_ROWS
            and getattr(_decoding, "on", False)
            and x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and self.weight.numel() >= MIN_ROUTED_WEIGHTS
            and not torch.is_grad_enabled()
        ):
            return super().forward(x)
        x2d = x.reshape(rows, self.in_features)
        if rows == 1:  # two rows: the multi-core product, not the one-core matrix-vector kernel
            x2d = x2d.expand(2, self.in_features)
        cols = x2d.contiguous().t()  # (in, rows), the transpose of a row-major matrix (what the fast kernel takes)
        out = self.weight @ cols if self.bias is None else torch.addmm(self.bias[:, None], self.weight, cols)
        return out[:, :rows].t().contiguous().view(*x.shape[:-1], self.out_features)  # (..., out)


def simplified_self_attention(inputs: torch.Tensor) -> torch.Tensor:
    """Self-attention without trainable weights (chapter 3.3).

    Args:
        inputs: Token embeddings, shape `(num_tokens, d)` or `(b, num_tokens, d)`.

    Returns:
        One context vector per token, same shape as `inputs`.
    """
    attn_scores = inputs @ inputs.transpose(-2, -1)  # dot products, (..., T, T)
    attn_weights = torch.softmax(attn_scores, dim=-1)  # each row sums to 1
    return attn_weights @ inputs  # weighted sum of the inputs


def causal_mask(num_queries: int, num_keys: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean mask, True where a query may NOT look (keys in its future).

    The queries are the last `num_queries` of `num_keys` positions (with a KV cache the earlier keys
    come from the cache), so query `i` sits at position `num_keys - num_queries + i`.
    """
    offset = num_keys - num_queries
    return torch.triu(torch.ones(num_queries, num_keys, dtype=torch.bool, device=device), diagonal=offset + 1)


class Unpadded:
    """Where the tokens of a right-padded batch sit, so the blocks can skip its padding.

    The hidden states then travel as `(1, N, E)`, the batch's N real tokens one after another.
    LayerNorm, the feed-forward network and the shortcuts treat every token alone, so only the
    attention needs the batch's shape: it puts queries, keys and values back at their `(b, T)`
    places (zeros at the padding) and takes the context of the real tokens out again. With right
    padding and the causal mask no real token ever attends to padding, so this is the same
    computation as the padded one, without the compute of the padding positions.

    Args:
        attention_mask: `(b, T)`, 1 for tokens and 0 for padding, every row's tokens first.
    """

    def __init__(self, attention_mask: torch.Tensor) -> None:
        self.shape = tuple(attention_mask.shape)  # (b, T)
        self.index = attention_mask.flatten().nonzero().squeeze(1)  # (N,) places in the flattened batch

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """`(b, T, ...)` -> `(1, N, ...)`, the real tokens only."""
        return x.flatten(0, 1).index_select(0, self.index).unsqueeze(0)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """`(1, N, ...)` -> `(b, T, ...)`, zeros at the padding."""
        flat = x.new_zeros((self.shape[0] * self.shape[1], *x.shape[2:]))
        return flat.index_copy(0, self.index, x.squeeze(0)).unflatten(0, self.shape)


def masked_softmax_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's scaled dot-product attention, step by step.

    Args:
        queries: `(..., T_q, d_k)`.
        keys: `(..., T_k, d_k)`.
        values: `(..., T_k, d_v)`.
        mask: Boolean, True where attention is forbidden; broadcast to `(..., T_q, T_k)`.
        dropout: Applied to the attention weights.

    Returns:
        The context vectors `(..., T_q, d_v)` and the attention weights `(..., T_q, T_k)`.
    """
    attn_scores = queries @ keys.transpose(-2, -1)  # (..., T_q, T_k)
    if mask is not None:
        attn_scores = attn_scores.masked_fill(mask, -torch.inf)  # -inf *before* softmax -> weight 0
    attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
    if dropout is not None:
        attn_weights = dropout(attn_weights)
    return attn_weights @ values, attn_weights


class SelfAttention(nn.Module):
    """Self-attention with trainable query/key/value projections (chapter 3.4)."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, d_in) or (b, T, d_in)
        context_vec, _ = masked_softmax_attention(self.W_query(x), self.W_key(x), self.W_value(x))
        return context_vec


class CausalAttention(SelfAttention):
    """Single-head causal attention with dropout on the attention weights (chapter 3.5)."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False) -> None:
        super().__init__(d_in, d_out, qkv_bias)
        self.context_length = context_length
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, T, d_in)
        num_tokens = x.shape[-2]
        if num_tokens > self.context_length:
            raise ValueError(f"sequence of {num_tokens} tokens exceeds context_length {self.context_length}")
        mask = causal_mask(num_tokens, num_tokens, x.device)
        context_vec, _ = masked_softmax_attention(self.W_query(x), self.W_key(x), self.W_value(x), mask, self.dropout)
        return context_vec


class MultiHeadAttention(nn.Module):
    """Causal multi-head attention that splits `d_out` across heads (chapter 3.6).

    Beyond the book: `forward` takes a precomputed mask (padding), a transformers `Cache` for
    incremental decoding (`layer_idx` selects this layer's slot) and the attention implementation:
    `"eager"` is the readable path above, `"sdpa"` is `F.scaled_dot_product_attention`.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.layer_idx = layer_idx
        self.W_query = Linear(d_in, d_out, bias=qkv_bias)  # nn.Linear, faster when decoding
        self.W_key = Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = Linear(d_out, d_out)  # combines the heads
        self.out_proj.is_residual_projection = True  # scaled init in the GPT-2 scheme
        self.dropout = nn.Dropout(dropout)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # The book registers its causal mask as a buffer; we build it on the fly, so drop it.
        state_dict.pop(prefix + "mask", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, num_tokens, _ = x.shape
        return x.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)  # (b, n_heads, T, head_dim)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: Any = None,
        attn_implementation: str = "eager",
        output_attentions: bool = False,
        unpadded: Unpadded | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over `x` (and the cached keys/values, if any).

        Args:
            x: `(b, T, d_in)`, or `(1, N, d_in)` with `unpadded`.
            mask: Boolean `(b, 1, T, S)` or `(T, S)`, True where attention is forbidden. None means
                causal only (S = cached + T positions).
            cache: A transformers `Cache`; this layer's keys/values are appended to it.
            attn_implementation: `"eager"` or `"sdpa"`.
            output_attentions: Also return the attention weights (eager only).
            unpadded: `x` holds only the real tokens of a right-padded batch (`Unpadded`; without a cache).

        Returns:
            `(b, T, d_out)` (`(1, N, d_out)` with `unpadded`), or `(output, weights)` when `output_attentions`.
        """
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)  # (b, T, d_out)
        if unpadded is not None:  # back at their (b, T) places; causal, no mask: no token attends to padding
            queries, keys, values = (unpadded.pad(t) for t in (queries, keys, values))
        b, num_tokens, _ = queries.shape
        queries, keys, values = map(self._split_heads, (queries, keys, values))  # (b, n_heads, T, head_dim)
        if cache is not None:
            keys, values = cache.update(keys, values, self.layer_idx)  # (b, n_heads, S, head_dim)
        num_keys = keys.shape[-2]

        attn_weights = None
        if attn_implementation == "sdpa" and not output_attentions:
            dropout_p = self.dropout.p if self.training else 0.0
            if mask is None and num_tokens == num_keys:
                context = F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p, is_causal=True)
            else:
                if mask is None:
                    mask = causal_mask(num_tokens, num_keys, x.device)
                context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=~mask, dropout_p=dropout_p)
        elif attn_implementation in ("eager", "sdpa"):
            if mask is None:
                mask = causal_mask(num_tokens, num_keys, x.device)
            context, attn_weights = masked_softmax_attention(queries, keys, values, mask, self.dropout)
        else:
            raise ValueError(f"attn_implementation must be 'eager' or 'sdpa', got {attn_implementation!r}")

        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (b, T, d_out): heads combined
        if unpadded is not None:
            context = unpadded.unpad(context)  # (1, N, d_out): the real tokens only
        out = self.out_proj(context)
        return (out, attn_weights) if output_attentions else out


class LayerNorm(nn.Module):
    """Layer normalisation with the book's `scale`/`shift` names and biased variance (chapter 4.2)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation in one kernel (`F.layer_norm`); equal up to float rounding."""
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU, tanh approximation as in GPT-2 (chapter 4.3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))

    @staticmethod
    def fused(x: torch.Tensor) -> torch.Tensor:
        """The same function in one kernel (`F.gelu(approximate="tanh")`); equal up to float rounding."""
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise MLP: emb_dim -> 4 * emb_dim -> emb_dim with GELU (chapter 4.3)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        emb_dim = _cfg(cfg, "emb_dim")
        self.layers = nn.Sequential(Linear(emb_dim, 4 * emb_dim), GELU(), Linear(4 * emb_dim, emb_dim))
        self.layers[2].is_residual_projection = True

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if not fused:
            return self.layers(x)
        return self.layers[2](self.layers[1].fused(self.layers[0](x)))


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-LayerNorm block: attention and feed-forward, each with dropout and a shortcut (chapter 4.5).

    A plain `nn.Module` to the book's code; transformers' `GradientCheckpointingLayer` lets
    `model.gradient_checkpointing_enable()` recompute the block in the backward pass instead of
    keeping its activations.
    """

    def __init__(self, cfg: Any, layer_idx: int | None = None) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=_cfg(cfg, "emb_dim"),
            d_out=_cfg(cfg, "emb_dim"),
            context_length=_cfg(cfg, "context_length"),
            num_heads=_cfg(cfg, "n_heads"),
            dropout=_cfg(cfg, "drop_rate"),
            qkv_bias=_cfg(cfg, "qkv_bias"),
            layer_idx=layer_idx,
        )
        self.ff = FeedForward(cfg)
        eps = cfg.get("layer_norm_eps", 1e-5) if isinstance(cfg, Mapping) else cfg.layer_norm_eps
        self.norm1 = LayerNorm(_cfg(cfg, "emb_dim"), eps=eps)
        self.norm2 = LayerNorm(_cfg(cfg, "emb_dim"), eps=eps)
        self.drop_shortcut = nn.Dropout(_cfg(cfg, "drop_rate"))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: Any = None,
        attn_implementation: str = "eager",
        output_attentions: bool = False,
        unpadded: Unpadded | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        fused = attn_implementation == "sdpa"  # the fast path also fuses LayerNorm and GELU
        shortcut = x  # shortcut around the attention sub-layer
        x = self.norm1.fused(x) if fused else self.norm1(x)
        x = self.att(
            x,
            mask=mask,
            cache=cache,
            attn_implementation=attn_implementation,
            output_attentions=output_attentions,
            unpadded=unpadded,
        )
        if output_attentions:
            x, attn_weights = x
        x = self.drop_shortcut(x)
        x = x + shortcut

        shortcut = x  # shortcut around the feed-forward sub-layer
        x = self.norm2.fused(x) if fused else self.norm2(x)
        x = self.ff(x, fused=fused)
        x = self.drop_shortcut(x)
        x = x + shortcut
        return (x, attn_weights) if output_attentions else x


__all__ = [
    "simplified_self_attention",
    "causal_mask",
    "Unpadded",
    "masked_softmax_attention",
    "SelfAttention",
    "CausalAttention",
    "MultiHeadAttention",
    "LayerNorm",
    "GELU",
    "FeedForward",
    "TransformerBlock",
]
