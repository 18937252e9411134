"""The one folder writer: a complete Hugging Face folder, written atomically."""

import json
import os

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

import hf_scratchgpt
from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.folders import atomic_output_dir, save_model_files, write_model_folder
from hf_scratchgpt.model import REMOTE_CODE_FILES

from .conftest import tiny_config


@pytest.fixture
def model_and_tokenizer(verdict_tokenizer):
    torch.manual_seed(0)
    tok = verdict_tokenizer
    model = ScratchGPTForCausalLM(tiny_config(vocab_size=len(tok), eos_token_id=0, pad_token_id=0))
    return model, tok


def test_a_scratchgpt_folder_is_complete(tmp_path, model_and_tokenizer):
    model, tok = model_and_tokenizer
    out = write_model_folder(
        tmp_path / "m", model, tok, command="init-model", card_fields={"weights": "w", "provenance": "p"}
    )
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"} <= files
    assert set(REMOTE_CODE_FILES) <= files
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 0
    assert AutoTokenizer.from_pretrained(out).model_max_length == 32  # the model's context length
    card = (out / "README.md").read_text()
    assert f"hf_scratchgpt` {hf_scratchgpt.__version__}" in card and "`scratchgpt init-model`" in card
    assert "| context length | 32 |" in card and str(out) in card
    assert os.listdir(tmp_path) == ["m"]
    umask = os.umask(0)
    os.umask(umask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir() if f.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # the weights too (safetensors writes 0600)


def test_the_saved_tokenizer_knows_the_context_and_the_callers_tokenizer_is_unchanged(tmp_path, verdict_tokenizer):
    tok = verdict_tokenizer
    before = tok.model_max_length
    model = ScratchGPTForCausalLM(tiny_config(vocab_size=len(tok), context_length=before + 16))
    save_model_files(tmp_path / "m", model, tok)
    assert AutoTokenizer.from_pretrained(tmp_path / "m").model_max_length == before + 16
    assert tok.model_max_length == before


def test_any_transformers_model_and_no_remote_code_for_gpt2(tmp_path):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=24, vocab_size=50))
    out = write_model_folder(
        tmp_path / "g", gpt2, command="export-gpt2", template="export_gpt2", card_fields={"source": "src"}
    )
    assert not {f for f in os.listdir(out) if f.endswith(".py")}
    assert "| layers / heads / width | 1 / 2 / 16 |" in (out / "README.md").read_text()


def test_a_failure_leaves_the_old_folder(tmp_path, model_and_tokenizer):
    model, tok = model_and_tokenizer
    write_model_folder(tmp_path / "m", model, tok, command="x", card_fields={"weights": "w", "provenance": "p"})
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(KeyError, match="needs values for"):  # a card with a missing field fails after the weights
        write_model_folder(tmp_path / "m", model, tok, command="x", overwrite=True)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        with atomic_output_dir(tmp_path / "m"):
            pass
