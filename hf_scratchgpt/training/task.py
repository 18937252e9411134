"""What a training task supplies to the shared run (`run.py`): its setup, loss, statistics and metrics.

The run owns everything else: the accelerator, seeding, loaders, optimizer groups and schedule,
checkpoints and exact resume, trackers, evaluation cadence, early stopping, the loss plot and the
final folder. A task (causal LM now; classification, instruction and preference next) is a subclass
of `Task` that fills in the methods below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
        test: Named datasets evaluated once, with the final weights, when the task has a final
            evaluation (`Task.final_evaluation`), e.g. {"test": ...}.
        train_lengths: Returns the length of every training row; called only for `group_by_length`, since
            reading a large split's lengths takes seconds (None: the task's rows all have one length).
    """

    model: nn.Module
    tokenizer: Any
    train: Any
    evaluation: dict[str, Any] = field(default_factory=dict)
    collate_fn: Callable | None = None
    provenance: dict = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    train_lengths: Callable[[], Sequence[int]] | None = None


class Task:
    """A training task: subclasses set the class attributes and implement the methods.

    Class attributes:
        card_template: The model card template (`model_cards/<name>.md`) of the final folder.
        plot_metric: The metric plotted beside the loss in `loss.png` (train_ and val_ values logged).
        final_evaluation: Evaluate the final weights on the whole training set, the evaluation sets
            and `TaskSetup.test` once the run ends, and write `report`'s result as `final/eval_results.json`.
        rows_vary_in_length: The training rows differ in length, so `group_by_length` can group them (the
            task's setup then gives `TaskSetup.train_lengths`).

    Args:
        config: The run's configuration.
    """

    card_template: ClassVar[str] = "model"
    plot_metric: ClassVar[str] = "perplexity"
    final_evaluation: ClassVar[bool] = False
    rows_vary_in_length: ClassVar[bool] = True

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

    def report(self, totals: dict[str, dict[str, float]]) -> dict[str, Any]:
        """The final evaluation's results (`final/eval_results.json`) from each split's summed statistics."""
        return {split: self.metrics(t) for split, t in totals.items()}

    def final_outputs(self, model: nn.Module, out: Path, results: dict[str, Any]) -> dict[str, Any]:
        """More of the final evaluation, on the main process only, once `report` ran (default: nothing more).

        Args:
            model: The final weights (unwrapped).
            out: The run folder, for files the evaluation writes (e.g. generated responses).
            results: `report`'s results; returns them with this step's added.
        """
        return results

    def card_fields(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        """Values of the task's own card template placeholders (the run fills in steps, optimizer and metrics).

        Args:
            metrics: The last evaluation's logged values.
            results: The final evaluation's results (None without one).
        """
        return {}

    def card_metadata(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        """The final card's header beyond the run's own: `cards.card_data` keywords (datasets, base_model, results).

        Args:
            metrics: The last evaluation's logged values.
            results: The final evaluation's results (None without one).
        """
        return {}

    def summary(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> str:
        """One line that ends the run's output."""
        return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))

    # ------------------------------------------------------------------ what goes into a model folder

    def export(self, model: nn.Module) -> nn.Module:
        """The model as a model folder stores it (e.g. a LoRA model merged into plain layers); default: itself."""
        return model

    def write_extras(self, model: nn.Module, folder: Path) -> None:
        """Write files beside the model in a model folder (checkpoint, best/, final/), e.g. an adapter."""

    def restore(self, model: nn.Module, folder: Path) -> None:
        """Load the weights a model folder of this run holds into `model` (early stopping's best weights)."""
        saved = type(model).from_pretrained(folder)
        model.load_state_dict(saved.state_dict())
