"""Instruction sets: records, prompt styles, the book's collate, prompt masking, packing, splits, errors."""

import json

import pytest
import torch

from hf_scratchgpt.data import (
    InstructionCollator,
    book_batch,
    format_input,
    load_instruction_records,
    pack_examples,
    render,
    split_instructions,
    tokenize_instructions,
)

ENTRY = {
    "instruction": "Identify the correct spelling of the following word.",
    "input": "Ocassion",
    "output": "The correct spelling is 'Occasion.'",
}


def test_alpaca_is_the_books_exact_text():
    assert format_input(ENTRY) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nIdentify the correct spelling of the following word.\n\n### Input:\nOcassion"
    )
    no_input = dict(ENTRY, input="")
    assert "### Input" not in format_input(no_input)
    prompt, full = render(ENTRY, "alpaca")
    assert full == prompt + ENTRY["output"] and prompt.endswith("\n\n### Response:\n")


def test_phi3_and_chat_template_styles(verdict_tokenizer):
    prompt, full = render(ENTRY, "phi3")
    assert (
        full == "<|user|>\nIdentify the correct spelling of the following word.\nOcassion\n<|assistant|>\n"
        "The correct spelling is 'Occasion.'"
    )
    prompt, full = render(ENTRY, "chat", verdict_tokenizer)
    assert prompt.endswith("### Response:\n") and full.startswith(prompt[: len(prompt) - len("### Response:\n")])
    assert full.endswith(ENTRY["output"] + "<|endoftext|>")
    assert (prompt, full) == (render(ENTRY, "alpaca")[0], render(ENTRY, "alpaca")[1] + "<|endoftext|>")
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ]
    }
    prompt, full = render(chat, "chat", verdict_tokenizer)
    assert prompt == "Be brief.\n\n### Instruction:\nHi\n\n### Response:\n" and full == prompt + "Hello<|endoftext|>"
    with pytest.raises(ValueError, match="chat records need prompt style 'chat'"):
        render(chat, "alpaca")
    with pytest.raises(ValueError, match="prompt style must be one of"):
        format_input(ENTRY, "vicuna")


def test_book_split_counts(shared_data):
    ds = load_instruction_records(shared_data / "instruction-data.json")
    assert len(ds) == 1100
    parts = split_instructions(ds, seed=123)
    assert {k: len(v) for k, v in parts.items()} == {"train": 935, "test": 110, "validation": 55}
    assert list(split_instructions(ds, seed=123)["test"]["instruction"]) == list(parts["test"]["instruction"])


def test_collate_reproduces_the_books_example():
    rows = [
        {"input_ids": [0, 1, 2, 3, 4], "prompt_length": 2},
        {"input_ids": [5, 6], "prompt_length": 1},
        {"input_ids": [7, 8, 9], "prompt_length": 1},
    ]
    inputs, targets = book_batch(InstructionCollator(pad_token_id=50256)(rows))
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
    assert targets.tolist() == [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]
    truncated = book_batch(InstructionCollator(pad_token_id=50256, allowed_max_length=3)(rows))
    assert truncated[0].shape == (3, 3) and truncated[1].tolist()[1] == [6, 50256, -100]
    masked = InstructionCollator(pad_token_id=50256, mask_prompt=True)(rows)
    assert masked["labels"][0].tolist() == [-100, -100, 2, 3, 4, 50256]


def test_collate_keeps_an_end_token_inside_the_text_as_target():
    # pad id == eos id: masking by position, not by id, keeps an EOS the text itself contains
    rows = [{"input_ids": [5, 50256, 6], "prompt_length": 0}, {"input_ids": [1, 2, 3, 4, 5], "prompt_length": 0}]
    _, targets = book_batch(InstructionCollator(pad_token_id=50256)(rows))
    assert targets[0].tolist() == [50256, 6, 50256, -100, -100]


