"""`scratchgpt export-gguf`: the file loads back in transformers and runs in llama.cpp with the original's outputs.

Two independent readers check the export: transformers' GGUF loader (its own gpt2 name table and
tokenizer builder) must give the original logits, and llama.cpp (through llama-cpp-python, an
optional extra: skipped when it is not installed) must tokenize like the original tokenizer and
continue a prompt greedily with the original's token ids.

Tolerances on max |logit difference|, as a fraction of the original model's largest |logit|:
transformers f32 1e-5 (exact up to float rounding), f16 2e-3 (half-precision matrices), q8_0 2e-2
(8-bit blocks); llama.cpp f32 1e-3, f16 2e-3, q8_0 2e-2 (its GELU and sums round differently).
The Ollama Modelfile is checked as text, and its Go template by rendering it with a small
interpreter of the actions it uses (Ollama is not needed).
"""

import json
import os
import sys

import gguf
import numpy as np
import pytest
import torch
from tokenizers import normalizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.cli import main
from hf_scratchgpt.convert import Tensors
from hf_scratchgpt.folders import save_model_files
from hf_scratchgpt.gguf_export import (
    GGUF_EXTRA,
    gguf_tensors,
    gguf_vocab,
    import_gguf,
    modelfile_text,
    ollama_template,
    portable_chat_template,
)
from hf_scratchgpt.prompts import chat_template, prompt_format
from hf_scratchgpt.tokenization import load_gpt2_tokenizer, train_bpe_tokenizer

from .conftest import SHARED_DATA

TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "q8_0": 2e-2}
TEXTS = [
    "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough.",
    "  two spaces, tabs\tand\nnew lines\n\n; digits 12345 and 3.14; it's 'quoted' we'll",
    "unicode: café, naïve, 東京, emoji 🙂<|endoftext|>after the end token",
]


def _config(vocab_size: int, tied: bool, **overrides) -> ScratchGPTConfig:
    values = dict(vocab_size=vocab_size, context_length=48, emb_dim=64, n_heads=4, n_layers=2, drop_rate=0.0)
    values.update(init_scheme="book", qkv_bias=False)  # PyTorch's init: logits of a few units, not ~0
    values.update(overrides)
    config = ScratchGPTConfig(**values)
    config.tie_word_embeddings = tied
    return config


def _folder(root, tokenizer, tied=False, seed=0, **overrides):
    """A ScratchGPT folder whose vocabulary is 16 ids larger than its tokenizer (unused ids are padded)."""
    torch.manual_seed(seed)
    model = ScratchGPTForCausalLM(_config(len(tokenizer) + 16, tied, **overrides)).eval()
    save_model_files(root, model, tokenizer)
    return root, model


@pytest.fixture(scope="module")
def untied(tmp_path_factory, verdict_tokenizer):
    return _folder(tmp_path_factory.mktemp("gguf") / "untied", verdict_tokenizer, qkv_bias=True)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _export(src, out, *args):
    assert main(["export-gguf", str(src), str(out), *args]) == 0
    return out


def _fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {name: field.contents() for name, field in reader.fields.items()}


# ----------------------------------------------------------------------------- transformers reads it back


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("tied", [False, True])
def test_transformers_loads_the_gguf_with_the_original_logits(tmp_path, verdict_tokenizer, dtype, tied):
    src, ours = _folder(tmp_path / "src", verdict_tokenizer, tied=tied)
    out = _export(src, tmp_path / "out" / f"model-{dtype}.gguf", "--dtype", dtype)
    # transformers maps gpt2.context_length to GPT2Config.n_ctx, which nothing reads, and keeps the
    # default n_positions=1024: a file of another context length needs it given (a transformers bug).
    theirs = AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name, n_positions=48).eval()
    assert type(theirs).__name__ == "GPT2LMHeadModel" and theirs.config.tie_word_embeddings == tied
    assert theirs.config.vocab_size == ours.config.vocab_size
    ids = torch.randint(0, len(verdict_tokenizer), (2, 48))
    expected = _logits(ours, ids)
    diff = (_logits(theirs, ids) - expected).abs().max().item()
    scale = expected.abs().max().item()
    print(f"{dtype} tied={tied}: max|logit diff| {diff:.3g} (largest |logit| {scale:.3g})")
    assert diff <= TOLERANCE[dtype] * scale


