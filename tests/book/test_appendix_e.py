"""Appendix E: the book's LoRA numbers (draws, scaling, outputs, gradients) on the package's LoRA classes."""

import copy

import pytest
import torch
from llms_from_scratch import appendix_e as book_e
from llms_from_scratch import ch04 as book_ch04
from peft import PeftModel

from hf_scratchgpt import lora
from hf_scratchgpt.book.appendix_e import LinearWithLoRA, LoRALayer, replace_linear_with_lora
from hf_scratchgpt.book.ch04 import GPTModel

SMALL = {
    "vocab_size": 97,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": False,
}


def _classifiers():
    """The book's appendix-E setup on a small model, ours and the book's: frozen, 2-class head, LoRA rank 8."""
    models = []
    for model_class in (GPTModel, book_ch04.GPTModel):
        torch.manual_seed(123)
        model = model_class(SMALL).eval()
        for param in model.parameters():
            param.requires_grad = False
        torch.manual_seed(123)
        model.out_head = torch.nn.Linear(32, 2)
        replace = replace_linear_with_lora if model_class is GPTModel else book_e.replace_linear_with_lora
        replace(model, rank=8, alpha=16)
        models.append(model)
    return models


def _assert_close(mine, theirs):
    """Equal up to float rounding (the two compute `x @ A @ B` with differently laid-out matmuls)."""
    torch.testing.assert_close(mine, theirs, atol=1e-4 * float(theirs.abs().max()), rtol=1e-4)


def test_layer_draws_the_books_A_and_scales_by_alpha():
    torch.manual_seed(0)
    theirs = book_e.LoRALayer(40, 24, rank=8, alpha=16)
    torch.manual_seed(0)
    mine = LoRALayer(40, 24, rank=8, alpha=16)
    assert isinstance(mine, lora.LoRALayer) and mine.A.shape == (8, 40) and mine.B.shape == (24, 8)
    assert torch.equal(mine.A, theirs.A.T) and mine.scaling == 16 and mine.peft_alpha == 128
    with torch.no_grad():
        theirs.B.normal_()
        mine.B.copy_(theirs.B.T)
    x = torch.randn(3, 40)
    # outputs reach ~140, where float32's spacing is ~1.5e-5: compare with the file's rounding rule, and
    # ours with the exact product (float64) to a few float32 steps at that size
    _assert_close(mine(x), theirs(x))
    exact = (x.double() @ theirs.A.double() @ theirs.B.double()) * 16
    torch.testing.assert_close(mine(x).double(), exact, atol=1e-6 * float(exact.abs().max()), rtol=0)


def test_the_same_outputs_and_gradients_as_the_books_lora():
    mine, theirs = _classifiers()
    assert all(isinstance(m, LinearWithLoRA) for m in lora.lora_layers(mine).values())
    assert len(lora.lora_layers(mine)) == 2 * 6 + 1  # every linear layer, the new head included
    trainable = lambda model: sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable(mine) == trainable(theirs)
    ids = torch.randint(0, 97, (3, 10))
    for _ in range(2):  # step 0: B = 0; step 1: after an update, B != 0 and A has gradients
        logits_mine, logits_theirs = mine(ids)[:, -1, :], theirs(ids)[:, -1, :]
        _assert_close(logits_mine, logits_theirs)
        logits_mine.sum().backward()
        logits_theirs.sum().backward()
        theirs_layers = {n: m for n, m in theirs.named_modules() if isinstance(m, book_e.LinearWithLoRA)}
        for name, layer in lora.lora_layers(mine).items():
            other = theirs_layers[name.removeprefix("transformer.")].lora
            _assert_close(layer.lora.A.grad, other.A.grad.T)
            _assert_close(layer.lora.B.grad, other.B.grad.T)
        with torch.no_grad():
            for model in (mine, theirs):
                for param in model.parameters():
                    if param.grad is not None:
                        param -= 0.01 * param.grad
                        param.grad = None


def test_merge_and_peft_adapter_keep_the_books_scaling(tmp_path):
    mine, _ = _classifiers()
    lora.lora_layers(mine)["transformer.trf_blocks.0.att.W_query"].lora.B.data.normal_()
    ids = torch.randint(0, 97, (2, 10))
    expected = mine(ids)
    torch.manual_seed(123)
    base = GPTModel(SMALL).eval()
    base.out_head = copy.deepcopy(mine.out_head.linear)
    lora.save_lora_adapter(mine, tmp_path / "adapter")
    with torch.no_grad():
        via_peft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter")(input_ids=ids).logits
    torch.testing.assert_close(via_peft, expected, atol=1e-5, rtol=1e-5)  # lora_alpha = alpha * rank
    torch.testing.assert_close(lora.merge_and_unload(mine)(ids), expected, atol=1e-5, rtol=1e-5)


def test_replace_freezes_nothing_as_in_the_book():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    replace_linear_with_lora(model, rank=2, alpha=4)
    assert isinstance(model[0], LinearWithLoRA) and isinstance(model[2][0], LinearWithLoRA)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="rank"):
        LoRALayer(4, 4, rank=0, alpha=1)
