"""The book's chapter-5 training run, on `hf_scratchgpt.book`: a check that the package reproduces the book's numbers.

It is the chapter's code with the import lines changed: `torch.manual_seed(123)` before the data
loaders and again before the model, `create_dataloader_v1` (tiktoken's GPT-2 encoding, read offline
with `use_local_gpt2_files`) on a 90/10 character split (batch 2, 256/256), `GPTModel(GPT_CONFIG_124M)`
with a context of 256, AdamW lr 4e-4 / weight decay 0.1, and `train_model_simple` for 10 epochs,
evaluating every 5 steps on 5 batches. Seen here (CPU, torch 2.13, `--fast`): every printed pair equals
the book's, from "Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933" to "Ep 10 (Step 000085): Train loss
0.391, Val loss 6.452". About 7 minutes on 2 CPU cores with `--fast` (`GPTModelFast`, the same weights
on the SDPA path); the readable `GPTModel` path is about 3x slower on CPU.

Usage: python benchmarks/book_ch05_reference.py [--shared-data ../shared/data] [--fast]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tiktoken
import torch

from hf_scratchgpt.book import use_local_gpt2_files
from hf_scratchgpt.book.ch02 import create_dataloader_v1
from hf_scratchgpt.book.ch04 import GPTModel, GPTModelFast
from hf_scratchgpt.book.ch05 import train_model_simple

HERE = Path(__file__).resolve().parent
GPT_CONFIG_124M = {
    "vocab_size": 50257,
    "context_length": 256,  # the book's shortened context for chapter 5
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--fast", action="store_true", help="GPTModelFast (SDPA) instead of GPTModel")
    args = parser.parse_args()

    use_local_gpt2_files(args.shared_data / "gpt2")  # tiktoken.get_encoding("gpt2") without a download
    text_data = (args.shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    split_idx = int(0.90 * len(text_data))
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(
        text_data[:split_idx], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True, num_workers=0
    )
    val_loader = create_dataloader_v1(
        text_data[split_idx:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False, num_workers=0
    )
    torch.manual_seed(123)
    model = (GPTModelFast if args.fast else GPTModel)(GPT_CONFIG_124M)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_model_simple(
        model,
        train_loader,
        val_loader,
        optimizer,
        torch.device("cpu"),
        num_epochs=10,
        eval_freq=5,
        eval_iter=5,
        start_context="Every effort moves you",
        tokenizer=tiktoken.get_encoding("gpt2"),
    )


if __name__ == "__main__":
    main()