def test_the_file_holds_llama_cpp_gpt2_metadata_and_tensor_types(tmp_path, untied, verdict_tokenizer):
    src, ours = untied
    out = _export(src, tmp_path / "m.gguf", "--dtype", "q8_0")
    reader, fields = _fields(out)
    c = ours.config
    assert fields["general.architecture"] == "gpt2" and fields["general.name"] == "untied"
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    expected = {
        "context_length": 48,
        "embedding_length": 64,
        "feed_forward_length": 256,
        "block_count": 2,
        "attention.head_count": 4,
    }
    assert {k: fields[f"gpt2.{k}"] for k in expected} == expected
    assert fields["gpt2.attention.layer_norm_epsilon"] == pytest.approx(c.layer_norm_eps)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    n = len(verdict_tokenizer)
    assert len(tokens) == c.vocab_size == n + 16
    assert tokens[:n] == verdict_tokenizer.convert_ids_to_tokens(list(range(n)))
    assert tokens[n:] == [f"[PAD{i}]" for i in range(n, n + 16)] and set(types[n:]) == {gguf.TokenType.UNUSED}
    assert types[0] == gguf.TokenType.CONTROL and set(types[1:n]) == {gguf.TokenType.NORMAL}  # <|endoftext|> is 0
    merges = json.loads(verdict_tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(pair) for pair in merges]
    assert fields["tokenizer.ggml.eos_token_id"] == fields["tokenizer.ggml.bos_token_id"] == 0
    assert fields["tokenizer.ggml.add_bos_token"] is False and fields["tokenizer.ggml.add_eos_token"] is False
    assert "{%- generation -%}" not in fields["tokenizer.chat_template"]
    types_of = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types_of["output.weight"] == types_of["blk.1.attn_qkv.weight"] == "Q8_0"
    assert types_of["token_embd.weight"] == types_of["blk.0.ffn_down.weight"] == "Q8_0"
    assert (
        types_of["position_embd.weight"] == types_of["blk.0.attn_qkv.bias"] == types_of["output_norm.weight"] == "F32"
    )
    qkv = next(t for t in reader.tensors if t.name == "blk.0.attn_qkv.weight")
    assert list(qkv.shape) == [64, 192]  # GGUF lists the row length first: (out=3*64, in=64) as PyTorch writes it


def test_q8_0_keeps_rows_that_are_not_blocks_of_32_in_f16(verdict_tokenizer):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(_config(len(verdict_tokenizer), True, emb_dim=48, n_heads=3))
    types = {name: (raw or data.dtype) for name, data, raw in gguf_tensors(Tensors(model), model.config, "q8_0")}
    assert (
        types["blk.0.attn_qkv.weight"] == np.float16
        and types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0
    )
    assert "output.weight" not in types  # tied: readers reuse token_embd


@pytest.mark.parametrize("which", ["verdict", "gpt2"])
def test_transformers_rebuilds_the_same_tokenizer_from_the_file(tmp_path, which, verdict_tokenizer, gpt2_tokenizer):
    tok = verdict_tokenizer if which == "verdict" else gpt2_tokenizer
    src, _ = _folder(tmp_path / "src", tok, emb_dim=32, n_layers=1)
    out = _export(src, tmp_path / "m.gguf", "--dtype", "f16")
    theirs = AutoTokenizer.from_pretrained(tmp_path, gguf_file=out.name)
    for text in TEXTS:
        assert theirs(text)["input_ids"] == tok(text)["input_ids"], text
        assert theirs.decode(tok(text)["input_ids"]) == text
    assert theirs.eos_token == tok.eos_token == "<|endoftext|>"


@pytest.mark.parametrize("style", ["alpaca", "phi3"])
def test_the_chat_template_in_the_file_renders_like_the_tokenizers(tmp_path, style):
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=300, chat_template=style)
    src, _ = _folder(tmp_path / "src", tok, emb_dim=32, n_layers=1)
    out = _export(src, tmp_path / "m.gguf")
    _, fields = _fields(out)
    assert fields["tokenizer.chat_template"] == portable_chat_template(chat_template(style))
    theirs = AutoTokenizer.from_pretrained(tmp_path, gguf_file=out.name)
    for messages in _conversations():
        for prompt in (True, False):
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            assert theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt) == rendered


def _conversations():
    return [
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}],
        [
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "And 4?"},
        ],
    ]


# ----------------------------------------------------------------------------- refusals, atomic output, extras


