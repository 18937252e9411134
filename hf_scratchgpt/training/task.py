"""What a training task supplies to the shared run (`run.py`): its setup, loss, statistics and metrics.

The run owns everything else: the accelerator, seeding, loaders, optimizer groups and schedule,
checkpoints and exact resume, trackers, evaluation cadence, early stopping, the loss plot and the
final folder. A task (causal LM now; classification, instruction and preference next) is a subclass
of `Task` that fills in the methods below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from .config import TrainConfig


@dataclass
class TaskSetup:
    """Everything a task prepared, validated before the run folder is created.

    Attributes:
        model: The model to train (unwrapped).
        tokenizer: Its tokenizer (saved into every checkpoint and the final folder).
        train: The training dataset.
        evaluation: Named datasets evaluated every `eval_every` steps besides the training set, e.g. {"val": ...}.
        collate_fn: Batch collation for the loaders (None: torch's default).
        provenance: What the data is (written to `data_provenance.json`).
    """

    model: nn.Module
    tokenizer: Any
    train: Any
    evaluation: dict[str, Any] = field(default_factory=dict)
    collate_fn: Callable | None = None
    provenance: dict = field(default_factory=dict)


class Task:
    """A training task: subclasses set `card_template` and implement the methods.

    Args:
        config: The run's configuration.
    """

    card_template = "model"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def setup(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> TaskSetup:
        """Load or build tokenizer, data and model; raise a clear error on bad input.

        Args:
            acc: The accelerator (for `main_process_first` around work only one process should do).
            staging: A folder (shared by all processes) that becomes the run folder; files the task
                writes here (e.g. a trained tokenizer) end up in OUT.
            resume_from: The checkpoint being resumed, or None.
        """
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean training loss and the number of items it averages (targets, examples)."""
        raise NotImplementedError

    def stats(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example statistics, each `(b,)`: summed over every evaluation batch and process exactly."""
        raise NotImplementedError

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics of a split from its summed statistics (e.g. loss and perplexity)."""
        raise NotImplementedError

    def sample(self, model: nn.Module) -> str | None:
        """A short sample of the model's behaviour, logged with every evaluation (None: no sample)."""
        return None

    def card_fields(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Values of the task's own card template placeholders (the run fills in steps, optimizer and metrics)."""
        return {}

    def summary(self, metrics: dict[str, Any]) -> str:
        """One line that ends the run's output."""
        return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
