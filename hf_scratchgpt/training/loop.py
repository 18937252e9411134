"""The training loop on accelerate, the same for every task.

A task plugs in through `Task.loss` (a batch's mean loss and its item count) and `Task.stats`
(per-example sums, from which evaluation computes exact metrics across processes). The loop does
gradient accumulation, clipping, mixed precision (accelerate), the learning-rate schedule,
periodic evaluation/samples/logging, early stopping, atomic checkpoints, exact mid-epoch resume and
a clean stop on request (Ctrl-C: a checkpoint at the next optimizer step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import TrainState, save_checkpoint
from .task import Task


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
def evaluation_totals(
    acc: Accelerator, model: nn.Module, loader: Any, task: Task, max_batches: int | None
) -> dict[str, float]:
    """The task's per-example statistics summed over (the first `max_batches` of) `loader` and all processes.

    Per-example sums are gathered with `gather_for_metrics`, which drops the samples accelerate
    repeats to even out the last batch, so N processes give the numbers one process gives.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        for name, values in acc.gather_for_metrics(task.stats(model, batch)).items():
            totals[name] = totals.get(name, 0.0) + values.double().sum().item()
    model.train(was_training)
    return totals


def evaluate(acc: Accelerator, model: nn.Module, loader: Any, task: Task, max_batches: int | None) -> dict[str, float]:
    """The task's metrics over (the first `max_batches` of) `loader`, over all processes."""
    return task.metrics(evaluation_totals(acc, model, loader, task, max_batches))


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
    early_stopping_patience: int | None = None
    early_stopping_metric: str = "val_loss"
    early_stopping_mode: str = "min"


@dataclass
class LoopParts:
    """The prepared objects the loop drives, and the run's callbacks.

    Attributes:
        acc: The accelerator the objects were prepared with.
        model: The (wrapped) model.
        optimizer: Its optimizer.
        scheduler: The learning-rate scheduler, stepped once per optimizer step.
        train_loader: The training loader.
        eval_loaders: Named evaluation loaders ("train", "val", ...).
        checkpoint_root: Where `step-N/` checkpoints go.
        write_folder: Writes the model folder (model, tokenizer) into a checkpoint folder.
        save_best: Called on the main process with (step, value) when early stopping sees a new best.
        stop_requested: Whether the user asked to stop (checked after each optimizer step).
        print_fn: Where progress lines go.
    """

    acc: Accelerator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: Any
    eval_loaders: dict[str, Any]
    checkpoint_root: Path
    write_folder: Callable[[Path], None]
    save_best: Callable[[int, float], None] | None = None
    stop_requested: Callable[[], bool] = lambda: False
    print_fn: Callable[[str], None] = print


