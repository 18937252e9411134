"""Appendix D: `train_model` (warmup, cosine decay, clipping) matches the book's loop step for step."""

import pytest
import tiktoken
import torch
from llms_from_scratch import appendix_d as book_d
from llms_from_scratch import ch04 as book_ch04

from hf_scratchgpt.book.appendix_d import find_highest_gradient, train_model
from hf_scratchgpt.book.ch02 import create_dataloader_v1
from hf_scratchgpt.book.ch04 import GPTModel

from ..conftest import SHARED_DATA

TINY = {
    "vocab_size": 50257,
    "context_length": 16,
    "emb_dim": 16,
    "n_heads": 2,
    "n_layers": 2,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


def _run(model_class, train, orig_book_version):
    text = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")[:1500]
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(text[:1200], batch_size=4, max_length=16, stride=16)  # 4 batches
    val_loader = create_dataloader_v1(text[1200:], batch_size=4, max_length=16, stride=16, shuffle=False)
    torch.manual_seed(123)
    model = model_class(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    result = train(
        model, train_loader, val_loader, optimizer, "cpu", n_epochs=2, eval_freq=2, eval_iter=2,
        start_context="Every effort moves you", tokenizer=tiktoken.get_encoding("gpt2"), warmup_steps=3,
        initial_lr=1e-4, min_lr=1e-5, orig_book_version=orig_book_version,
    )  # fmt: skip
    return model, result


@pytest.mark.parametrize("orig_book_version", [False, True])
def test_train_model_is_the_books_loop(orig_book_version, capsys):
    mine, (train_losses, val_losses, tokens_seen, lrs) = _run(GPTModel, train_model, orig_book_version)
    ours_printed = capsys.readouterr().out
    theirs, expected = _run(book_ch04.GPTModel, book_d.train_model, orig_book_version)
    assert capsys.readouterr().out == ours_printed  # the same losses and samples, printed the same way
    assert lrs == expected[3] and tokens_seen == expected[2] and len(train_losses) >= 4
    assert train_losses == pytest.approx(expected[0], rel=1e-5) and val_losses == pytest.approx(expected[1], rel=1e-5)
    assert find_highest_gradient(mine) == pytest.approx(book_d.find_highest_gradient(theirs).item(), rel=1e-4)


def test_find_highest_gradient_before_any_backward():
    assert find_highest_gradient(torch.nn.Linear(2, 2)) is None
