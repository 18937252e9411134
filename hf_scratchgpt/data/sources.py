"""Where text comes from: local files, folders and globs, Hub datasets, and built-in offline corpora.

Every source becomes a `datasets` dataset with one document per row in a `text` column:
a `.txt` file is one document (the book reads the-verdict whole), a `.jsonl`/`.json` record, a
`.csv`/`.tsv` row or a `.parquet` row is one document (its text field). Two corpora ship with Python
itself, so the main job needs no download: `builtin` (the pydoc topic pages) and `builtin-docstrings`
(the docstrings of the standard library's modules, classes and functions).
"""

from __future__ import annotations

import ast
import codecs
import glob
import os
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from pydoc_data.topics import topics

from datasets import Dataset, IterableDataset, load_dataset

from ..folders import write_jsonl
from ..paths import is_hub_id

BUILTIN = "builtin"
TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "text"}
TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
SUFFIXES = {**TEXT_SUFFIXES, **TABLE_SUFFIXES}
CHUNK_BYTES = 1 << 20  # read size of the streaming text reader


BUILTIN_DOCSTRINGS = "builtin-docstrings"
DOCSTRING_MIN_CHARS = 200  # shorter ones are mostly one-liners or signatures
# test code, third-party packages, and the GUI and tool packages (IDLE, tkinter, 2to3) rather than library docs
_NOT_DOCUMENTATION = {"test", "tests", "idle_test", "site-packages", "idlelib", "tkinter", "lib2to3"}


def _built_once(name: str, records: Callable[[], Iterable[dict]]) -> Path:
    """`HF_HOME/hf_scratchgpt/NAME-pyX.Y.jsonl`, written once (atomically) from `records()`."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    path = home / "hf_scratchgpt" / f"{name}-py{sys.version_info.major}.{sys.version_info.minor}.jsonl"
    if not path.is_file():
        write_jsonl(path, records())
    return path


def builtin_corpus_file() -> Path:
    """The built-in corpus: CPython's pydoc topic pages (about 0.45 MB of English), written once as JSONL.

    It ships with Python itself (`pydoc_data.topics`), so the main job runs with no download.
    """
    return _built_once("pydoc-topics", lambda: ({"text": topics[k].strip(), "topic": k} for k in sorted(topics)))


def stdlib_docstrings() -> Iterator[dict]:
    """The docstrings of the standard library (modules, classes, functions): tests, IDLE, tkinter and 2to3 left out.

    Files in sorted order, nodes in `ast.walk` order; each distinct docstring of at least
    `DOCSTRING_MIN_CHARS` characters once, as `{"text", "source"}` (`source`: the file, relative).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if _NOT_DOCUMENTATION & set(relative.parts) or relative.parts[0].startswith("test"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes and the like in old modules
                tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):  # e.g. lib2to3's deliberately broken data files
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= DOCSTRING_MIN_CHARS and doc not in seen:
                    seen.add(doc)
                    yield {"text": doc, "source": relative.as_posix()}


def builtin_docstrings_file() -> Path:
    """The standard library's docstrings (`stdlib_docstrings`, about 1.1 MB), written once as JSONL."""
    return _built_once("stdlib-docstrings", stdlib_docstrings)


BUILTINS: dict[str, Callable[[], Path]] = {BUILTIN: builtin_corpus_file, BUILTIN_DOCSTRINGS: builtin_docstrings_file}


def resolve_files(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (recursively, known suffixes) and glob patterns into a sorted file list.

    Raises:
        FileNotFoundError: A path or pattern matches nothing.
        ValueError: A file has an unsupported suffix, or the files mix kinds (text vs table formats).
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    files: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if text in BUILTINS:
            files.append(BUILTINS[text]())
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {path} holds no {'/'.join(sorted(SUFFIXES))} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"pattern {text!r} matches no files")
            files.extend(found)
        else:
            raise FileNotFoundError(f"data source not found: {text}")
    for path in files:
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(SUFFIXES)}")
    kinds = {SUFFIXES[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise ValueError(f"cannot mix file kinds {sorted(kinds)} in one corpus; load them apart and mix them")
    return files


def check_text_file(path: Path, errors: str = "strict") -> int:
    """Check that `path` is a non-empty UTF-8 file; return its size in bytes.

    Reads in 1 MiB chunks, so memory stays flat for any file size.

    Raises:
        ValueError: The file is empty, or (with `errors="strict"`) a byte sequence is not UTF-8;
            the message names the file and the byte offset.
    """
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: file is empty")
    if errors != "strict":
        return size
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # bytes of the file fed to the decoder so far
    with path.open("rb") as f:
        while True:
            chunk = f.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])  # undecoded bytes carried over from the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}: byte offset {offset - pending + err.start}: not valid UTF-8 ({err.reason}); "
                    f"fix the file or pass errors='replace'"
                ) from None
            if not chunk:
                break
            offset += len(chunk)
    return size


