"""Language-modelling data (stage 2): documents -> split -> tokens -> sliding windows.

The windows run over the **whole token stream** of a split (documents joined with `<|endoftext|>`),
with the book's starts `range(0, n_tokens - max_length, stride)`, so no token is lost at a map-batch
boundary and the number of windows is the book's. Rows carry `input_ids` and `labels` in the
transformers convention (`labels == input_ids`; the model shifts).

The in-memory path tokenizes with a cached, batched `Dataset.map`; the streaming path reads files in
pieces and tokenizes them exactly as a whole (cutting only at pre-token boundaries), so it yields the
very same windows with memory that does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, IterableDataset, concatenate_datasets, interleave_datasets
from datasets.distributed import split_dataset_by_node
from datasets.table import InMemoryTable

from .sources import SUFFIXES, iter_text_chunks, load_documents, resolve_files

SPLITS = ("characters", "documents")


# ----------------------------------------------------------------------------- tokenizing


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without added special tokens (transformers tokenizers or `SimpleTokenizer`)."""
    if hasattr(tokenizer, "backend_tokenizer"):
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return tokenizer.encode(text)


def separator_id(tokenizer: Any) -> int | None:
    """The document separator: the tokenizer's eos (`<|endoftext|>`), if it has one."""
    return getattr(tokenizer, "eos_token_id", None)


def _tokenize_batch(batch: dict, indices: list[int], tokenizer: Any, eos_id: int | None) -> dict:
    """Tokenize documents; every document but a split's first starts with the separator."""
    texts = batch["text"]
    if hasattr(tokenizer, "backend_tokenizer"):
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    else:
        ids = [tokenizer.encode(t) for t in texts]
    if eos_id is not None:
        ids = [([eos_id] + x if i > 0 else x) for x, i in zip(ids, indices)]
    return {"input_ids": ids}


def tokenize_documents(docs: Dataset | IterableDataset, tokenizer: Any) -> Dataset | IterableDataset:
    """Batched (and, for a `Dataset`, cached) `map` from `text` to `input_ids`."""
    return docs.map(
        _tokenize_batch,
        batched=True,
        with_indices=True,
        remove_columns=["text"],
        fn_kwargs={"tokenizer": tokenizer, "eos_id": separator_id(tokenizer)},
    )


def iter_exact_chunk_tokens(chunks: Iterable[str], tokenizer: Any) -> Iterator[list[int]]:
    """Tokenize a text that arrives in pieces, giving exactly the ids of the joined text.

    BPE merges never cross pre-token boundaries, so each piece is cut before its last two
    pre-tokens (whose extent may depend on text still to come) and the rest carried over.
    Tokenizers without a pre-tokenizer, or with a normalizer, get the text joined whole.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = backend.pre_tokenizer if backend is not None else None
    if pre is None or backend.normalizer is not None:
        yield encode(tokenizer, "".join(chunks))
        return
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = _stable_cut(pre, text)
        if cut is None:
            carry = text
            continue
        yield encode(tokenizer, text[:cut])
        carry = text[cut:]
    if carry:
        yield encode(tokenizer, carry)


def _stable_cut(pre: Any, text: str) -> int | None:
    """A pre-token boundary of `text` before which `text[:cut]` pre-tokenizes as inside `text`.

    The last pre-tokens may change with text still to come, and cutting can change the one before
    the cut (a regex lookahead: "\\n\\n" before a word splits in two, at the end it stays whole), so
    candidates are checked by pre-tokenizing the few pieces before them again.
    """
    pieces = pre.pre_tokenize_str(text)
    for back in range(2, min(len(pieces), 8)):
        cut = pieces[-back][1][0]
        first = max(0, len(pieces) - back - 4)
        lo = pieces[first][1][0]
        want = [(s - lo, e - lo) for _, (s, e) in pieces[first:-back]]
        if [offsets for _, offsets in pre.pre_tokenize_str(text[lo:cut])] == want and cut > 0:
            return cut
    return None


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


def token_stream(tokd: Dataset) -> np.ndarray:
    """The split's whole token stream as one int64 array (respects selections and shuffles)."""
    parts = [
        table.column("input_ids").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        for table in tokd.with_format("arrow").iter(batch_size=10_000)
    ]
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, dtype=np.int64)


