"""generate() with the KV cache, sampling, beams, EOS, left padding; the book's helpers."""

import pytest
import torch

from hf_scratchgpt import ScratchGPTForCausalLM, generate_text, generate_text_simple
from hf_scratchgpt.model import layers_scratchgpt
from hf_scratchgpt.model.layers_scratchgpt import MIN_ROUTED_WEIGHTS, Linear

from .conftest import tiny_config


@pytest.fixture
def lm():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config())
    # a clearly peaked model so that greedy choices are not near-ties
    with torch.no_grad():
        model.out_head.weight.mul_(20)
    return model.eval()


def test_greedy_with_cache_equals_without_cache(lm):
    ids = torch.randint(0, 97, (3, 6))
    with_cache = lm.generate(ids, max_new_tokens=20, do_sample=False, use_cache=True)
    without = lm.generate(ids, max_new_tokens=20, do_sample=False, use_cache=False)
    assert with_cache.shape == (3, 26)
    assert torch.equal(with_cache, without)


def test_cache_feeds_one_token_per_step(lm):
    lengths = []
    hook = lm.register_forward_pre_hook(
        lambda m, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        out = lm.generate(torch.randint(0, 97, (1, 5)), max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    finally:
        hook.remove()
    assert lengths == [5, 1, 1, 1, 1, 1]
    assert out.cache.get_seq_length() == 10  # prompt + 5 fed-back tokens


def test_incremental_logits_equal_full_recompute(lm):
    ids = torch.randint(0, 97, (2, 12))
    full = lm(ids, use_cache=False).logits
    first = lm(ids[:, :8], use_cache=True)
    step = lm(ids[:, 8:], cache=first.cache, use_cache=True)
    torch.testing.assert_close(step.logits, full[:, 8:], atol=1e-5, rtol=0)


def test_sampling_is_reproducible_and_respects_top_k(lm):
    ids = torch.randint(0, 97, (2, 4))
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(lm.generate(ids, max_new_tokens=10, do_sample=True, temperature=0.8, top_k=5))
    assert torch.equal(*runs)
    torch.manual_seed(7)
    top_p = lm.generate(ids, max_new_tokens=10, do_sample=True, top_p=0.9)
    assert top_p.shape == (2, 14)
    # top_k=1 sampling is greedy
    torch.manual_seed(3)
    assert torch.equal(
        lm.generate(ids, max_new_tokens=8, do_sample=True, top_k=1), lm.generate(ids, max_new_tokens=8, do_sample=False)
    )


def test_beam_search_with_and_without_cache(lm):
    ids = torch.randint(0, 97, (1, 5))
    a = lm.generate(ids, max_new_tokens=8, num_beams=3, do_sample=False)
    b = lm.generate(ids, max_new_tokens=8, num_beams=3, do_sample=False, use_cache=False)
    assert torch.equal(a, b) and a.shape == (1, 13)


def test_stops_on_eos(lm):
    ids = torch.randint(0, 97, (1, 5))
    free = lm.generate(ids, max_new_tokens=10, do_sample=False)
    eos = int(free[0, 8])  # the 4th generated token becomes the EOS id
    stopped = lm.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    first = (free[0, 5:] == eos).nonzero()[0, 0].item()
    assert stopped.shape[1] == 5 + first + 1 and stopped[0, -1] == eos


def test_left_padded_batch_matches_single_runs(lm):
    a, b = torch.randint(1, 97, (1, 4)), torch.randint(1, 97, (1, 7))
    single_a = lm.generate(a, max_new_tokens=8, do_sample=False)[:, 4:]
    single_b = lm.generate(b, max_new_tokens=8, do_sample=False)[:, 7:]
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0, 3:], batch[1] = a, b
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    out = lm.generate(batch, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(out[0:1, 7:], single_a)
    assert torch.equal(out[1:2, 7:], single_b)


def test_generating_past_the_context_raises(lm):
    with pytest.raises(ValueError, match="exceeds this model's context_length of 32"):
        lm.generate(torch.randint(0, 97, (1, 30)), max_new_tokens=10, do_sample=False)


def test_book_helpers_agree_with_generate_on_greedy(lm):
    ids = torch.randint(0, 97, (2, 5))
    hf = lm.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(generate_text_simple(lm, ids, 12, context_size=32), hf)
    assert torch.equal(generate_text(lm, ids, 12, context_size=32), hf)


def test_book_helpers_crop_to_the_context(lm):
    ids = torch.randint(0, 97, (1, 30))
    out = generate_text_simple(lm, ids, 10, context_size=32)  # the cache-free path crops, never overflows
    assert out.shape == (1, 40)


def test_generate_text_eos_top_k_and_temperature(lm):
    ids = torch.randint(0, 97, (1, 5))
    greedy = generate_text(lm, ids, 10, context_size=32)
    eos = int(greedy[0, 7])
    stopped = generate_text(lm, ids, 10, context_size=32, eos_id=eos)
    assert torch.equal(stopped, greedy[:, :7])  # stops before appending the EOS, as the book
    torch.manual_seed(1)
    sampled = generate_text(lm, ids, 10, context_size=32, temperature=1.4, top_k=3)
    logits_allowed = True
    for t in range(5, 15):
        top3 = lm(sampled[:, :t], use_cache=False).logits[0, -1].topk(3).indices
        logits_allowed &= bool(sampled[0, t] in top3)
    assert logits_allowed
    with pytest.raises(ValueError, match="temperature"):
        generate_text(lm, ids, 3, 32, temperature=-1.0)


def test_book_helpers_work_on_a_plain_logits_model():
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel  # the book's own class

    torch.manual_seed(0)
    book = BookGPTModel(
        {
            "vocab_size": 50,
            "context_length": 8,
            "emb_dim": 16,
            "n_heads": 2,
            "n_layers": 1,
            "drop_rate": 0.0,
            "qkv_bias": False,
        }
    ).eval()
    assert generate_text_simple(book, torch.zeros(1, 3, dtype=torch.long), 10, context_size=8).shape == (1, 13)


def _record_decoding_route(model):
    """Hooks on every `Linear`: for each forward call, whether the decoding route was on and its rows."""
    calls = []

    def hook(module, args):
        calls.append((getattr(layers_scratchgpt._decoding, "on", False), args[0].numel() // module.in_features))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, Linear)]
    return calls, handles


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_only_cached_sdpa_steps_take_the_decoding_route(impl):
    torch.manual_seed(0)
    # every weight at least MIN_ROUTED_WEIGHTS large, so that the route is taken, not only switched on
    lm = ScratchGPTForCausalLM(tiny_config(emb_dim=384, n_heads=6, n_layers=2, vocab_size=512)).eval()
    assert min(m.weight.numel() for m in lm.modules() if isinstance(m, Linear)) >= MIN_ROUTED_WEIGHTS
    lm.config._attn_implementation = impl
    layers_per_step = sum(isinstance(m, Linear) for m in lm.modules())
    calls, handles = _record_decoding_route(lm)
    try:
        ids = torch.randint(0, 512, (2, 5))
        out = lm.generate(ids, max_new_tokens=4, do_sample=False, output_logits=True, return_dict_in_generate=True)
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == 4 * layers_per_step
    prompt, steps = calls[:layers_per_step], calls[layers_per_step:]
    assert not any(on for on, _ in prompt)  # the prompt's step is the plain product
    assert all(on == (impl == "sdpa") for on, _ in steps) and {rows for _, rows in steps} == {2}
    plain = lm.generate(ids, max_new_tokens=4, do_sample=False, use_cache=False, output_logits=True,
                        return_dict_in_generate=True)  # fmt: skip
    assert torch.equal(out.sequences, plain.sequences)
    for routed, recomputed in zip(out.logits, plain.logits):
        torch.testing.assert_close(routed, recomputed, atol=1e-4, rtol=1e-5)
    assert not getattr(layers_scratchgpt._decoding, "on", False)  # switched off again after each step