def iter_text_chunks(path: Path, errors: str = "strict", chunk_size: int | None = None) -> Iterator[str]:
    """Decode a UTF-8 file piece by piece (never the whole file at once)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    with path.open("rb") as f:
        while chunk := f.read(chunk_size or CHUNK_BYTES):
            if text := decoder.decode(chunk):
                yield text
        if text := decoder.decode(b"", final=True):
            yield text


def load_documents(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    text_field: str = "text",
    errors: str = "strict",
    streaming: bool = False,
    hub_config: str | None = None,
    hub_split: str = "train",
) -> Dataset | IterableDataset:
    """Load a corpus as documents, one per row, in a `text` column.

    Args:
        sources: Files, folders, glob patterns, `"builtin"` / `"builtin-docstrings"` (the offline corpora), or
            one Hub dataset id (used when it is not a local path; needs the Hub to be reachable).
        text_field: Field/column holding the text in JSON, CSV and Parquet files (and Hub datasets).
        errors: `"strict"` rejects undecodable bytes (naming file and byte offset); `"replace"`
            substitutes U+FFFD.
        streaming: Return an `IterableDataset` that reads lazily.
        hub_config: Configuration name of a Hub dataset.
        hub_split: Split of a Hub dataset.

    Raises:
        FileNotFoundError: Nothing at a path.
        ValueError: An empty or undecodable file, a missing text field (with the record index).
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise ValueError("no data sources given")
    if len(items) == 1 and items[0] not in BUILTINS and is_hub_id(items[0]):
        try:
            ds = load_dataset(os.fspath(items[0]), hub_config, split=hub_split, streaming=streaming)
        except OSError as err:  # offline, or no such dataset
            raise FileNotFoundError(
                f"data source not found: {items[0]} is no local path, and as a Hub dataset id: {err}"
            ) from None
        return _select_text(ds, text_field, os.fspath(items[0]))
    files = resolve_files(items)
    kind = SUFFIXES[files[0].suffix.lower()]
    for path in files:
        if kind == "text":
            check_text_file(path, errors)
        elif path.stat().st_size == 0:
            raise ValueError(f"{path}: file is empty")
    data_files = [os.fspath(p) for p in files]
    if kind == "text":
        ds = load_dataset(
            "text",
            data_files=data_files,
            sample_by="document",
            encoding_errors=errors,
            split="train",
            streaming=streaming,
        )
        return ds
    kwargs = {"delimiter": "\t"} if all(p.suffix.lower() == ".tsv" for p in files) else {}
    ds = load_dataset(kind, data_files=data_files, split="train", streaming=streaming, **kwargs)
    return _select_text(ds, text_field, ", ".join(data_files))


def _select_text(ds: Dataset | IterableDataset, text_field: str, where: str) -> Dataset | IterableDataset:
    columns = ds.column_names
    if columns is not None and text_field not in columns:
        raise ValueError(f"{where}: no text field {text_field!r}; the columns are {columns}")
    if text_field != "text":
        if columns is not None and "text" in columns:
            ds = ds.remove_columns(["text"])
        ds = ds.rename_column(text_field, "text")
    keep = [c for c in (ds.column_names or []) if c != "text"]
    if keep:
        ds = ds.remove_columns(keep)
    return ds.map(_check_text_rows, batched=True, with_indices=True, fn_kwargs={"where": where})


def _check_text_rows(batch: dict, indices: list[int], where: str) -> dict:
    """Reject rows whose text is missing or not a string (the record index says which)."""
    for text, index in zip(batch["text"], indices):
        if not isinstance(text, str):
            raise ValueError(f"{where}: record {index}: field 'text' must be a string, got {type(text).__name__}")
    return batch
