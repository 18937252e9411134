"""One training loop on accelerate, for pretraining and fine-tuning alike.

A task plugs in through a small batch -> loss adapter: `LossFn` gives a batch's mean training loss
and its number of targets; `StatsFn` gives per-sequence loss sums and target counts, from which
evaluation computes an exact token-weighted loss across processes. The loop
does gradient accumulation, clipping, mixed precision (accelerate), linear warmup + cosine decay,
periodic evaluation/samples/logging, atomic checkpoints and exact mid-epoch resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import TrainState, save_checkpoint

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, torch.Tensor]]
StatsFn = Callable[[nn.Module, dict], tuple[torch.Tensor, torch.Tensor]]


def _next_token_targets(batch: dict) -> torch.Tensor:
    """`(b, T-1)` targets of unshifted `labels`, or `(b, T)` of the book's pre-shifted `shift_labels`."""
    return batch["shift_labels"] if "shift_labels" in batch else batch["labels"][:, 1:]


def causal_lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token loss of a causal LM batch and its target count.

    The batch carries `labels` (transformers' convention: unshifted, -100 ignored) or the book's
    already-shifted `shift_labels`; the model takes either.
    """
    out = model(**batch)
    return out.loss, (_next_token_targets(batch) != -100).sum()


def causal_lm_stats(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: summed next-token loss and number of targets, both `(b,)` (for exact evaluation)."""
    targets = _next_token_targets(batch)
    logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "shift_labels")}).logits
    logits = logits[:, : targets.shape[1]].float()  # position t predicts target t
    losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    return losses.sum(1), (targets != -100).sum(1)


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """AdamW groups: matrices (linear and embedding weights) decay; biases and LayerNorm scale/shift do not.

    `decay_all` gives one group that decays every parameter, as the book's `AdamW(model.parameters())`.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_all:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> Callable[[int], float]:
    """Multiplier of the peak learning rate: linear warmup, then cosine decay to `min_lr_ratio` (or constant)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@torch.no_grad()
def evaluate(acc: Accelerator, model: nn.Module, loader: Any, stats_fn: StatsFn, max_batches: int | None) -> float:
    """Token-weighted mean loss over (the first `max_batches` of) `loader`, over all processes.

    Per-sequence sums are gathered with `gather_for_metrics`, which drops the samples accelerate
    repeats to even out the last batch, so N processes give the number one process gives.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        sums, counts = acc.gather_for_metrics(stats_fn(model, batch))
        total += sums.double().sum().item()
        count += int(counts.sum().item())
    model.train(was_training)
    return total / count if count else float("nan")


@dataclass
class LoopSettings:
    """What the loop needs to know (a subset of a run's configuration)."""

    max_steps: int
    epochs: int
    grad_accum: int = 1
    clip_grad: float | None = 1.0
    eval_every: int = 100
    eval_offset: int = 0  # evaluate after steps offset, offset + every, ... (the book: 1, 6, 11, ...)
    eval_batches: int | None = None
    save_every: int | None = None
    keep_last: int = 2


def train(
    acc: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    train_loader: Any,
    eval_loaders: dict[str, Any],
    settings: LoopSettings,
    state: TrainState,
    checkpoint_root: Path,
    write_folder: Callable[[Path], None],
    loss_fn: LossFn = causal_lm_loss,
    stats_fn: StatsFn = causal_lm_stats,
    sample_fn: Callable[[nn.Module], str] | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run until `settings.max_steps` optimizer steps; returns the last evaluation's metrics."""
    model.train()
    bar = tqdm(
        total=settings.max_steps,
        initial=state.step,
        disable=not acc.is_local_main_process,
        desc="training",
        dynamic_ncols=True,
    )
    running = torch.zeros(2, dtype=torch.float64, device=acc.device)
    rank_batches = torch.zeros(acc.num_processes, dtype=torch.long, device=acc.device)
    last_time, last_tokens = time.perf_counter(), state.tokens_seen
    metrics: dict[str, float] = {}

    def log_eval() -> dict[str, float]:
        nonlocal running, last_time, last_tokens
        values: dict[str, Any] = {
            "epoch": state.epoch,
            "tokens_seen": state.tokens_seen,
            "lr": scheduler.get_last_lr()[0],
        }
        done = acc.reduce(running.clone(), reduction="sum")
        if done[1] > 0:
            values["train_running_loss"] = (done[0] / done[1]).item()
        for name, loader in eval_loaders.items():
            loss = evaluate(acc, model, loader, stats_fn, settings.eval_batches)
            values[f"{name}_loss"] = loss
            values[f"{name}_perplexity"] = math.exp(min(loss, 50.0))
        now = time.perf_counter()
        values["tokens_per_second"] = (state.tokens_seen - last_tokens) / max(now - last_time, 1e-9)
        values["ranks_batches"] = acc.reduce(rank_batches.clone(), reduction="sum").tolist()
        if sample_fn is not None and acc.is_main_process:
            values["sample"] = sample_fn(acc.unwrap_model(model))
        acc.log(values, step=state.step)
        shown = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in values.items()
            if k not in ("sample", "ranks_batches", "lr")
        )
        if acc.is_main_process:
            say = print_fn if bar.disable or print_fn is not print else tqdm.write  # keep lines off the bar
            say(f"step {state.step}: {shown}")
            if "sample" in values:
                say(f"  sample: {values['sample']!r}")
        running = torch.zeros_like(running)
        last_time, last_tokens = time.perf_counter(), state.tokens_seen
        return values

    while state.step < settings.max_steps and state.epoch < settings.epochs:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(state.epoch)
        loader = acc.skip_first_batches(train_loader, state.batch_in_epoch) if state.batch_in_epoch else train_loader
        for batch in loader:
            with acc.accumulate(model):
                loss, n = loss_fn(model, batch)
                acc.backward(loss)
                if acc.sync_gradients and settings.clip_grad is not None:
                    acc.clip_grad_norm_(model.parameters(), settings.clip_grad)
                optimizer.step()
                optimizer.zero_grad()
            running += torch.stack([loss.detach().double() * n, n.double()])
            rank_batches[acc.process_index] += 1
            state.batch_in_epoch += 1
            state.tokens_seen += int(batch["input_ids"].numel()) * acc.num_processes
            if not acc.sync_gradients:
                continue
            scheduler.step()
            state.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            due = (state.step - settings.eval_offset) % settings.eval_every == 0
            if due or state.step == settings.max_steps:
                metrics = log_eval()
            if settings.save_every and (state.step % settings.save_every == 0 or state.step == settings.max_steps):
                save_checkpoint(acc, checkpoint_root, state, write_folder, settings.keep_last)
            if state.step >= settings.max_steps:
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
            continue
        break
    bar.close()
    if not metrics or metrics.get("tokens_seen") != state.tokens_seen:
        metrics = log_eval()
    return metrics
