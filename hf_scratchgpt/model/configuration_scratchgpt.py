"""Configuration of the book's GPT (chapter 4, `GPT_CONFIG_124M`) as a transformers config.

The fields keep the book's names (`emb_dim`, `n_heads`, ...); `attribute_map` exposes the standard
transformers names (`hidden_size`, `num_attention_heads`, ...) that `generate()`, pipelines and peft read.

This file imports only torch/transformers so that a saved folder loads with `trust_remote_code=True`.
"""

from __future__ import annotations

import re
from typing import Any

import transformers
from transformers import PreTrainedConfig

# The model code follows transformers 5.24's API (outputs carry `cache`; `slice_logits_to_keep`): say so at
# import, where a saved folder is loaded with an older transformers, instead of failing in the first forward.
MIN_TRANSFORMERS = (5, 24)
_found = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", transformers.__version__).groups())
if _found < MIN_TRANSFORMERS:
    raise ImportError(
        f"ScratchGPT needs transformers >= {'.'.join(map(str, MIN_TRANSFORMERS))} (found {transformers.__version__}): "
        "pip install -U transformers"
    )

# The GPT-2 sizes of the book (chapter 5, "Loading pretrained weights"), plus a tiny CPU model.
_GPT2_BASE: dict[str, Any] = {
    "vocab_size": 50257,
    "context_length": 1024,
    "drop_rate": 0.1,
    "qkv_bias": False,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-small": {**_GPT2_BASE, "emb_dim": 768, "n_layers": 12, "n_heads": 12},  # 124M
    "gpt2-medium": {**_GPT2_BASE, "emb_dim": 1024, "n_layers": 24, "n_heads": 16},  # 355M
    "gpt2-large": {**_GPT2_BASE, "emb_dim": 1280, "n_layers": 36, "n_heads": 20},  # 774M
    "gpt2-xl": {**_GPT2_BASE, "emb_dim": 1600, "n_layers": 48, "n_heads": 25},  # 1558M
    # A model that trains in minutes on two CPU cores (vocabulary of a small trained BPE tokenizer).
    "tiny": {
        "vocab_size": 4096,
        "context_length": 128,
        "emb_dim": 128,
        "n_layers": 4,
        "n_heads": 4,
        "drop_rate": 0.1,
        "qkv_bias": False,
    },
}

# Written into every config.json so a saved folder loads with trust_remote_code and no package.
AUTO_MAP = {
    "AutoConfig": "configuration_scratchgpt.ScratchGPTConfig",
    "AutoModel": "modeling_scratchgpt.ScratchGPTModel",
    "AutoModelForCausalLM": "modeling_scratchgpt.ScratchGPTForCausalLM",
    "AutoModelForSequenceClassification": "modeling_scratchgpt.ScratchGPTForSequenceClassification",
}

INIT_SCHEMES = ("gpt2", "book")


class ScratchGPTConfig(PreTrainedConfig):
    """Configuration of a ScratchGPT model (the book's `GPTModel`).

    Args:
        vocab_size: Number of token ids (the book: 50,257, the GPT-2 vocabulary).
        context_length: Longest sequence the position embedding covers.
        emb_dim: Width of the embeddings and of every block.
        n_heads: Attention heads per block; must divide `emb_dim`.
        n_layers: Number of transformer blocks.
        drop_rate: Dropout after the embeddings, on the attention weights and on each residual branch.
        qkv_bias: Whether the query/key/value projections have a bias (GPT-2 checkpoints do).
        layer_norm_eps: Epsilon of every LayerNorm.
        initializer_range: Standard deviation of the GPT-2 style normal initialisation.
        init_scheme: `"gpt2"` (normal(0, initializer_range), residual projections scaled by
            1/sqrt(2 * n_layers)) or `"book"` (PyTorch's default initialisation, as the book's
            `GPTModel`: with the same `torch.manual_seed` it gives the book's exact weights).
        use_cache: Whether `generate()` keeps a key/value cache.
        tie_word_embeddings: Share `out_head.weight` with `tok_emb.weight` (GPT-2 does; the book does not).
        bos_token_id: Beginning-of-sequence token id.
        eos_token_id: End-of-sequence token id (`<|endoftext|>` for GPT-2).
        pad_token_id: Padding token id.
        fused_linear_cross_entropy: In training mode with labels, compute the loss fused with the
            output head, chunk by chunk, without the `(tokens, vocab)` logits (faster and far smaller
            for large vocabularies; `logits` is then None). Off by default; `scratchgpt pretrain` turns
            it on (except in book mode, which keeps the book's arithmetic).
    """

    model_type = "scratchgpt"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "emb_dim",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "context_length",
    }

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    init_scheme: str = "gpt2"
    use_cache: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    fused_linear_cross_entropy: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` naming the first field that is out of range."""
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ScratchGPTConfig.{name} must be a positive integer, got {value!r}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(f"ScratchGPTConfig.emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})")
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ValueError(f"ScratchGPTConfig.drop_rate must be a number in [0, 1), got {self.drop_rate!r}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"ScratchGPTConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"ScratchGPTConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not self.initializer_range >= 0:
            raise ValueError(f"ScratchGPTConfig.initializer_range must be >= 0, got {self.initializer_range!r}")
        if self.init_scheme not in INIT_SCHEMES:
            raise ValueError(f"ScratchGPTConfig.init_scheme must be one of {INIT_SCHEMES}, got {self.init_scheme!r}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 0 <= value < self.vocab_size):
                raise ValueError(
                    f"ScratchGPTConfig.{name} must be None or an id in [0, {self.vocab_size}), got {value!r}"
                )

    @property
    def head_dim(self) -> int:
        """Width of one attention head (`emb_dim // n_heads`)."""
        return self.emb_dim // self.n_heads

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ScratchGPTConfig:
        """Build the config of a named size: `gpt2-small|medium|large|xl` or `tiny`.

        Args:
            name: One of `ScratchGPTConfig.preset_names()`.
            **overrides: Fields to change, e.g. `vocab_size=8000` or `context_length=256`.

        Raises:
            ValueError: If `name` is not a preset, or an override is out of range.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @staticmethod
    def preset_names() -> list[str]:
        """Names accepted by `from_preset`."""
        return sorted(PRESETS)


ScratchGPTConfig.register_for_auto_class()

__all__ = ["ScratchGPTConfig", "PRESETS"]
