"""Chapter 5: the book's first losses, its helpers with tiktoken and transformers tokenizers, loading GPT-2
weights, the plot and the download helpers, offline."""

import re
import sys
import time

import numpy as np
import pytest
import tiktoken
import torch
from llms_from_scratch import ch05 as book
from transformers import GPT2Config, GPT2LMHeadModel

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.book.ch02 import create_dataloader_v1
from hf_scratchgpt.book.ch04 import GPTModel, GPTModelFast
from hf_scratchgpt.book.ch05 import (
    assign,
    calc_loss_loader,
    download_and_load_gpt2,
    download_file,
    generate,
    generate_and_print_sample,
    load_gpt2_params_from_tf_ckpt,
    load_weights_into_gpt,
    plot_losses,
    text_to_token_ids,
    token_ids_to_text,
    train_model_simple,
)

from ..conftest import SHARED_DATA, tiny_config

GPT_CONFIG_124M = {
    "vocab_size": 50257,
    "context_length": 256,  # the book's shortened context for chapter 5
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}
TINY = {**GPT_CONFIG_124M, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 1}


class _Stop(Exception):
    """Raised by the optimizer to end a long run once the wanted evaluations are printed."""


class StopAfterSteps(torch.optim.AdamW):
    """AdamW that raises `_Stop` instead of taking step number `steps + 1`."""

    def __init__(self, params, steps, **kwargs):
        super().__init__(params, **kwargs)
        self.steps_left = steps

    def step(self, closure=None):
        if self.steps_left == 0:
            raise _Stop
        self.steps_left -= 1
        return super().step(closure)


def test_train_model_simple_prints_the_books_first_losses(capsys):
    """The book's chapter-5 run, stopped after its second evaluation (step 5) instead of 10 epochs.

    `GPTModelFast` (the same weights, on the fused path) is ~3x faster on CPU than `GPTModel`, whose
    readable path spends most of its time in elementwise ops; the book's own test_ch05, run unchanged
    in test_book_package_tests.py, trains both."""
    text_data = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")
    split_idx = int(0.90 * len(text_data))
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(
        text_data[:split_idx], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True, num_workers=0
    )
    val_loader = create_dataloader_v1(
        text_data[split_idx:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False, num_workers=0
    )
    torch.manual_seed(123)
    model = GPTModelFast(GPT_CONFIG_124M)
    optimizer = StopAfterSteps(model.parameters(), steps=6, lr=0.0004, weight_decay=0.1)
    tokenizer = tiktoken.get_encoding("gpt2")
    with pytest.raises(_Stop):
        train_model_simple(
            model, train_loader, val_loader, optimizer, "cpu", num_epochs=10, eval_freq=5, eval_iter=5,
            start_context="Every effort moves you", tokenizer=tokenizer,
        )  # fmt: skip
    printed = capsys.readouterr().out
    assert re.findall(r"Ep \d \(Step \d+\): Train loss [\d.]+, Val loss [\d.]+", printed) == [
        "Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933",
        "Ep 1 (Step 000005): Train loss 8.111, Val loss 8.339",
    ]


@pytest.mark.parametrize("which", ["tiktoken", "transformers"])
def test_token_helpers_take_both_tokenizers(which, gpt2_tokenizer):
    tokenizer = tiktoken.get_encoding("gpt2") if which == "tiktoken" else gpt2_tokenizer
    ids = text_to_token_ids("Every effort moves you<|endoftext|>", tokenizer)
    assert ids.tolist() == [[6109, 3626, 6100, 345, 50256]]
    assert token_ids_to_text(ids, tokenizer) == "Every effort moves you<|endoftext|>"


@pytest.mark.parametrize("which", ["book GPTModel", "ScratchGPTForCausalLM"])
def test_generate_and_print_sample_on_the_book_model_and_a_plain_scratchgpt(which, gpt2_tokenizer, capsys):
    torch.manual_seed(0)
    model = GPTModel(TINY) if which == "book GPTModel" else ScratchGPTForCausalLM(tiny_config(vocab_size=50257))
    model.train()
    generate_and_print_sample(model, gpt2_tokenizer, "cpu", "Every effort moves you")
    line = capsys.readouterr().out
    assert line.startswith("Every effort moves you") and line.count("\n") == 1
    assert model.training  # back in training mode, as the book leaves it


def test_calc_loss_loader_limits_and_an_empty_loader():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    text = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")[:2000]
    loader = create_dataloader_v1(text, batch_size=2, max_length=16, stride=16, shuffle=False)
    with torch.no_grad():
        assert calc_loss_loader(loader, model, "cpu", num_batches=2) == pytest.approx(
            book.calc_loss_loader(loader, model, "cpu", num_batches=2)
        )
        assert calc_loss_loader(loader, model, "cpu", num_batches=10**6) == pytest.approx(
            calc_loss_loader(loader, model, "cpu")
        )
    assert np.isnan(calc_loss_loader([], model, "cpu"))


def test_generate_samples_as_the_books_generate():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    idx = torch.tensor([[6109, 3626, 6100, 345]])
    for kwargs in ({}, {"temperature": 1.4, "top_k": 25}, {"eos_id": 0}):
        torch.manual_seed(1)
        expected = book.generate(model, idx, 10, context_size=16, **kwargs)
        torch.manual_seed(1)
        assert torch.equal(generate(model, idx, 10, context_size=16, **kwargs), expected), kwargs


def _tf_params_of(gpt2):
    """A transformers GPT-2's weights in the layout of the book's `load_gpt2_params_from_tf_ckpt`."""
    sd = {k: v.detach().numpy() for k, v in gpt2.transformer.state_dict().items()}
    conv = lambda prefix: {"w": sd[prefix + ".weight"], "b": sd[prefix + ".bias"]}  # Conv1D: (in, out)
    norm = lambda prefix: {"g": sd[prefix + ".weight"], "b": sd[prefix + ".bias"]}
    blocks = [
        {
            "attn": {"c_attn": conv(f"h.{i}.attn.c_attn"), "c_proj": conv(f"h.{i}.attn.c_proj")},
            "mlp": {"c_fc": conv(f"h.{i}.mlp.c_fc"), "c_proj": conv(f"h.{i}.mlp.c_proj")},
            "ln_1": norm(f"h.{i}.ln_1"),
            "ln_2": norm(f"h.{i}.ln_2"),
        }
        for i in range(gpt2.config.n_layer)
    ]
    return {"wte": sd["wte.weight"], "wpe": sd["wpe.weight"], "blocks": blocks, **norm("ln_f")}


def test_load_weights_into_gpt_gives_gpt2s_logits():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new")
    gpt2 = GPT2LMHeadModel(config).eval()
    model = GPTModel({**TINY, "vocab_size": 97, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "qkv_bias": True})
    load_weights_into_gpt(model, _tf_params_of(gpt2))
    model.eval()
    ids = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), gpt2(ids).logits, atol=1e-4, rtol=1e-4)
    assert not model.out_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()  # a copy, as in the book
    with pytest.raises(ValueError, match="Shape mismatch"):
        assign(model.out_head.weight, np.zeros((2, 2)))


