"""Prompt formats: one source (hf_scratchgpt.prompts) for Python prompts and the saved chat templates.

The oracle is the book's own `llms_from_scratch.ch07.format_input`.
"""

import json

import pytest
import torch
from jinja2.exceptions import TemplateError
from llms_from_scratch.ch07 import format_input as book_format_input
from transformers import AutoTokenizer, pipeline

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM, tokenization
from hf_scratchgpt.data import instruction
from hf_scratchgpt.prompts import (
    ALPACA_PREAMBLE,
    STYLES,
    chat_template,
    format_input,
    record_to_messages,
    render,
    response_prefix,
    template_style,
)
from hf_scratchgpt.tokenization import load_gpt2_tokenizer, train_bpe_tokenizer

from .conftest import SHARED_DATA

EOT = "<|endoftext|>"
RESPONSE = "\n\n### Response:\n"
ENTRY = {
    "instruction": "Identify the correct spelling of the following word.",
    "input": "Ocassion",
    "output": "The correct spelling is 'Occasion.'",
}


@pytest.fixture(scope="module")
def records():
    data = json.loads((SHARED_DATA / "instruction-data.json").read_text(encoding="utf-8"))
    assert len(data) == 1100 and sum(bool(r["input"]) for r in data) == 325
    return data


def _saved(tmp_path_factory, style):
    """A BPE tokenizer with `style`'s template, as saved and loaded back (the template as written to disk)."""
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=400, chat_template=style)
    folder = tmp_path_factory.mktemp(f"tok-{style}")
    tok.save_pretrained(folder)
    assert (folder / "chat_template.jinja").is_file()
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def alpaca_tok(tmp_path_factory):
    return _saved(tmp_path_factory, "alpaca")


@pytest.fixture(scope="module")
def phi3_tok(tmp_path_factory):
    return _saved(tmp_path_factory, "phi3")


@pytest.fixture(scope="module")
def gpt2_alpaca():
    tok = load_gpt2_tokenizer(SHARED_DATA / "gpt2")  # a fresh one: the session fixture is shared
    tok.chat_template = chat_template("alpaca")
    return tok


def test_one_definition_of_each_format():
    assert instruction.format_input is format_input and instruction.render is render
    assert instruction.response_prefix is response_prefix and instruction.STYLES is STYLES == ("alpaca", "phi3", "chat")
    assert not hasattr(tokenization, "DEFAULT_CHAT_TEMPLATE")
    assert not hasattr(instruction, "record_messages") and not hasattr(instruction, "ALPACA_PREAMBLE")


def test_alpaca_format_input_is_the_books_for_every_record(records):
    for r in records:
        assert format_input(r) == book_format_input(r)
    assert response_prefix("alpaca") == RESPONSE
    assert format_input(ENTRY) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nIdentify the correct spelling of the following word.\n\n### Input:\nOcassion"
    )


def test_phi3_is_the_books_exercise_format():
    assert format_input(ENTRY, "phi3") + response_prefix("phi3") + ENTRY["output"] == (
        "<|user|>\nIdentify the correct spelling of the following word.\nOcassion\n<|assistant|>\n"
        "The correct spelling is 'Occasion.'"
    )
    assert (
        format_input(dict(ENTRY, input=""), "phi3") == "<|user|>\nIdentify the correct spelling of the following word."
    )


def test_saved_alpaca_template_renders_every_record_like_the_book(alpaca_tok, records):
    conversations = [record_to_messages(r) for r in records]
    full = alpaca_tok.apply_chat_template(conversations, tokenize=False)
    prompts = alpaca_tok.apply_chat_template(
        [c[:-1] for c in conversations], tokenize=False, add_generation_prompt=True
    )
    for r, text, prompt in zip(records, full, prompts):
        assert text == book_format_input(r) + RESPONSE + r["output"] + EOT
        assert prompt == book_format_input(r) + RESPONSE
    assert template_style(alpaca_tok) == "alpaca"


def test_saved_phi3_template_renders_every_record_like_format_input(phi3_tok, records):
    conversations = [record_to_messages(r, "phi3") for r in records]
    full = phi3_tok.apply_chat_template(conversations, tokenize=False)
    prompts = phi3_tok.apply_chat_template([c[:-1] for c in conversations], tokenize=False, add_generation_prompt=True)
    for r, text, prompt in zip(records, full, prompts):
        assert prompt == format_input(r, "phi3") + "\n<|assistant|>\n"
        assert text == prompt + r["output"] + EOT
    assert template_style(phi3_tok) == "phi3"
    assert render(ENTRY, "chat", phi3_tok) == (render(ENTRY, "phi3")[0], render(ENTRY, "phi3")[1] + EOT)


def test_record_to_messages():
    assert record_to_messages(ENTRY) == [
        {"role": "user", "content": "Identify the correct spelling of the following word.\n\n### Input:\nOcassion"},
        {"role": "assistant", "content": ENTRY["output"]},
    ]
    assert (
        record_to_messages(ENTRY, "phi3")[0]["content"]
        == "Identify the correct spelling of the following word.\nOcassion"
    )
    assert record_to_messages(dict(ENTRY, input=""))[0]["content"] == ENTRY["instruction"]
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert record_to_messages(chat) == chat["messages"]
    with pytest.raises(ValueError, match="prompt style must be one of"):
        record_to_messages(ENTRY, "vicuna")


