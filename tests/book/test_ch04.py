"""Chapter 4: `GPTModel` gives the book's weights and tokens, answers the book's call and transformers' alike,
and saves, generates and takes peft as any ScratchGPT model."""

import json

import peft
import pytest
import tiktoken
import torch
from llms_from_scratch import ch04 as book
from transformers import AutoModelForCausalLM

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.book.ch04 import GPTModel, GPTModelFast, generate_text_simple
from hf_scratchgpt.book.kv_cache import gpt2 as kv_gpt2
from hf_scratchgpt.book.kv_cache.generate import generate_text_simple as generate_text_simple_cached
from hf_scratchgpt.model import REMOTE_CODE_FILES

GPT_CONFIG_124M = {
    "vocab_size": 50257,
    "context_length": 1024,
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}
BOOKS_TOKENS = [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267, 49706, 43231, 47062, 34657]
SMALL = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2}


def _small(cls=GPTModel, seed=0, **changes):
    torch.manual_seed(seed)
    return cls({**SMALL, **changes}).eval()


@pytest.mark.parametrize(
    "model_class, generate", [(GPTModel, generate_text_simple), (kv_gpt2.GPTModel, None)], ids=["ch04", "kv_cache"]
)
def test_chapter4_generation_gives_the_books_tokens(model_class, generate):
    """The book's chapter-4 listing, tokenizer from tiktoken (seeded offline by conftest)."""
    torch.manual_seed(123)
    model = model_class(GPT_CONFIG_124M)
    model.eval()
    tokenizer = tiktoken.get_encoding("gpt2")
    encoded_tensor = torch.tensor(tokenizer.encode("Hello, I am")).unsqueeze(0)
    if generate is None:  # the KV-cache model, generating through its cache
        out = generate_text_simple_cached(model, encoded_tensor, max_new_tokens=10)
    else:
        out = generate(model=model, idx=encoded_tensor, max_new_tokens=10, context_size=1024)
    assert out.tolist() == [BOOKS_TOKENS]


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_weights_equal_the_books_gpt_model_under_the_same_seed(qkv_bias):
    torch.manual_seed(123)
    theirs = book.GPTModel({**SMALL, "qkv_bias": qkv_bias}).eval()
    mine = _small(seed=123, qkv_bias=qkv_bias)
    assert isinstance(mine, ScratchGPTForCausalLM) and mine.config.init_scheme == "book"
    mine_sd = mine.state_dict()
    for key, value in theirs.state_dict().items():
        if not key.endswith(".att.mask"):
            assert torch.equal(mine_sd[key if key.startswith("out_head") else "transformer." + key], value), key
    ids = torch.randint(0, 97, (2, 16))
    assert torch.equal(mine(ids), theirs(ids))  # the book's readable path, bit for bit


def test_fast_model_is_the_same_model_on_the_fast_path():
    mine, fast = _small(), _small(GPTModelFast)
    torch.manual_seed(0)
    theirs = book.GPTModelFast(SMALL).eval()
    assert fast.config._attn_implementation == "sdpa" and mine.config._attn_implementation == "eager"
    for (name, a), b in zip(mine.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), name
    ids = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(fast(ids), mine(ids), atol=1e-5, rtol=0)
    torch.testing.assert_close(fast(ids), theirs(ids), atol=1e-5, rtol=0)  # the book's bonus model, same seed


def test_book_call_gives_logits_keyword_call_gives_the_output_object():
    model = _small()
    ids = torch.randint(0, 97, (2, 5))
    logits = model(ids)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 97)
    out = model(input_ids=ids, use_cache=False)
    assert torch.equal(out.logits, logits)
    assert model(ids, labels=ids).loss is not None  # more than one argument: transformers' call


def test_the_books_attribute_paths_and_a_chapter6_head_swap():
    model = _small()
    for name in ("tok_emb", "pos_emb", "drop_emb", "trf_blocks", "final_norm"):
        assert getattr(model, name) is getattr(model.transformer, name)
    assert model.pos_emb.weight.shape[0] == 16 and len(model.trf_blocks) == 2
    new_norm = type(model.final_norm)(32)
    model.final_norm = new_norm  # set through the book's path: lands in the body
    assert model.transformer.final_norm is new_norm
    assert len(list(model.named_parameters())) == len(set(dict(model.named_parameters())))
    for param in model.parameters():
        param.requires_grad = False
    model.out_head = torch.nn.Linear(32, 2)  # chapter 6: a 2-class head
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    assert model(torch.randint(0, 97, (3, 7))).shape == (3, 7, 2)


@pytest.mark.parametrize("model_class", [GPTModel, GPTModelFast, kv_gpt2.GPTModel], ids=["ch04", "fast", "kv_cache"])
def test_save_pretrained_writes_a_plain_scratchgpt_folder(tmp_path, model_class):
    model = _small(model_class)
    model.save_pretrained(tmp_path)
    assert type(model) is model_class  # back to the book's class after saving
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["ScratchGPTForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_scratchgpt.ScratchGPTForCausalLM"
    assert sorted(p.name for p in tmp_path.glob("*.py")) == sorted(REMOTE_CODE_FILES)  # no book/*.py
    ids = torch.randint(0, 97, (2, 9))
    for kwargs in ({}, {"trust_remote_code": True}):
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager", **kwargs).eval()
        assert type(loaded).__name__ == "ScratchGPTForCausalLM"
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(ids), atol=1e-5, rtol=0)
    assert isinstance(GPTModel.from_pretrained(tmp_path), GPTModel)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_load_state_dict_takes_the_books_checkpoints(tmp_path, qkv_bias):
    for theirs_class, mine_class in ((book.GPTModel, GPTModel), (book.GPTModelFast, GPTModelFast)):
        torch.manual_seed(5)
        theirs = theirs_class({**SMALL, "qkv_bias": qkv_bias}).eval()
        torch.save(theirs.state_dict(), tmp_path / "model.pth")
        mine = _small(mine_class, seed=9, qkv_bias=qkv_bias)
        result = mine.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))
        assert not result.missing_keys and not result.unexpected_keys
        ids = torch.randint(0, 97, (2, 11))
        torch.testing.assert_close(mine(ids), theirs(ids), atol=1e-5, rtol=0)
    mine.load_state_dict(mine.state_dict())  # our own layout still loads


def test_generate_equals_generate_text_simple():
    model = _small()
    ids = torch.randint(0, 97, (1, 4))
    expected = generate_text_simple(model, ids, max_new_tokens=8, context_size=16)
    assert torch.equal(model.generate(ids, max_new_tokens=8, do_sample=False), expected)


def test_peft_lora_runs_forward_and_generate():
    base = _small()
    ids = torch.randint(0, 97, (1, 4))
    expected = base(ids)
    peft_model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["W_query", "W_value"]))
    assert peft_model.get_nb_trainable_parameters()[0] == 2 * 2 * 4 * (32 + 32)
    torch.testing.assert_close(peft_model(input_ids=ids).logits, expected)  # B = 0: unchanged
    assert peft_model.generate(input_ids=ids, max_new_tokens=5, do_sample=False).shape == (1, 9)


def test_a_scratchgpt_config_works_too():
    config = ScratchGPTConfig(**{**SMALL, "init_scheme": "gpt2"})
    model = GPTModel(config)
    assert model.config.init_scheme == "book" and config.init_scheme == "gpt2"  # the caller's config is copied