def test_a_tokenizer_llama_cpp_cannot_represent_is_refused_by_name(tmp_path, verdict_tokenizer, capsys):
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=300)
    tok.backend_tokenizer.normalizer = normalizers.Lowercase()
    with pytest.raises(ValueError, match=r"my tokenizer: normalizer .*Lowercase.* cannot represent it"):
        gguf_vocab(tok, 400, name="my tokenizer")
    src, _ = _folder(tmp_path / "src", tok, emb_dim=32, n_layers=1)
    assert main(["export-gguf", str(src), str(tmp_path / "out" / "m.gguf")]) == 2
    err = capsys.readouterr().err
    assert "normalizer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")  # no partial file, no Modelfile
    with pytest.raises(ValueError, match="has 50,257 tokens but the model's vocabulary is 400"):
        gguf_vocab(load_gpt2_tokenizer(SHARED_DATA / "gpt2"), 400)


def test_existing_files_need_overwrite_and_bad_options_are_one_line(tmp_path, untied, capsys):
    src, _ = untied
    out = tmp_path / "m.gguf"
    out.write_text("old")
    assert main(["export-gguf", str(src), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "old"
    assert main(["export-gguf", str(src), str(out), "--dtype", "q4_0"]) == 2
    assert "--dtype must be one of f32, f16, q8_0, got 'q4_0'" in capsys.readouterr().err
    assert main(["export-gguf", str(src), str(out), "--overwrite", "--no-modelfile"]) == 0
    assert out.read_bytes()[:4] == b"GGUF" and sorted(os.listdir(tmp_path)) == ["m.gguf"]
    assert main(["export-gguf", str(tmp_path / "nowhere"), str(tmp_path / "n.gguf")]) == 2
    (tmp_path / "Modelfile").write_text("another export's")  # a second export into the same folder
    assert main(["export-gguf", str(src), str(tmp_path / "m2.gguf")]) == 2
    err = capsys.readouterr().err
    assert "Modelfile already exists (another export's Ollama Modelfile?)" in err and "--no-modelfile" in err
    assert not (tmp_path / "m2.gguf").exists()
    assert main(["export-gguf", str(src), str(tmp_path / "m2.gguf"), "--no-modelfile"]) == 0


def test_a_missing_gguf_package_names_the_extra(monkeypatch, tmp_path, untied, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"pip install 'hf-scratchgpt\[gguf\]'"):
        import_gguf()
    assert main(["export-gguf", str(untied[0]), str(tmp_path / "m.gguf")]) == 2
    assert GGUF_EXTRA in capsys.readouterr().err and not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- the Ollama Modelfile


def test_the_modelfile_points_at_the_file_and_follows_the_alpaca_template(tmp_path, untied):
    src, _ = untied
    _export(src, tmp_path / "model-q8_0.gguf", "--dtype", "q8_0")
    text = (tmp_path / "Modelfile").read_text()
    lines = text.splitlines()
    assert "FROM ./model-q8_0.gguf" in lines
    assert 'PARAMETER stop "<|endoftext|>"' in lines and 'PARAMETER stop "### Instruction:"' in lines
    assert {"PARAMETER temperature 0", "PARAMETER repeat_penalty 1", "PARAMETER num_ctx 48"} <= set(lines)
    assert "PARAMETER num_predict 24" in lines  # scratchgpt chat's reply: at most half the context
    assert f'SYSTEM """{prompt_format("alpaca").default_system}"""' in lines
    assert 'TEMPLATE """' + ollama_template("alpaca", "<|endoftext|>") + '"""' in text


@pytest.mark.parametrize("style", ["alpaca", "phi3"])
def test_the_ollama_template_renders_the_chat_templates_text(style, verdict_tokenizer):
    """Render the Go template with a small interpreter of the actions it uses and compare with
    `apply_chat_template` (Ollama sends the Modelfile's SYSTEM first when a chat has no system message)."""
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=300, chat_template=style)
    template = ollama_template(style, tok.eos_token)
    default = prompt_format(style).default_system
    for messages in _conversations():
        sent = (
            messages
            if messages[0]["role"] == "system" or not default
            else [{"role": "system", "content": default}, *messages]
        )
        expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert _render_go(template, sent) == expected


def test_a_folder_without_one_of_our_templates_sends_prompts_as_they_are(verdict_tokenizer):
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=300, chat_template=None)
    text = modelfile_text("m.gguf", tok, 1024)
    assert 'TEMPLATE """{{ .Prompt }}"""' in text and "num_predict 200" in text and "SYSTEM" not in text
    assert text.count("PARAMETER stop") == 1


