"""The book's `GPTModel` (chapter 4) as transformers models.

`ScratchGPTModel` is the book's model without the output head: `tok_emb` + `pos_emb` -> `drop_emb`
-> `trf_blocks` -> `final_norm`. `ScratchGPTForCausalLM` adds `out_head` (vocabulary logits, used by
`generate()` with a KV cache) and `ScratchGPTForSequenceClassification` adds `score`, the book's
`num_classes` head of chapter 6, read at the last non-padding token.

A book state dict loads after adding the base-model prefix to the body's keys:
`tok_emb.weight` -> `transformer.tok_emb.weight`, while `out_head.weight` keeps its name.

Only torch, transformers and sibling modules (single-dot imports) are imported here, so that a saved
folder loads with `trust_remote_code=True` where this package is not installed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep

from .configuration_scratchgpt import ScratchGPTConfig
from .layers_scratchgpt import LayerNorm, Linear, TransformerBlock, Unpadded, causal_mask, decoding_products
from .loss_scratchgpt import fused_linear_cross_entropy


class ScratchGPTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the class attributes shared by every ScratchGPT head."""

    config_class = ScratchGPTConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True
    supports_gradient_checkpointing = True  # the blocks are GradientCheckpointingLayers

    def _keep_constructed_weights(self) -> None:
        """Under `init_scheme="book"` keep PyTorch's default init from construction (the book's weights)."""
        if self.config.init_scheme != "book":
            return
        for param in self.parameters():
            if param.device.type != "meta":  # from_pretrained builds on meta: those get _init_weights
                param._is_hf_initialized = True

    def _init_weights(self, module: nn.Module) -> None:
        if self.config.init_scheme == "book":
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # PyTorch's defaults; transformers guards already-loaded tensors
            return
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                std = std / math.sqrt(2 * self.config.n_layers)  # GPT-2: scale the residual projections
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)


class ScratchGPTModel(ScratchGPTPreTrainedModel):
    """The book's GPT body: embeddings, transformer blocks and the final LayerNorm."""

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.emb_dim)
        self.pos_emb = nn.Embedding(config.context_length, config.emb_dim)
        self.drop_emb = nn.Dropout(config.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(config, layer_idx=i) for i in range(config.n_layers)])
        self.final_norm = LayerNorm(config.emb_dim, eps=config.layer_norm_eps)
        self._keep_constructed_weights()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_emb = value

    def _check_positions(self, position_ids: torch.Tensor | None, total_length: int) -> None:
        limit = self.config.context_length
        if position_ids is None:
            longest = total_length
        else:
            longest = int(position_ids.max()) + 1 if position_ids.numel() else 0
        if longest > limit:
            raise ValueError(
                f"sequence of {longest} positions exceeds this model's context_length of {limit}; "
                f"shorten the input (or keep only its last {limit} tokens)"
            )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Run the body.

        Args:
            input_ids: `(b, T)` token ids (or give `inputs_embeds`).
            attention_mask: `(b, S)` with 1 for tokens and 0 for padding, S = cached + T positions.
            position_ids: `(b, T)`; by default counted from the first non-padding token.
            cache: Keys/values of earlier positions (a transformers `Cache`); extended in place.
            inputs_embeds: `(b, T, emb_dim)` instead of `input_ids`.
            use_cache: Return a cache (default: `config.use_cache` outside training).
            output_attentions: Return every block's attention weights (computed on the eager path).
            output_hidden_states: Return the embeddings and every block's output.
        """
        if cache is None:
            cache = kwargs.pop("past_key_values", None)  # the pre-5.24 name
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if input_ids is not None and input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        x_shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        num_tokens = x_shape[1]
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        elif not use_cache:
            cache = None
        past = cache.get_seq_length() if cache is not None else 0
        total = past + num_tokens

        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        impl = self.config._attn_implementation or "eager"
        mask = unpadded = None
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != (x_shape[0], total):
                raise ValueError(
                    f"attention_mask must have shape (batch, cached + new tokens) = {(x_shape[0], total)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            attention_mask = attention_mask.bool()
            if position_ids is None:  # count positions from the first real token (left padding)
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
            if impl == "sdpa" and cache is None and not (output_attentions or output_hidden_states):
                unpadded = _unpadded(attention_mask, self.config.drop_rate if self.training else 0.0)
        if attention_mask is not None and unpadded is None:
            blocked = causal_mask(num_tokens, total, attention_mask.device)  # (T, S)
            own = _own_position(num_tokens, total, attention_mask.device)  # (T, S)
            # a padding key is blocked, except for the query at that very position (no all -inf rows)
            mask = blocked | (~attention_mask[:, None, None, :] & ~own)  # (b, 1, T, S)
        self._check_positions(position_ids, total)
        if position_ids is None:
            position_ids = torch.arange(past, total, device=self.pos_emb.weight.device).unsqueeze(0)

        if inputs_embeds is None:
            inputs_embeds = self.tok_emb(input_ids)  # (b, T, emb_dim)
        x = inputs_embeds + self.pos_emb(position_ids)
        x = self.drop_emb(x)
        if unpadded is not None:
            x = unpadded.unpad(x)  # (1, N, emb_dim): the real tokens only

        all_hidden = () if output_hidden_states else None
        all_attn = () if output_attentions else None
        with decoding_products(_is_decoding_step(cache, impl)):
            for block in self.trf_blocks:
                if output_hidden_states:
                    all_hidden += (x,)
                x = block(
                    x,
                    mask=mask,
                    cache=cache,
                    attn_implementation=impl,
                    output_attentions=output_attentions,
                    unpadded=unpadded,
                )
                if output_attentions:
                    x, weights = x
                    all_attn += (weights,)
        x = self.final_norm.fused(x) if impl == "sdpa" else self.final_norm(x)
        if unpadded is not None:
            x = unpadded.pad(x)  # (b, T, emb_dim), zeros at the padding
        if output_hidden_states:
            all_hidden += (x,)
        return BaseModelOutputWithPast(
            last_hidden_state=x, cache=cache if use_cache else None, hidden_states=all_hidden, attentions=all_attn
        )


def _unpadded(attention_mask: torch.Tensor, dropout: float) -> Unpadded | None:
    """An `Unpadded` view of a right-padded batch with padding, where skipping it changes nothing.

    Dropout would draw other masks for fewer elements, so a batch trained with dropout keeps its padding.
    """
    if dropout > 0 or attention_mask.all():
        return None
    right_padded = (attention_mask[:, 1:] <= attention_mask[:, :-1]).all() and attention_mask[:, 0].all()
    return Unpadded(attention_mask) if right_padded else None


def _is_decoding_step(cache: Cache | None, impl: str) -> bool:
    """A generation step after the prompt: cached keys exist and the fast (sdpa) path runs.

    These steps may take `Linear`'s decoding route; the prompt, training and the eager path (the
    book's arithmetic) never do.
    """
    return impl == "sdpa" and cache is not None and cache.get_seq_length() > 0


def _own_position(num_queries: int, num_keys: int, device: torch.device) -> torch.Tensor:
    """Boolean `(T, S)`, True where key j is query i's own position (j = S - T + i)."""
    queries = torch.arange(num_keys - num_queries, num_keys, device=device)[:, None]
    return queries == torch.arange(num_keys, device=device)[None, :]


