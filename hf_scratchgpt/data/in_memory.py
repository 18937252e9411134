"""The in-memory path of `prepare_lm_datasets`: documents -> split -> tokens -> window tables.

One batched `Dataset.map` tokenizes every document into its split, as the `SplitPlan` says (cached
on disk, keyed by the documents, the tokenizer's content and the plan); each split's token stream
is then cut into all its windows at once, as Arrow tables.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable

from .lm_options import LMOptions
from .sources import load_documents
from .splits import TRAIN, VALIDATION, SplitPlan
from .tokenize import encode_texts, separator_id, tokenizer_fingerprint
from .windows import check_window_args, gather_windows, packed_position_ids, too_short_error

_MAP_VERSION = "split-tokenize-v2"  # part of the cache key: bump when _tokenize_split_batch changes
_EMPTY = np.zeros(0, dtype=np.int64)

# ----------------------------------------------------------------------------- documents -> tokens


def _tokenize_split_batch(
    batch: dict, indices: list[int], tokenizer: Any, eos_id: int | None, plan: SplitPlan
) -> pa.Table:
    """Tokenize each document into its split(s); separators go before all but a split's first document."""
    texts, owners = [], []
    for text, i in zip(batch["text"], indices):
        for split in (TRAIN, VALIDATION):
            if part := plan.text_of(i, text, split):
                texts.append(part)
                owners.append((split, i))
    rows = {split: [_EMPTY] * len(indices) for split in (TRAIN, VALIDATION)}
    row_of = {i: r for r, i in enumerate(indices)}
    for (split, i), ids in zip(owners, encode_texts(tokenizer, texts, as_numpy=True)):
        if eos_id is not None and plan.separated(i, split):
            ids = np.concatenate([np.asarray([eos_id], dtype=np.int64), ids])
        rows[split][row_of[i]] = ids
    return pa.table({f"{split}_ids": _list_array(arrays) for split, arrays in rows.items()})


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    """Arrow list<int64> from numpy arrays, without going through Python ints."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else _EMPTY
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def tokenize_documents(docs: Dataset, tokenizer: Any, plan: SplitPlan | None = None) -> Dataset:
    """One batched, cached `map`: documents -> `train_ids` / `validation_ids` (see the module docstring).

    Args:
        docs: Documents in a `text` column, none empty (their row numbers are the plan's indices).
        tokenizer: A transformers tokenizer or a `SimpleTokenizer`; its eos separates documents.
        plan: Where each document goes (default: all train).
    """
    plan = plan or SplitPlan()
    eos_id = separator_id(tokenizer)
    key = Hasher.hash([docs._fingerprint, tokenizer_fingerprint(tokenizer), eos_id, asdict(plan), _MAP_VERSION])
    return docs.map(
        _tokenize_split_batch,
        batched=True,
        with_indices=True,
        remove_columns=docs.column_names,
        fn_kwargs={"tokenizer": tokenizer, "eos_id": eos_id, "plan": plan},
        new_fingerprint=key,
    )


def _char_lengths(batch: dict) -> dict:
    return {"n": [len(t) for t in batch["text"]]}


def _document_lengths(docs: Dataset) -> np.ndarray:
    lengths = docs.map(_char_lengths, batched=True, remove_columns=docs.column_names).with_format("numpy")
    return lengths["n"]


def _non_empty(batch: dict) -> list[bool]:
    """Empty documents carry nothing and are dropped (both paths do so)."""
    return [bool(t) for t in batch["text"]]


def _dedup_hash(batch: dict) -> dict:
    return {"_sha": [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in batch["text"]]}


def deduplicate_documents(docs: Dataset) -> Dataset:
    """Keep the first copy of every exactly repeated document (sha256 of its text)."""
    hashed = docs.map(_dedup_hash, batched=True)
    seen: set[str] = set()
    keep = []
    for i, digest in enumerate(hashed["_sha"]):
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return docs.select(keep) if len(keep) < len(docs) else docs


# ----------------------------------------------------------------------------- tokens -> windows


def token_stream(tokd: Dataset, column: str = "input_ids") -> np.ndarray:
    """A split's whole token stream as one int64 array (respects selections and shuffles)."""
    parts = [
        table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        for table in tokd.with_format("arrow").iter(batch_size=10_000)
    ]
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, dtype=np.int64)


