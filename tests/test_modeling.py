"""ScratchGPT as transformers models: parameter counts, book parity, heads, attention backends, errors."""

import pytest
import torch
import torch.nn.functional as F
from llms_from_scratch.ch04 import GPTModel as BookGPTModel  # the book's own class, the test oracle
from transformers import AutoModelForCausalLM

from hf_scratchgpt import (
    ScratchGPTConfig,
    ScratchGPTForCausalLM,
    ScratchGPTForSequenceClassification,
    ScratchGPTModel,
)
from hf_scratchgpt.model import modeling_scratchgpt
from hf_scratchgpt.model.layers_scratchgpt import Unpadded

from .conftest import tiny_config


def book_to_scratchgpt_keys(state_dict):
    """The prefix change: the body's keys go under `transformer.`, `out_head` stays."""
    return {(k if k.startswith("out_head.") else "transformer." + k): v for k, v in state_dict.items()}


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_gpt2_small_parameter_counts():
    with torch.device("meta"):
        untied = ScratchGPTForCausalLM(ScratchGPTConfig.from_preset("gpt2-small"))
        tied = ScratchGPTForCausalLM(ScratchGPTConfig.from_preset("gpt2-small", tie_word_embeddings=True))
    assert _count(untied) == 163_009_536
    assert _count(tied) == 124_412_160
    assert tied.out_head.weight is tied.transformer.tok_emb.weight


def test_book_module_names():
    names = set(ScratchGPTForCausalLM(tiny_config(qkv_bias=True)).state_dict())
    for key in [
        "transformer.tok_emb.weight",
        "transformer.pos_emb.weight",
        "transformer.final_norm.scale",
        "transformer.final_norm.shift",
        "transformer.trf_blocks.1.att.W_query.weight",
        "transformer.trf_blocks.1.att.W_key.bias",
        "transformer.trf_blocks.1.att.W_value.weight",
        "transformer.trf_blocks.1.att.out_proj.bias",
        "transformer.trf_blocks.0.ff.layers.0.weight",
        "transformer.trf_blocks.0.ff.layers.2.weight",
        "transformer.trf_blocks.0.norm1.scale",
        "transformer.trf_blocks.0.norm2.shift",
        "out_head.weight",
    ]:
        assert key in names, key


def test_book_init_scheme_builds_the_books_exact_weights():
    cfg = tiny_config(init_scheme="book", drop_rate=0.1)
    book_cfg = {
        k: getattr(cfg, k)
        for k in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")
    }
    torch.manual_seed(123)
    book = BookGPTModel(book_cfg)
    torch.manual_seed(123)
    ours = ScratchGPTForCausalLM(cfg)
    ours_sd = ours.state_dict()
    for key, value in book_to_scratchgpt_keys(book.state_dict()).items():
        if key.endswith(".att.mask"):
            continue
        assert torch.equal(ours_sd[key], value), key


def test_seeded_embedding_is_the_models_token_embedding_under_book_init():
    torch.manual_seed(123)
    model = ScratchGPTModel(
        ScratchGPTConfig(vocab_size=6, emb_dim=3, n_heads=1, n_layers=1, context_length=4, init_scheme="book")
    )
    torch.testing.assert_close(
        model.tok_emb.weight[0].detach(), torch.tensor([0.3374, -0.1778, -0.1690]), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_book_state_dict_loads_with_prefix_change_and_same_logits(qkv_bias):
    cfg = tiny_config(qkv_bias=qkv_bias)
    book_cfg = {
        k: getattr(cfg, k)
        for k in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")
    }
    torch.manual_seed(1)
    book = BookGPTModel(book_cfg).eval()
    ours = ScratchGPTForCausalLM(cfg).eval()
    result = ours.load_state_dict(book_to_scratchgpt_keys(book.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ids = torch.randint(0, cfg.vocab_size, (3, 11))
    for impl in ("eager", "sdpa"):
        ours.set_attn_implementation(impl)
        torch.testing.assert_close(ours(ids).logits, book(ids), atol=1e-5, rtol=0)
    ours.set_attn_implementation("eager")
    # without a cache (whose concatenated keys change the matmul's memory layout) the readable path
    # is the book's computation, bit for bit
    assert torch.equal(ours(ids, use_cache=False).logits, book(ids))


def test_eager_and_sdpa_agree_within_1e_5():
    torch.manual_seed(0)
    cfg = tiny_config()
    eager = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    sdpa = AutoModelForCausalLM.from_config(tiny_config(), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    ids = torch.randint(0, cfg.vocab_size, (2, 20))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding exercises the masked path of both
    for kwargs in ({}, {"attention_mask": mask}):
        diff = (eager(ids, **kwargs).logits - sdpa(ids, **kwargs).logits).abs().max()
        assert diff < 1e-5


def test_loss_follows_hf_unshifted_label_convention_and_ignores_minus_100(tiny_lm):
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[0, 5:] = -100
    out = tiny_lm(ids, labels=labels)
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)
    # the book's pre-shifted targets go in shift_labels and give the same loss
    shifted = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], dim=1)
    torch.testing.assert_close(tiny_lm(ids, shift_labels=shifted).loss, manual)


def test_sequence_longer_than_context_raises_clear_error(tiny_lm):
    with pytest.raises(ValueError, match=r"33 positions exceeds this model's context_length of 32"):
        tiny_lm(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(), "exactly one of input_ids or inputs_embeds"),
        (lambda m: m(torch.zeros(4, dtype=torch.long)), r"input_ids must have shape \(batch, seq_len\)"),
        (lambda m: m(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 3)), "attention_mask"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_lm, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_lm)


