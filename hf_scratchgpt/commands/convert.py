"""The `convert` family of verbs: `scratchgpt convert-gpt2`, `export-gpt2`, `export-gguf` and `convert-book`.

Each reads and checks everything before it writes, and writes its folder atomically, so a bad input
leaves nothing in OUT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..convert import book_to_scratchgpt, gpt2_to_scratchgpt, scratchgpt_to_gpt2
from ..folders import check_output_dir, write_model_folder
from ..gguf_export import export_gguf_file
from ..tokenization import gpt2_tokenizer, has_tokenizer_files, load_tokenizer


def _tokenizer(explicit: str | None, src: str | Path | None, vocab_size: int) -> Any:
    """The tokenizer to bundle: the one asked for, else SRC's own, else GPT-2's; it must fit the vocabulary."""
    if explicit is not None:
        tok = load_tokenizer(explicit)
    elif src is not None and Path(src).is_dir() and has_tokenizer_files(src):
        tok = load_tokenizer(src)
    else:
        tok = gpt2_tokenizer()
    if len(tok) > vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tok):,} tokens but the model's vocabulary is {vocab_size:,}; "
            f"pass a matching --tokenizer"
        )
    return tok


def convert_gpt2(src: str, out: str, tokenizer: str | None = None, overwrite: bool = False) -> Path:
    """Convert a transformers GPT-2 checkpoint into a ScratchGPT folder (qkv bias on, tied head).

    Args:
        src: GPT-2 folder with config.json + model.safetensors (the openai-community/gpt2* layout), or a Hub id.
        out: ScratchGPT folder to write.
        tokenizer: Tokenizer to bundle (default: SRC's own, else GPT-2's).
        overwrite: Replace an existing, non-empty OUT.

    Returns:
        The output folder.
    """
    check_output_dir(out, overwrite)
    model = gpt2_to_scratchgpt(src)
    tok = _tokenizer(tokenizer, src, model.config.vocab_size)
    write_model_folder(
        out,
        model,
        tok,
        command="convert-gpt2",
        card_fields={
            "weights": f"converted from GPT-2 `{src}`",
            "provenance": f"Weights of the transformers GPT-2 checkpoint `{src}`: `c_attn` split into "
            "W_query/W_key/W_value and every Conv1D weight transposed; nothing trained.",
        },
        card_meta={"license": "mit"},  # GPT-2's weights are MIT-licensed
        overwrite=overwrite,
    )
    print(f"converted GPT-2 {src} ({model.num_parameters():,} parameters) -> {out}")
    return Path(out)


def export_gpt2(src: str, out: str, overwrite: bool = False) -> Path:
    """Write a ScratchGPT causal LM as a plain transformers GPT-2 folder (GPT2LMHeadModel, no custom code).

    Args:
        src: ScratchGPT folder (config.json with model_type scratchgpt, model.safetensors).
        out: GPT-2 folder to write.
        overwrite: Replace an existing, non-empty OUT.

    Returns:
        The output folder.
    """
    check_output_dir(out, overwrite)
    model = scratchgpt_to_gpt2(src)
    tok = load_tokenizer(src) if has_tokenizer_files(src) else None
    write_model_folder(
        out, model, tok, command="export-gpt2", template="export_gpt2", card_fields={"source": src}, overwrite=overwrite
    )
    print(f"exported {src} as GPT-2 ({model.num_parameters():,} parameters) -> {out}")
    return Path(out)


def export_gguf(
    src: str,
    out: str,
    dtype: str = "f32",
    tokenizer: str | None = None,
    modelfile: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a ScratchGPT causal LM as a GGUF file for llama.cpp and Ollama (llama.cpp's GPT-2 layout).

    The file holds the weights, the hyperparameters, the tokenizer with its merges and the chat
    template; an Ollama Modelfile is written beside it (`ollama create NAME -f Modelfile`).

    Args:
        src: ScratchGPT folder (config.json with model_type scratchgpt, model.safetensors, tokenizer.json).
        out: GGUF file to write, e.g. model.gguf.
        dtype: Weight type: f32 (exact), f16, or q8_0 (llama.cpp's 8-bit blocks; matrices whose rows
            are not a multiple of 32 long stay f16).
        tokenizer: Tokenizer to write (default: SRC's own).
        modelfile: Also write an Ollama Modelfile beside OUT (the chat template, stop tokens, defaults).
        overwrite: Replace an existing OUT (and Modelfile).

    Returns:
        The GGUF file.
    """
    path, mf = export_gguf_file(src, out, dtype=dtype, tokenizer=tokenizer, modelfile=modelfile, overwrite=overwrite)
    size = path.stat().st_size / 2**20
    print(f"exported {src} as GGUF {dtype} ({size:,.1f} MiB) -> {path}")
    if mf is not None:
        print(f"Ollama: cd {mf.parent} && ollama create NAME -f {mf.name}")
    return path


def convert_book(
    ckpt: str,
    out: str,
    *,
    preset: str,
    config: str | None = None,
    tokenizer: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the book's `model.pth` / `model_and_optimizer.pth` into a ScratchGPT folder.

    Args:
        ckpt: The book's checkpoint: a GPTModel state dict, or a dict with model_state_dict (weights-only load).
        out: ScratchGPT folder to write.
        preset: Model size: gpt2-small, gpt2-medium, gpt2-large or gpt2-xl (vocabulary, context length
            and qkv bias are read from the weights).
        config: JSON object of config overrides, e.g. '{"drop_rate": 0.0}'.
        tokenizer: Tokenizer to bundle (default: GPT-2's, as the book).
        overwrite: Replace an existing, non-empty OUT.

    Returns:
        The output folder.
    """
    check_output_dir(out, overwrite)
    try:
        overrides = json.loads(config) if config else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--config: not valid JSON ({err})") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--config: expected a JSON object, got {config!r}")
    model = book_to_scratchgpt(ckpt, preset=preset, **overrides)
    tok = _tokenizer(tokenizer, None, model.config.vocab_size)
    write_model_folder(
        out,
        model,
        tok,
        command="convert-book",
        card_fields={
            "weights": f"converted from the book's checkpoint `{Path(ckpt).name}`",
            "provenance": f"The book's `GPTModel` state dict `{ckpt}` (preset `{preset}`), keys prefixed with "
            "`transformer.`; nothing trained.",
        },
        card_meta={"license": "mit"},  # GPT-2's weights are MIT-licensed
        overwrite=overwrite,
    )
    print(f"converted {ckpt} ({type(model).__name__}, {model.num_parameters():,} parameters) -> {out}")
    return Path(out)