def test_plain_chat_user_gets_the_training_prompt(alpaca_tok):
    prompt = alpaca_tok.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == format_input({"instruction": "Name a colour.", "input": ""}) + RESPONSE
    assert prompt.startswith(ALPACA_PREAMBLE + "\n\n### Instruction:\n")
    torch.manual_seed(0)
    config = ScratchGPTConfig(
        vocab_size=len(alpaca_tok), context_length=128, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0
    )
    generator = pipeline("text-generation", model=ScratchGPTForCausalLM(config).eval(), tokenizer=alpaca_tok)
    out = generator(
        [{"role": "user", "content": "Name a colour."}], max_new_tokens=2, do_sample=False, return_tensors=True
    )
    assert alpaca_tok.decode(out[0]["generated_token_ids"]).startswith(prompt)


def test_a_system_message_replaces_the_preamble(alpaca_tok, phi3_tok):
    messages = [{"role": "system", "content": "Be brief."}, *record_to_messages(ENTRY)]
    text = alpaca_tok.apply_chat_template(messages, tokenize=False)
    assert text == format_input(ENTRY).replace(ALPACA_PREAMBLE, "Be brief.") + RESPONSE + ENTRY["output"] + EOT
    no_preamble = alpaca_tok.apply_chat_template([{"role": "system", "content": ""}, *messages[1:]], tokenize=False)
    assert no_preamble == text.removeprefix("Be brief.\n\n")
    assert phi3_tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    ) == ("<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n")


def test_multi_turn_conversations(alpaca_tok, phi3_tok):
    turns = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one."},
    ]
    assert alpaca_tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == (
        f"{ALPACA_PREAMBLE}\n\n### Instruction:\nName a colour.\n\n### Response:\nBlue.{EOT}"
        "\n\n### Instruction:\nAnother one.\n\n### Response:\n"
    )
    assert phi3_tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == (
        f"<|user|>\nName a colour.\n<|assistant|>\nBlue.{EOT}\n<|user|>\nAnother one.\n<|assistant|>\n"
    )
    with pytest.raises(TemplateError, match="a system message may only come first"):
        alpaca_tok.apply_chat_template([turns[0], {"role": "system", "content": "x"}], tokenize=False)
    with pytest.raises(TemplateError, match="unknown message role: tool"):
        alpaca_tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def _check_assistant_mask(tok, conversations):
    out = tok.apply_chat_template(conversations, return_assistant_tokens_mask=True, return_dict=True)
    for messages, ids, mask in zip(conversations, out["input_ids"], out["assistant_masks"]):
        responses = [m["content"] for m in messages if m["role"] == "assistant"]
        # the masked tokens decode to exactly the responses and their end tokens ...
        assert tok.decode([t for t, m in zip(ids, mask) if m]) == "".join(r + EOT for r in responses)
        # ... and, for one turn, they are exactly the tokens after the generation prompt
        if len(responses) == 1 and messages[-1]["role"] == "assistant":
            prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            n = len(tok(prompt)["input_ids"])
            assert ids[:n] == tok(prompt)["input_ids"] and mask == [0] * n + [1] * (len(ids) - n)


def test_assistant_mask_covers_exactly_the_response_and_end_token(alpaca_tok, phi3_tok, gpt2_alpaca, records):
    conversations = [record_to_messages(r) for r in records]
    multi = [conversations[0] + conversations[1] + conversations[2]]
    system = [[{"role": "system", "content": "Be brief."}, *conversations[3]]]
    for tok in (alpaca_tok, gpt2_alpaca):
        _check_assistant_mask(tok, conversations + multi + system)
    _check_assistant_mask(phi3_tok, [record_to_messages(r, "phi3") for r in records[:200]])


def test_template_is_built_from_the_format_strings():
    template = chat_template("alpaca")
    assert "{% generation %}" not in template and "{%- generation -%}" in template  # whitespace-controlled tags
    assert repr(ALPACA_PREAMBLE) in template and "'### Instruction:\\n'" in template
    assert chat_template() == template != chat_template("phi3")
    with pytest.raises(ValueError, match="prompt style must be one of"):
        chat_template("chat")
    with pytest.raises(ValueError, match="prompt style must be one of"):
        format_input(ENTRY, "vicuna")


def test_train_bpe_tokenizer_takes_a_style_a_template_or_none():
    texts = ["aaaa bbbb aaaa bbbb"]
    assert train_bpe_tokenizer(texts, vocab_size=300).chat_template == chat_template("alpaca")
    assert train_bpe_tokenizer(texts, vocab_size=300, chat_template="phi3").chat_template == chat_template("phi3")
    assert train_bpe_tokenizer(texts, vocab_size=300, chat_template="{{ 'x' }}").chat_template == "{{ 'x' }}"
    assert train_bpe_tokenizer(texts, vocab_size=300, chat_template=None).chat_template is None
    assert template_style(train_bpe_tokenizer(texts, vocab_size=300, chat_template=None)) is None