class StopRequested(Exception):
    """The run stopped at the user's request after saving a checkpoint at `step`."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(parts: LoopParts, task: Task, settings: LoopSettings, state: TrainState) -> dict[str, Any]:
    """Run until `settings.max_steps` optimizer steps (or early stopping); returns the last evaluation's metrics.

    Raises:
        StopRequested: `parts.stop_requested()` turned true; a checkpoint of the last step was saved.
    """
    acc, model, p = parts.acc, parts.model, parts
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
    started, seconds_before = last_time, state.train_seconds
    metrics: dict[str, Any] = {}

    def log_eval() -> dict[str, Any]:
        nonlocal running, last_time, last_tokens
        values: dict[str, Any] = {"epoch": state.epoch, "tokens_seen": state.tokens_seen}
        values["lr"] = p.scheduler.get_last_lr()[0]
        done = acc.reduce(running.clone(), reduction="sum")
        if done[1] > 0:
            values["train_running_loss"] = (done[0] / done[1]).item()
        for name, loader in p.eval_loaders.items():
            for key, value in evaluate(acc, model, loader, task, settings.eval_batches).items():
                values[f"{name}_{key}"] = value
        now = time.perf_counter()
        values["tokens_per_second"] = (state.tokens_seen - last_tokens) / max(now - last_time, 1e-9)
        values["ranks_batches"] = acc.reduce(rank_batches.clone(), reduction="sum").tolist()
        if acc.is_main_process:
            sample = task.sample(acc.unwrap_model(model))
            if sample is not None:
                values["sample"] = sample
        acc.log(values, step=state.step)
        shown = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in values.items()
            if k not in ("sample", "ranks_batches", "lr")
        )
        if acc.is_main_process:
            say = p.print_fn if bar.disable or p.print_fn is not print else tqdm.write  # keep lines off the bar
            say(f"step {state.step}: {shown}")
            if "sample" in values:
                say(f"  sample: {values['sample']!r}")
        running = torch.zeros_like(running)
        last_time, last_tokens = time.perf_counter(), state.tokens_seen
        return values

    def patience_exhausted(values: dict[str, Any]) -> bool:
        """Early stopping bookkeeping after an evaluation; True when the run should stop."""
        if settings.early_stopping_patience is None:
            return False
        name = settings.early_stopping_metric
        if name not in values:
            raise ValueError(f"early_stopping_metric {name!r} is not logged; logged metrics: {sorted(values)}")
        if _improved(values[name], state.best_metric, settings.early_stopping_mode):
            state.best_metric, state.best_step, state.evals_without_improvement = values[name], state.step, 0
            if p.save_best is not None and acc.is_main_process:
                p.save_best(state.step, values[name])
            acc.wait_for_everyone()
            return False
        state.evals_without_improvement += 1
        if state.evals_without_improvement < settings.early_stopping_patience:
            return False
        if acc.is_main_process:
            p.print_fn(
                f"early stopping at step {state.step}: {name} has not improved for {state.evals_without_improvement} "
                f"evaluations (best {state.best_metric:.4f} at step {state.best_step})"
            )
        return True

    stop = False
    while state.step < settings.max_steps and state.epoch < settings.epochs and not stop:
        if hasattr(p.train_loader, "set_epoch"):
            p.train_loader.set_epoch(state.epoch)
        loader = (
            acc.skip_first_batches(p.train_loader, state.batch_in_epoch) if state.batch_in_epoch else p.train_loader
        )
        for batch in loader:
            with acc.accumulate(model):
                loss, n = task.loss(model, batch)
                acc.backward(loss)
                if acc.sync_gradients and settings.clip_grad is not None:
                    acc.clip_grad_norm_(model.parameters(), settings.clip_grad)
                p.optimizer.step()
                p.optimizer.zero_grad()
            running += torch.stack([loss.detach().double() * n, n.double()])
            rank_batches[acc.process_index] += 1
            state.batch_in_epoch += 1
            state.tokens_seen += int(batch["input_ids"].numel()) * acc.num_processes
            if not acc.sync_gradients:
                continue
            p.scheduler.step()
            state.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            due = (state.step - settings.eval_offset) % settings.eval_every == 0
            if due or state.step == settings.max_steps:
                metrics = log_eval()
                stop = patience_exhausted(metrics)
            periodic = bool(settings.save_every) and state.step % settings.save_every == 0
            requested = _agreed(acc, p.stop_requested())
            state.train_seconds = seconds_before + time.perf_counter() - started
            if periodic or state.step == settings.max_steps or stop or requested:
                path = save_checkpoint(acc, p.checkpoint_root, state, p.write_folder, settings.keep_last)
            if requested:
                bar.close()
                raise StopRequested(state.step, path)
            if state.step >= settings.max_steps or stop:
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
    bar.close()
    if not metrics or metrics.get("tokens_seen") != state.tokens_seen:
        metrics = log_eval()
    return metrics


def _agreed(acc: Accelerator, flag: bool) -> bool:
    """True on every process when it is true on any (one all-reduce, only with several processes)."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor([int(flag)], device=acc.device), reduction="sum").item())