def _windows_table(windows: np.ndarray, position_ids: np.ndarray | None) -> Dataset:
    width = windows.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(windows.reshape(-1), pa.int64()), width)
    columns = {"input_ids": column, "labels": column}
    if position_ids is not None:
        columns["position_ids"] = pa.FixedSizeListArray.from_arrays(
            pa.array(position_ids.reshape(-1), pa.int64()), width
        )
    return Dataset(InMemoryTable(pa.table(columns)))


def windows_from_tokens(
    ids: np.ndarray, max_length: int, stride: int, pack: bool = False, eos_id: int | None = None, what: str = "corpus"
) -> Dataset:
    """A `Dataset` of sliding windows over the token stream `ids` (see module docstring)."""
    check_window_args(max_length, stride)
    if len(ids) <= max_length:
        raise too_short_error(len(ids), max_length, what)
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


def _unit(index: int, seed: int) -> float:
    """A seeded, order-free number in [0, 1) for document `index`."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _doc_in_split(batch: dict, indices: list[int], seed: int, val_fraction: float, want_val: bool) -> list[bool]:
    return [(_unit(i, seed) < val_fraction) == want_val for i in indices]


def split_documents(docs: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded split by documents: each document goes to validation with probability `val_fraction`."""
    kwargs = {"seed": seed, "val_fraction": val_fraction}
    train = docs.filter(_doc_in_split, batched=True, with_indices=True, fn_kwargs={**kwargs, "want_val": False})
    val = docs.filter(_doc_in_split, batched=True, with_indices=True, fn_kwargs={**kwargs, "want_val": True})
    return train, val


