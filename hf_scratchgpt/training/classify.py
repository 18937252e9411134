"""`scratchgpt finetune-classifier`: a saved ScratchGPT turned into a text classifier (stage 7.1, chapter 6).

The task on the shared run: a table of texts and labels (balanced and split the book's way when
asked), a `ScratchGPTForSequenceClassification` loaded from the model folder with a new `num_labels`
head on the last non-padding token, the cross-entropy loss, and accuracy, macro F1 and the confusion
matrix from the `evaluate` modules shipped in `hf_scratchgpt.metrics`. The run ends with the final
weights evaluated on the whole train, validation and test splits (`final/eval_results.json`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, DatasetDict
from huggingface_hub import EvalResult
from torch import nn

from ..cards import data_name, result
from ..data.classification import (
    SPLITS,
    ClassificationCollator,
    balance_by_undersampling,
    label_maps,
    load_classification_table,
    load_split_folder,
    quiet_progress,
    split_fractions,
    tokenize_classification,
)
from ..metrics import classification_metrics
from ..model import ScratchGPTForSequenceClassification
from ..tokenization import append_eos_when_encoding, load_tokenizer
from .finetune import FinetuneConfig, FinetuneTask, quiet_loading, scratchgpt_config
from .run import run_training
from .task import TaskSetup


@dataclass
class ClassificationData:
    """Where a classifier's texts and labels come from, and how they are split (the book's procedure).

    Attributes:
        data: A TSV/CSV/JSON/JSONL/Parquet file of texts and labels, a folder of splits (train.jsonl,
            validation.jsonl, test.jsonl, as `scratchgpt split-classifier-data` writes them) used as they
            are, or a Hub dataset id (its train split, split like a table).
        text_column: Column holding the text.
        label_column: Column holding the label (names or integer ids).
        labels: The label set in id order, e.g. [ham, spam] (null: the sorted labels found).
        file_format: tsv, csv, json or parquet (null: from the file name; a file without a suffix needs it).
        column_names: Column names of a file without a header row, e.g. [label, text].
        balance: Undersample every class to the smallest one (the book: 747 ham + 747 spam).
        val_fraction: Share of the (balanced) rows for validation.
        test_fraction: Share of the (balanced) rows for the final test.
        seed: Seed of the balancing and the split (the book's: 123).
    """

    data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = None
    file_format: str | None = None
    column_names: list[str] | None = None
    balance: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 123

    def check_data_options(self) -> None:
        """Raise `ValueError` naming the first data option that cannot work."""
        if not self.data:
            raise ValueError("data: give a table of texts and labels (--data FILE, a folder of splits or a Hub id)")
        val, test = self.val_fraction, self.test_fraction
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError(
                f"val_fraction ({val}) and test_fraction ({test}) must be >= 0 and leave rows for training"
            )

    def load_splits(self) -> tuple[DatasetDict, Dataset | None]:
        """The train/validation/test splits, and the table's rows no split holds (balancing left them out).

        Raises:
            ValueError: A missing column, an empty text, a label outside the label set, or a label column
                with fewer than two classes (each named).
        """
        options = {"text_column": self.text_column, "label_column": self.label_column}
        if Path(self.data).is_dir():
            if self.balance:
                raise ValueError(f"{self.data} is a folder of splits, used as it is: drop --balance")
            return load_split_folder(self.data, labels=self.labels, **options), None
        table = load_classification_table(
            self.data, file_format=self.file_format, column_names=self.column_names, labels=self.labels, **options
        )
        names = table.features["label"].names
        found = sorted({names[i] for i in table["label"]})
        if len(found) < 2:
            raise ValueError(
                f"{self.data}: the label column {self.label_column!r} holds one class only ({found[0]!r}); "
                f"a classifier needs at least two"
            )
        table = table.add_column("_row", list(range(len(table))))
        kept = balance_by_undersampling(table, self.seed) if self.balance else table
        train_fraction = 1.0 - self.val_fraction - self.test_fraction
        fractions = (train_fraction, self.val_fraction, self.test_fraction)
        splits = split_fractions(kept, fractions, SPLITS, self.seed)
        with quiet_progress():
            left_out = table.filter(
                lambda row, used: row not in used, input_columns="_row", fn_kwargs={"used": set(kept["_row"])}
            )
        return splits.remove_columns("_row"), left_out.remove_columns("_row")


@dataclass
class ClassifierConfig(FinetuneConfig, ClassificationData):
    """Everything a classification fine-tuning run depends on; the defaults are the book's chapter 6.

    Attributes:
        max_length: Longest input in tokens (null: the model's context length); longer texts keep their
            first tokens (the book's rule; and the end token with append_eos) and the run says how many were cut.
        append_eos: End every text with the end-of-text token, the token the classifier reads (the saved
            tokenizer adds it too, so pipelines see the same inputs). The book reads the last position of
            texts padded with that token, so it reads this token for every text but the longest.
    """

    max_length: int | None = None
    append_eos: bool = True
    # the book's chapter-6 training: last block + final norm + new head, AdamW 5e-5, wd 0.1, 5 epochs of batch 8
    train_mode: str = "last-block"
    epochs: int = 5
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 5e-5
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    clip_grad: float | None = None
    eval_every: int = 50
    eval_batches: int | None = 5
    save_every: int | None = 500
    log_with: list[str] = field(default_factory=list)

    VERB: ClassVar[str] = "finetune-classifier"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("model", "data")

    def validate(self) -> None:
        super().validate()
        self.check_data_options()
        if self.max_length is not None and self.max_length <= 1:
            raise ValueError(f"max_length must be > 1, got {self.max_length!r}")

    def default_name(self) -> str:
        """`<model folder>-<data stem>-classifier`."""
        return self.run_name(self.data, "classifier")


def classification_stats(model: nn.Module, batch: dict, num_labels: int) -> dict[str, torch.Tensor]:
    """Per example, `(b,)` each: the loss, whether it was right, and its cell of the confusion matrix."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"]
    predicted = logits.argmax(-1)
    stats = {
        "loss_sum": F.cross_entropy(logits, labels, reduction="none"),
        "correct": (predicted == labels).double(),
        "examples": torch.ones_like(labels, dtype=torch.float64),
    }
    for true in range(num_labels):
        for pred in range(num_labels):
            stats[f"cm_{true}_{pred}"] = ((labels == true) & (predicted == pred)).double()
    return stats


def confusion_from_totals(totals: dict[str, float], num_labels: int) -> np.ndarray:
    """The `(num_labels, num_labels)` confusion counts (rows: true class, columns: predicted) in summed stats."""
    return np.array(
        [[round(totals.get(f"cm_{t}_{p}", 0.0)) for p in range(num_labels)] for t in range(num_labels)], dtype=int
    )


class ClassificationTask(FinetuneTask):
    """Fine-tuning a ScratchGPT to classify texts (the book's chapter 6)."""

    card_template = "classifier"
    plot_metric = "accuracy"
    final_evaluation = True
    head_modules = ("score",)
    peft_task_type = "SEQ_CLS"
    config: ClassifierConfig

    def setup(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> TaskSetup:
        cfg = self.config
        base_config, where = scratchgpt_config(cfg.model)
        tok = load_tokenizer(resume_from if resume_from is not None else where)
        if cfg.append_eos:
            append_eos_when_encoding(tok)  # saved with the model: pipelines read the same token
        with acc.main_process_first():
            splits, _ = cfg.load_splits()
        label2id, id2label = label_maps(splits)
        self.labels = [id2label[i] for i in range(len(id2label))]
        context = base_config.context_length
        if cfg.max_length is not None and cfg.max_length > context:
            raise ValueError(f"max_length {cfg.max_length} is longer than the model's context length {context}")
        max_length = cfg.max_length or context
        train_sha256 = _rows_sha256(splits["train"])
        with acc.main_process_first():
            data = tokenize_classification(splits, tok, max_length=max_length)
        truncated = {k: int(sum(n > max_length for n in v["length"])) for k, v in data.items()}
        self.longest = {k: max(v["length"], default=0) for k, v in data.items()}
        if any(truncated.values()) and acc.is_main_process:
            cut = ", ".join(f"{n} {k}" for k, n in truncated.items() if n)
            print(f"texts longer than {max_length} tokens keep their first {max_length} tokens: {cut}")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        overrides: dict[str, Any] = {"num_labels": len(self.labels), "id2label": id2label, "label2id": label2id}
        overrides["pad_token_id"] = pad
        if cfg.drop_rate is not None:
            overrides["drop_rate"] = cfg.drop_rate
        set_seed(cfg.seed)  # the new head's weights depend on the seed alone
        with quiet_loading():
            model = ScratchGPTForSequenceClassification.from_pretrained(str(where), **overrides)
        self.prepare(model, cfg.model if isinstance(where, str) else where, verbose=acc.is_main_process)
        self.provenance = {
            "data": str(cfg.data),
            "train_sha256": train_sha256,
            "labels": self.labels,
            "balanced": cfg.balance,
            "append_eos": cfg.append_eos,
            **{f"{k}_examples": len(v) for k, v in data.items()},
            **{
                f"{k}_class_counts": np.bincount(v["label"], minlength=len(self.labels)).tolist()
                for k, v in data.items()
            },
            "max_length": max_length,
            "truncated": truncated,
            "base_model": self.base,
            "trainable_parameters": self.trainable["trainable"],
        }
        return TaskSetup(
            model,
            tok,
            data["train"],
            {"val": data["validation"]} if len(data["validation"]) else {},
            collate_fn=ClassificationCollator(pad_token_id=pad),
            provenance=self.provenance,
            test={"test": data["test"]} if len(data["test"]) else {},
            train_lengths=lambda: [len(ids) for ids in data["train"]["input_ids"]],
        )

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return model(**batch).loss, torch.tensor(batch["labels"].numel(), device=batch["labels"].device)

    def stats(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return classification_stats(model, batch, len(self.labels))

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Mean loss, accuracy and macro F1 (through the shipped `evaluate` modules)."""
        if not totals.get("examples"):
            return {"loss": float("nan"), "accuracy": float("nan"), "f1": float("nan")}
        scores = self._scores(totals)
        return {
            "loss": totals["loss_sum"] / totals["examples"],
            "accuracy": scores["accuracy"],
            "f1": scores["f1_macro"],
        }

    def _scores(self, totals: dict[str, float]) -> dict[str, Any]:
        matrix = confusion_from_totals(totals, len(self.labels))
        references = np.repeat(np.arange(len(self.labels)), matrix.sum(1))  # the examples behind the counts
        predictions = np.concatenate([np.repeat(np.arange(len(self.labels)), row) for row in matrix])
        return classification_metrics(predictions.tolist(), references.tolist(), labels=list(range(len(self.labels))))

    def report(self, totals: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Per split: examples, loss, accuracy, macro F1, F1 per class and the confusion matrix."""
        results: dict[str, Any] = {"labels": self.labels, "confusion_matrix": "rows: true label, columns: predicted"}
        for split, t in totals.items():
            if not t.get("examples"):
                continue
            scores = self._scores(t)
            results[split] = {
                "examples": int(t["examples"]),
                "loss": t["loss_sum"] / t["examples"],
                "accuracy": scores["accuracy"],
                "f1": scores["f1_macro"],
                "f1_per_class": dict(zip(self.labels, scores["f1_per_class"])),
                "confusion_matrix": scores["confusion_matrix"],
            }
        return results

    def eval_results(self, results: dict[str, Any]) -> list[EvalResult]:
        name = data_name(self.config.data)
        return [
            result("text-classification", name, hub_split, metric, results[split][key])
            for split, hub_split in (("val", "validation"), ("test", "test"))
            if split in results
            for key, metric in (("accuracy", "accuracy"), ("f1", "f1"))
        ]

    def card_fields(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg, results = self.config, results or {}

        def pct(split: str) -> str:
            return f"{100 * results[split]['accuracy']:.2f} %" if split in results else "n/a"

        def f1(split: str) -> str:
            return f"{results[split]['f1']:.4f}" if split in results else "n/a"

        matrix = results.get("test", {}).get("confusion_matrix")
        return {
            "base_model": self.base,
            "data": str(cfg.data),
            "train_sha256": self.provenance.get("train_sha256", "n/a"),
            "labels": ", ".join(self.labels),
            "split_sizes": " / ".join(
                str(self.provenance.get(f"{k}_examples", 0)) for k in ("train", "validation", "test")
            ),
            "balanced": (
                "yes (undersampled to the smallest class)"
                if cfg.balance
                else "as given (a folder of splits)"
                if Path(cfg.data).is_dir()
                else "no"
            ),
            "max_length": self.provenance["max_length"],
            "longest_text": max(self.longest.values()),
            "train_mode": cfg.train_mode,
            "trainable": self.trainable_text(),
            **{f"{s}_accuracy_pct": pct(s) for s in ("train", "val", "test")},
            **{f"{s}_f1": f1(s) for s in ("train", "val", "test")},
            "confusion_matrix": _matrix_table(self.labels, matrix),
            "adapter_note": self.adapter_note(),
        }

    def summary(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> str:
        results = results or {}
        parts = [f"{s} accuracy {100 * results[s]['accuracy']:.2f} %" for s in ("train", "val", "test") if s in results]
        return ", ".join(parts) or super().summary(metrics)


def _rows_sha256(ds: Any) -> str:
    """sha256 of a split's rows (label id and text, in order): what exactly the run trained on."""
    h = hashlib.sha256()
    for label, text in zip(ds["label"], ds["text"]):
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()


def _matrix_table(labels: list[str], matrix: list[list[int]] | None) -> str:
    if matrix is None:
        return "(no test split)"
    head = "| true \\ predicted | " + " | ".join(labels) + " |"
    rule = "|---|" + "---|" * len(labels)
    rows = [f"| {label} | " + " | ".join(str(x) for x in row) + " |" for label, row in zip(labels, matrix)]
    return "\n".join([head, rule, *rows])


def finetune_classifier(cfg: ClassifierConfig) -> Path:
    """Fine-tune a saved ScratchGPT as a text classifier (the book's chapter 6); returns OUT/final.

    Raises (before any folder is written):
        FileNotFoundError: A missing data file or model folder.
        ValueError: A model folder that is not a ScratchGPT, a missing column (the columns found are
            listed), an empty text or a label outside the label set (the record is named), a single
            class, or an invalid option.
    """
    return run_training(ClassificationTask(cfg))
