"""The book's `KVCache` (`llms_from_scratch.kv_cache.utils`), kept in a transformers `DynamicCache`.

The book's cache is a list with one `(keys, values)` entry per transformer block. Here the entries live
in a `DynamicCache` (`transformers_cache`), the cache the package's attention layers extend during
`generate()`: `KVCache.get(i)` reads layer i's keys and values `(b, n_heads, T, head_dim)` from it.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class KVCache:
    """Keys and values of the positions seen so far, one entry per transformer block.

    Args:
        n_layers: Number of transformer blocks.
    """

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.transformers_cache = DynamicCache()

    def _layer(self, layer_idx: int) -> DynamicLayer:
        if not 0 <= layer_idx < self.n_layers:
            raise IndexError(f"layer {layer_idx} out of range for a cache of {self.n_layers} layers")
        layers = self.transformers_cache.layers
        while len(layers) <= layer_idx:
            layers.append(DynamicLayer())
        return layers[layer_idx]

    def get(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Layer `layer_idx`'s `(keys, values)`, or None if nothing is cached there."""
        layer = self._layer(layer_idx)
        return (layer.keys, layer.values) if layer.get_seq_length() > 0 else None

    def update(self, layer_idx: int, value: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Replace layer `layer_idx`'s entry with `value` (`(keys, values)`, or None to clear it)."""
        layer = self._layer(layer_idx)
        layer.reset()
        if value is not None:
            layer.update(*value)

    def get_all(self) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Every layer's entry."""
        return [self.get(i) for i in range(self.n_layers)]

    def reset(self) -> None:
        """Forget everything."""
        self.transformers_cache = DynamicCache()

    def get_seq_length(self) -> int:
        """How many positions are cached."""
        return self.transformers_cache.get_seq_length()


__all__ = ["KVCache"]
