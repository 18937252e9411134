"""Language-modelling data (stage 2): documents -> split -> tokens -> sliding windows.

The windows run over the **whole token stream** of a split (documents joined with `<|endoftext|>`),
with the book's starts `range(0, n_tokens - max_length, stride)`, so no token is lost at a map-batch
boundary and the number of windows is the book's. Rows carry `input_ids` and `labels` in the
transformers convention (`labels == input_ids`; the model shifts).

`prepare_lm_datasets` takes one of two paths that give the very same windows: in memory
(`in_memory.py`: one cached, batched `Dataset.map`, then window tables) or streaming
(`streaming.py`: memory that does not grow with the corpus). Both follow one `SplitPlan`
(`splits.py`) and make windows with `windows.py`. Mixing and content hashes live here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset, IterableDataset, interleave_datasets
from datasets.distributed import split_dataset_by_node

from .in_memory import in_memory_splits
from .lm_options import LMOptions
from .splits import TRAIN, VALIDATION
from .streaming import streaming_splits
from .tokenize import tokenizer_fingerprint

__all__ = ["LMDatasets", "content_hash", "mix_datasets", "mixing_probabilities", "prepare_lm_datasets"]


def mixing_probabilities(weights: Iterable[float], alpha: float = 0.7) -> list[float]:
    """Temperature mixing: p(i) proportional to w_i ** alpha (alpha < 1 up-weights small corpora).

    Raises:
        ValueError: No weights, or a weight that is not positive.
    """
    w = np.asarray(list(weights), dtype=np.float64)
    if w.size == 0 or (w <= 0).any():
        raise ValueError(f"mixing weights must be positive, got {w.tolist()}")
    p = w**alpha
    return (p / p.sum()).tolist()


def mix_datasets(
    datasets: list[Dataset] | list[IterableDataset],
    weights: Iterable[float] | None = None,
    alpha: float = 0.7,
    seed: int = 123,
) -> Dataset | IterableDataset:
    """Interleave window datasets with temperature-scaled probabilities (weights default to sizes)."""
    if weights is None:
        weights = [len(d) for d in datasets]
    probabilities = mixing_probabilities(weights, alpha)
    return interleave_datasets(datasets, probabilities=probabilities, seed=seed, stopping_strategy="all_exhausted")


def content_hash(ds: Dataset | IterableDataset, columns: tuple[str, ...] = ("input_ids",)) -> str:
    """sha256 of the prepared rows, in order (provenance of exactly what a run trained on)."""
    h = hashlib.sha256()
    if isinstance(ds, Dataset):
        for table in ds.with_format("arrow").iter(batch_size=10_000):
            for name in columns:
                values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
                h.update(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    else:
        for row in ds:
            for name in columns:
                h.update(np.asarray(row[name], dtype=np.int64).tobytes())
    return h.hexdigest()


@dataclass
class LMDatasets:
    """Train/validation windows plus what produced them."""

    train: Dataset | IterableDataset
    validation: Dataset | IterableDataset | None
    provenance: dict = field(default_factory=dict)


def _provenance(sources: Any, tokenizer: Any, options: LMOptions) -> dict:
    return {
        "sources": [os.fspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)],
        "max_length": options.max_length,
        "stride": options.stride,
        "val_fraction": options.val_fraction,
        "split_by": options.split_by,
        "seed": options.seed,
        "pack": options.pack,
        "dedup": options.dedup,
        "shifted_labels": options.shifted_labels,
        "tokenizer": type(tokenizer).__name__,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "vocab_size": len(tokenizer),
    }


def prepare_lm_datasets(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any,
    max_length: int = 256,
    stride: int | None = None,
    val_fraction: float = 0.1,
    split_by: str = "characters",
    seed: int = 123,
    text_field: str = "text",
    errors: str = "strict",
    pack: bool = False,
    dedup: bool = False,
    streaming: bool = False,
    rank: int = 0,
    world_size: int = 1,
    shifted_labels: bool = False,
) -> LMDatasets:
    """Build train/validation windows from a corpus.

    Args:
        sources: Files, folders, globs, `"builtin"`, or a Hub dataset id (see `load_documents`).
        tokenizer: A transformers tokenizer or a `SimpleTokenizer`; its eos separates documents.
        max_length: Tokens per window (at most the model's context length).
        stride: Step between window starts (default `max_length`: no overlap).
        val_fraction: Share held out for validation (0: no validation set).
        split_by: `"characters"` (the book: first 90 % of the text) or `"documents"` (seeded).
        seed: Seed of the document split.
        text_field: Text column of table formats.
        errors: `"strict"` or `"replace"` for undecodable bytes.
        pack: Non-overlapping windows whose `position_ids` restart at each document boundary.
        dedup: Drop exact duplicate documents first.
        streaming: Return `IterableDataset`s (same windows, bounded memory).
        rank: This process's rank, with `world_size`, to split a stream between processes.
        world_size: Number of processes sharing the stream.
        shifted_labels: The book's `(input, target)` rows (`input_ids`, `shift_labels`), `max_length`
            targets per window; in-memory only.

    Raises:
        ValueError: Bad arguments, empty/undecodable files, a split too short for one window.
    """
    options = LMOptions(
        max_length=max_length,
        stride=stride,
        val_fraction=val_fraction,
        split_by=split_by,
        seed=seed,
        text_field=text_field,
        errors=errors,
        pack=pack,
        dedup=dedup,
        shifted_labels=shifted_labels,
    )
    provenance = _provenance(sources, tokenizer, options)
    if streaming:
        if shifted_labels:
            raise ValueError("shifted_labels is available for in-memory datasets only (streaming=False)")
        train, val = streaming_splits(sources, tokenizer, options)
        if world_size > 1:
            train = split_dataset_by_node(train, rank=rank, world_size=world_size)
        return LMDatasets(train, val, provenance)

    built = in_memory_splits(sources, tokenizer, options)
    provenance.update(built.documents)
    for name, windows in built.windows.items():
        provenance[f"{name}_tokens"] = built.tokens[name]
        provenance[f"{name}_windows"] = len(windows)
        provenance[f"{name}_sha256"] = content_hash(windows)
    return LMDatasets(built.windows[TRAIN], built.windows.get(VALIDATION), provenance)
