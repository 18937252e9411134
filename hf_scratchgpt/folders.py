"""Output folders: the one writer of a Hugging Face model folder, and atomic folders in general.

Every verb that writes a model writes it with `write_model_folder` (or, inside a checkpoint that is
itself written atomically, `save_model_files`): config.json, model.safetensors,
generation_config.json, the remote code of `hf_scratchgpt/model/` (for ScratchGPT models), the
tokenizer (told the model's context length) and a README.md model card. A folder appears under its
final name only once it is complete; a failure leaves the previous state untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .cards import model_card


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any work) if `out` cannot be written.

    Raises:
        FileExistsError: `out` exists, is not empty and `overwrite` is False.
        NotADirectoryError: `out` exists and is a file.
        PermissionError: the parent folder is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {out} already exists and is not empty; pass --overwrite (overwrite=True) to replace it"
        )
    _check_writable_parent(out, "output folder")
    return out


def _check_writable_parent(out: Path, what: str) -> None:
    """Raise unless the nearest existing ancestor of `out` is a folder this process can create files in."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {what} {out}: {parent} is not a folder")
    try:  # really try: permission bits say little to root or on read-only file systems
        probe = tempfile.mkdtemp(prefix=".write-probe-", dir=parent)
    except OSError as err:
        raise PermissionError(f"cannot write {what} {out}: {parent} is not writable ({err.strerror})") from None
    os.rmdir(probe)


def _ordinary_mode(path: Path, mode: int) -> None:
    """Give `path` the permissions a new file or folder gets under the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it is renamed to `out`.

    On an exception the temporary folder is removed and `out` is left as it was. With `overwrite`,
    an existing `out` is replaced only after the new folder is complete.
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    _ordinary_mode(tmp, 0o777)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def destination(folder: str | os.PathLike) -> Path:
    """Where a folder being written ends up: `.NAME.tmp-*` (atomic_output_dir) or `.NAME.partial` (a checkpoint)
    becomes NAME beside it; any other folder is its own destination."""
    folder = Path(folder)
    found = re.fullmatch(r"\.(.+?)\.(tmp-.*|partial)", folder.name)
    return folder.with_name(found.group(1)) if found else folder


def check_output_file(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any work) if the file `out` cannot be written.

    Raises:
        FileExistsError: `out` exists and `overwrite` is False.
        IsADirectoryError: `out` is a folder.
        PermissionError: the folder it goes in is not writable.
    """
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"output path {out} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise FileExistsError(f"output file {out} already exists; pass --overwrite (overwrite=True) to replace it")
    _check_writable_parent(out, "output file")
    return out


@contextlib.contextmanager
def atomic_output_file(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling file to write into; on success it is renamed to `out`.

    On an exception the temporary file is removed and `out` is left as it was, so a reader never
    sees a partial file under the final name.
    """
    out = check_output_file(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    _ordinary_mode(tmp, 0o666)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def write_jsonl(out: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line to `out` (replacing it), atomically; returns the path."""
    with atomic_output_file(out, overwrite=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(out)


def save_model_files(
    folder: str | os.PathLike,
    model: Any,
    tokenizer: Any = None,
    *,
    is_main_process: bool = True,
    save_function: Any = None,
) -> None:
    """Write the model (weights, config, generation config, remote code) and its tokenizer into `folder`.

    The saved tokenizer's `model_max_length` is the model's context length, so a loaded tokenizer
    knows how long an input may be; the caller's tokenizer object is left as it was. Under several
    processes every one calls this (the weights are gathered); only the main process writes files.
    """
    kwargs = {"is_main_process": is_main_process}
    if save_function is not None:
        kwargs["save_function"] = save_function
    model.save_pretrained(folder, **kwargs)
    if is_main_process:
        for weights in Path(folder).glob("*.safetensors"):
            _ordinary_mode(weights, 0o666)  # safetensors writes its files private (0600), unlike every other file
    if tokenizer is not None and is_main_process:
        context = getattr(model.config, "max_position_embeddings", None)
        before = tokenizer.model_max_length
        try:
            if context is not None:
                tokenizer.model_max_length = context
            tokenizer.save_pretrained(folder)
        finally:
            tokenizer.model_max_length = before


def write_model_folder(
    out: str | os.PathLike,
    model: Any,
    tokenizer: Any = None,
    *,
    command: str,
    template: str = "model",
    card_fields: dict[str, Any] | None = None,
    card_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    extras: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete model folder at `out`, atomically, with a card rendered from `model_cards/<template>.md`.

    Args:
        out: The folder to write.
        model: A transformers model (ScratchGPT or any other).
        tokenizer: Its tokenizer, or None.
        command: The `scratchgpt` verb that made it (for the card).
        template: Card template name.
        card_fields: Values of the template's own placeholders (the standard ones are filled in).
        card_meta: The card header's keywords of `cards.card_data` (license, base_model, datasets, results).
        overwrite: Replace an existing, non-empty `out`.
        extras: Writes further files into the folder before it is complete (called with the folder
            being written), e.g. a LoRA adapter or evaluation results.
    """
    with atomic_output_dir(out, overwrite) as tmp:
        save_model_files(tmp, model, tokenizer)
        if extras is not None:
            extras(tmp)
        card = model_card(template, model, out, command, card_meta, **(card_fields or {}))
        (tmp / "README.md").write_text(str(card), encoding="utf-8")
    return Path(out)
