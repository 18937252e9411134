"""Sliding windows over a token stream: the book's starts, as arrays or from a stream of pieces.

A window starts at every `s` in `range(0, n_tokens - max_length, stride)` (the book's loop), so each
window has a next-token target inside the stream. The in-memory path gathers all windows of an array
at once (`gather_windows`); the streaming path makes the very same windows from token pieces with a
rolling buffer (`iter_windows`). Both give packed rows positions that restart after every separator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def window_starts(num_tokens: int, max_length: int, stride: int) -> range:
    """The book's window starts: `range(0, num_tokens - max_length, stride)`."""
    return range(0, num_tokens - max_length, stride)


def check_window_args(max_length: int, stride: int) -> None:
    """Reject a `max_length` or `stride` that is not a positive integer.

    Raises:
        ValueError: Names the argument and its value.
    """
    for name, value in (("max_length", max_length), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def too_short_error(num_tokens: int, max_length: int, what: str = "corpus") -> ValueError:
    """The error for a token stream too short for one window (says how many tokens it has and needs)."""
    return ValueError(
        f"{what} is too short: it has {num_tokens} tokens, one window of max_length {max_length} "
        f"needs at least {max_length + 1} (max_length + 1 for the next-token target)"
    )


def gather_windows(ids: np.ndarray, max_length: int, stride: int, width: int | None = None) -> np.ndarray:
    """`(num_windows, width)` array of windows over `ids` (width defaults to `max_length`)."""
    starts = np.asarray(window_starts(len(ids), max_length, stride), dtype=np.int64)
    return ids[starts[:, None] + np.arange(width or max_length)]


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


def packed_position_ids(window: np.ndarray, eos_id: int) -> np.ndarray:
    """Positions that restart after every separator (and at the window start): packing boundaries."""
    window = np.asarray(window)
    idx = np.arange(window.shape[-1])
    is_start = np.zeros(window.shape, dtype=bool)
    is_start[..., 0] = True
    is_start[..., 1:] = window[..., :-1] == eos_id
    last_start = np.maximum.accumulate(np.where(is_start, idx, 0), axis=-1)
    return idx - last_start
