"""LoRA from scratch: the book's count, bit-identity with peft, adapter interchange, bad input."""

import copy
import math

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from hf_scratchgpt.lora import (
    LinearWithLoRA,
    LoRALayer,
    linear_names,
    load_lora_adapter,
    lora_layers,
    mark_only_lora_as_trainable,
    merge_and_unload,
    replace_linear_with_lora,
    save_lora_adapter,
    trainable_report,
)

from .conftest import tiny_config


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ScratchGPTForCausalLM(tiny_config(qkv_bias=True, **kw))


def _randomize_b(model, seed=1):
    """B starts at zero (a no-op); give it values so the checks below mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora.B.copy_(torch.randn(layer.lora.B.shape, generator=g) * 0.1)


def _peft_twin(base, ours, rank, alpha, dropout=0.0, use_rslora=False):
    """peft on a copy of the base model, with our A and B copied in."""
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=sorted(lora_layers(ours)), lora_dropout=dropout, use_rslora=use_rslora
    )
    peft_model = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            theirs = peft_model.base_model.model.get_submodule(name)
            theirs.lora_A["default"].weight.copy_(layer.lora.A)
            theirs.lora_B["default"].weight.copy_(layer.lora.B)
    return peft_model


def test_layer_layout_initialisation_and_scaling():
    torch.manual_seed(0)
    layer = LoRALayer(in_dim=40, out_dim=24, rank=8, alpha=16)
    assert layer.A.shape == (8, 40) and layer.B.shape == (24, 8) and not layer.B.any()
    assert layer.A.abs().max() <= 1 / math.sqrt(40) and layer.A.std() > 0.5 / math.sqrt(3 * 40)  # U(+-1/sqrt(in))
    assert layer.scaling == 2.0 and LoRALayer(40, 24, 16, 16, use_rslora=True).scaling == 4.0
    linear = torch.nn.Linear(40, 24)
    wrapped = LinearWithLoRA(linear, rank=8, alpha=16)
    x = torch.randn(3, 40)
    assert torch.equal(wrapped(x), linear(x))  # B = 0: a fresh adapter changes nothing


def test_book_appendix_e_count():
    config = ScratchGPTConfig.from_preset("gpt2-small", qkv_bias=True, num_labels=2)
    model = ScratchGPTForSequenceClassification(config)
    assert trainable_report(model)["trainable"] == 124_441_346
    replace_linear_with_lora(model, rank=16, alpha=16)
    report = trainable_report(model)
    assert report["trainable"] == 2_666_528 and report["total"] == 124_441_346 + 2_666_528
    assert len(lora_layers(model)) == 12 * 6 + 1  # every linear layer, the 2-class head included


@pytest.mark.parametrize("dropout, use_rslora", [(0.0, False), (0.1, True)])
def test_bit_identical_to_peft(dropout, use_rslora):
    base = _model().train()
    ours = replace_linear_with_lora(copy.deepcopy(base), rank=4, alpha=8, dropout=dropout, use_rslora=use_rslora)
    _randomize_b(ours)
    theirs = _peft_twin(base, ours, 4, 8, dropout, use_rslora).train()
    ids = torch.randint(0, 97, (3, 16))
    torch.manual_seed(7)  # the same dropout masks in both
    out_ours = ours(input_ids=ids, labels=ids)
    torch.manual_seed(7)
    out_theirs = theirs(input_ids=ids, labels=ids)
    assert torch.equal(out_ours.logits, out_theirs.logits)
    out_ours.loss.backward()
    out_theirs.loss.backward()
    for name, layer in lora_layers(ours).items():
        twin = theirs.base_model.model.get_submodule(name)
        assert torch.equal(layer.lora.A.grad, twin.lora_A["default"].weight.grad), name
        assert torch.equal(layer.lora.B.grad, twin.lora_B["default"].weight.grad), name
    assert trainable_report(ours)["trainable"] == theirs.get_nb_trainable_parameters()[0]
    merged_ours = merge_and_unload(ours).state_dict()
    merged_theirs = theirs.merge_and_unload().state_dict()
    assert merged_ours.keys() == merged_theirs.keys()
    for key, value in merged_ours.items():
        assert torch.equal(value, merged_theirs[key]), key


def test_merge_unmerge_and_delta_weight():
    model = replace_linear_with_lora(_model().eval(), rank=4, alpha=4, target_modules=["W_query", "W_value"])
    _randomize_b(model)
    layer = model.transformer.trf_blocks[0].att.W_query
    before = layer.linear.weight.clone()
    assert torch.equal(layer.get_delta_weight(), layer.lora.B @ layer.lora.A)
    ids = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        for lay in lora_layers(model).values():
            lay.merge()
        merged = model(input_ids=ids).logits
        assert torch.allclose(merged, unmerged, atol=1e-5)
        for lay in lora_layers(model).values():
            lay.unmerge()
    assert torch.allclose(layer.linear.weight, before, atol=1e-6)


def test_target_selection_and_freezing():
    model = _model()
    replace_linear_with_lora(model, rank=2, alpha=2, target_modules=r".*trf_blocks\.1\.ff\.layers\.\d")
    assert sorted(lora_layers(model)) == [
        "transformer.trf_blocks.1.ff.layers.0",
        "transformer.trf_blocks.1.ff.layers.2",
    ]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora." in n for n in trainable)
    for p in model.parameters():
        p.requires_grad = True
    mark_only_lora_as_trainable(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable


def test_adapters_interchange_with_peft(tmp_path):
    base = _model()
    ours = replace_linear_with_lora(
        copy.deepcopy(base), rank=4, alpha=8, target_modules=["W_query", "W_value", "out_proj"]
    )
    _randomize_b(ours)
    ids = torch.randint(0, 97, (2, 12))
    ours.eval()
    with torch.no_grad():
        expected = ours(input_ids=ids).logits
    # ours -> peft
    save_lora_adapter(ours, tmp_path / "ours")
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    # peft -> ours
    loaded.save_pretrained(tmp_path / "peft")
    back = load_lora_adapter(copy.deepcopy(base), tmp_path / "peft").eval()
    with torch.no_grad():
        assert torch.equal(back(input_ids=ids).logits, expected)
    assert trainable_report(back)["trainable"] == trainable_report(ours)["trainable"]


def test_peft_directly_on_scratchgpt_generate_and_sequence_classification(tmp_path):
    base = _model().eval()
    peft_lm = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["W_query", "W_value"]))
    with torch.no_grad():
        for module in peft_lm.modules():
            if hasattr(module, "lora_B") and "default" in module.lora_B:
                module.lora_B["default"].weight.normal_(0, 0.1)
    peft_lm.eval()
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        generated = peft_lm.generate(input_ids=ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
        merged = copy.deepcopy(peft_lm).merge_and_unload()
        assert torch.equal(generated, merged.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0))
    # sequence classification: peft keeps the `score` head trainable in full (modules_to_save)
    torch.manual_seed(3)
    clf = ScratchGPTForSequenceClassification(tiny_config(qkv_bias=True, num_labels=3, pad_token_id=0)).eval()
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["W_query", "W_value"])
    peft_clf = get_peft_model(copy.deepcopy(clf), config)
    with torch.no_grad():
        for name, param in peft_clf.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.normal_(0, 0.1)
    peft_clf.eval()
    batch = torch.randint(1, 97, (2, 9))
    with torch.no_grad():
        expected = peft_clf(input_ids=batch).logits
    assert expected.shape == (2, 3)
    peft_clf.save_pretrained(tmp_path / "clf")
    ours = load_lora_adapter(copy.deepcopy(clf), tmp_path / "clf").eval()
    with torch.no_grad():
        assert torch.equal(ours(input_ids=batch).logits, expected)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"match no linear layer; the linear layers are: .*att\.W_query"):
        replace_linear_with_lora(_model(), rank=2, alpha=2, target_modules=["q_proj"])
    for rank, alpha, message in [(0, 2, "rank must be a positive integer"), (2, 0, "alpha must be > 0")]:
        with pytest.raises(ValueError, match=message):
            replace_linear_with_lora(_model(), rank=rank, alpha=alpha)
    model = replace_linear_with_lora(_model(), rank=2, alpha=2)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        replace_linear_with_lora(model, rank=2, alpha=2)
    assert "transformer.trf_blocks.0.att.W_query" in linear_names(_model())
    # an adapter whose shapes do not fit the base model
    save_lora_adapter(model, tmp_path / "a")
    tensors = load_file(tmp_path / "a" / "adapter_model.safetensors")
    key = "base_model.model.transformer.trf_blocks.0.att.W_key.lora_A.weight"
    tensors[key] = torch.zeros(2, 48)
    save_file(tensors, tmp_path / "a" / "adapter_model.safetensors")
    with pytest.raises(
        ValueError, match=r"tensor .*W_key\.lora_A\.weight has shape \(2, 48\) but the model needs \(2, 32\)"
    ):
        load_lora_adapter(_model(), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_lora_adapter(_model(), tmp_path)
