"""The `model` family of verbs: train a tokenizer, make a model, generate text (stages 1 and 5)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from ..folders import atomic_output_dir, check_output_dir, write_model_folder
from ..model import ScratchGPTConfig, ScratchGPTForCausalLM
from ..paths import model_folder_or_hub
from ..tokenization import load_tokenizer, train_bpe_tokenizer


def train_tokenizer(
    *,
    files: list[str],
    vocab_size: int,
    out: str,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Train a byte-level BPE tokenizer on text files and save it as a Hugging Face folder.

    Args:
        files: UTF-8 text files to learn from.
        vocab_size: Largest vocabulary size (>= 257).
        out: Folder to write (tokenizer.json, tokenizer_config.json, chat_template.jinja).
        min_frequency: Least count of a pair to be merged.
        model_max_length: Context length recorded in the tokenizer config.
        overwrite: Replace an existing, non-empty `out`.

    Returns:
        The output folder.
    """
    check_output_dir(out, overwrite)
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training file not found: {path}")
    tok = train_bpe_tokenizer(
        paths, vocab_size=vocab_size, min_frequency=min_frequency, model_max_length=model_max_length
    )
    with atomic_output_dir(out, overwrite) as tmp:
        tok.save_pretrained(tmp)
    print(f"trained a BPE tokenizer with {len(tok):,} tokens on {len(paths)} file(s) -> {out}")
    return Path(out)


def init_model(
    *,
    out: str,
    preset: str = "tiny",
    tokenizer: str | None = None,
    context_length: int | None = None,
    seed: int = 123,
    init_scheme: str = "gpt2",
    tie_word_embeddings: bool = False,
    overwrite: bool = False,
) -> Path:
    """Create a randomly initialised ScratchGPT causal LM folder from a preset.

    Args:
        out: Folder to write.
        preset: Model size: tiny, gpt2-small, gpt2-medium, gpt2-large or gpt2-xl.
        tokenizer: Tokenizer to bundle (a folder, GPT-2's encoder.json + vocab.bpe folder, or a Hub id); its
            size sets the vocabulary and its `<|endoftext|>` the eos/pad ids.
        context_length: Override the preset's context length.
        seed: Random seed of the initialisation.
        init_scheme: gpt2 (normal 0.02) or book (PyTorch defaults, as the book).
        tie_word_embeddings: Share the output head with the token embedding.
        overwrite: Replace an existing, non-empty `out`.

    Returns:
        The output folder.
    """
    check_output_dir(out, overwrite)
    overrides: dict = {"init_scheme": init_scheme, "tie_word_embeddings": tie_word_embeddings}
    if context_length is not None:
        overrides["context_length"] = context_length
    tok = None
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
        overrides.update(
            vocab_size=len(tok),
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    config = ScratchGPTConfig.from_preset(preset, **overrides)
    torch.manual_seed(seed)
    model = ScratchGPTForCausalLM(config)
    write_model_folder(
        out,
        model,
        tok,
        command="init-model",
        card_fields={
            "weights": f"random ({init_scheme} init, seed {seed})",
            "provenance": f"Preset `{preset}`, not trained."
            + ("" if tok is not None else " No tokenizer: give one with `--tokenizer` where text is needed."),
        },
        overwrite=overwrite,
    )
    print(f"wrote a {preset} ScratchGPT ({model.num_parameters():,} parameters) -> {out}")
    return Path(out)


def check_generation_options(model_dir: str, temperature: float, max_new_tokens: int) -> Path | str:
    """Where the model of `model_dir` is (a folder or a Hub id), once it and the sampling options are checked.

    Raises:
        FileNotFoundError: A local path without a model folder (no config.json).
        ValueError: A negative temperature or a max_new_tokens below 1.
    """
    where = model_folder_or_hub(model_dir)
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if max_new_tokens <= 0:
        raise ValueError(f"--max-new-tokens must be > 0, got {max_new_tokens}")
    return where


def generate(
    model_dir: str,
    *,
    prompt: str,
    max_new_tokens: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_beams: int = 1,
    seed: int = 123,
    tokenizer: str | None = None,
) -> str:
    """Continue a prompt with a saved model (greedy unless a temperature is given).

    Args:
        model_dir: Folder with the model and its tokenizer (or a Hub id when online).
        prompt: Text to continue; an empty prompt starts from the tokenizer's beginning-of-text token.
        max_new_tokens: Most tokens to generate.
        temperature: 0 is greedy; above 0 samples.
        top_k: Sample only among the k most likely tokens.
        top_p: Sample only among the smallest set of tokens whose probability reaches p.
        num_beams: Beam search width (1: no beam search).
        seed: Random seed for sampling.
        tokenizer: Tokenizer to use instead of the model folder's own.

    Returns:
        The generated continuation (also printed).
    """
    where = check_generation_options(model_dir, temperature, max_new_tokens)
    model = AutoModelForCausalLM.from_pretrained(where).eval()
    tok = load_tokenizer(tokenizer if tokenizer is not None else where)
    ids = tok(prompt, return_tensors="pt")["input_ids"] if prompt else _start_ids(tok)
    context = model.config.max_position_embeddings
    limit = context - ids.shape[1]
    if limit <= 0:
        raise ValueError(f"the prompt has {ids.shape[1]} tokens, more than the model's context_length {context}")
    if max_new_tokens > limit:
        print(f"note: generating {limit} tokens, the room left in the context of {context}", file=sys.stderr)
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=min(max_new_tokens, limit),
            num_beams=num_beams,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            **sampling,
        )
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    print(prompt + text)
    return text


def _start_ids(tok) -> torch.Tensor:
    """`(1, 1)`: the beginning-of-text token an empty prompt starts from (GPT-2: `<|endoftext|>`)."""
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise ValueError("--prompt is empty and the tokenizer has no beginning- or end-of-text token to start from")
    return torch.tensor([[start]])
