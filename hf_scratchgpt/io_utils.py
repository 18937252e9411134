"""Atomic output folders: a folder appears under its final name only once it is complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
        raise FileExistsError(f"output folder {out} already exists and is not empty; pass overwrite to replace it")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write output folder {out}: {parent} is not a folder")
    try:  # really try: permission bits say little to root or on read-only file systems
        probe = tempfile.mkdtemp(prefix=".write-probe-", dir=parent)
    except OSError as err:
        raise PermissionError(f"cannot write output folder {out}: {parent} is not writable ({err.strerror})") from None
    os.rmdir(probe)
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it is renamed to `out`.

    On an exception the temporary folder is removed and `out` is left as it was. With `overwrite`,
    an existing `out` is replaced only after the new folder is complete.
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
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
