"""GGUF export: a ScratchGPT causal LM as a llama.cpp file of architecture `gpt2`, and an Ollama Modelfile.

ScratchGPT is GPT-2 with the book's names, so the file is what llama.cpp's own converter writes for
a GPT-2 checkpoint. The tensors come from the GPT-2 mapping of `hf_scratchgpt.convert`
(`iter_scratchgpt_to_gpt2`: W_query/W_key/W_value joined into `c_attn`, zero biases when the model
has no qkv bias) and are renamed with the `gguf` package's own GPT-2 name table (`blk.N.attn_qkv`,
`blk.N.ffn_up`, ...). GGUF keeps matrices as `(out, in)` rows, so GPT-2's Conv1D weights are
transposed back to the `nn.Linear` layout. A tied head has no `output.weight` (readers reuse
`token_embd.weight`); an untied one has.

Weight types: `f32` (every tensor exact), `f16` (matrices in half precision, norms and biases f32,
as llama.cpp's converter does) and `q8_0` (matrices in llama.cpp's 8-bit blocks of 32 values; a
matrix whose rows are not a multiple of 32 long stays f16). Position embeddings are always f32.

The tokenizer is written as llama.cpp's `gpt2` tokenizer model: the tokens in id order (byte-level
spelling), their types (special added tokens are control tokens; ids past the tokenizer up to the
model's vocabulary are unused `[PADn]` tokens), the merges, the special ids, and the pre-tokenizer
`gpt-2` (GPT-2's split regex, which is what `tokenizers`' ByteLevel pre-tokenizer with `use_regex`
applies, for GPT-2's tokenizer and for `train_bpe_tokenizer`'s alike). A tokenizer that llama.cpp
would split or merge differently is refused with a `ValueError` naming what differs. The chat
template goes into `tokenizer.chat_template` with its `{% generation %}` markers (a transformers
extension other Jinja engines reject) written as the equivalent `{% if true %}` blocks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .convert import BLOCK_MAP, Tensors, _scratchgpt_source, iter_scratchgpt_to_gpt2
from .folders import atomic_output_file, check_output_file
from .model import ScratchGPTConfig, ScratchGPTForCausalLM
from .prompts import prompt_format, template_style
from .tokenization import load_tokenizer

logger = logging.getLogger(__name__)

GGUF_DTYPES = ("f32", "f16", "q8_0")
GGUF_EXTRA = "pip install 'hf-scratchgpt[gguf]'"
PRE_TOKENIZER = "gpt-2"  # llama.cpp's name for GPT-2's split regex
CONV1D = ("attn.c_attn.weight", *(gpt2 for _, gpt2, conv in BLOCK_MAP if conv))  # GPT-2 weights stored (in, out)
Q8_BLOCK = 32
MODELFILE = "Modelfile"
# token types of llama.cpp (gguf.TokenType)
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def import_gguf() -> Any:
    """The `gguf` package.

    Raises:
        ImportError: It is not installed; the message names the extra that installs it.
    """
    try:
        import gguf
    except ImportError:
        raise ImportError(f"GGUF export needs the gguf package: {GGUF_EXTRA}") from None
    return gguf


# ----------------------------------------------------------------------------- the tokenizer


@dataclass
class GGUFVocab:
    """The tokenizer as llama.cpp's `gpt2` tokenizer model describes it.

    Attributes:
        tokens: Every token in id order, as many as the model's vocabulary.
        token_types: llama.cpp's type of each token (1 normal, 3 control, 4 user-defined, 5 unused).
        merges: The BPE merges, best first, as "left right".
        bos_id: Beginning-of-sequence id, or None.
        eos_id: End-of-sequence id, or None.
        pad_id: Padding id, or None.
        unk_id: Unknown-token id, or None.
        add_bos: Encoding puts the bos token first.
        add_eos: Encoding puts the eos token last.
        chat_template: The chat template (generation markers rewritten), or None.
    """

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None


_GENERATION = re.compile(r"(\{%-?\s*)(end)?generation(\s*-?%\})")


def portable_chat_template(template: str) -> str:
    """`template` without transformers' `{% generation %}` markers, which other Jinja engines reject.

    Each marker becomes the `{% if true %}` / `{% endif %}` it renders like, keeping its whitespace
    control, so every engine renders the same text as `apply_chat_template`.
    """
    return _GENERATION.sub(lambda m: f"{m[1]}{'endif' if m[2] else 'if true'}{m[3]}", template)


def _describe(component: dict | None) -> str:
    if not component:
        return "none"
    return json.dumps({k: v for k, v in component.items() if not isinstance(v, (list, dict))}, sort_keys=True)


def gguf_vocab(tokenizer: Any, vocab_size: int, name: str = "the tokenizer") -> GGUFVocab:
    """Describe `tokenizer` as llama.cpp's `gpt2` tokenizer model, padded to `vocab_size` tokens.

    Raises:
        ValueError: The tokenizer is not a byte-level BPE that llama.cpp tokenizes the same way (its
            model, normalizer, pre-tokenizer, decoder, post-processor or added tokens differ), or it
            has more tokens than the model's vocabulary.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{name}: GGUF export needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}

    def refuse(what: str) -> ValueError:
        return ValueError(
            f"{name}: {what}; llama.cpp's gpt2 tokenizer (byte-level BPE, GPT-2's split regex) cannot represent it"
        )

    if model.get("type") != "BPE":
        raise refuse(f"model type {model.get('type')!r} is not BPE")
    for key in ("dropout", "byte_fallback", "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise refuse(f"BPE {key}={model.get(key)!r} (needs none)")
    if spec.get("normalizer") is not None:
        raise refuse(f"normalizer {_describe(spec['normalizer'])} (needs none)")
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space", False):
        raise refuse(f"pre-tokenizer {_describe(pre)} (needs ByteLevel with use_regex and no prefix space)")
    if (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise refuse(f"decoder {_describe(spec.get('decoder'))} (needs ByteLevel)")

    vocab = backend.get_vocab(with_added_tokens=True)
    n = len(vocab)
    if sorted(vocab.values()) != list(range(n)):
        raise refuse("token ids are not 0..n-1 without gaps")
    if n > vocab_size:
        raise ValueError(f"{name} has {n:,} tokens but the model's vocabulary is {vocab_size:,}")
    added = {t["id"]: t for t in spec.get("added_tokens") or []}
    for token in added.values():
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            raise refuse(f"added token {token['content']!r} strips spaces or matches single words")
    tokens = [""] * n
    for token, i in vocab.items():
        tokens[i] = token
    types = [(CONTROL if added[i].get("special") else USER_DEFINED) if i in added else NORMAL for i in range(n)]
    tokens += [f"[PAD{i}]" for i in range(n, vocab_size)]  # ids the model has and the tokenizer never makes
    types += [UNUSED] * (vocab_size - n)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    ids = {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    at = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), None)
    before, after = (full, []) if at is None else (full[:at], full[at + len(plain) :])
    if before not in ([], [ids["bos"]]) or after not in ([], [ids["eos"]]):
        raise refuse(f"encoding adds the special tokens {before} before and {after} after the text")
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: llama.cpp reads the default one
        template = template.get("default")
    return GGUFVocab(
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=ids["bos"],
        eos_id=ids["eos"],
        pad_id=ids["pad"],
        unk_id=ids["unk"],
        add_bos=bool(before),
        add_eos=bool(after),
        chat_template=portable_chat_template(template) if template else None,
    )


# ----------------------------------------------------------------------------- the weights


def _encode(name: str, array: np.ndarray, dtype: str, gguf: Any) -> tuple[np.ndarray, Any]:
    """`(data, raw_dtype)` of one tensor for `GGUFWriter.add_tensor` (raw_dtype None: the array's own)."""
    if array.ndim == 1 or dtype == "f32" or name.startswith("position_embd."):
        return array.astype(np.float32), None
    if dtype == "q8_0":
        if array.shape[-1] % Q8_BLOCK == 0:
            q8 = gguf.GGMLQuantizationType.Q8_0
            return gguf.quants.quantize(array.astype(np.float32), q8), q8
        logger.warning("%s: rows of %d values are not blocks of %d; kept in f16", name, array.shape[-1], Q8_BLOCK)
    return array.astype(np.float16), None


def gguf_tensors(tensors: Tensors, config: ScratchGPTConfig, dtype: str) -> Iterator[tuple[str, np.ndarray, Any]]:
    """`(gguf name, data, raw_dtype)` of every tensor, one at a time, through the GPT-2 mapping."""
    gguf = import_gguf()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, config.n_layers)
    for gpt2_name, tensor in iter_scratchgpt_to_gpt2(tensors, config):
        module, suffix = gpt2_name.removeprefix("transformer.").rsplit(".", 1)
        base = names.get_name("transformer." + module) or names.get_name(module)
        if base is None:  # a bug in a mapping, never a user error
            raise RuntimeError(f"no GGUF name for GPT-2 tensor {gpt2_name}")
        tensor = tensor.detach().float()
        if gpt2_name.endswith(CONV1D):
            tensor = tensor.t()
        name = f"{base}.{suffix}"
        yield (name, *_encode(name, tensor.contiguous().numpy(), dtype, gguf))


