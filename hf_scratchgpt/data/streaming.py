"""The streaming path of `prepare_lm_datasets`: the same windows as in memory, bounded memory.

Text files are read piece by piece and tokenized exactly (`tokenize.iter_exact_chunk_tokens`);
records are read one at a time; windows come out of a rolling buffer (`windows.iter_windows`). Each
document, or each piece of the one document a split by characters cuts, goes where the same
`SplitPlan` as in memory says; a split by characters first reads the corpus once to learn its
documents' lengths (one integer per document).
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

from .lm_options import LMOptions
from .sources import SUFFIXES, check_text_file, iter_text_chunks, load_documents, resolve_files
from .splits import TRAIN, VALIDATION, SplitPlan
from .tokenize import iter_exact_chunk_tokens, separator_id
from .windows import iter_windows, packed_position_ids, too_short_error

Documents = Callable[[], Iterator[Iterable[str]]]  # a fresh pass over a corpus, each document in pieces


def _iter_documents(sources: Any, *, text_field: str, errors: str) -> Iterator[Iterable[str]]:
    """Documents as iterables of text pieces: text files piece by piece, records whole (empty ones left out)."""
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


def _source_documents(sources: Any, options: LMOptions) -> Iterator[Iterable[str]]:
    """`_iter_documents`, without exact repeats with `options.dedup` (a repeated document is held whole once)."""
    documents = _iter_documents(sources, text_field=options.text_field, errors=options.errors)
    if not options.dedup:
        yield from documents
        return
    seen: set[str] = set()
    for doc in documents:
        text = "".join(doc)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest not in seen:
            seen.add(digest)
            yield (text,)


def _document_lengths(documents: Documents) -> np.ndarray:
    """Every document's length in characters (one pass over the corpus)."""
    return np.fromiter((sum(map(len, doc)) for doc in documents()), dtype=np.int64)


def _split_tokens(documents: Documents, plan: SplitPlan, split: str, tokenizer: Any) -> Iterator[list[int]]:
    """The token stream of `split` in pieces: its documents' parts, a separator before all but the first."""
    eos_id = separator_id(tokenizer)
    for index, doc in enumerate(documents()):
        if plan.done(index, split):
            return
        if not plan.holds(index, split):
            continue  # the other split's document is never read
        for i, ids in enumerate(iter_exact_chunk_tokens(plan.route(index, doc, split), tokenizer)):
            if i == 0 and eos_id is not None and plan.separated(index, split):
                ids = [eos_id] + ids
            yield ids


def _stream_rows(
    *, documents: Documents, plan: SplitPlan, split: str, tokenizer: Any, options: LMOptions
) -> Iterator[dict]:
    """Generator behind a streaming split: documents -> exact tokens -> windows."""
    count = 0

    def counted() -> Iterator[list[int]]:
        nonlocal count
        for ids in _split_tokens(documents, plan, split, tokenizer):
            count += len(ids)
            yield ids

    eos_id = separator_id(tokenizer)
    produced = False
    for window in iter_windows(counted(), options.max_length, options.stride):
        produced = True
        row = {"input_ids": window, "labels": window}
        if options.pack and eos_id is not None:
            row["position_ids"] = packed_position_ids(np.asarray(window), eos_id).tolist()
        yield row
    if not produced:
        raise too_short_error(count, options.max_length, f"the {split} split")


def streaming_splits(
    sources: Any, tokenizer: Any, options: LMOptions
) -> tuple[IterableDataset, IterableDataset | None]:
    """Train and validation windows as `IterableDataset`s (validation None when `val_fraction` is 0).

    Args:
        sources: What `load_documents` reads.
        tokenizer: A transformers tokenizer or a `SimpleTokenizer`; its eos separates documents.
        options: The pipeline's options (`shifted_labels` is not read: rows carry `labels`).

    Raises:
        ValueError: Empty/undecodable files, a split too short for one window: when the data are read
            (for a split by characters, the files are checked here, where the documents are measured).
    """
    documents = partial(_source_documents, sources, options)
    plan = options.split_plan(partial(_document_lengths, documents))
    out = {
        name: IterableDataset.from_generator(
            partial(_stream_rows, documents=documents, plan=plan, split=name, tokenizer=tokenizer, options=options)
        )
        for name in options.split_names
    }
    return out[TRAIN], out.get(VALIDATION)
