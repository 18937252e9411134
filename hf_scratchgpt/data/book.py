"""The book's data API (chapter 2.6): `GPTDatasetV1` and `create_dataloader_v1`.

Same semantics as the book — windows start at `range(0, len(ids) - max_length, stride)`, targets are
the inputs shifted by one token — built on the pipeline's window function. Any transformers
tokenizer or a `SimpleTokenizer` may be passed; `None` means GPT-2's tokenizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..tokenization import gpt2_tokenizer
from .lm import check_window_args, gather_windows, too_short_error
from .tokenize import encode


class GPTDatasetV1(Dataset):
    """Sliding windows over one text, as `(input_ids, target_ids)` pairs (the book's dataset).

    Args:
        txt: The text.
        tokenizer: Any tokenizer with `encode` (transformers, `SimpleTokenizer`, tiktoken-like).
        max_length: Tokens per window.
        stride: Step between window starts.
    """

    def __init__(self, txt: str, tokenizer: Any, max_length: int, stride: int) -> None:
        check_window_args(max_length, stride)
        token_ids = np.asarray(encode(tokenizer, txt), dtype=np.int64)
        if len(token_ids) <= max_length:
            raise too_short_error(len(token_ids), max_length, "text")
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
    tokenizer: Any = None,
) -> DataLoader:
    """The book's data loader: batches of `(inputs, targets)` from `GPTDatasetV1`.

    Args:
        txt: The text.
        batch_size: Windows per batch.
        max_length: Tokens per window.
        stride: Step between window starts.
        shuffle: Shuffle the windows each epoch.
        drop_last: Drop a last, smaller batch.
        num_workers: DataLoader worker processes.
        tokenizer: Any tokenizer; None means GPT-2's (see `tokenization.gpt2_tokenizer`).
    """
    tokenizer = gpt2_tokenizer() if tokenizer is None else tokenizer
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)