# ----------------------------------------------------------------------------- the file


def write_gguf(
    src: str | Path | ScratchGPTForCausalLM,
    path: str | Path,
    tokenizer: Any,
    dtype: str = "f32",
    name: str | None = None,
) -> ScratchGPTConfig:
    """Write a ScratchGPT causal LM as a GGUF file of architecture `gpt2` at `path` (not atomically:
    `export_gguf_file` writes through a temporary file).

    The source is read one tensor at a time; the writer holds the converted tensors (one copy of
    the output's size) until it writes them.

    Args:
        src: A ScratchGPT folder or a `ScratchGPTForCausalLM`.
        path: The file to write.
        tokenizer: The model's tokenizer (see `gguf_vocab`).
        dtype: `f32`, `f16` or `q8_0`.
        name: `general.name` (default: the folder's name).

    Returns:
        The model's config.

    Raises:
        ValueError: An unknown dtype, not a ScratchGPT causal LM, or a tokenizer llama.cpp cannot represent.
        ImportError: `gguf` is not installed.
    """
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(GGUF_DTYPES)}, got {dtype!r}")
    gguf = import_gguf()
    tensors, config = _scratchgpt_source(src, None)
    from_folder = isinstance(src, (str, Path))
    vocab = gguf_vocab(tokenizer, config.vocab_size, name=f"the tokenizer of {src}" if from_folder else "the tokenizer")
    if name is None:
        name = Path(src).name if from_folder else "scratchgpt"
    types = gguf.LlamaFileType
    file_type = {"f32": types.ALL_F32, "f16": types.MOSTLY_F16, "q8_0": types.MOSTLY_Q8_0}[dtype]

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_name(name)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.emb_dim)
    writer.add_feed_forward_length(4 * config.emb_dim)
    writer.add_block_count(config.n_layers)
    writer.add_head_count(config.n_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    for key, value in (("bos", vocab.bos_id), ("eos", vocab.eos_id), ("pad", vocab.pad_id), ("unk", vocab.unk_id)):
        if value is not None:
            getattr(writer, f"add_{key}_token_id")(value)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)

    for tensor_name, data, raw_dtype in gguf_tensors(tensors, config, dtype):
        writer.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return config


