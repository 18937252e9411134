"""Language-modelling data (stage 2): documents -> split -> tokens -> sliding windows.

The windows run over the **whole token stream** of a split (documents joined with `<|endoftext|>`),
with the book's starts `range(0, n_tokens - max_length, stride)`, so no token is lost at a map-batch
boundary and the number of windows is the book's. Rows carry `input_ids` and `labels` in the
transformers convention (`labels == input_ids`; the model shifts).

In memory, one batched `Dataset.map` tokenizes every document into its split (cached on disk, keyed
by the documents, the tokenizer's content and the split); the streaming path (`streaming.py`)
yields the very same windows with memory that does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, IterableDataset, interleave_datasets
from datasets.distributed import split_dataset_by_node
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable

from .sources import load_documents
from .tokenize import encode_texts, separator_id, tokenizer_fingerprint

SPLITS = ("characters", "documents")
_MAP_VERSION = "split-tokenize-v1"  # part of the cache key: bump when _tokenize_split_batch changes

# ----------------------------------------------------------------------------- windows


def window_starts(num_tokens: int, max_length: int, stride: int) -> range:
    """The book's window starts: `range(0, num_tokens - max_length, stride)`."""
    return range(0, num_tokens - max_length, stride)


def check_window_args(max_length: int, stride: int) -> None:
    for name, value in (("max_length", max_length), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def too_short_error(num_tokens: int, max_length: int, what: str = "corpus") -> ValueError:
    return ValueError(
        f"{what} is too short: it has {num_tokens} tokens, one window of max_length {max_length} "
        f"needs at least {max_length + 1} (max_length + 1 for the next-token target)"
    )


def gather_windows(ids: np.ndarray, max_length: int, stride: int, width: int | None = None) -> np.ndarray:
    """`(num_windows, width)` array of windows over `ids` (width defaults to `max_length`)."""
    starts = np.asarray(window_starts(len(ids), max_length, stride), dtype=np.int64)
    return ids[starts[:, None] + np.arange(width or max_length)]


def packed_position_ids(window: np.ndarray, eos_id: int) -> np.ndarray:
    """Positions that restart after every separator (and at the window start): packing boundaries."""
    window = np.asarray(window)
    idx = np.arange(window.shape[-1])
    is_start = np.zeros(window.shape, dtype=bool)
    is_start[..., 0] = True
    is_start[..., 1:] = window[..., :-1] == eos_id
    last_start = np.maximum.accumulate(np.where(is_start, idx, 0), axis=-1)
    return idx - last_start


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
    pack: bool = False,
    eos_id: int | None = None,
    what: str = "corpus",
    shifted_labels: bool = False,
) -> Dataset:
    """A `Dataset` of sliding windows over the token stream `ids` (see module docstring).

    With `shifted_labels` the rows are the book's `(input, target)` pairs instead: `input_ids` is
    `ids[s : s + max_length]` and `shift_labels` is `ids[s + 1 : s + max_length + 1]`, so each window
    has `max_length` targets (the model's `shift_labels=` argument takes them unshifted).
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


def iter_windows(token_pieces: Iterable[list[int]], max_length: int, stride: int) -> Iterator[list[int]]:
    """The same windows as `gather_windows`, from a stream of token pieces, keeping < max_length + stride."""
    buf: list[int] = []
    skip = 0  # tokens still to drop when stride jumps past the buffer
    for piece in token_pieces:
        if skip:
            dropped = min(skip, len(piece))
            piece, skip = piece[dropped:], skip - dropped
        buf.extend(piece)
        while len(buf) > max_length:  # a start s is valid while s + max_length < n_tokens
            yield buf[:max_length]
            if stride <= len(buf):
                del buf[:stride]
            else:
                skip, buf = stride - len(buf), []


# ----------------------------------------------------------------------------- documents and splits


def is_validation(index: int, seed: int, val_fraction: float) -> bool:
    """Seeded, order-free choice of the validation documents (by document index)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


@dataclass(frozen=True)
class SplitPlan:
    """Where each document of a corpus goes.

    `mode` is `"none"` (all train), `"characters"` (the book: the first `cut_char` characters of
    document `cut_doc` and everything before it train, the rest validates) or `"documents"`
    (`is_validation`). The first document of each split gets no separator before it.
    """

    mode: str = "none"
    cut_doc: int = 0
    cut_char: int = 0
    seed: int = 0
    val_fraction: float = 0.0
    first_train: int = 0
    first_val: int = -1

    @classmethod
    def by_characters(cls, lengths: np.ndarray, train_fraction: float) -> SplitPlan:
        ends = np.cumsum(lengths)
        split_at = int(train_fraction * int(ends[-1])) if len(ends) else 0
        k = int(np.searchsorted(ends, split_at, side="right"))  # first document not wholly in train
        return cls("characters", cut_doc=k, cut_char=split_at - (int(ends[k - 1]) if k else 0))

    @classmethod
    def by_documents(cls, n_docs: int, val_fraction: float, seed: int) -> SplitPlan:
        val = [is_validation(i, seed, val_fraction) for i in range(n_docs)]
        return cls(
            "documents",
            seed=seed,
            val_fraction=val_fraction,
            first_train=val.index(False) if False in val else -1,
            first_val=val.index(True) if True in val else -1,
        )

    def parts(self, index: int, text: str) -> tuple[str | None, str | None]:
        """`(train text, validation text)` of document `index` (None: not in that split)."""
        if self.mode == "none":
            return text, None
        if self.mode == "documents":
            return (None, text) if is_validation(index, self.seed, self.val_fraction) else (text, None)
        if index < self.cut_doc:
            return text, None
        if index > self.cut_doc:
            return None, text
        return (text[: self.cut_char] or None), text[self.cut_char :]

    def separated(self, index: int, split: str) -> bool:
        """Whether document `index` starts with a separator in `split` (all but the split's first)."""
        if self.mode == "characters":
            return index > 0 if split == "train" else index > self.cut_doc
        if self.mode == "documents":
            return index != (self.first_train if split == "train" else self.first_val)
        return index > 0


