"""Appendix D of the book: the training loop with warmup, cosine decay and clipping (`llms_from_scratch.appendix_d`).

`train_model` raises the learning rate linearly from `initial_lr` to the optimizer's (peak) rate over
`warmup_steps`, then lowers it along a cosine to `min_lr`, and clips the gradient norm to 1 after the
warmup. `orig_book_version=True` keeps the printed book's off-by-one, which skips clipping on the
first step after the warmup.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .ch05 import calc_loss_batch, evaluate_model, generate_and_print_sample


def find_highest_gradient(model: nn.Module) -> torch.Tensor | None:
    """The largest gradient entry over all parameters (None before any backward pass)."""
    max_grad = None
    for param in model.parameters():
        if param.grad is not None:
            max_grad_param = param.grad.detach().flatten().max()
            if max_grad is None or max_grad_param > max_grad:
                max_grad = max_grad_param
    return max_grad


def train_model(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    optimizer: torch.optim.Optimizer,
    device: Any,
    n_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str,
    tokenizer: Any,
    warmup_steps: int,
    initial_lr: float = 3e-05,
    min_lr: float = 1e-6,
    orig_book_version: bool = False,
) -> tuple[list[float], list[float], list[int], list[float]]:
    """The book's improved pretraining loop (appendix D.4).

    Returns:
        The training losses, validation losses and tokens seen at each evaluation, and the learning
        rate of every step.
    """
    train_losses, val_losses, track_tokens_seen, track_lrs = [], [], [], []
    tokens_seen, global_step = 0, -1
    peak_lr = optimizer.param_groups[0]["lr"]  # the optimizer's rate is the peak
    total_training_steps = len(train_loader) * n_epochs
    lr_increment = (peak_lr - initial_lr) / warmup_steps

    for epoch in range(n_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            global_step += 1
            if global_step < warmup_steps:  # linear warmup
                lr = initial_lr + global_step * lr_increment
            else:  # cosine decay to min_lr
                progress = (global_step - warmup_steps) / (total_training_steps - warmup_steps)
                lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            track_lrs.append(lr)

            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            # clip after the warmup; the printed book's `>` skipped the first step after it
            past_warmup = global_step > warmup_steps if orig_book_version else global_step >= warmup_steps
            if past_warmup:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            tokens_seen += input_batch.numel()

            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Iter {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)

    return train_losses, val_losses, track_tokens_seen, track_lrs


__all__ = ["calc_loss_batch", "evaluate_model", "find_highest_gradient", "generate_and_print_sample", "train_model"]