# ----------------------------------------------------------------------------- the Ollama Modelfile


def _go(text: str) -> str:
    """`text` as a Go template string constant (JSON's escapes are Go's)."""
    return json.dumps(text)


def ollama_template(style: str, eos_token: str) -> str:
    """The Go template (Ollama's `TEMPLATE`) that renders a conversation as the chat template of `style` does.

    Sections (system text, user and assistant turns) are joined by the style's separator; each
    assistant turn ends with the end token; the rendering ends with the assistant header. The
    default system text is not in the template: the Modelfile's `SYSTEM` gives it, and Ollama sends
    it as the first message when a conversation has no system message of its own.
    """
    fmt = prompt_format(style)
    sep = _go(fmt.separator)
    system = f"{{{{ {_go(fmt.system_header)} }}}}" if fmt.system_header else ""
    lines = [
        '{{- $sep := "" }}',
        "{{- range .Messages }}",
        '{{- if eq .Role "system" }}',
        f"{{{{- if .Content }}}}{{{{ $sep }}}}{system}{{{{ .Content }}}}{{{{ $sep = {sep} }}}}{{{{ end }}}}",
        '{{- else if eq .Role "user" }}',
        f"{{{{- $sep }}}}{{{{ {_go(fmt.user_header)} }}}}{{{{ .Content }}}}{{{{ $sep = {sep} }}}}",
        '{{- else if eq .Role "assistant" }}',
        f"{{{{- $sep }}}}{{{{ {_go(fmt.assistant_header)} }}}}{{{{ .Content }}}}{{{{ {_go(eos_token)} }}}}"
        f"{{{{ $sep = {sep} }}}}",
        "{{- end }}",
        "{{- end }}",
        f"{{{{- $sep }}}}{{{{ {_go(fmt.assistant_header)} }}}}",
    ]
    return "\n".join(lines)