def split_characters(docs: Dataset, train_fraction: float) -> tuple[Dataset, Dataset]:
    """The book's split: the first `train_fraction` of all characters train, the rest validate.

    The document holding the split point is cut in two.
    """
    lengths = np.fromiter((len(t) for t in docs["text"]), dtype=np.int64, count=len(docs))
    split_at = int(train_fraction * int(lengths.sum()))
    ends = np.cumsum(lengths)
    k = int(np.searchsorted(ends, split_at, side="right"))  # first document not wholly in train
    head_parts, tail_parts = ([docs.select(range(k))] if k else []), []
    if k < len(docs):
        text = docs[k]["text"]
        cut = split_at - (int(ends[k - 1]) if k else 0)
        if cut:
            head_parts.append(Dataset.from_dict({"text": [text[:cut]]}, features=docs.features))
        tail_parts.append(Dataset.from_dict({"text": [text[cut:]]}, features=docs.features))
        if k + 1 < len(docs):
            tail_parts.append(docs.select(range(k + 1, len(docs))))
    train = concatenate_datasets(head_parts) if head_parts else docs.select([])
    val = concatenate_datasets(tail_parts) if tail_parts else docs.select([])
    return train, val


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
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
    }
    if streaming:
        train, val = _streaming_splits(
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

    docs = load_documents(sources, text_field=text_field, errors=errors).filter(_non_empty, batched=True)
    provenance["documents"] = len(docs)
    if dedup:
        docs = deduplicate_documents(docs)
        provenance["documents_after_dedup"] = len(docs)
    if val_fraction == 0:
        parts = {"train": docs}
    elif split_by == "characters":
        parts = dict(zip(("train", "validation"), split_characters(docs, 1 - val_fraction)))
    else:
        parts = dict(zip(("train", "validation"), split_documents(docs, val_fraction, seed)))
    out: dict[str, Dataset] = {}
    for name, part in parts.items():
        ids = token_stream(tokenize_documents(part, tokenizer))
        out[name] = windows_from_tokens(ids, max_length, stride, pack, eos_id, what=f"the {name} split")
        provenance[f"{name}_tokens"] = len(ids)
        provenance[f"{name}_windows"] = len(out[name])
        provenance[f"{name}_sha256"] = content_hash(out[name])
    return LMDatasets(out["train"], out.get("validation"), provenance)


# ----------------------------------------------------------------------------- streaming


def _iter_documents(sources: Any, text_field: str, errors: str) -> Iterator[Iterable[str]]:
    """Documents as iterables of text pieces: text files piece by piece, records whole."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    files = None
    try:
        files = resolve_files(items)
    except FileNotFoundError:
        if not (len(items) == 1 and not Path(os.fspath(items[0])).exists()):
            raise
    if files is not None and SUFFIXES[files[0].suffix.lower()] == "text":
        load_documents(files, errors=errors, streaming=True)  # validates the files (empty, UTF-8)
        for path in files:
            yield iter_text_chunks(path, errors)
        return
    for row in load_documents(items, text_field=text_field, errors=errors, streaming=True):
        if row["text"]:
            yield (row["text"],)


def _source_documents(sources: Any, text_field: str, errors: str, dedup: bool) -> Iterator[Iterable[str]]:
    """`_iter_documents`, without exact repeats when `dedup` (a repeated document is held whole once)."""
    if not dedup:
        yield from _iter_documents(sources, text_field, errors)
        return
    seen: set[str] = set()
    for doc in _iter_documents(sources, text_field, errors):
        text = "".join(doc)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest not in seen:
            seen.add(digest)
            yield (text,)


def _cut_characters(docs: Iterator[Iterable[str]], split_at: int, want_head: bool) -> Iterator[Iterable[str]]:
    """The documents before (head) or after (tail) character `split_at` of the whole corpus."""
    seen = 0

    def head(doc: Iterable[str]) -> Iterator[str]:
        nonlocal seen
        for piece in doc:
            room = split_at - seen
            if room <= 0:
                return
            yield piece[:room]
            seen += min(len(piece), room)

    def tail(doc: Iterable[str]) -> Iterator[str]:
        nonlocal seen
        for piece in doc:
            start = max(0, split_at - seen)
            seen += len(piece)
            if start < len(piece):
                yield piece[start:]

    for doc in docs:
        if want_head:
            if seen >= split_at:
                return
            yield head(doc)
        else:
            pieces = tail(doc)  # empty for documents wholly before the split point
            first = next(pieces, None)
            if first is not None:
                yield _prepend(first, pieces)


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _stream_rows(
    make_docs: Callable[[], Iterator[Iterable[str]]],
    tokenizer: Any,
    max_length: int,
    stride: int,
    pack: bool,
    eos_id: int | None,
    what: str,
) -> Iterator[dict]:
    """Generator behind a streaming split: documents -> exact tokens -> windows."""
    count = 0

    def pieces() -> Iterator[list[int]]:
        nonlocal count
        for index, doc in enumerate(make_docs()):
            for i, ids in enumerate(iter_exact_chunk_tokens(doc, tokenizer)):
                if i == 0 and index > 0 and eos_id is not None:
                    ids = [eos_id] + ids
                count += len(ids)
                yield ids

    produced = False
    for window in iter_windows(pieces(), max_length, stride):
        produced = True
        row = {"input_ids": window, "labels": window}
        if pack and eos_id is not None:
            row["position_ids"] = packed_position_ids(np.asarray(window), eos_id).tolist()
        yield row
    if not produced:
        raise too_short_error(count, max_length, what)


def _streaming_splits(
    sources, tokenizer, max_length, stride, val_fraction, split_by, seed, text_field, errors, pack, dedup, eos_id
):
    docs = partial(_source_documents, sources, text_field, errors, dedup)
    if val_fraction == 0:
        makers = {"train": docs}
    elif split_by == "characters":
        total = sum(len(p) for d in docs() for p in d)
        split_at = int((1 - val_fraction) * total)
        makers = {
            "train": lambda: _cut_characters(docs(), split_at, True),
            "validation": lambda: _cut_characters(docs(), split_at, False),
        }
    else:

        def by_documents(want_val: bool) -> Iterator[Iterable[str]]:
            for i, doc in enumerate(docs()):
                if (_unit(i, seed) < val_fraction) == want_val:
                    yield doc
                else:
                    for _ in doc:  # drain file readers
                        pass

        makers = {"train": partial(by_documents, False), "validation": partial(by_documents, True)}
    out = {
        name: IterableDataset.from_generator(
            partial(_stream_rows, make, tokenizer, max_length, stride, pack, eos_id, f"the {name} split")
        )
        for name, make in makers.items()
    }
    return out["train"], out.get("validation")