class ScratchGPTForCausalLM(ScratchGPTPreTrainedModel, GenerationMixin):
    """The book's `GPTModel`: the body plus `out_head`, next-token logits; `generate()` ready."""

    _tied_weights_keys = {"out_head.weight": "transformer.tok_emb.weight"}

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.transformer = ScratchGPTModel(config)
        self.out_head = Linear(config.emb_dim, config.vocab_size, bias=False)  # nn.Linear, faster when decoding
        self._keep_constructed_weights()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.tok_emb = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.out_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.out_head = value

    def _fuse_loss(self) -> bool:
        """The fused loss serves training with a plain head (an adapter-wrapped head keeps the plain path)."""
        head = self.out_head
        plain = type(head) in (nn.Linear, Linear) and head.bias is None
        return bool(self.config.fused_linear_cross_entropy and self.training and plain)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Next-token logits `(b, T, vocab_size)`, and the loss when `labels` are given.

        `labels` follow the transformers convention: unshifted (`labels = input_ids` works), -100 is
        ignored; the model shifts them. Already-shifted targets (the book's) go in `shift_labels=`.
        With `config.fused_linear_cross_entropy`, training with targets gives the loss only (`logits` None).
        """
        if cache is None:
            cache = kwargs.pop("past_key_values", None)  # the pre-5.24 name
        decoding = _is_decoding_step(cache, self.config._attn_implementation or "eager")
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        hidden = slice_logits_to_keep(out.last_hidden_state, logits_to_keep)
        has_targets = labels is not None or kwargs.get("shift_labels") is not None
        logits = loss = None
        if has_targets and self._fuse_loss():
            loss = fused_linear_cross_entropy(
                hidden,
                self.out_head.weight,
                labels,
                kwargs.get("shift_labels"),
                kwargs.get("num_items_in_batch"),
            )
        else:
            with decoding_products(decoding):
                logits = self.out_head(hidden)  # (b, T, vocab_size)
        if has_targets and loss is None:
            if kwargs.get("shift_labels") is not None:
                kwargs["shift_labels"] = kwargs["shift_labels"].contiguous()  # the loss takes a view of it
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states, attentions=out.attentions
        )


class ScratchGPTForSequenceClassification(ScratchGPTPreTrainedModel):
    """The book's classifier (chapter 6): the body plus a `num_labels` head on the last real token."""

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = ScratchGPTModel(config)
        # The book swaps `out_head` for this Linear (with bias). Named `score` as in transformers, so a
        # causal-LM checkpoint loads without a size clash and peft's SEQ_CLS task saves it by itself.
        self.score = nn.Linear(config.emb_dim, config.num_labels)
        self._keep_constructed_weights()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.tok_emb = value

    def _last_token_index(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        batch: int,
        num_tokens: int,
        device: torch.device,
    ) -> torch.Tensor:
        """Index of each row's last non-padding token; works with left and right padding."""
        positions = torch.arange(num_tokens, device=device)
        if attention_mask is not None:
            keep = attention_mask.bool()
        elif self.config.pad_token_id is not None and input_ids is not None:
            keep = input_ids != self.config.pad_token_id
        else:
            return torch.full((batch,), num_tokens - 1, device=device, dtype=torch.long)
        return (positions * keep).argmax(-1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        """Class logits `(b, num_labels)` from the last non-padding token; loss when `labels` are given."""
        kwargs.pop("use_cache", None)
        kwargs.pop("cache", None)
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state  # (b, T, emb_dim)
        batch, num_tokens = hidden.shape[:2]
        last = self._last_token_index(input_ids, attention_mask, batch, num_tokens, hidden.device)
        pooled = hidden[torch.arange(batch, device=hidden.device), last]  # (b, emb_dim)
        logits = self.score(pooled)  # (b, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


# Saving copies this file and its siblings into the folder, and config.json's auto_map names them.
ScratchGPTModel.register_for_auto_class("AutoModel")
ScratchGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")
ScratchGPTForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "ScratchGPTPreTrainedModel",
    "ScratchGPTModel",
    "ScratchGPTForCausalLM",
    "ScratchGPTForSequenceClassification",
]