def test_loss_equals_the_books_loss(shared_data, gpt2_tokenizer):
    from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM

    ds = load_instruction_records(shared_data / "instruction-data.json").select(range(4))
    rows = list(tokenize_instructions(ds, gpt2_tokenizer))
    batch = InstructionCollator(pad_token_id=50256)(rows)
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(
        ScratchGPTConfig(vocab_size=50257, context_length=256, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
    ).eval()
    ours = model(**batch).loss
    inputs, targets = book_batch(batch)
    logits = model(inputs).logits
    book = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(ours, book)


def test_prompt_length_marks_where_the_response_starts(shared_data, gpt2_tokenizer):
    ds = load_instruction_records(shared_data / "instruction-data.json").select(range(3))
    for style in ("alpaca", "phi3"):
        tokd = tokenize_instructions(ds, gpt2_tokenizer, style=style)
        for rec, row in zip(ds, tokd):
            response = gpt2_tokenizer.decode(row["input_ids"][row["prompt_length"] :])
            assert response.strip() == rec["output"].strip() or response.endswith(rec["output"])


def test_packing_keeps_examples_whole_and_positions_restart(shared_data, gpt2_tokenizer):
    ds = load_instruction_records(shared_data / "instruction-data.json").select(range(30))
    tokd = tokenize_instructions(ds, gpt2_tokenizer)
    packed = pack_examples(tokd, max_length=256, eos_id=50256, mask_prompt=True)
    assert len(packed) < 30 and all(len(r) <= 256 for r in packed["input_ids"])
    flat = [t for r in packed["input_ids"] for t in r]
    assert flat == [t for row in tokd for t in row["input_ids"] + [50256]]
    for pos, labels in zip(packed["position_ids"], packed["labels"]):
        starts = [j for j, p in enumerate(pos) if p == 0]
        assert all(labels[j] == -100 for j in starts)  # no cross-example target
    batch = InstructionCollator(pad_token_id=50256)([packed[0], packed[1]])
    assert set(batch) == {"input_ids", "labels", "position_ids", "attention_mask"}


def test_bad_records_name_the_index(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([ENTRY, ["not", "an", "object"]]))
    with pytest.raises(ValueError, match=r"a.json: record 1: expected an object, got list"):
        load_instruction_records(tmp_path / "a.json")
    (tmp_path / "b.jsonl").write_text(json.dumps(ENTRY) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"b.jsonl: record 1: missing or non-text field 'output'"):
        load_instruction_records(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text(json.dumps(ENTRY) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"c.jsonl:2: invalid JSON"):
        load_instruction_records(tmp_path / "c.jsonl")
    (tmp_path / "d.json").write_text("")
    with pytest.raises(ValueError, match="d.json: file is empty"):
        load_instruction_records(tmp_path / "d.json")
    (tmp_path / "f.json").write_bytes(b'[{"instruction": "caf\xe9"}]')
    with pytest.raises(ValueError, match=r"f.json: byte offset 21: not valid UTF-8"):
        load_instruction_records(tmp_path / "f.json")
    (tmp_path / "e.jsonl").write_text(json.dumps({"messages": [{"role": "user"}]}))
    with pytest.raises(ValueError, match="record 0: message 0 needs string 'role' and 'content'"):
        load_instruction_records(tmp_path / "e.jsonl")


def test_chat_records_load_and_tokenize(tmp_path, verdict_tokenizer):
    chats = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}] * 3
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    ds = load_instruction_records(tmp_path / "chat.jsonl")
    tokd = tokenize_instructions(ds, verdict_tokenizer, style="chat")
    row = tokd[0]
    # the template's end token is dropped: the collator appends the one end token, as for the other styles
    assert verdict_tokenizer.decode(row["input_ids"][row["prompt_length"] :]) == "Hello"
    eos = verdict_tokenizer.eos_token_id
    batch = InstructionCollator(pad_token_id=eos, mask_prompt=True)([row])
    targets = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert verdict_tokenizer.decode(targets) == "Hello<|endoftext|>" and targets.count(eos) == 1
