"""Conversions: transformers GPT-2 <-> ScratchGPT, the book's checkpoints -> ScratchGPT, and bad input."""

import json
import subprocess
import sys

import pytest
import torch
from llms_from_scratch.ch04 import GPTModel as BookGPTModel  # the book's own class, the test oracle
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from hf_scratchgpt.cli import main
from hf_scratchgpt.convert import book_to_scratchgpt, gpt2_to_scratchgpt, scratchgpt_to_gpt2
from hf_scratchgpt.tokenization import load_gpt2_tokenizer

from .conftest import SHARED_DATA

GPT2_SHAPES = [
    dict(vocab_size=101, n_positions=16, n_embd=15, n_head=3, n_layer=2),  # odd width and head count
    dict(vocab_size=97, n_positions=12, n_embd=20, n_head=5, n_layer=3, tie_word_embeddings=False),
    dict(vocab_size=50, n_positions=8, n_embd=7, n_head=1, n_layer=1),
]


def _gpt2(seed=0, **shape):
    torch.manual_seed(seed)
    config = GPT2Config(**shape, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # GPT-2 starts with zero biases: give them values so the mapping is checked
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _greedy(model, ids, n=6):
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=0)


@pytest.mark.parametrize("shape", GPT2_SHAPES)
def test_gpt2_to_scratchgpt_and_back(shape):
    gpt2 = _gpt2(**shape)
    ours = gpt2_to_scratchgpt(gpt2)
    assert ours.config.qkv_bias and ours.config.tie_word_embeddings == shape.get("tie_word_embeddings", True)
    assert ours.num_parameters() == gpt2.num_parameters()
    ids = torch.randint(0, shape["vocab_size"], (3, shape["n_positions"] - 6))
    assert torch.allclose(_logits(ours, ids), _logits(gpt2, ids), atol=1e-4, rtol=0)
    assert torch.equal(_greedy(ours, ids), _greedy(gpt2, ids))
    back = scratchgpt_to_gpt2(ours)
    for (name, a), b in zip(gpt2.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("tied", [True, False])
def test_scratchgpt_to_gpt2_and_back_is_bit_identical(qkv_bias, tied):
    torch.manual_seed(1)
    config = ScratchGPTConfig(
        vocab_size=83, context_length=20, emb_dim=21, n_heads=7, n_layers=2, drop_rate=0.0, qkv_bias=qkv_bias
    )
    config.tie_word_embeddings = tied
    ours = ScratchGPTForCausalLM(config).eval()
    gpt2 = scratchgpt_to_gpt2(ours)
    ids = torch.randint(0, 83, (2, 14))
    assert torch.allclose(_logits(gpt2, ids), _logits(ours, ids), atol=1e-4, rtol=0)
    assert torch.equal(_greedy(gpt2, ids), _greedy(ours, ids))
    again = gpt2_to_scratchgpt(gpt2)
    expected = ours.state_dict()
    for name, value in again.state_dict().items():
        if name in expected:
            assert torch.equal(value, expected[name]), name
        else:  # a model without qkv bias comes back with the zero bias GPT-2 needs
            assert not qkv_bias and name.endswith("bias") and not value.any(), name
    assert torch.equal(_logits(again, ids), _logits(ours, ids))


@pytest.fixture
def gpt2_folder(tmp_path):
    """A GPT-2 checkpoint in the published layout, with the GPT-2 vocabulary and tokenizer files."""
    model = _gpt2(vocab_size=50257, n_positions=32, n_embd=16, n_head=2, n_layer=2)
    folder = tmp_path / "gpt2"
    model.save_pretrained(folder)
    load_gpt2_tokenizer(SHARED_DATA / "gpt2").save_pretrained(folder)
    return folder, model


def test_convert_gpt2_command_writes_a_scratchgpt_folder(tmp_path, gpt2_folder):
    src, gpt2 = gpt2_folder
    out = tmp_path / "ours"
    assert main(["convert-gpt2", str(src), str(out)]) == 0
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    ours = AutoModelForCausalLM.from_pretrained(out).eval()
    assert isinstance(ours, ScratchGPTForCausalLM) and ours.config.context_length == 32
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("Hello, I am", return_tensors="pt").input_ids
    assert ids.tolist() == [[15496, 11, 314, 716]]
    assert torch.allclose(_logits(ours, ids), _logits(gpt2, ids), atol=1e-4, rtol=0)
    assert "convert-gpt2" in (out / "README.md").read_text()


def test_published_layout_without_prefix_and_with_mask_buffers(tmp_path, gpt2_folder):
    """`openai-community/gpt2*` files name tensors `h.0...` (no `transformer.`) and carry `attn.bias` masks."""
    src, gpt2 = gpt2_folder
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(src / "model.safetensors").items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    ours = gpt2_to_scratchgpt(src)
    ids = torch.randint(0, 50257, (1, 9))
    assert torch.allclose(_logits(ours, ids), _logits(gpt2, ids), atol=1e-4, rtol=0)


def test_export_gpt2_loads_in_plain_transformers_without_our_code(tmp_path, verdict_tokenizer):
    torch.manual_seed(2)
    config = ScratchGPTConfig(vocab_size=len(verdict_tokenizer), context_length=24, emb_dim=24, n_heads=3, n_layers=2)
    config.drop_rate = 0.0
    ours = ScratchGPTForCausalLM(config).eval()
    src, out = tmp_path / "ours", tmp_path / "gpt2"
    ours.save_pretrained(src)
    verdict_tokenizer.save_pretrained(src)
    assert main(["export-gpt2", str(src), str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "gpt2" and "auto_map" not in saved
    assert not list(out.glob("*.py"))
    ids = torch.randint(0, config.vocab_size, (2, 10))
    torch.save(ids, tmp_path / "ids.pt")
    code = (
        "import sys, torch; sys.modules['hf_scratchgpt'] = None\n"  # our package cannot be imported
        "from transformers import GPT2LMHeadModel, AutoTokenizer\n"
        f"m = GPT2LMHeadModel.from_pretrained({str(out)!r}).eval()\n"
        f"ids = torch.load({str(tmp_path / 'ids.pt')!r}, weights_only=True)\n"
        f"torch.save(m(ids).logits.detach(), {str(tmp_path / 'logits.pt')!r})\n"
        f"print(len(AutoTokenizer.from_pretrained({str(out)!r})))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split()[-1] == str(len(verdict_tokenizer))
    theirs = torch.load(tmp_path / "logits.pt", weights_only=True)
    assert torch.allclose(theirs, _logits(ours, ids), atol=1e-4, rtol=0)


BOOK_CFG = {
    "vocab_size": 400,
    "context_length": 64,
    "emb_dim": 128,
    "n_heads": 4,
    "n_layers": 4,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


@pytest.mark.parametrize("layout", ["model.pth", "model_and_optimizer.pth"])
def test_convert_book_checkpoint_gives_identical_logits(tmp_path, verdict_tokenizer, layout):
    torch.manual_seed(3)
    book = BookGPTModel(BOOK_CFG).eval()
    path = tmp_path / layout
    if layout == "model.pth":
        torch.save(book.state_dict(), path)
    else:
        optimizer = torch.optim.AdamW(book.parameters(), lr=4e-4, weight_decay=0.1)
        book(torch.randint(0, 400, (1, 8))).sum().backward()
        optimizer.step()
        torch.save({"model_state_dict": book.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, path)
    tok_dir = tmp_path / "tok"
    verdict_tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "ours"
    assert main(["convert-book", str(path), str(out), "--preset", "tiny", "--tokenizer", str(tok_dir)]) == 0
    ours = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert ours.config.context_length == 64 and ours.config.vocab_size == 400 and not ours.config.qkv_bias
    ids = torch.randint(0, 400, (2, 40))
    with torch.no_grad():
        assert torch.equal(_logits(ours, ids), book(ids))  # the book's own arithmetic: bit for bit


def test_book_classifier_becomes_a_sequence_classifier():
    torch.manual_seed(4)
    book = BookGPTModel(BOOK_CFG).eval()
    book.out_head = nn.Linear(128, 2)  # the book's chapter-6 head
    ours = book_to_scratchgpt(book.state_dict(), preset="tiny")
    assert isinstance(ours, ScratchGPTForSequenceClassification) and ours.config.num_labels == 2
    ours.set_attn_implementation("eager")
    ids = torch.randint(0, 400, (3, 12))
    with torch.no_grad():
        # the body is bit-identical; the book applies its head to every position and keeps the last, we
        # apply it to the last position only: the same weights on the same vector (a (3, 12, 128) matmul
        # may round its rows differently from a (3, 128) one, so the head is compared on equal inputs)
        hidden = ours.transformer(input_ids=ids).last_hidden_state
        book_hidden = book.final_norm(book.trf_blocks(book.tok_emb(ids) + book.pos_emb(torch.arange(12))))
        assert torch.equal(hidden, book_hidden)
        assert torch.equal(ours(input_ids=ids).logits, book.out_head(book_hidden[:, -1, :]))
        assert torch.allclose(ours(input_ids=ids).logits, book(ids)[:, -1, :], atol=1e-6)


class NotWeights:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("other-architecture", ValueError, r"'llama', not 'gpt2'.*missing keys: h\.0\..*unexpected keys: model\.embed"),
        ("shape", ValueError, r"tensor wpe\.weight has shape \(32, 16\) but the config needs \(64, 16\)"),
        ("truncated", ValueError, "lies outside the file \\(truncated or corrupt\\)"),
        ("corrupt", ValueError, "not a readable safetensors file"),
        ("no-weights", FileNotFoundError, "no model.safetensors"),
        ("missing", FileNotFoundError, "GPT-2 checkpoint not found"),
    ],
)
def test_convert_gpt2_bad_input_writes_nothing(tmp_path, gpt2_folder, case, error, message):
    src, _ = gpt2_folder
    weights = src / "model.safetensors"
    if case == "other-architecture":
        from transformers import LlamaConfig, LlamaForCausalLM

        src = tmp_path / "llama"
        LlamaForCausalLM(
            LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
        ).save_pretrained(src)
    elif case == "shape":
        config = json.loads((src / "config.json").read_text())
        config["n_positions"] = 64
        (src / "config.json").write_text(json.dumps(config))
    elif case == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif case == "corrupt":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\0" * 64)
    elif case == "no-weights":
        weights.unlink()
    elif case == "missing":
        src = tmp_path / "nowhere"
    out = tmp_path / "out"
    from hf_scratchgpt.commands.convert import convert_gpt2

    with pytest.raises(error, match=message):
        convert_gpt2(str(src), str(out))
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert main(["convert-gpt2", str(src), str(out)]) == 2


def test_convert_book_bad_input_writes_nothing(tmp_path, verdict_tokenizer, capsys):
    from hf_scratchgpt.commands.convert import convert_book, export_gpt2

    torch.manual_seed(5)
    book = BookGPTModel(BOOK_CFG)
    good = tmp_path / "model.pth"
    torch.save(book.state_dict(), good)
    evil = tmp_path / "evil.pth"
    torch.save({"tok_emb.weight": torch.zeros(2, 2), "payload": NotWeights()}, evil)
    out = tmp_path / "out"
    tok = tmp_path / "tok"
    verdict_tokenizer.save_pretrained(tok)
    with pytest.raises(ValueError, match="not a weights-only PyTorch checkpoint"):
        convert_book(str(evil), str(out), preset="tiny", tokenizer=str(tok))
    assert "this must never run" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown preset 'gpt2-huge'"):
        convert_book(str(good), str(out), preset="gpt2-huge", tokenizer=str(tok))
    with pytest.raises(
        ValueError, match=r"tensor tok_emb\.weight has shape \(400, 128\) but the config needs \(400, 768\)"
    ):
        convert_book(str(good), str(out), preset="gpt2-small", config='{"n_layers": 4}', tokenizer=str(tok))
    with pytest.raises(ValueError, match=r"missing keys: .*trf_blocks\.4\."):
        convert_book(str(good), str(out), preset="tiny", config='{"n_layers": 6}', tokenizer=str(tok))
    with pytest.raises(ValueError, match="--config: not valid JSON"):
        convert_book(str(good), str(out), preset="tiny", config="{n_layers: 6}", tokenizer=str(tok))
    with pytest.raises(ValueError, match="the tokenizer has 50,257 tokens but the model's vocabulary is 400"):
        convert_book(str(good), str(out), preset="tiny", tokenizer=str(SHARED_DATA / "gpt2"))
    with pytest.raises(FileNotFoundError, match="book checkpoint not found"):
        convert_book(str(tmp_path / "none.pth"), str(out), preset="tiny")
    # a classifier cannot become a GPT2LMHeadModel
    classifier = ScratchGPTForSequenceClassification(ScratchGPTConfig(**BOOK_CFG, num_labels=2))
    classifier.save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="takes a causal LM"):
        export_gpt2(str(tmp_path / "clf"), str(out))
    assert not out.exists()
