"""Classification sets (chapter 6): text/label tables, balancing, 70/10/20 splits, padding collate.

The label set travels with the data as a `datasets.ClassLabel` feature, so `label2id`/`id2label`
are read from `ds.features["label"]` (see `label_maps`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

from ..paths import local_or_hub
from .sources import check_text_file
from .tokenize import encode_texts, encode_truncated

_FORMATS = {".tsv": "tsv", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLITS = ("train", "validation", "test")
SPLITS_FILE = "splits.json"  # what `split-classifier-data` records beside the splits (labels, counts, source)


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No datasets progress bars inside (a table of texts loads in moments; an error stays one line)."""
    enabled = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            enable_progress_bars()


def load_classification_table(
    source: str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    file_format: str | None = None,
    column_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    split: str = "train",
) -> Dataset:
    """Load a text/label table as a `Dataset` with columns `text` and `label` (a `ClassLabel`).

    Args:
        source: A TSV/CSV/JSON/JSONL/Parquet file, or a Hub dataset id (when online).
        text_column: Column holding the text.
        label_column: Column holding the label (names or integer ids).
        file_format: `tsv`, `csv`, `json` or `parquet`; inferred from the suffix when None (a file
            without a suffix, like `SMSSpamCollection`, needs it).
        column_names: Names for a file without a header row (e.g. `["label", "text"]`).
        labels: The label set in id order (e.g. `["ham", "spam"]`); default: sorted names found.
        split: Split of a Hub dataset.

    Raises:
        ValueError: A missing column, a missing text or label (with the record index), or a label
            outside `labels`.
    """
    located = local_or_hub(source, "classification data")
    if isinstance(located, Path):
        path = located
        fmt = file_format or _FORMATS.get(path.suffix.lower())
        if path.is_file() and fmt != "parquet":
            check_text_file(path)  # not empty, UTF-8 (else: file and byte offset)
        elif path.is_file() and path.stat().st_size == 0:
            raise ValueError(f"{path}: file is empty")
        if fmt is None:
            raise ValueError(
                f"{path}: cannot tell the format from the name; pass file_format='tsv'|'csv'|'json'|'parquet'"
            )
        kwargs: dict[str, Any] = {}
        if fmt in ("tsv", "csv"):
            kwargs["delimiter"] = "\t" if fmt == "tsv" else ","
            if column_names is not None:
                kwargs["column_names"] = list(column_names)
        with quiet_progress():
            ds = load_dataset(
                "csv" if fmt in ("tsv", "csv") else fmt, data_files=os.fspath(path), split="train", **kwargs
            )
        where = os.fspath(path)
    else:
        with quiet_progress():
            ds = load_dataset(located, split=split)
        where = located
    for name in (text_column, label_column):
        if name not in ds.column_names:
            raise ValueError(f"{where}: no column {name!r}; the columns are {ds.column_names}")
    ds = ds.select_columns([text_column, label_column])
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    if label_column != "label":
        ds = ds.rename_column(label_column, "label")
    return attach_label_set(ds, labels, where)


def load_split_folder(
    folder: str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    labels: Sequence[str] | None = None,
) -> DatasetDict:
    """A folder of ready splits: `train.<ext>` and, if present, `validation.<ext>` and `test.<ext>`.

    The label set is `labels`, else the one `splits.json` records (as `split-classifier-data` writes
    it), else the sorted labels of all splits together; every split gets the same `ClassLabel`.

    Raises:
        FileNotFoundError: No `train.*` file in the folder.
        ValueError: What `load_classification_table` raises, naming the split's file.
    """
    folder = Path(folder)
    files = {}
    for name in SPLITS:
        found = sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() in _FORMATS)
        if found:
            files[name] = found[0]
    if "train" not in files:
        raise FileNotFoundError(f"{folder}: no train.jsonl (or .json/.csv/.tsv/.parquet) in this folder of splits")
    record = folder / SPLITS_FILE
    if labels is None and record.is_file():
        labels = json.loads(record.read_text(encoding="utf-8")).get("labels")
    if labels is None:
        found_labels: set[str] = set()
        for path in files.values():
            found_labels |= {str(v) for v in load_classification_table(path, text_column, label_column)["label"]}
        labels = sorted(found_labels)
    parts = {
        name: load_classification_table(path, text_column, label_column, labels=labels) for name, path in files.items()
    }
    empty = parts["train"].select([]) if "train" in parts else None
    return DatasetDict({name: parts.get(name, empty) for name in SPLITS})


def attach_label_set(ds: Dataset, labels: Sequence[str] | None, where: str = "dataset") -> Dataset:
    """Check every row and store the labels as a `ClassLabel` (ids in the order of `labels`)."""
    if isinstance(ds.features["label"], ClassLabel) and labels is None:
        return ds
    values = list(ds["label"])
    texts = list(ds["text"])
    for i, (text, value) in enumerate(zip(texts, values)):
        if not isinstance(text, str):
            raise ValueError(f"{where}: record {i}: missing or non-text 'text' ({text!r})")
        if not text.strip():
            raise ValueError(f"{where}: record {i}: empty text")
        if value is None:
            raise ValueError(f"{where}: record {i}: missing label")
    if labels is None:
        if all(isinstance(v, (int, np.integer)) for v in values):
            labels = [str(i) for i in range(max(values) + 1)]
        else:
            labels = sorted({str(v) for v in values})
    names = [str(x) for x in labels]
    index = {n: i for i, n in enumerate(names)}
    for i, value in enumerate(values):
        key = names[value] if isinstance(value, (int, np.integer)) and 0 <= value < len(names) else str(value)
        if key not in index:
            raise ValueError(f"{where}: record {i}: label {value!r} is not in the label set {names}")
    with quiet_progress():
        ds = ds.map(_label_to_id, batched=True, fn_kwargs={"names": names, "index": index})
        return ds.cast_column("label", ClassLabel(names=names))


