"""Appendix E of the book: LoRA (`llms_from_scratch.appendix_e`), on the package's LoRA classes.

The book's LoRA differs from peft's (and `hf_scratchgpt.lora`'s default) in two ways: it draws A as an
`(in_dim, rank)` matrix (so Kaiming's fan-in is `rank`) and computes `alpha * (x @ A @ B)`, a scaling
of `alpha` rather than `alpha / rank`. The classes here make the book's random draws and use the
book's scaling, and store A and B in peft's layout (`A` `(rank, in)` = the book's A transposed,
`B` `(out, rank)`). So with the same `torch.manual_seed` they give the book's outputs and gradients,
while `hf_scratchgpt.lora`'s `merge_and_unload`, `save_lora_adapter` (peft's format, with
`lora_alpha = alpha * rank` so that peft scales the same) and `trainable_report` work on them.

As in the book, `replace_linear_with_lora` wraps every `nn.Linear` and freezes nothing: freeze the
model first, then the new A and B are the trainable parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import lora


class LoRALayer(lora.LoRALayer):
    """The book's low-rank update `alpha * (x @ A @ B)`.

    Args:
        in_dim: Input features of the wrapped layer.
        out_dim: Output features of the wrapped layer.
        rank: Rank of the update.
        alpha: The scaling (the book multiplies by alpha itself).
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float) -> None:
        super().__init__(in_dim, out_dim, rank, alpha)
        self.scaling = alpha  # the book scales by alpha, not alpha / rank

    @torch.no_grad()
    def reset_A(self) -> None:
        """Draw A as the book does, on an `(in_dim, rank)` matrix, and keep it transposed (peft's layout)."""
        rank, in_dim = self.A.shape
        book_A = torch.empty(in_dim, rank)  # the book's shape: Kaiming's fan-in is rank
        nn.init.kaiming_uniform_(book_A, a=math.sqrt(5))
        self.A.copy_(book_A.T)  # (rank, in_dim)

    @property
    def peft_alpha(self) -> float:
        """peft scales by lora_alpha / rank; this layer by alpha."""
        return self.alpha * self.rank


class LinearWithLoRA(lora.LinearWithLoRA):
    """A linear layer plus the book's `LoRALayer`: `linear(x) + lora(x)`; `merge()` folds it in.

    Args:
        linear: The `nn.Linear` to adapt.
        rank: Rank of the update.
        alpha: The scaling.
    """

    def __init__(self, linear: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(linear, rank, alpha)

    @staticmethod
    def make_lora(in_dim: int, out_dim: int, rank: int, alpha: float, dropout: float, use_rslora: bool) -> LoRALayer:
        return LoRALayer(in_dim, out_dim, rank, alpha)


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> None:
    """Wrap every `nn.Linear` of `model` in `LinearWithLoRA`, in place, depth first in module order."""
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)


__all__ = ["LoRALayer", "LinearWithLoRA", "replace_linear_with_lora"]