def test_tensorflow_helpers_say_what_to_do_without_tensorflow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    for call in (lambda: download_and_load_gpt2("124M", str(tmp_path)), lambda: load_gpt2_params_from_tf_ckpt("x", {})):
        with pytest.raises(ImportError) as err:
            call()
        message = str(err.value)
        assert "pip install tensorflow" in message and "scratchgpt convert-gpt2" in message and "\n" not in message
    assert not any(tmp_path.iterdir())  # nothing downloaded


def test_download_file_skips_existing_copies_and_fails_fast_offline(tmp_path, capsys):
    existing = tmp_path / "the-verdict.txt"
    existing.write_text("already here", encoding="utf-8")
    download_file("https://example.invalid/the-verdict.txt", str(existing))  # no network touched
    assert existing.read_text(encoding="utf-8") == "already here" and "already exists" in capsys.readouterr().out

    copied = tmp_path / "copy.txt"
    download_file((SHARED_DATA / "the-verdict.txt").as_uri(), str(copied))
    assert copied.read_bytes() == (SHARED_DATA / "the-verdict.txt").read_bytes()

    start = time.monotonic()
    missing = tmp_path / "missing.txt"
    download_file("http://127.0.0.1:9/missing.txt", str(missing), backup_url="http://127.0.0.1:9/backup.txt")
    assert time.monotonic() - start < 30 and not missing.exists() and not list(tmp_path.glob("*.part"))
    assert "Failed to download from both primary URL" in capsys.readouterr().out


def test_plot_losses_saves_the_books_pdf_headless(tmp_path, monkeypatch, recwarn):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    plot_losses(torch.linspace(0, 2, 4), [0, 512, 1024, 1536], [9.8, 8.1, 7.0, 6.5], [9.9, 8.3, 7.5, 7.1])
    plt.close("all")
    assert (tmp_path / "loss-plot.pdf").stat().st_size > 0
    assert not [w for w in recwarn if "non-interactive" in str(w.message)]
