"""Chapter 2 of the book: `GPTDatasetV1` and `create_dataloader_v1` (`llms_from_scratch.ch02`).

The book's semantics — windows start at `range(0, len(ids) - max_length, stride)`, the targets are the
inputs shifted by one token — built on the pipeline's window function. `create_dataloader_v1` keeps
the book's signature: without a tokenizer it uses `tiktoken.get_encoding("gpt2")` exactly as the book
does (tiktoken is the optional extra `hf-scratchgpt[book]`; see `hf_scratchgpt.book.use_local_gpt2_files`
to use it offline). The extra keyword `tokenizer=` takes any tokenizer: transformers,
`SimpleTokenizer` or tiktoken.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.windows import check_window_args, gather_windows, too_short_error
from ._common import encode_text


def gpt2_tiktoken() -> Any:
    """`tiktoken.get_encoding("gpt2")`, the book's tokenizer (tiktoken is the optional extra `[book]`)."""
    try:
        import tiktoken
    except ImportError:
        raise ImportError(
            "the book's GPT-2 tokenizer needs tiktoken: pip install 'hf-scratchgpt[book]' (or pass tokenizer=...)"
        ) from None
    return tiktoken.get_encoding("gpt2")


class GPTDatasetV1(Dataset):
    """Sliding windows over one text, as `(input_ids, target_ids)` pairs (the book's dataset).

    Args:
        txt: The text.
        tokenizer: A tiktoken encoding (the book's), a transformers tokenizer or a `SimpleTokenizer`.
        max_length: Tokens per window.
        stride: Step between window starts.
    """

    def __init__(self, txt: str, tokenizer: Any, max_length: int, stride: int) -> None:
        check_window_args(max_length, stride)
        self.tokenizer = tokenizer
        token_ids = np.asarray(encode_text(tokenizer, txt), dtype=np.int64)
        if len(token_ids) <= max_length:  # the book gives an empty dataset here; say why
            warnings.warn(str(too_short_error(len(token_ids), max_length, "text")), stacklevel=2)
        windows = torch.from_numpy(gather_windows(token_ids, max_length, stride, width=max_length + 1))
        self.input_ids = windows[:, :-1]  # (num_windows, max_length)
        self.target_ids = windows[:, 1:]  # the same, shifted by one token

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(
    txt: str,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    *,
    tokenizer: Any = None,
) -> DataLoader:
    """The book's data loader: batches of `(inputs, targets)` from `GPTDatasetV1`.

    Args:
        txt: The text.
        batch_size: Windows per batch.
        max_length: Tokens per window.
        stride: Step between window starts.
        shuffle: Shuffle the windows each epoch (drawing from torch's global RNG, as the book does).
        drop_last: Drop a last, smaller batch.
        num_workers: DataLoader worker processes.
        tokenizer: Any tokenizer; None means the book's `tiktoken.get_encoding("gpt2")`.

    Raises:
        ImportError: No tokenizer given and tiktoken not installed (`pip install 'hf-scratchgpt[book]'`).
    """
    tokenizer = gpt2_tiktoken() if tokenizer is None else tokenizer
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


__all__ = ["GPTDatasetV1", "create_dataloader_v1", "gpt2_tiktoken"]
