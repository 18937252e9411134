"""`TrainConfig`: the options every training verb shares, and how a run folder's saved config is resumed.

A training verb's config subclasses `TrainConfig` and adds its data and model fields. The command
line gives `--config RECIPE.yaml` and `--key value` overrides (`hf_scratchgpt.options`). When
`--resume` names a run folder that exists, the run in it continues: its saved `config.yaml` is the
starting point, options given again may change only what leaves the run the same run
(`SAFE_ON_RESUME`: more steps, evaluation and checkpoint cadence, trackers, samples), and any other
change is refused with one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ..options import from_mapping

MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("cosine", "constant")
EARLY_STOPPING_MODES = ("min", "max")
CONFIG_FILE = "config.yaml"


@dataclass
class TrainConfig:
    """The options of the shared training run (saved beside its outputs as `config.yaml`).

    Attributes:
        epochs: Passes over the training data (used when max_steps is null).
        max_steps: Optimizer steps to run (null: `epochs` full passes).
        batch_size: Examples per batch and process.
        grad_accum: Batches accumulated per optimizer step.
        group_by_length: Batch training examples of similar length together, in a random order of batches
            (transformers' group_by_length): less padding, so more examples a second when lengths vary. Tasks
            whose rows all have one length (pretraining windows) refuse it.
        lr: Peak learning rate of AdamW.
        min_lr_ratio: Floor of the cosine schedule as a fraction of lr.
        lr_schedule: cosine (after warmup) or constant.
        warmup_steps: Steps of linear warmup.
        weight_decay: AdamW weight decay (matrices only, or every parameter in book mode).
        adam_beta1: AdamW beta1.
        adam_beta2: AdamW beta2.
        clip_grad: Gradient-norm clipping threshold (null: no clipping).
        mixed_precision: no, bf16 or fp16 (accelerate autocast).
        gradient_checkpointing: Recompute each transformer block in the backward pass instead of keeping its
            activations (less memory, about a third more compute; the same gradients).
        seed: Seed of initialisation, data order and dropout.
        book_mode: The book's loop draw for draw: shuffles and evaluation batches from the global RNG,
            weight decay on every parameter, evaluation after steps 1, 1 + eval_every, ...; one process, no resume.
        eval_every: Evaluate (and log) every this many optimizer steps.
        eval_batches: Batches per evaluation (null: the whole split).
        final_train_examples: Training examples the final evaluation of a fine-tuning task reads, the first
            ones in order (null: the whole training split; validation and test are always whole). Pretraining
            has no final evaluation and ignores it.
        early_stopping_patience: Stop after this many evaluations without a better early_stopping_metric
            (null: never); the final folder then holds the best weights.
        early_stopping_metric: Logged metric that early stopping watches, e.g. val_loss.
        early_stopping_mode: min (lower is better) or max.
        log_with: Extra trackers: tensorboard, trackio, wandb, mlflow, comet_ml, aim.
        out: Output folder (default: runs/NAME).
        name: Run name (default: derived from the data and model).
        save_every: Save a resumable checkpoint every this many steps (null: only at the end).
        keep_last: Checkpoints kept.
        resume: auto (the last complete checkpoint in OUT, if any) or a checkpoint folder.
        overwrite: Replace an existing OUT (only once everything is validated).
        license: License of the model card's header (a Hub license id, e.g. apache-2.0, mit, other).
        push_to_hub: Hub repo id (user/name) to push the final folder to once the run has finished
            (a LoRA run pushes its adapter; see `scratchgpt push`).
        hub_private: Create the pushed repo private.
    """

    # optimisation
    epochs: int = 1
    max_steps: int | None = 600
    batch_size: int = 16
    grad_accum: int = 1
    group_by_length: bool = False
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    lr_schedule: str = "cosine"
    warmup_steps: int = 30
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    clip_grad: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 123
    book_mode: bool = False
    # evaluation, stopping, logging
    eval_every: int = 100
    eval_batches: int | None = None
    final_train_examples: int | None = 20_000
    early_stopping_patience: int | None = None
    early_stopping_metric: str = "val_loss"
    early_stopping_mode: str = "min"
    log_with: list[str] = field(default_factory=list)
    # outputs
    out: str | None = None
    name: str | None = None
    save_every: int | None = 200
    keep_last: int = 2
    resume: str | None = None
    overwrite: bool = False
    # sharing
    license: str = "apache-2.0"
    push_to_hub: str | None = None
    hub_private: bool = False

    # options that may change when a run is resumed: they leave it the same run
    SAFE_ON_RESUME: ClassVar[frozenset[str]] = frozenset(
        {"max_steps", "epochs", "eval_every", "eval_batches", "final_train_examples", "save_every", "keep_last",
         "log_with", "early_stopping_patience", "out", "name", "resume", "overwrite", "license", "push_to_hub",
         "hub_private"}
    )  # fmt: skip
    # the verb that runs this config (for messages such as the resume command)
    VERB: ClassVar[str] = "train"
    # fields that name local files or folders (or Hub ids); a local one is kept absolute (`absolute_paths`)
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()
    PATH_PREFIXES: ClassVar[tuple[str, ...]] = ()  # markers before a path, e.g. pretrain's "train:"

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value cannot work."""
        for name in ("epochs", "batch_size", "grad_accum", "eval_every", "keep_last"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_steps", "save_every", "eval_batches", "early_stopping_patience", "final_train_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (or null), got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_steps and weight_decay must be >= 0 and min_lr_ratio in [0, 1]")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be > 0 (or null), got {self.clip_grad!r}")
        for name, allowed in (
            ("mixed_precision", MIXED_PRECISION),
            ("lr_schedule", LR_SCHEDULES),
            ("early_stopping_mode", EARLY_STOPPING_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.book_mode and self.resume is not None:
            raise ValueError(
                "book_mode cannot resume: the book's shuffle is drawn from the global RNG when an epoch "
                "starts, so a resumed run would see another order; drop --resume or --book-mode"
            )
        if self.book_mode and self.group_by_length:
            raise ValueError("book_mode draws the book's shuffled batches; group_by_length would change them: give one")
        if self.resume is not None and self.overwrite:
            raise ValueError("--resume continues the run in OUT and --overwrite replaces it: give one of them")

    def default_name(self) -> str:
        """The run name when none is given (a task derives it from its data and model)."""
        return self.VERB

    @property
    def out_dir(self) -> Path:
        """`out`, or `runs/<name>`."""
        return Path(self.out) if self.out else Path("runs") / (self.name or self.default_name())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_record(self) -> dict[str, Any]:
        """What `config.yaml` keeps: the run's settings and folder, not the actions resume/overwrite."""
        record = {k: v for k, v in self.to_dict().items() if k not in ("resume", "overwrite")}
        record["out"] = str(self.out_dir)
        return record

    def absolute_paths(self) -> TrainConfig:
        """The same config with each relative path in `PATH_FIELDS` that exists here made absolute.

        Paths are read from the current folder when a run starts; kept absolute in `config.yaml`, they
        read the same when `--resume` runs from another folder. A value that names no local path (a
        Hub id, `builtin`) stays as it is.
        """

        def absolute(value: str) -> str:
            prefix = next((p for p in self.PATH_PREFIXES if value.startswith(p)), "")
            path = value[len(prefix) :]
            if path and not os.path.isabs(path) and os.path.exists(path):
                return prefix + os.path.abspath(path)
            return value

        changes = {}
        for name in self.PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                changes[name] = absolute(value)
            elif isinstance(value, list):
                changes[name] = [absolute(v) if isinstance(v, str) else v for v in value]
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(cls, values: dict[str, Any], where: str) -> TrainConfig:
        """Build from merged recipe + command-line values; with `resume`, continue the run saved in OUT.

        Raises:
            ValueError: An unknown key, a bad value, or (resuming) a change that would alter the run.
        """
        cfg = from_mapping(cls, values, where).absolute_paths()
        saved_file = cfg.out_dir / CONFIG_FILE
        if cfg.resume is not None and saved_file.is_file():
            saved = yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {}
            base, given = from_mapping(cls, saved, str(saved_file)).absolute_paths().to_dict(), cfg.to_dict()
            for key in values:
                if key not in cls.SAFE_ON_RESUME and given[key] != base[key]:
                    raise ValueError(
                        f"cannot resume {cfg.out_dir} with {key} = {given[key]!r}: the run was started with "
                        f"{base[key]!r} and changing it would make another run; drop the option or use a new --out"
                    )
            base.update({k: given[k] for k in values})
            cfg = from_mapping(cls, base, str(saved_file))
        cfg.validate()
        return cfg