def test_hidden_states_and_attentions_are_returned(tiny_lm):
    out = tiny_lm(torch.randint(0, 97, (1, 7)), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (1, 7, 32)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 7, 7)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 4, 7))


def test_inputs_embeds_equals_input_ids(tiny_lm):
    ids = torch.randint(0, 97, (2, 6))
    embeds = tiny_lm.get_input_embeddings()(ids)
    torch.testing.assert_close(tiny_lm(inputs_embeds=embeds).logits, tiny_lm(ids).logits)


def test_tied_weights_are_saved_once_and_reloaded_tied(tmp_path):
    from safetensors import safe_open

    model = ScratchGPTForCausalLM(tiny_config(tie_word_embeddings=True))
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert "out_head.weight" not in f.keys()
    again = ScratchGPTForCausalLM.from_pretrained(tmp_path)
    assert again.out_head.weight is again.transformer.tok_emb.weight
    assert torch.equal(again.out_head.weight, model.out_head.weight)


def test_resize_token_embeddings_keeps_rows():
    model = ScratchGPTForCausalLM(tiny_config())
    old = model.transformer.tok_emb.weight[:97].clone()
    model.resize_token_embeddings(101)
    assert model.config.vocab_size == 101 and model.out_head.out_features == 101
    assert torch.equal(model.transformer.tok_emb.weight[:97], old)


def test_base_model_loads_from_causal_lm_checkpoint(tmp_path):
    lm = ScratchGPTForCausalLM(tiny_config()).eval()
    lm.save_pretrained(tmp_path)
    base = ScratchGPTModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 97, (1, 5))
    torch.testing.assert_close(lm.out_head(base(ids).last_hidden_state), lm(ids).logits)


