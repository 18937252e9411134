"""The book's GPT with a KV cache (`llms_from_scratch.kv_cache.gpt2`), on the package's model.

`GPTModel(cfg)` is `hf_scratchgpt.book.ch04.GPTModel` (so a `ScratchGPTForCausalLM`, the same weights
for the same seed) plus the book's cache interface: `model(in_idx, use_cache=False, cache=None)` gives
the logits; with a `KVCache` (or `use_cache=True`, which uses a cache the model keeps) only the new
tokens are fed, the earlier positions' keys and values come from the cache, and `current_pos` counts
the positions seen; `reset_kv_cache()` starts over; `cfg` is the book's config dict. The attention is
the package's, extending a transformers `DynamicCache` as in `generate()`.

`MultiHeadAttention` and `TransformerBlock` also take the book's per-layer cache (a `(keys, values)`
pair): `forward(x, use_cache=False, start_pos=0, cache=None)` returns `(output, next_cache)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...model import layers_scratchgpt as layers
from ...model.configuration_scratchgpt import ScratchGPTConfig
from ...model.layers_scratchgpt import GELU, FeedForward, LayerNorm
from .. import ch04
from .utils import KVCache

BOOK_CONFIG_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")

KVPair = tuple[torch.Tensor, torch.Tensor]


class _PairCache:
    """One layer's book cache, a `(keys, values)` pair, behind the `update` the package's attention calls."""

    def __init__(self, pair: KVPair | None) -> None:
        self.pair = pair

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int | None = None) -> KVPair:
        if self.pair is not None:  # append the new positions to the cached ones: (b, n_heads, S, head_dim)
            keys = torch.cat([self.pair[0], keys], dim=2)
            values = torch.cat([self.pair[1], values], dim=2)
        self.pair = (keys, values)
        return self.pair


def _with_pair_cache(
    forward: Any, x: torch.Tensor, use_cache: bool, cache: KVPair | None
) -> tuple[torch.Tensor, KVPair | None]:
    """The book's per-layer cache call on a package layer's `forward(x, cache=...)`: `(output, next_cache)`."""
    if not use_cache:
        return forward(x), None
    pair = _PairCache(cache)
    return forward(x, cache=pair), pair.pair


class MultiHeadAttention(layers.MultiHeadAttention):
    """The package's causal multi-head attention, with the book's KV-cache call."""

    def forward(
        self, x: torch.Tensor, use_cache: bool = False, start_pos: int = 0, cache: KVPair | None = None
    ) -> tuple[torch.Tensor, KVPair | None]:
        """`(context (b, T, d_out), next_cache)`; with `use_cache`, `x` holds the positions after `cache`'s."""
        return _with_pair_cache(super().forward, x, use_cache, cache)


class TransformerBlock(layers.TransformerBlock):
    """The package's transformer block, with the book's KV-cache call."""

    def forward(
        self, x: torch.Tensor, use_cache: bool = False, start_pos: int = 0, cache: KVPair | None = None
    ) -> tuple[torch.Tensor, KVPair | None]:
        """`(output (b, T, emb_dim), next_cache)`."""
        return _with_pair_cache(super().forward, x, use_cache, cache)


class GPTModel(ch04.GPTModel):
    """The book's KV-cache `GPTModel`: `ch04.GPTModel` plus `model(in_idx, use_cache, cache)`.

    Args:
        cfg: The book's config dict (`GPT_CONFIG_124M`) or a `ScratchGPTConfig`.
    """

    def __init__(self, cfg: Mapping[str, Any] | ScratchGPTConfig) -> None:
        super().__init__(cfg)
        source = cfg if isinstance(cfg, Mapping) else cfg.to_dict()
        self.cfg = {key: source[key] for key in BOOK_CONFIG_KEYS}
        self.current_pos = 0  # positions fed through the cache so far
        self._own_cache: KVCache | None = None  # used by use_cache=True without a cache

    def reset_kv_cache(self) -> None:
        """Start a new sequence: position 0, the model's own cache emptied."""
        self.current_pos = 0
        self._own_cache = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # the book's call: `model(in_idx)`, `model(in_idx, use_cache=...)`, `model(in_idx, cache=...)`
        if args and isinstance(args[0], torch.Tensor) and len(args) <= 3 and set(kwargs) <= {"use_cache", "cache"}:
            return self._book_forward(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def _book_forward(
        self, in_idx: torch.Tensor, use_cache: bool = False, cache: KVCache | None = None
    ) -> torch.Tensor:
        """The book's `forward(in_idx, use_cache=False, cache=None)`: logits `(b, T, vocab_size)`."""
        num_tokens = in_idx.shape[1]
        if cache is None and use_cache:
            self._own_cache = self._own_cache or KVCache(n_layers=self.cfg["n_layers"])
            cache = self._own_cache
        start = self.current_pos if cache is not None else 0
        positions = torch.arange(start, start + num_tokens, device=in_idx.device).unsqueeze(0)  # (1, T)
        if cache is not None:
            self.current_pos += num_tokens
        out = super().__call__(
            input_ids=in_idx,
            position_ids=positions,
            cache=cache.transformers_cache if cache is not None else None,
            use_cache=cache is not None,
        )
        return out.logits


__all__ = ["GELU", "FeedForward", "GPTModel", "KVCache", "LayerNorm", "MultiHeadAttention", "TransformerBlock"]