def _quoted(text: str) -> str:
    if '"""' in text:
        raise ValueError(f'cannot write {text[:40]!r}... into a Modelfile: it holds """')
    return f'"""{text}"""'


def modelfile_text(gguf_path: str, tokenizer: Any, context_length: int, max_new_tokens: int = 200) -> str:
    """An Ollama Modelfile for the GGUF file at `gguf_path` (relative to the Modelfile's folder).

    The template follows the tokenizer's chat template when it is one of the package's styles
    (alpaca, phi3); any other template, or none, sends the prompt as it is. The parameters are
    `scratchgpt chat`'s defaults: greedy (temperature 0), no repetition penalty, replies of at most
    `max_new_tokens` and half the context.
    """
    style = template_style(tokenizer)
    eos = tokenizer.eos_token or ""
    lines = [
        "# Ollama Modelfile written by `scratchgpt export-gguf`: ollama create NAME -f Modelfile",
        f"FROM ./{gguf_path}",
    ]
    stops = [eos] if eos else []
    if style is not None:
        fmt = prompt_format(style)
        lines += [f"# the {style} prompt style of hf_scratchgpt.prompts, as the tokenizer's chat template"]
        lines.append(f"TEMPLATE {_quoted(ollama_template(style, eos))}")
        if fmt.default_system:
            lines.append(f"SYSTEM {_quoted(fmt.default_system)}")
        stops.append(fmt.user_header.strip())
    else:
        why = "is not one of hf_scratchgpt's styles" if getattr(tokenizer, "chat_template", None) else "is absent"
        lines += [
            f"# the tokenizer's chat template {why}: prompts are sent as they are",
            'TEMPLATE """{{ .Prompt }}"""',
        ]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops if stop]
    lines += [
        "PARAMETER temperature 0",
        "PARAMETER repeat_penalty 1",
        f"PARAMETER num_ctx {context_length}",
        f"PARAMETER num_predict {min(max_new_tokens, context_length // 2)}",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- both, atomically


def export_gguf_file(
    src: str | Path,
    out: str | Path,
    dtype: str = "f32",
    tokenizer: str | Path | None = None,
    modelfile: bool = True,
    overwrite: bool = False,
) -> tuple[Path, Path | None]:
    """Write a ScratchGPT folder as a GGUF file and, beside it, an Ollama `Modelfile`.

    Both files are checked before any work and written through temporary files in their folder, so
    a failure leaves neither under its final name.

    Args:
        src: A ScratchGPT causal-LM folder with its tokenizer.
        out: The GGUF file to write.
        dtype: `f32`, `f16` or `q8_0`.
        tokenizer: The tokenizer to write (default: the folder's own).
        modelfile: Also write `Modelfile` beside `out`.
        overwrite: Replace existing files.

    Returns:
        `(gguf path, Modelfile path or None)`.

    Raises:
        ValueError: See `write_gguf`.
        FileExistsError: A file exists and `overwrite` is False.
        ImportError: `gguf` is not installed.
    """
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(GGUF_DTYPES)}, got {dtype!r}")
    import_gguf()
    if not Path(src).is_dir():
        raise FileNotFoundError(f"ScratchGPT folder not found: {src}")
    out = check_output_file(out, overwrite)
    mf = out.with_name(MODELFILE) if modelfile else None
    if mf is not None and mf.exists() and not overwrite:
        raise FileExistsError(
            f"{mf} already exists (another export's Ollama Modelfile?); pass --overwrite to replace it, "
            "--no-modelfile to write the GGUF file alone, or give OUT in another folder"
        )
    if mf is not None:
        check_output_file(mf, overwrite)
    tok = load_tokenizer(src if tokenizer is None else tokenizer)
    with atomic_output_file(out, overwrite) as tmp:
        config = write_gguf(src, tmp, tok, dtype=dtype, name=Path(src).name)
        if mf is not None:
            with atomic_output_file(mf, overwrite) as tmp_mf:
                tmp_mf.write_text(modelfile_text(out.name, tok, config.context_length), encoding="utf-8")
    return out, mf
