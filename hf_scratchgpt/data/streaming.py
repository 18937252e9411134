"""The streaming path of `prepare_lm_datasets`: the same windows as in memory, bounded memory.

Text files are read piece by piece and tokenized exactly (`tokenize.iter_exact_chunk_tokens`);
records are read one at a time; windows come out of a rolling buffer (`lm.iter_windows`). Splits
make the same decisions as the in-memory `SplitPlan`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from datasets import IterableDataset

from .lm import is_validation, iter_windows, packed_position_ids, too_short_error
from .sources import SUFFIXES, check_text_file, iter_text_chunks, load_documents, resolve_files
from .tokenize import iter_exact_chunk_tokens


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
        for path in files:
            check_text_file(path, errors)  # empty or undecodable: an error before any window
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


def streaming_splits(
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
                if is_validation(i, seed, val_fraction) == want_val:
                    yield doc  # the other split's documents are never read

        makers = {"train": partial(by_documents, False), "validation": partial(by_documents, True)}
    out = {
        name: IterableDataset.from_generator(
            partial(_stream_rows, make, tokenizer, max_length, stride, pack, eos_id, f"the {name} split")
        )
        for name, make in makers.items()
    }
    return out["train"], out.get("validation")
