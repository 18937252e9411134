"""The encoding engines of `encode_texts`: tiktoken for GPT-2's vocabulary, `tokenizers` otherwise, same ids."""

import json
import sys

import pytest
from tokenizers import AddedToken

from hf_scratchgpt.data import tokenize
from hf_scratchgpt.data.sources import builtin_corpus_file
from hf_scratchgpt.data.tokenize import encode_texts, encoding_engine, tiktoken_engine
from hf_scratchgpt.tokenization import load_gpt2_tokenizer

pytest.importorskip("tiktoken")

TRICKY = (
    "Mixed: it's we'll they've I'd 12345 3.14159 ünïcödé 日本語 🤖 emoji\u200b zero-width, "
    "tabs\tand  double  spaces,\n\n\nblank lines   \n trailing   "
)


def _real_texts(shared_data) -> list[str]:
    """Varied real documents, each long enough (> TIKTOKEN_MIN_CHARS on average) to take the tiktoken path."""
    records = json.loads((shared_data / "instruction-data.json").read_text(encoding="utf-8"))
    joined = "\n\n".join(f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in records)
    sms = (shared_data / "SMSSpamCollection").read_text(encoding="utf-8", errors="replace")
    topics = [json.loads(line)["text"] for line in builtin_corpus_file().read_text(encoding="utf-8").splitlines()]
    return [
        (shared_data / "the-verdict.txt").read_text(encoding="utf-8"),
        joined,
        sms,
        *topics,
        TRICKY * 20,
        "first<|endoftext|>second <|endoftext|> third<|endoftext|><|endoftext|>" * 30,
    ]


def _hf_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def test_gpt2_vocabulary_is_encoded_by_tiktoken_with_the_same_ids(shared_data, gpt2_tokenizer):
    engine = tiktoken_engine(gpt2_tokenizer)
    assert engine is not None and engine.n_vocab == len(gpt2_tokenizer)
    texts = _real_texts(shared_data)
    assert sum(map(len, texts)) >= tokenize.TIKTOKEN_MIN_CHARS * len(texts)  # the tiktoken path is taken
    assert encoding_engine(gpt2_tokenizer, texts) == "tiktoken"
    assert encoding_engine(gpt2_tokenizer, texts, engine="tokenizers") == "tokenizers"
    ours = encode_texts(gpt2_tokenizer, texts)
    assert ours == _hf_ids(gpt2_tokenizer, texts)
    assert ours == encode_texts(gpt2_tokenizer, texts, engine="tokenizers")
    assert sum(map(len, ours)) > 300_000  # ids compared: the shared data and the pydoc topics
    assert ours[-1][1] == gpt2_tokenizer.eos_token_id  # an end-of-text in the text is the special token, as in HF
    as_numpy = encode_texts(gpt2_tokenizer, texts[:3], as_numpy=True)
    assert [a.tolist() for a in as_numpy] == ours[:3] and as_numpy[0].dtype.name == "int64"


def test_short_texts_and_empty_texts_keep_their_ids(gpt2_tokenizer):
    texts = ["Hi", "", " ", "a<|endoftext|>b", TRICKY[:40]]
    assert encoding_engine(gpt2_tokenizer, texts) == "tokenizers"  # short texts: the faster library there
    assert encode_texts(gpt2_tokenizer, texts) == _hf_ids(gpt2_tokenizer, texts)
    assert encode_texts(gpt2_tokenizer, ["", TRICKY * 5]) == _hf_ids(gpt2_tokenizer, ["", TRICKY * 5])


def test_trained_vocabularies_keep_the_tokenizers_engine(shared_data, verdict_tokenizer):
    # merges numbered after the special tokens: merge rank and token id differ, so no tiktoken engine
    assert tiktoken_engine(verdict_tokenizer) is None
    assert encoding_engine(verdict_tokenizer, ["x" * 1000]) == "tokenizers"
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    assert encode_texts(verdict_tokenizer, [text]) == _hf_ids(verdict_tokenizer, [text])


def test_added_tokens_rebuild_the_engine_and_match_as_in_tokenizers(shared_data):
    tok = load_gpt2_tokenizer(shared_data / "gpt2")
    first = tiktoken_engine(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>"]})
    tok.add_tokens(["scratchgptword"])
    second = tiktoken_engine(tok)
    assert second is not None and second is not first and second.n_vocab == len(tok)
    text = ("<|user|> says scratchgptword twice:scratchgptword<|user|><|endoftext|> " + TRICKY) * 10
    assert encode_texts(tok, [text]) == _hf_ids(tok, [text])
    assert tiktoken_engine(tok) is second  # built once per state


def test_added_token_with_strip_rules_or_no_tiktoken_means_no_engine(shared_data, monkeypatch):
    tok = load_gpt2_tokenizer(shared_data / "gpt2")
    tok.add_tokens([AddedToken("<mark>", lstrip=True)])
    assert tiktoken_engine(tok) is None
    text = ("a <mark> b " + TRICKY) * 10
    assert encode_texts(tok, [text]) == _hf_ids(tok, [text])

    plain = load_gpt2_tokenizer(shared_data / "gpt2")
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # `import tiktoken` fails as when it is not installed
    assert tiktoken_engine(plain) is None
    assert encode_texts(plain, [TRICKY * 10]) == _hf_ids(plain, [TRICKY * 10])


def test_engine_threads_follow_the_tokenizers_settings(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    assert tokenize._encode_threads() == 1
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")
    monkeypatch.setenv("RAYON_NUM_THREADS", "3")
    assert tokenize._encode_threads() == 3


def test_unknown_engine_is_refused(gpt2_tokenizer):
    with pytest.raises(ValueError, match="engine must be 'auto' or 'tokenizers', got 'fast'"):
        encode_texts(gpt2_tokenizer, ["x"], engine="fast")


def test_an_added_token_with_a_space_is_never_cut(shared_data):
    tok = load_gpt2_tokenizer(shared_data / "gpt2")
    tok.add_tokens(["foo bar"])
    text = "y" * (tokenize.PIECE_CHARS + 2) + "foo bar" + " z" * 100  # the first safe space is inside the token
    whole = _hf_ids(tok, [text])[0]
    assert len(tok) - 1 in whole
    assert encode_texts(tok, [text]) == [whole]
    chunks = [text[i : i + 1000] for i in range(0, len(text), 1000)]
    assert [t for ids in tokenize.iter_exact_chunk_tokens(chunks, tok) for t in ids] == whole


def test_one_string_is_not_taken_for_a_list(gpt2_tokenizer):
    with pytest.raises(TypeError, match="texts must be a list of strings, got one str"):
        encode_texts(gpt2_tokenizer, "a single string")


def test_a_tokenizer_that_is_not_byte_level_is_called_as_it_is(shared_data):
    from hf_scratchgpt.tokenization import SimpleTokenizer

    simple = SimpleTokenizer.from_text((shared_data / "the-verdict.txt").read_text(encoding="utf-8"))
    assert encoding_engine(simple, ["I HAD always thought"]) == "tokenizer"
    assert encode_texts(simple, ["I HAD always thought"]) == [simple.encode("I HAD always thought")]