def _render_go(template: str, messages: list[dict]) -> str:
    """The Go text/template subset of `ollama_template`: `$sep` assignments, `range .Messages`,
    `if eq .Role "..."` / `else if` / `if .Content`, and printing string constants, `.Content`, `$sep`."""
    import re

    actions = re.findall(r"\{\{-?\s*(.*?)\s*-?\}\}", template)
    assert re.sub(r"\{\{.*?\}\}", "", template).strip() == "", "text outside actions"
    out, env = [], {}

    def run(i: int, message: dict | None, emit: bool) -> int:
        stack: list[bool] = []  # per open if: was a branch already taken
        active = [emit]
        while i < len(actions):
            a = actions[i]
            on = all(active)
            if a == "range .Messages":
                end = None
                for m in messages:
                    end = run(i + 1, m, on)
                i = end if end is not None else run(i + 1, None, False)
                continue
            if a == "end":
                if not stack:
                    return i + 1
                stack.pop()
                active.pop()
            elif a.startswith("if ") or a.startswith("else if "):
                cond = a.split("if ", 1)[1]
                if cond.startswith("eq .Role "):
                    value = message is not None and message["role"] == json.loads(cond[len("eq .Role ") :])
                else:
                    assert cond == ".Content", cond
                    value = message is not None and bool(message["content"])
                if a.startswith("if "):
                    stack.append(value)
                    active.append(value)
                else:
                    active[-1] = not stack[-1] and value
                    stack[-1] = stack[-1] or value
            elif on:
                if a.startswith("$") and "=" in a:
                    name, value = re.split(r"\s*:?=\s*", a, maxsplit=1)
                    env[name] = json.loads(value)
                elif a == ".Content":
                    out.append(message["content"])
                elif a.startswith("$"):
                    out.append(env[a])
                else:
                    out.append(json.loads(a))
            i += 1
        return i

    run(0, None, True)
    return "".join(out)


# ----------------------------------------------------------------------------- llama.cpp runs it


@pytest.fixture
def llama_cpp(monkeypatch):
    """llama-cpp-python, loading weights without llama.cpp's extra buffer types (the AMX/repacked
    kernels): those fault with SIGILL (`tilezero`) in virtual machines that do not enable AMX tiles,
    and the plain CPU kernels are the ones every machine has."""
    module = pytest.importorskip("llama_cpp")
    bindings = module.llama_cpp  # the C API, which `Llama` asks for its defaults
    defaults = bindings.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    monkeypatch.setattr(bindings, "llama_model_default_params", without_extra_buffers)
    return module


@pytest.mark.parametrize("which", ["verdict", "gpt2"])
def test_llama_cpp_tokenizes_like_the_original_tokenizer(tmp_path, which, llama_cpp, verdict_tokenizer, gpt2_tokenizer):
    tok = verdict_tokenizer if which == "verdict" else gpt2_tokenizer
    src, _ = _folder(tmp_path / "src", tok, emb_dim=32, n_layers=1)
    out = _export(src, tmp_path / "m.gguf", "--dtype", "f16")
    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    assert llm.n_vocab() == len(tok) + 16 and llm.token_eos() == tok.eos_token_id
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
        assert llm.detokenize(ids, special=True).decode() == text


LLAMA_TOLERANCE = {"f32": 1e-3, "f16": 2e-3, "q8_0": 2e-2}  # llama.cpp's GELU and sums differ a little from torch's


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_continues_greedily_like_the_original(tmp_path, dtype, untied, llama_cpp, verdict_tokenizer):
    src, ours = untied
    out = _export(src, tmp_path / "m.gguf", "--dtype", dtype)
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=48, n_threads=1, logits_all=True, verbose=False)
    prompt = verdict_tokenizer(TEXTS[0])["input_ids"][:16]
    expected = ours.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, pad_token_id=0)[0, 16:]
    llm.eval(prompt)
    reference = _logits(ours, torch.tensor([prompt]))[0].numpy()
    diff, scale = np.abs(np.asarray(llm.scores[: len(prompt)]) - reference).max(), np.abs(reference).max()
    print(f"llama.cpp {dtype}: max|logit diff| {diff:.3g} (largest |logit| {scale:.3g})")
    assert diff <= LLAMA_TOLERANCE[dtype] * scale
    llm.reset()
    got = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
        got.append(token)
        if len(got) == len(expected):
            break
    assert got == expected.tolist()


def test_llama_cpp_python_renders_the_files_chat_template(tmp_path, verdict_tokenizer):
    formats = pytest.importorskip("llama_cpp.llama_chat_format")  # the Jinja formatter llama-cpp-python chats with
    _, fields = _fields(_export(_folder(tmp_path / "src", verdict_tokenizer, emb_dim=32)[0], tmp_path / "m.gguf"))
    formatter = formats.Jinja2ChatFormatter(fields["tokenizer.chat_template"], eos_token="<|endoftext|>", bos_token="")
    for messages in _conversations():
        expected = verdict_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert formatter(messages=messages).prompt == expected
