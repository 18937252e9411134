"""Chapter 3 of the book: attention, from weightless self-attention to multi-head (`llms_from_scratch.ch03`).

`SelfAttention_v2`, `CausalAttention` and `MultiHeadAttention` are the package's layers (the very ones
the model is made of, computing through `masked_softmax_attention`); `SelfAttention_v1`,
`MultiHeadAttentionWrapper` and the bonus `PyTorchMultiHeadAttention` are added here. With the same
`torch.manual_seed` every class draws the book's weights and gives the book's outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.layers_scratchgpt import CausalAttention, MultiHeadAttention, SelfAttention, masked_softmax_attention


class SelfAttention_v1(nn.Module):
    """Self-attention with trainable weight matrices as plain parameters (chapter 3.4.1).

    Args:
        d_in: Input embedding size.
        d_out: Output (context vector) size.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))  # (d_in, d_out), uniform [0, 1) as in the book
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, d_in)
        context_vec, _ = masked_softmax_attention(x @ self.W_query, x @ self.W_key, x @ self.W_value)
        return context_vec  # (T, d_out)


class SelfAttention_v2(SelfAttention):
    """Self-attention with `nn.Linear` projections (chapter 3.4.2): the package's `SelfAttention`."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False) -> None:
        super().__init__(d_in, d_out, qkv_bias)


class MultiHeadAttentionWrapper(nn.Module):
    """`num_heads` single-head `CausalAttention`s side by side, outputs concatenated (chapter 3.6.1).

    Args:
        d_in: Input embedding size.
        d_out: Output size of each head (the result has `num_heads * d_out` features).
        context_length: Longest supported sequence.
        dropout: Dropout on the attention weights.
        num_heads: Number of heads.
        qkv_bias: Bias in the query/key/value projections.
    """

    def __init__(
        self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False
    ) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, T, d_in)
        return torch.cat([head(x) for head in self.heads], dim=-1)  # (b, T, num_heads * d_out)


class PyTorchMultiHeadAttention(nn.Module):
    """Causal multi-head attention on `F.scaled_dot_product_attention` with one fused qkv projection
    (the book's bonus class; the model's own fast path is `attn_implementation="sdpa"`).

    Args:
        d_in: Input embedding size.
        d_out: Output size, split across the heads.
        num_heads: Number of heads; must divide `d_out`.
        dropout: Dropout on the attention weights (training only).
        qkv_bias: Bias in the fused query/key/value projection.
    """

    def __init__(self, d_in: int, d_out: int, num_heads: int, dropout: float = 0.0, qkv_bias: bool = False) -> None:
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.d_out = d_out
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)  # queries | keys | values in one matmul
        self.proj = nn.Linear(d_out, d_out)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, num_tokens, _ = x.shape
        qkv = self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim)  # (b, T, 3, n_heads, head_dim)
        queries, keys, values = qkv.permute(2, 0, 3, 1, 4)  # each (b, n_heads, T, head_dim)
        dropout_p = self.dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p, is_causal=True)
        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (b, T, d_out)
        return self.proj(context)


__all__ = [
    "SelfAttention_v1",
    "SelfAttention_v2",
    "CausalAttention",
    "MultiHeadAttentionWrapper",
    "MultiHeadAttention",
    "PyTorchMultiHeadAttention",
]
