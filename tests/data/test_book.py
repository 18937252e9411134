"""The book's GPTDatasetV1 / create_dataloader_v1 reproduce SPEC's stage-2 test vectors."""

import pytest
import torch

from hf_scratchgpt.data import GPTDatasetV1, create_dataloader_v1
from hf_scratchgpt.tokenization import SimpleTokenizer

STRIDE1_INPUTS = [
    [40, 367, 2885, 1464],
    [367, 2885, 1464, 1807],
    [2885, 1464, 1807, 3619],
    [1464, 1807, 3619, 402],
    [1807, 3619, 402, 271],
    [3619, 402, 271, 10899],
    [402, 271, 10899, 2138],
    [271, 10899, 2138, 257],
]
STRIDE1_TARGETS = [
    [367, 2885, 1464, 1807],
    [2885, 1464, 1807, 3619],
    [1464, 1807, 3619, 402],
    [1807, 3619, 402, 271],
    [3619, 402, 271, 10899],
    [402, 271, 10899, 2138],
    [271, 10899, 2138, 257],
    [10899, 2138, 257, 7026],
]
STRIDE4_INPUTS = [
    [40, 367, 2885, 1464],
    [1807, 3619, 402, 271],
    [10899, 2138, 257, 7026],
    [15632, 438, 2016, 257],
    [922, 5891, 1576, 438],
    [568, 340, 373, 645],
    [1049, 5975, 284, 502],
    [284, 3285, 326, 11],
]
STRIDE4_TARGETS = [
    [367, 2885, 1464, 1807],
    [3619, 402, 271, 10899],
    [2138, 257, 7026, 15632],
    [438, 2016, 257, 922],
    [5891, 1576, 438, 568],
    [340, 373, 645, 1049],
    [5975, 284, 502, 284],
    [3285, 326, 11, 287],
]


@pytest.fixture(scope="module")
def verdict():
    from ..conftest import SHARED_DATA

    return (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "stride, inputs, targets", [(1, STRIDE1_INPUTS, STRIDE1_TARGETS), (4, STRIDE4_INPUTS, STRIDE4_TARGETS)]
)
def test_spec_vectors_with_default_gpt2_tokenizer(verdict, stride, inputs, targets):
    loader = create_dataloader_v1(verdict, batch_size=8, max_length=4, stride=stride, shuffle=False)
    x, y = next(iter(loader))
    assert x.tolist() == inputs and y.tolist() == targets
    assert x.dtype == torch.long


def test_number_of_windows_is_the_books_formula(verdict, gpt2_tokenizer):
    for max_length, stride in [(4, 1), (256, 256), (256, 128), (10, 17)]:
        ds = GPTDatasetV1(verdict, gpt2_tokenizer, max_length, stride)
        assert len(ds) == len(range(0, 5145 - max_length, stride))
        x, y = ds[len(ds) - 1]
        assert torch.equal(x[1:], y[:-1])


def test_book_chapter5_loader_sizes(verdict, gpt2_tokenizer):
    split = int(0.9 * len(verdict))
    train = create_dataloader_v1(
        verdict[:split],
        batch_size=2,
        max_length=256,
        stride=256,
        drop_last=True,
        shuffle=True,
        tokenizer=gpt2_tokenizer,
    )
    val = create_dataloader_v1(
        verdict[split:],
        batch_size=2,
        max_length=256,
        stride=256,
        drop_last=False,
        shuffle=False,
        tokenizer=gpt2_tokenizer,
    )
    assert (len(train), len(val)) == (9, 1)  # the book's 9 training and 1 validation batches


def test_simple_tokenizer_and_trained_bpe_can_be_passed(verdict, verdict_tokenizer):
    simple = SimpleTokenizer.from_text(verdict)
    ds = GPTDatasetV1(verdict, simple, max_length=8, stride=8)
    assert simple.decode(ds[0][0].tolist()).startswith("I HAD always thought Jack Gisburn")
    assert len(GPTDatasetV1(verdict, verdict_tokenizer, 8, 8)) > 0


def test_too_short_text_says_how_many_tokens(gpt2_tokenizer):
    with pytest.raises(ValueError, match=r"text is too short: it has 4 tokens, .* needs at least 5"):
        GPTDatasetV1("Hello, I am", gpt2_tokenizer, max_length=4, stride=1)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        GPTDatasetV1("Hello, I am here now", gpt2_tokenizer, max_length=2, stride=0)