def _tokenize_split_batch(batch: dict, indices: list[int], tokenizer: Any, eos_id: int | None, plan: dict) -> pa.Table:
    """Tokenize each document into its split(s); separators go before all but a split's first document."""
    plan = SplitPlan(**plan)
    texts, owners = [], []
    for text, i in zip(batch["text"], indices):
        for split, part in zip(("train", "validation"), plan.parts(i, text)):
            if part is not None:
                texts.append(part)
                owners.append((split, i))
    rows = {"train": [_EMPTY] * len(indices), "validation": [_EMPTY] * len(indices)}
    row_of = {i: r for r, i in enumerate(indices)}
    for (split, i), ids in zip(owners, encode_texts(tokenizer, texts, as_numpy=True)):
        if eos_id is not None and plan.separated(i, split):
            ids = np.concatenate([np.asarray([eos_id], dtype=np.int64), ids])
        rows[split][row_of[i]] = ids
    return pa.table({f"{split}_ids": _list_array(arrays) for split, arrays in rows.items()})


_EMPTY = np.zeros(0, dtype=np.int64)


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    """Arrow list<int64> from numpy arrays, without going through Python ints."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else _EMPTY
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _char_lengths(batch: dict) -> dict:
    return {"n": [len(t) for t in batch["text"]]}


def tokenize_documents(docs: Dataset, tokenizer: Any, plan: SplitPlan | None = None) -> Dataset:
    """One batched `map`: documents -> `train_ids` / `validation_ids` (cached; see module docstring)."""
    plan = plan or SplitPlan()
    eos_id = separator_id(tokenizer)
    key = Hasher.hash([docs._fingerprint, tokenizer_fingerprint(tokenizer), eos_id, asdict(plan), _MAP_VERSION])
    return docs.map(
        _tokenize_split_batch,
        batched=True,
        with_indices=True,
        remove_columns=docs.column_names,
        fn_kwargs={"tokenizer": tokenizer, "eos_id": eos_id, "plan": asdict(plan)},
        new_fingerprint=key,
    )


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


def mixing_probabilities(weights: Iterable[float], alpha: float = 0.7) -> list[float]:
    """Temperature mixing: p(i) proportional to w_i ** alpha (alpha < 1 up-weights small corpora)."""
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


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class LMDatasets:
    """Train/validation windows plus what produced them."""

    train: Dataset | IterableDataset
    validation: Dataset | IterableDataset | None
    provenance: dict = field(default_factory=dict)


def _check_split_args(split_by: str, val_fraction: float) -> None:
    if split_by not in SPLITS:
        raise ValueError(f"split_by must be one of {SPLITS}, got {split_by!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


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
    stride = max_length if stride is None or pack else stride
    check_window_args(max_length, stride)
    _check_split_args(split_by, val_fraction)
    eos_id = separator_id(tokenizer)
    provenance = {
        "sources": [os.fspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)],
        "max_length": max_length,
        "stride": stride,
        "val_fraction": val_fraction,
        "split_by": split_by,
        "seed": seed,
        "pack": pack,
        "dedup": dedup,
        "shifted_labels": shifted_labels,
        "tokenizer": type(tokenizer).__name__,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "vocab_size": len(tokenizer),
    }
    if streaming:
        if shifted_labels:
            raise ValueError("shifted_labels is available for in-memory datasets only (streaming=False)")
        from .streaming import streaming_splits

        train, val = streaming_splits(
            sources,
            tokenizer,
            max_length,
            stride,
            val_fraction,
            split_by,
            seed,
            text_field,
            errors,
            pack,
            dedup,
            eos_id,
        )
        if world_size > 1:
            train = split_dataset_by_node(train, rank=rank, world_size=world_size)
        return LMDatasets(train, val, provenance)

    docs = load_documents(sources, text_field=text_field, errors=errors)
    provenance["documents"] = len(docs)
    if dedup:
        docs = deduplicate_documents(docs)
        provenance["documents_after_dedup"] = len(docs)
    docs = docs.filter(_non_empty, batched=True)
    if val_fraction == 0:
        plan = SplitPlan()
    elif split_by == "characters":
        lengths = docs.map(_char_lengths, batched=True, remove_columns=docs.column_names).with_format("numpy")
        plan = SplitPlan.by_characters(lengths["n"], 1 - val_fraction)
    else:
        plan = SplitPlan.by_documents(len(docs), val_fraction, seed)
    tokd = tokenize_documents(docs, tokenizer, plan)
    out: dict[str, Dataset] = {}
    for name in ("train", "validation") if val_fraction else ("train",):
        ids = token_stream(tokd, f"{name}_ids")
        out[name] = windows_from_tokens(
            ids, max_length, stride, pack, eos_id, what=f"the {name} split", shifted_labels=shifted_labels
        )
        provenance[f"{name}_tokens"] = len(ids)
        provenance[f"{name}_windows"] = len(out[name])
        provenance[f"{name}_sha256"] = content_hash(out[name])
    return LMDatasets(out["train"], out.get("validation"), provenance)