def _label_to_id(batch: dict, names: list[str], index: dict[str, int]) -> dict:
    ids = [v if isinstance(v, int) else index[str(v)] for v in batch["label"]]
    return {"label": ids}


def label_maps(ds: Dataset | DatasetDict) -> tuple[dict[str, int], dict[int, str]]:
    """`(label2id, id2label)` of a dataset's `ClassLabel`, for the model config."""
    features = (next(iter(ds.values())) if isinstance(ds, DatasetDict) else ds).features["label"]
    return {n: i for i, n in enumerate(features.names)}, dict(enumerate(features.names))


def balance_by_undersampling(ds: Dataset, seed: int = 123) -> Dataset:
    """Undersample every class to the size of the smallest, drawing the book's rows (747 ham + 747 spam).

    The book's `create_balanced_dataset` samples the larger class with pandas' `df.sample(n,
    random_state=123)` and puts the sampled rows first, then the smallest class in file order. Here
    each larger class is drawn the same way (`numpy.random.RandomState(seed)`, a fresh one per class),
    classes in label-id order, the smallest class (the first one, on a tie) kept whole in file
    order: on the spam data these are the book's rows, in the book's order.
    """
    labels = np.asarray(ds["label"])
    present = np.unique(labels)
    counts = {c: int((labels == c).sum()) for c in present}
    smallest = min(present, key=lambda c: counts[c])
    parts = []
    for c in present:
        rows = np.flatnonzero(labels == c)
        if c != smallest:  # pandas' sample: RandomState(seed).choice(n, k, replace=False) = permutation(n)[:k]
            rows = rows[np.random.RandomState(seed).permutation(len(rows))[: counts[smallest]]]
        parts.append(rows)
    order = [*[p for c, p in zip(present, parts) if c != smallest], parts[list(present).index(smallest)]]
    return ds.select(np.concatenate(order))


def split_fractions(ds: Dataset, fractions: Sequence[float], names: Sequence[str], seed: int = 123) -> DatasetDict:
    """Shuffle (seeded) and cut into consecutive parts; all parts but the last get `int(n * fraction)` rows.

    The shuffle is the book's `df.sample(frac=1, random_state=seed)` (`numpy.random.RandomState(seed)
    .permutation(n)`), so the book's 70/10/20 on its 1,494 balanced spam rows gives its 1,045 / 149 /
    300 rows.
    """
    if len(fractions) != len(names) or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions {list(fractions)} must be {len(names)} non-negative numbers summing to 1")
    n = len(ds)
    shuffled = ds.select(np.random.RandomState(seed).permutation(n))
    sizes = [int(n * f) for f in fractions[:-1]]
    bounds = np.cumsum([0, *sizes, n - sum(sizes)])
    return DatasetDict({name: shuffled.select(range(int(a), int(b))) for name, a, b in zip(names, bounds, bounds[1:])})


def _tokenize_text(batch: dict, tokenizer: Any, max_length: int | None) -> dict:
    if hasattr(tokenizer, "backend_tokenizer"):  # a transformers tokenizer: its special tokens too (e.g. an end token)
        ids, lengths = encode_truncated(tokenizer, batch["text"], max_length)
        return {"input_ids": ids, "length": lengths}
    ids = encode_texts(tokenizer, batch["text"])
    return {
        "input_ids": [x[:max_length] if max_length is not None else x for x in ids],
        "length": [len(x) for x in ids],
    }


def tokenize_classification(ds: Dataset | DatasetDict, tokenizer: Any, max_length: int | None = None):
    """Batched, cached map: `text` -> `input_ids` and `length` (the token count before truncation).

    A transformers tokenizer is called as it is (with its special tokens, e.g. an end token that
    `append_eos_when_encoding` added), so training sees exactly what `tokenizer(text)` gives a
    pipeline. Texts longer than `max_length` keep their first tokens (the book's rule), plus the
    tokenizer's end token if it adds one.
    """
    with quiet_progress():
        return ds.map(
            _tokenize_text,
            batched=True,
            remove_columns=["text"],
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        )


@dataclass
class ClassificationCollator:
    """Pad a batch of `{"input_ids", "label"}` rows to its longest row (or to `pad_to`).

    Rows longer than `pad_to` are truncated to their first `pad_to` tokens (the book's rule).
    Returns `input_ids`, `attention_mask` (1 = token) and `labels`; `padding_side="left"` is
    also supported (the model reads the last non-padding token either way).
    """

    pad_token_id: int
    pad_to: int | None = None
    padding_side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [list(r["input_ids"])[: self.pad_to] if self.pad_to else list(r["input_ids"]) for r in rows]
        width = self.pad_to or max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            span = slice(width - len(s), width) if self.padding_side == "left" else slice(0, len(s))
            input_ids[i, span] = torch.tensor(s, dtype=torch.long)
            mask[i, span] = 1
        labels = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def load_sms_spam(path: str | os.PathLike, seed: int = 123) -> DatasetDict:
    """The book's spam data: SMS Spam Collection (label<TAB>text), balanced, split 70/10/20.

    Labels: ham = 0, spam = 1. On the UCI file: 1,045 / 149 / 300 rows.
    """
    table = load_classification_table(path, file_format="tsv", column_names=["label", "text"], labels=["ham", "spam"])
    return split_fractions(
        balance_by_undersampling(table, seed), (0.7, 0.1, 0.2), ("train", "validation", "test"), seed
    )