def _fixed_lists(rows: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(rows).reshape(-1), pa.int64())
    return pa.FixedSizeListArray.from_arrays(flat, rows.shape[1])


def _windows_table(windows: np.ndarray, position_ids: np.ndarray | None, shifted: bool = False) -> Dataset:
    if shifted:  # the book's pairs: inputs = window[:-1], targets = window[1:]
        columns = {"input_ids": _fixed_lists(windows[:, :-1]), "shift_labels": _fixed_lists(windows[:, 1:])}
        return Dataset(InMemoryTable(pa.table(columns)))
    column = _fixed_lists(windows)
    columns = {"input_ids": column, "labels": column}
    if position_ids is not None:
        columns["position_ids"] = _fixed_lists(position_ids)
    return Dataset(InMemoryTable(pa.table(columns)))


def windows_from_tokens(
    ids: np.ndarray,
    max_length: int,
    stride: int,
    *,
    pack: bool = False,
    eos_id: int | None = None,
    what: str = "corpus",
    shifted_labels: bool = False,
) -> Dataset:
    """A `Dataset` of sliding windows over the token stream `ids`: `input_ids` and `labels` (equal).

    Args:
        ids: The token stream.
        max_length: Tokens per window.
        stride: Step between window starts.
        pack: Add `position_ids` that restart after every `eos_id`.
        eos_id: The document separator.
        what: Names the stream in the too-short error.
        shifted_labels: The book's `(input, target)` rows instead: `input_ids` is
            `ids[s : s + max_length]` and `shift_labels` is `ids[s + 1 : s + max_length + 1]`, so each
            window has `max_length` targets (the model's `shift_labels=` argument takes them unshifted).

    Raises:
        ValueError: Bad window arguments, `pack` with `shifted_labels`, a stream too short for one window.
    """
    check_window_args(max_length, stride)
    if len(ids) <= max_length:
        raise too_short_error(len(ids), max_length, what)
    if shifted_labels:
        if pack:
            raise ValueError("shifted_labels and pack cannot be combined")
        return _windows_table(gather_windows(ids, max_length, stride, width=max_length + 1), None, shifted=True)
    windows = gather_windows(ids, max_length, stride)
    positions = packed_position_ids(windows, eos_id) if pack and eos_id is not None else None
    return _windows_table(windows, positions)


# ----------------------------------------------------------------------------- the path


@dataclass
class InMemorySplits:
    """The windows of each split, with the counts `prepare_lm_datasets` records."""

    windows: dict[str, Dataset]
    tokens: dict[str, int]
    documents: dict[str, int]  # "documents", and "documents_after_dedup" with dedup


def in_memory_splits(
    sources: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any, options: LMOptions
) -> InMemorySplits:
    """Load, split, tokenize (one cached map) and window a corpus in memory.

    Args:
        sources: What `load_documents` reads.
        tokenizer: A transformers tokenizer or a `SimpleTokenizer`; its eos separates documents.
        options: The pipeline's options.

    Raises:
        ValueError: Empty/undecodable files, `pack` with `shifted_labels`, a split too short for one window.
    """
    docs = load_documents(sources, text_field=options.text_field, errors=options.errors)
    documents = {"documents": len(docs)}
    if options.dedup:
        docs = deduplicate_documents(docs)
        documents["documents_after_dedup"] = len(docs)
    docs = docs.filter(_non_empty, batched=True)
    tokd = tokenize_documents(docs, tokenizer, options.split_plan(lambda: _document_lengths(docs)))
    eos_id = separator_id(tokenizer)
    windows, tokens = {}, {}
    for name in options.split_names:
        ids = token_stream(tokd, f"{name}_ids")
        windows[name] = windows_from_tokens(
            ids,
            options.max_length,
            options.stride,
            pack=options.pack,
            eos_id=eos_id,
            what=f"the {name} split",
            shifted_labels=options.shifted_labels,
        )
        tokens[name] = len(ids)
    return InMemorySplits(windows, tokens, documents)
