"""Chapter 2: GPTDatasetV1 / create_dataloader_v1 reproduce SPEC's stage-2 test vectors, with tiktoken
(the book's default) and this package's tokenizers; tiktoken offline; a clear error without it."""

import os
import sys

import pytest
import tiktoken
import torch

from hf_scratchgpt.book import TIKTOKEN_GPT2_URLS, use_local_gpt2_files
from hf_scratchgpt.book.ch02 import GPTDatasetV1, create_dataloader_v1
from hf_scratchgpt.tokenization import SimpleTokenizer

from ..conftest import SHARED_DATA

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
    return (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "stride, inputs, targets", [(1, STRIDE1_INPUTS, STRIDE1_TARGETS), (4, STRIDE4_INPUTS, STRIDE4_TARGETS)]
)
def test_spec_vectors_with_the_books_tiktoken_and_with_a_transformers_tokenizer(
    verdict, gpt2_tokenizer, stride, inputs, targets
):
    for tokenizer in (None, gpt2_tokenizer):  # None: the book's tiktoken.get_encoding("gpt2")
        loader = create_dataloader_v1(
            verdict, batch_size=8, max_length=4, stride=stride, shuffle=False, tokenizer=tokenizer
        )
        x, y = next(iter(loader))
        assert x.tolist() == inputs and y.tolist() == targets
        assert x.dtype == torch.long
    assert type(loader.dataset.tokenizer).__name__ == type(gpt2_tokenizer).__name__


def test_endoftext_is_one_special_token_for_both_tokenizers(gpt2_tokenizer):
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
    books = GPTDatasetV1(text, tiktoken.get_encoding("gpt2"), max_length=4, stride=4)
    ours = GPTDatasetV1(text, gpt2_tokenizer, max_length=4, stride=4)
    assert torch.equal(books.input_ids, ours.input_ids) and 50256 in books.input_ids


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


def test_too_short_text_is_empty_as_in_the_book_and_says_how_many_tokens(gpt2_tokenizer):
    with pytest.warns(UserWarning, match=r"text is too short: it has 4 tokens, .* needs at least 5"):
        assert len(GPTDatasetV1("Hello, I am", gpt2_tokenizer, max_length=4, stride=1)) == 0
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        GPTDatasetV1("Hello, I am here now", gpt2_tokenizer, max_length=2, stride=0)


def test_without_tiktoken_one_line_names_the_extra(verdict, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # `import tiktoken` now fails
    with pytest.raises(ImportError) as err:
        create_dataloader_v1(verdict, max_length=4, stride=4)
    assert "pip install 'hf-scratchgpt[book]'" in str(err.value) and "\n" not in str(err.value)


def test_use_local_gpt2_files_seeds_tiktokens_cache(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # restored after the test
    cache = use_local_gpt2_files(SHARED_DATA / "gpt2", tmp_path / "cache")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(cache) == str(tmp_path / "cache")
    for name, url in TIKTOKEN_GPT2_URLS.items():
        seeded = cache / hashlib.sha1(url.encode()).hexdigest()
        assert seeded.read_bytes() == (SHARED_DATA / "gpt2" / name).read_bytes()
    assert use_local_gpt2_files(SHARED_DATA / "gpt2", cache) == cache  # again: nothing to do
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        use_local_gpt2_files(tmp_path, tmp_path / "other")