class TestSequenceClassification:
    def _model(self, **kw):
        torch.manual_seed(0)
        return ScratchGPTForSequenceClassification(tiny_config(num_labels=3, pad_token_id=0, **kw)).eval()

    def test_head_has_book_shape_and_bias(self):
        model = self._model()
        assert model.score.weight.shape == (3, 32) and model.score.bias is not None
        assert model(torch.randint(1, 97, (4, 9))).logits.shape == (4, 3)

    def test_pools_last_real_token_with_right_and_left_padding(self):
        model = self._model()
        a, b = torch.randint(1, 97, (1, 6)), torch.randint(1, 97, (1, 9))
        single = torch.cat([model(a).logits, model(b).logits])
        right = torch.zeros(2, 9, dtype=torch.long)
        right[0, :6], right[1] = a, b
        right_mask = (right != 0).long()
        left = torch.zeros(2, 9, dtype=torch.long)
        left[0, 3:], left[1] = a, b
        left_mask = (left != 0).long()
        torch.testing.assert_close(model(right, attention_mask=right_mask).logits, single, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(left, attention_mask=left_mask).logits, single, atol=1e-5, rtol=0)
        # without a mask the pad id tells where the text ends (right padding)
        torch.testing.assert_close(model(right).logits, single, atol=1e-5, rtol=0)

    def test_loss_is_cross_entropy_of_pooled_logits(self):
        model = self._model()
        ids, labels = torch.randint(1, 97, (4, 7)), torch.tensor([0, 2, 1, 2])
        out = model(ids, labels=labels)
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))

    def test_loads_body_of_a_causal_lm(self, tmp_path):
        lm = ScratchGPTForCausalLM(tiny_config()).eval()
        lm.save_pretrained(tmp_path)
        clf = ScratchGPTForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
        assert torch.equal(clf.transformer.tok_emb.weight, lm.transformer.tok_emb.weight)
        assert clf.score.weight.shape == (2, 32) and torch.isfinite(clf.score.weight).all()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing_enable` is deprecated")  # the (older) name
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(impl):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(drop_rate=0.1))  # dropout: the recompute must draw the same masks
    model.config._attn_implementation = impl
    ids = torch.randint(0, model.config.vocab_size, (2, 12))

    def loss_and_grads():
        model.zero_grad()
        torch.manual_seed(1)
        loss = model.train()(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, plain_grads = loss_and_grads()
    assert model.supports_gradient_checkpointing
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(block.gradient_checkpointing for block in model.transformer.trf_blocks)
    calls = []
    model.transformer.trf_blocks[0].att.register_forward_hook(lambda *_: calls.append(1))
    checkpointed, grads = loss_and_grads()
    assert len(calls) == 2  # the block really ran again in the backward pass
    assert torch.equal(checkpointed, plain)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=1e-6, msg=name)
    assert set(model.state_dict()) == set(ScratchGPTForCausalLM(tiny_config()).state_dict())  # the book's names


def test_torch_compile_gives_the_same_logits_loss_and_gradients():
    """`torch.compile` (inductor) on the model with the loss `pretrain` trains with: eager's logits, loss, gradients."""
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(fused_linear_cross_entropy=True)).eval()
    compiled = torch.compile(model, dynamic=False)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))

    def run(m):
        model.zero_grad()
        out = m(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.logits.detach(), out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits, loss, grads = run(model)
    c_logits, c_loss, c_grads = run(compiled)
    torch.testing.assert_close(c_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_loss, loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(c_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _right_padded(lengths=(16, 9, 4), width=16):
    ids = torch.randint(0, 97, (len(lengths), width))
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()  # (b, T), tokens first
    return ids, mask


@pytest.mark.parametrize("fused_loss", [False, True])
def test_training_skips_right_padding_with_the_same_loss_and_gradients(monkeypatch, fused_loss):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(fused_linear_cross_entropy=fused_loss)).train()
    ids, mask = _right_padded()
    labels = ids.masked_fill(mask == 0, -100)
    made = []
    real = modeling_scratchgpt._unpadded
    monkeypatch.setattr(modeling_scratchgpt, "_unpadded", lambda *a: made.append(real(*a)) or made[-1])

    def run():
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    out, grads = run()
    assert made[-1] is not None and made[-1].index.numel() == 16 + 9 + 4  # the blocks saw the real tokens only
    monkeypatch.setattr(modeling_scratchgpt, "_unpadded", lambda *a: None)  # the padded computation
    padded, padded_grads = run()
    torch.testing.assert_close(out.loss, padded.loss, rtol=1e-6, atol=1e-7)
    if not fused_loss:
        real_tokens = mask.bool()
        torch.testing.assert_close(out.logits[real_tokens], padded.logits[real_tokens], rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, padded_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_padding_is_kept_where_skipping_it_would_change_something():
    _, right = _right_padded()
    left = right.flip(1)
    assert modeling_scratchgpt._unpadded(right.bool(), dropout=0.0) is not None
    assert modeling_scratchgpt._unpadded(right.bool(), dropout=0.1) is None  # dropout would draw other masks
    assert modeling_scratchgpt._unpadded(left.bool(), dropout=0.0) is None  # generation's left padding
    assert modeling_scratchgpt._unpadded(torch.ones(2, 5, dtype=torch.bool), dropout=0.0) is None  # no padding
    empty_row = right.bool().clone()
    empty_row[2] = False
    assert modeling_scratchgpt._unpadded(empty_row, dropout=0.0) is None
    x = torch.randn(3, 16, 8)
    unpadded = Unpadded(right.bool())
    assert unpadded.unpad(x).shape == (1, 29, 8)
    assert torch.equal(unpadded.pad(unpadded.unpad(x)), x * right[..., None])


def test_outputs_that_need_the_padded_layout_keep_it():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    ids, mask = _right_padded()
    out = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
    assert all(h.shape == (3, 16, 32) for h in out.hidden_states)
    skipped = model(input_ids=ids, attention_mask=mask, use_cache=False)  # evaluation without a cache skips it
    real_tokens = mask.bool()
    torch.testing.assert_close(skipped.logits[real_tokens], out.logits[real_tokens], rtol=1e-5, atol=1e-6)
    model.set_attn_implementation("eager")
    torch.testing.assert_close(
        model(input_ids=ids, attention_mask=mask, use_cache=False).logits[real_tokens],
        out.logits[real_tokens],
        rtol=1e-5,
        atol=1e-5,
    )
