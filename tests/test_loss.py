"""The fused output-head loss equals the plain head + cross-entropy, and steps aside where it must."""

import copy

import pytest
import torch

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.lora import replace_linear_with_lora
from hf_scratchgpt.model import loss_scratchgpt

from .conftest import tiny_config


def _pair(**kw):
    torch.manual_seed(0)
    plain = ScratchGPTForCausalLM(tiny_config(drop_rate=0.1, **kw)).train()
    fused = copy.deepcopy(plain)
    fused.config = copy.deepcopy(plain.config)
    fused.config.fused_linear_cross_entropy = True
    return plain, fused


def _run(model, seed=1, bf16=False, **batch):
    torch.manual_seed(seed)  # the same dropout masks for both
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(**batch)
    out.loss.backward()
    return out


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk_elements", [2**26, 97 * 7])  # one chunk; chunks of 7 rows
def test_fused_equals_plain_loss_and_gradients(monkeypatch, tied, chunk_elements):
    monkeypatch.setattr(loss_scratchgpt, "CHUNK_ELEMENTS", chunk_elements)
    plain, fused = _pair(tie_word_embeddings=tied)
    ids = torch.randint(0, 97, (3, 20))
    labels = ids.clone()
    labels[0, 6:] = -100
    a, b = _run(plain, input_ids=ids, labels=labels), _run(fused, input_ids=ids, labels=labels)
    assert b.logits is None and a.logits is not None
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        assert torch.allclose(q.grad, p.grad, rtol=1e-5, atol=1e-7), name


def test_only_positions_with_a_target_meet_the_head(monkeypatch):
    rows = []
    apply = loss_scratchgpt._LinearCrossEntropy.apply

    def spy(hidden, weight, targets, *rest):
        rows.append(hidden.shape[0])
        assert (targets != -100).all()
        return apply(hidden, weight, targets, *rest)

    monkeypatch.setattr(loss_scratchgpt._LinearCrossEntropy, "apply", spy)
    plain, fused = _pair()
    ids = torch.randint(0, 97, (3, 20))
    labels = torch.full_like(ids, -100)
    labels[:, 15:] = ids[:, 15:]  # a masked prompt: 5 response tokens a row, each the target of the position before it
    a, b = _run(plain, input_ids=ids, labels=labels), _run(fused, input_ids=ids, labels=labels)
    assert rows == [3 * 5]  # not 3 * 19
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        assert torch.allclose(q.grad, p.grad, rtol=1e-5, atol=1e-7), name


def test_shifted_labels_and_gradient_accumulation_divisor():
    plain, fused = _pair()
    window = torch.randint(0, 97, (2, 17))
    batch = {"input_ids": window[:, :-1], "shift_labels": window[:, 1:], "num_items_in_batch": 64}
    a, b = _run(plain, **batch), _run(fused, **batch)
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    assert a.loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(a.logits.flatten(0, 1), window[:, 1:].flatten(), reduction="sum").item() / 64,
        rel=1e-6,
    )
    for p, q in zip(plain.parameters(), fused.parameters()):
        assert torch.allclose(q.grad, p.grad, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_follows_the_plain_path():
    plain, fused = _pair()
    ids = torch.randint(0, 97, (4, 24))
    a, b = _run(plain, bf16=True, input_ids=ids, labels=ids), _run(fused, bf16=True, input_ids=ids, labels=ids)
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-3)
    grads = [(p.grad, q.grad) for p, q in zip(plain.parameters(), fused.parameters())]
    assert all(torch.allclose(q, p, rtol=0.05, atol=1e-3) for p, q in grads)


def test_plain_path_where_logits_are_needed_or_the_head_is_wrapped():
    _, fused = _pair()
    ids = torch.randint(0, 97, (2, 10))
    assert fused(input_ids=ids).logits.shape == (2, 10, 97)  # no targets
    fused.eval()
    assert fused(input_ids=ids, labels=ids).logits is not None  # evaluation keeps the logits
    fused.train()
    replace_linear_with_lora(fused, rank=2, alpha=2, target_modules=["out_head"])
    assert fused(input_ids=ids, labels=ids).logits is not None  # the adapter must take part
    labels = torch.full_like(ids, -100)
    plain, fused = _pair()
    assert torch.isnan(plain(input_ids=ids, labels=labels).loss)  # no targets at all: nan in both
    assert torch.isnan(fused(input_ids=ids, labels=labels).loss)
