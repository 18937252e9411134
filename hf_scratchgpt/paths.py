"""The one rule for "is this a local path or a Hub id?", used by every loader of the package.

A string names a local path when something exists there or when it looks like a path (starts with
`.`, `/` or `~`, holds more than one `/`, a backslash or a glob character, ends in a known file
suffix, or starts with a local folder's name, like `runs/typo`); otherwise, if it has the form of a
Hub repository id (`name` or `owner/name` made of letters, digits, `-`, `_` and `.`), it is a Hub
id. A local-looking path that does not exist is an error that names it, never a Hub request.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?$")
FILE_SUFFIXES = (".txt", ".text", ".md", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".yaml", ".yml", ".pth", ".pt")


def is_hub_id(spec: str | os.PathLike) -> bool:
    """Whether `spec` names a Hub repository rather than a local path (see the module docstring)."""
    if isinstance(spec, os.PathLike):
        return False
    text = str(spec)
    if not text or Path(text).expanduser().exists():
        return False
    if text.startswith((".", "/", "~")) or "\\" in text or any(c in text for c in "*?[") or ".." in text:
        return False
    if text.lower().endswith(FILE_SUFFIXES):
        return False
    if "/" in text and Path(text.split("/")[0]).expanduser().is_dir():  # runs/typo: a path under a local folder
        return False
    return bool(_REPO_ID.match(text))


def local_or_hub(spec: str | os.PathLike, what: str) -> Path | str:
    """`spec` as an existing local `Path`, or as a Hub id (a `str`).

    Args:
        spec: A path or a Hub id.
        what: What it names, for the error message ("tokenizer", "model", ...).

    Raises:
        FileNotFoundError: `spec` is a local path (or not a valid Hub id) and nothing is there.
    """
    if is_hub_id(spec):
        return str(spec)
    path = Path(os.fspath(spec)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {os.fspath(spec)}")
    return path


def model_folder_or_hub(spec: str | os.PathLike) -> Path | str:
    """`spec` as a local model folder (one with a `config.json`) or a Hub id.

    Raises:
        FileNotFoundError: Nothing is there, or the folder holds no `config.json` (a run folder's
            message names its `final/`).
    """
    where = local_or_hub(spec, "model")
    if isinstance(where, Path) and not (where / "config.json").is_file():
        hint = f"; its final model is {where / 'final'}" if (where / "final" / "config.json").is_file() else ""
        raise FileNotFoundError(f"{os.fspath(spec)} is not a model folder (no config.json in it){hint}")
    return where
