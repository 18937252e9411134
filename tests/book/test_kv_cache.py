"""The KV-cache model and generation: the cache gives the uncached logits and tokens, on the package's caches."""

import pytest
import torch
from llms_from_scratch.kv_cache import generate as book_generate
from llms_from_scratch.kv_cache import gpt2 as book_gpt2
from transformers.cache_utils import DynamicCache

from hf_scratchgpt.book import ch04
from hf_scratchgpt.book.generate import trim_input_tensor
from hf_scratchgpt.book.kv_cache.generate import generate_text_simple, generate_text_simple_stream
from hf_scratchgpt.book.kv_cache.gpt2 import GPTModel, MultiHeadAttention, TransformerBlock
from hf_scratchgpt.book.kv_cache.utils import KVCache

SMALL = {
    "vocab_size": 97,
    "context_length": 24,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.1,
    "qkv_bias": True,
}


def _model(seed=0):
    torch.manual_seed(seed)
    return GPTModel(SMALL).eval()


def test_model_is_the_chapter4_model_with_the_books_cache_interface():
    model = _model()
    assert isinstance(model, ch04.GPTModel) and model.cfg == SMALL and model.current_pos == 0
    torch.manual_seed(0)
    theirs = book_gpt2.GPTModel(SMALL).eval()
    ids = torch.randint(0, 97, (2, 10))
    assert torch.equal(model(ids), theirs(ids))  # same seed, same weights, same logits
    assert torch.equal(model(ids, use_cache=False, cache=None), theirs(ids))


@pytest.mark.parametrize("own_cache", [False, True])
def test_feeding_through_the_cache_gives_the_full_logits(own_cache):
    model = _model()
    ids = torch.randint(0, 97, (2, 12))
    full = model(ids)
    cache = None if own_cache else KVCache(n_layers=2)
    kwargs = {"use_cache": True} if own_cache else {"cache": cache}
    parts = [model(ids[:, :5], **kwargs)] + [model(ids[:, t : t + 1], **kwargs) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert model.current_pos == 12
    if cache is not None:
        assert cache.get_seq_length() == 12 and cache.get(1)[0].shape == (2, 4, 12, 8)  # (b, n_heads, T, head_dim)
    model.reset_kv_cache()
    assert model.current_pos == 0
    torch.testing.assert_close(
        model(ids[:, :5], **({"use_cache": True} if own_cache else {"cache": KVCache(2)})), full[:, :5]
    )


def test_kv_cache_keeps_the_books_interface_in_a_dynamic_cache():
    cache = KVCache(n_layers=2)
    assert isinstance(cache.transformers_cache, DynamicCache) and cache.get_all() == [None, None]
    keys, values = torch.randn(1, 4, 3, 8), torch.randn(1, 4, 3, 8)
    cache.update(1, (keys, values))
    assert cache.get(0) is None and torch.equal(cache.get(1)[0], keys) and torch.equal(cache.get(1)[1], values)
    cache.update(1, None)
    assert cache.get(1) is None
    cache.update(0, (keys, values))
    cache.reset()
    assert cache.get_all() == [None, None]
    with pytest.raises(IndexError):
        cache.get(2)


def test_cached_generation_equals_uncached_and_the_books():
    model = _model()
    idx = torch.randint(0, 97, (2, 6))
    cached = generate_text_simple(model, idx, max_new_tokens=12)
    assert torch.equal(generate_text_simple(model, idx, max_new_tokens=12, use_cache=False), cached)
    assert torch.equal(ch04.generate_text_simple(model, idx, 12, context_size=24), cached)
    torch.manual_seed(0)
    theirs = book_gpt2.GPTModel(SMALL).eval()
    theirs.cfg = SMALL  # 1.0.19's KV-cache model lacks `cfg` and `reset_kv_cache`: only its uncached path runs
    assert torch.equal(book_generate.generate_text_simple(theirs, idx, 12, use_cache=False), cached)
    streamed = torch.cat(list(generate_text_simple_stream(model, idx, max_new_tokens=12)), dim=1)
    assert torch.equal(streamed, cached[:, 6:])


def test_stream_stops_at_eos():
    model = _model()
    idx = torch.randint(0, 97, (1, 4))
    tokens = generate_text_simple(model, idx, max_new_tokens=6)[0, 4:].tolist()
    streamed = [t.item() for t in generate_text_simple_stream(model, idx, 6, eos_token_id=tokens[2])]
    assert streamed == tokens[: tokens.index(tokens[2])]


def test_layers_take_the_books_per_layer_cache():
    torch.manual_seed(0)
    att = MultiHeadAttention(32, 32, 24, 0.0, 4)
    block = TransformerBlock(SMALL).eval()
    x = torch.randn(2, 7, 32)
    for layer in (att, block):
        full, none = layer(x)
        assert none is None
        first, pair = layer(x[:, :4], use_cache=True)
        rest, pair = layer(x[:, 4:], use_cache=True, cache=pair)
        assert pair[0].shape == (2, 4, 7, 8)
        torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)


def test_trim_input_tensor():
    ids = torch.arange(10).unsqueeze(0)
    assert trim_input_tensor(ids, context_len=8, max_new_tokens=3).tolist() == [[5, 6, 7, 8, 9]]
    assert trim_input_tensor(ids, context_len=20, max_new_tokens=3).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="below the context length"):
        trim_input_tensor(ids, context_len=4, max_new_tokens=4)
