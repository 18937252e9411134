"""Chapter 4 of the book: the GPT model (`llms_from_scratch.ch04`), as this package's transformers model.

`GPTModel(GPT_CONFIG_124M)` is a `ScratchGPTForCausalLM` built with `init_scheme="book"`: with the same
`torch.manual_seed` its weights equal the book's `GPTModel`. Called the book's way, `model(in_idx)`
(one positional tensor) returns the logits tensor; called with keywords, as `generate()`, pipelines,
`Trainer` and peft do, it returns the usual transformers output. The book's attribute paths
(`model.tok_emb`, `model.pos_emb`, `model.drop_emb`, `model.trf_blocks`, `model.final_norm`,
`model.out_head`) reach the parts, so `load_weights_into_gpt` and chapter 6's head swap work.
`save_pretrained` writes a plain ScratchGPT folder (it loads as `ScratchGPTForCausalLM`, also with
`trust_remote_code=True` where this package is absent), or, after chapter 6's head swap, a
`ScratchGPTForSequenceClassification` folder (see `GPTModel.save_pretrained`); `load_state_dict` also
takes a state dict in the book's layout (`torch.load("model.pth")` of the book's `GPTModel` or
`GPTModelFast`).

`GPTModelFast` is the same model on the fast path (`attn_implementation="sdpa"`: scaled-dot-product
attention, fused LayerNorm and GELU). The layers are the package's (`LayerNorm`, `GELU`,
`FeedForward`, `TransformerBlock`); `generate_text_simple` is the package's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..generation import generate_text_simple
from ..model.configuration_scratchgpt import ScratchGPTConfig
from ..model.layers_scratchgpt import GELU, FeedForward, LayerNorm, TransformerBlock
from ..model.modeling_scratchgpt import ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from .ch03 import MultiHeadAttention, PyTorchMultiHeadAttention

# The body's parts, which the book keeps on the model itself and the package under `model.transformer`.
BODY_PARTS = ("tok_emb", "pos_emb", "drop_emb", "trf_blocks", "final_norm")


def book_config(cfg: Mapping[str, Any] | ScratchGPTConfig, attn_implementation: str = "eager") -> ScratchGPTConfig:
    """A `ScratchGPTConfig` with the book's initialisation from the book's dict (`GPT_CONFIG_124M`) or a config.

    Args:
        cfg: The book's dict (`vocab_size`, `context_length`, `emb_dim`, `n_heads`, `n_layers`,
            `drop_rate`, `qkv_bias`) or a `ScratchGPTConfig` (copied, not changed).
        attn_implementation: `"eager"` (the book's readable attention) or `"sdpa"` (the fast path).
    """
    if isinstance(cfg, ScratchGPTConfig):
        config = copy.deepcopy(cfg)
        config.init_scheme = "book"
        config._attn_implementation = attn_implementation
        return config
    return ScratchGPTConfig(**cfg, init_scheme="book", attn_implementation=attn_implementation)


def scratchgpt_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This package's layout of a state dict in the book's layout (`GPTModel` or `GPTModelFast`).

    The body's keys gain the `transformer.` prefix, the causal-mask buffers (`att.mask`) go (the mask
    is built on the fly here), and `GPTModelFast`'s fused `att.qkv` is split into the chapter-3
    `W_query`/`W_key`/`W_value`, its `att.proj` renamed `out_proj` and its `nn.LayerNorm`s'
    `weight`/`bias` renamed `scale`/`shift`. A state dict already in the package's layout is returned as is.
    """
    if not any(key.split(".")[0] in BODY_PARTS for key in state_dict):
        return dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(".att.mask"):
            continue
        name = key if key.startswith("out_head.") else "transformer." + key
        if ".att.qkv." in name:  # (3 * d_out, d_in): queries, keys, values stacked by rows
            for part, tensor in zip(("W_query", "W_key", "W_value"), value.chunk(3, dim=0)):
                out[name.replace(".qkv.", f".{part}.")] = tensor
            continue
        name = name.replace(".att.proj.", ".att.out_proj.")
        name = re.sub(r"(norm1|norm2|final_norm)\.weight$", r"\1.scale", name)
        name = re.sub(r"(norm1|norm2|final_norm)\.bias$", r"\1.shift", name)
        out[name] = value
    return out


class GPTModel(ScratchGPTForCausalLM):
    """The book's `GPTModel(cfg)` (chapter 4.6), a `ScratchGPTForCausalLM` with the book's initialisation.

    Args:
        cfg: The book's config dict (`GPT_CONFIG_124M`) or a `ScratchGPTConfig`.
    """

    book_attn_implementation = "eager"  # the book's readable attention, bit for bit

    def __init__(self, cfg: Mapping[str, Any] | ScratchGPTConfig) -> None:
        super().__init__(book_config(cfg, self.book_attn_implementation))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            # the book's call, `model(in_idx)`: the logits tensor (b, T, vocab_size), computed without a cache
            return super().__call__(input_ids=args[0], use_cache=False).logits
        return super().__call__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in BODY_PARTS:  # the book's `model.tok_emb`, ... live under `model.transformer`
            return getattr(self.transformer, name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in BODY_PARTS and "transformer" in self.__dict__.get("_modules", {}):
            setattr(self.transformer, name, value)
        else:
            super().__setattr__(name, value)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """`nn.Module.load_state_dict`, also taking the book's layout (see `scratchgpt_state_dict`)."""
        return super().load_state_dict(scratchgpt_state_dict(state_dict), strict=strict, assign=assign)

    def save_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`, saving a plain `ScratchGPTForCausalLM` folder.

        transformers copies the module file of the model's class into the folder as remote code and
        names the class in `config.json`; for the duration of the save the object is the package's
        class, so the folder carries the package's model files only.

        After chapter 6's head swap (`out_head` an `nn.Linear` with other than `vocab_size` outputs) the
        folder is a `ScratchGPTForSequenceClassification` one (`AutoModelForSequenceClassification`
        loads it): `score` is the book's `out_head` (a zero bias if it had none), `num_labels` its
        outputs. One difference: the book classifies with the last position's logits, padding
        included; the loaded model reads the last non-padding token when it is given an
        `attention_mask` or its config a `pad_token_id` (none is saved), and the last position otherwise.
        """
        head = self.out_head
        if type(head) is torch.nn.Linear and head.out_features != self.config.vocab_size:
            return self._as_sequence_classifier().save_pretrained(*args, **kwargs)
        book_class = self.__class__
        self.__class__ = ScratchGPTForCausalLM
        try:
            return self.save_pretrained(*args, **kwargs)
        finally:
            self.__class__ = book_class

    def _as_sequence_classifier(self) -> ScratchGPTForSequenceClassification:
        """A `ScratchGPTForSequenceClassification` sharing this model's tensors, `out_head` as `score`."""
        head = self.out_head
        config = copy.deepcopy(self.config)
        config.num_labels = head.out_features
        with torch.device("meta"):  # no weights drawn: the model's own tensors are assigned below
            classifier = ScratchGPTForSequenceClassification(config)
        state = {name: value for name, value in self.state_dict().items() if not name.startswith("out_head.")}
        state["score.weight"] = head.weight.detach()
        state["score.bias"] = head.bias.detach() if head.bias is not None else head.weight.new_zeros(head.out_features)
        classifier.load_state_dict(state, assign=True)
        return classifier


class GPTModelFast(GPTModel):
    """`GPTModel` on the fast path: scaled-dot-product attention, fused LayerNorm and GELU (the book's bonus).

    The same parameters, drawn in the same order, as `GPTModel`; the outputs agree up to float rounding.
    """

    book_attn_implementation = "sdpa"


class FeedForwardFast(FeedForward):
    """`FeedForward` with PyTorch's fused GELU (`F.gelu(approximate="tanh")`), the book's bonus class."""

    def forward(self, x: torch.Tensor, fused: bool = True) -> torch.Tensor:
        return super().forward(x, fused=fused)


class TransformerBlockFast(TransformerBlock):
    """`TransformerBlock` on the fast path (scaled-dot-product attention, fused norms), the book's bonus class."""

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: Any = None,
        attn_implementation: str = "sdpa",
        output_attentions: bool = False,
    ) -> Any:
        return super().forward(x, mask, cache, attn_implementation, output_attentions)


__all__ = [
    "BODY_PARTS",
    "GELU",
    "FeedForward",
    "FeedForwardFast",
    "GPTModel",
    "GPTModelFast",
    "LayerNorm",
    "MultiHeadAttention",
    "PyTorchMultiHeadAttention",
    "TransformerBlock",
    "TransformerBlockFast",
    "book_config",
    "generate_text_simple",
    "scratchgpt_state_dict",
]
