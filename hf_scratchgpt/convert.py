"""Conversions: transformers' GPT-2 <-> ScratchGPT, and the book's checkpoints -> ScratchGPT.

GPT-2 keeps q, k and v in one `Conv1D` (`attn.c_attn`, weight `(in, 3 * out)`, used as `x @ W`);
ScratchGPT keeps the book's three `nn.Linear`s (`att.W_query/W_key/W_value`, weight `(out, in)`).
So a GPT-2 checkpoint converts by splitting `c_attn` in three and transposing every Conv1D weight;
the rest is renaming. The book's `GPTModel` state dict is ScratchGPT's with a `transformer.` prefix.

Sources are read tensor by tensor (plain reads, no memory map) and the models are built on the
meta device, so a conversion holds about one copy of the weights.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from .model import PRESETS, ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from .paths import is_hub_id

logger = logging.getLogger(__name__)

QKV = ("W_query", "W_key", "W_value")
# (ScratchGPT name in a block, GPT-2 name in a block, is a Conv1D weight that must be transposed)
BLOCK_MAP = [
    ("norm1.scale", "ln_1.weight", False),
    ("norm1.shift", "ln_1.bias", False),
    ("att.out_proj.weight", "attn.c_proj.weight", True),
    ("att.out_proj.bias", "attn.c_proj.bias", False),
    ("norm2.scale", "ln_2.weight", False),
    ("norm2.shift", "ln_2.bias", False),
    ("ff.layers.0.weight", "mlp.c_fc.weight", True),
    ("ff.layers.0.bias", "mlp.c_fc.bias", False),
    ("ff.layers.2.weight", "mlp.c_proj.weight", True),
    ("ff.layers.2.bias", "mlp.c_proj.bias", False),
]
GPT2_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers older GPT-2 files carry
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


# ----------------------------------------------------------------------------- reading tensors


SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class SafetensorsReader:
    """Reads one tensor at a time from a `.safetensors` file with plain reads (no memory map).

    Only the tensor being read is held: pages of a memory-mapped file would count as resident
    memory of this process until it closes the file. The header is checked against the file
    size, so a truncated or corrupt file fails here with its name.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= size - 8:
                raise ValueError(f"{self.path}: not a readable safetensors file (header length {n}, file {size} bytes)")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{self.path}: not a readable safetensors file (header: {err})") from None
        header.pop("__metadata__", None)
        self.base = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for key, info in header.items():
            try:
                dtype = SAFETENSORS_DTYPES[info["dtype"]]
                start, end = info["data_offsets"]
                shape = tuple(int(d) for d in info["shape"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{self.path}: not a readable safetensors file (entry {key!r})") from None
            if not 0 <= start <= end <= size - self.base or end - start != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"{self.path}: tensor {key} lies outside the file (truncated or corrupt)")
            self.entries[key] = (dtype, shape, start, end)

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key][1]

    def get_tensor(self, key: str) -> torch.Tensor:
        dtype, shape, start, end = self.entries[key]
        out = torch.empty(shape, dtype=dtype)
        with open(self.path, "rb") as f:
            f.seek(self.base + start)
            if f.readinto(out.view(-1).view(torch.uint8).numpy()) != end - start:
                raise ValueError(f"{self.path}: tensor {key} cannot be read (file ends early)")
        return out


class Tensors:
    """Named tensors from a safetensors file (read one at a time), a state dict or a module.

    Keys of GPT-2 files with and without the `transformer.` prefix look the same here (without it).
    """

    def __init__(self, source: str | Path | dict | nn.Module, strip: str = "") -> None:
        self.name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
        self._file = SafetensorsReader(source) if isinstance(source, (str, Path)) else None
        if self._file is not None:
            self._dict: dict[str, torch.Tensor] = {}
            raw = self._file.keys()
        else:
            self._dict = dict(source.state_dict() if isinstance(source, nn.Module) else source)
            raw = list(self._dict)
        self._raw = {(k[len(strip) :] if strip and k.startswith(strip) else k): k for k in raw}

    def keys(self) -> list[str]:
        return list(self._raw)

    def shape(self, key: str) -> tuple[int, ...]:
        if self._file is not None:
            return self._file.shape(self._raw[key])
        return tuple(self._dict[self._raw[key]].shape)

    def __getitem__(self, key: str) -> torch.Tensor:
        if self._file is not None:
            return self._file.get_tensor(self._raw[key])
        return self._dict[self._raw[key]]


def check_tensors(tensors: Tensors, expected: dict[str, tuple[int, ...]], what: str, ignore=()) -> None:
    """Raise `ValueError` listing missing/unexpected keys, or naming a tensor whose shape is wrong."""
    have = {k for k in tensors.keys() if not k.endswith(tuple(ignore))}
    missing, unexpected = sorted(set(expected) - have), sorted(have - set(expected))
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "") if keys else "none"

        raise ValueError(
            f"{tensors.name} is not a {what} checkpoint of this shape: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}"
        )
    for key, shape in expected.items():
        if tensors.shape(key) != tuple(shape):
            raise ValueError(
                f"{tensors.name}: tensor {key} has shape {tensors.shape(key)} but the config needs {tuple(shape)}"
            )


# ----------------------------------------------------------------------------- configs


def config_from_gpt2(gpt2: GPT2Config | dict, **overrides: Any) -> ScratchGPTConfig:
    """The ScratchGPT configuration of a GPT-2 one (qkv bias on; tied head unless the GPT-2 config unties it).

    Raises:
        ValueError: For GPT-2 options ScratchGPT does not have (another activation, another MLP
            width, attention scaled by layer index, cross-attention).
    """
    g = gpt2.to_dict() if isinstance(gpt2, GPT2Config) else dict(gpt2)
    refuse = {
        "activation_function": (g.get("activation_function", "gelu_new") not in GELU_TANH, "a tanh GELU"),
        "n_inner": (g.get("n_inner") not in (None, 4 * g["n_embd"]), f"None or 4 * n_embd = {4 * g['n_embd']}"),
        "scale_attn_weights": (not g.get("scale_attn_weights", True), "true"),
        "scale_attn_by_inverse_layer_idx": (g.get("scale_attn_by_inverse_layer_idx", False), "false"),
        "add_cross_attention": (g.get("add_cross_attention", False), "false"),
    }
    for name, (bad, wanted) in refuse.items():
        if bad:
            raise ValueError(f"GPT-2 config {name}={g.get(name)!r} has no ScratchGPT equivalent (needs {wanted})")
    drops = {g.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(drops) > 1:
        logger.warning("GPT-2 dropouts differ (%s); ScratchGPT has one drop_rate and takes resid_pdrop", drops)
    values = {
        "vocab_size": g["vocab_size"],
        "context_length": g["n_positions"],
        "emb_dim": g["n_embd"],
        "n_heads": g["n_head"],
        "n_layers": g["n_layer"],
        "drop_rate": g.get("resid_pdrop", 0.1),
        "qkv_bias": True,
        "layer_norm_eps": g.get("layer_norm_epsilon", 1e-5),
        "initializer_range": g.get("initializer_range", 0.02),
        "tie_word_embeddings": g.get("tie_word_embeddings", True),
        "bos_token_id": g.get("bos_token_id"),
        "eos_token_id": g.get("eos_token_id"),
        "pad_token_id": g.get("pad_token_id"),
    }
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # random test configs keep 50256 in a tiny vocab
        if values[name] is not None and not 0 <= values[name] < values["vocab_size"]:
            values[name] = None
    return ScratchGPTConfig(**{**values, **overrides})


def config_to_gpt2(config: ScratchGPTConfig) -> GPT2Config:
    """The GPT-2 configuration of a ScratchGPT one (without qkv bias, GPT-2's biases are written as zeros)."""
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.context_length,
        n_embd=config.emb_dim,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        activation_function="gelu_new",
        resid_pdrop=config.drop_rate,
        embd_pdrop=config.drop_rate,
        attn_pdrop=config.drop_rate,
        layer_norm_epsilon=config.layer_norm_eps,
        initializer_range=config.initializer_range,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def model_shapes(model_cls: type, config: Any, strip: str = "", tied_head: str | None = None) -> dict[str, tuple]:
    """Tensor names and shapes of `model_cls(config)`, read off a meta-device model (no memory).

    `strip` removes a key prefix; `tied_head` names the head weight to leave out when the config
    ties it to the token embedding (a tied head need not be in a file).
    """
    with init_empty_weights():
        model = model_cls(config)
    shapes = {k.removeprefix(strip): tuple(v.shape) for k, v in model.state_dict().items()}
    if tied_head is not None and config.tie_word_embeddings:
        shapes.pop(tied_head, None)
    return shapes


def gpt2_shapes(g: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Expected tensor names (without `transformer.`) and shapes of a GPT-2 LM checkpoint."""
    return model_shapes(GPT2LMHeadModel, g, strip="transformer.", tied_head="lm_head.weight")


# ----------------------------------------------------------------------------- state dicts


def iter_gpt2_to_scratchgpt(tensors: Tensors, config: ScratchGPTConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """ScratchGPT tensors from GPT-2 ones, one at a time (c_attn split in three, Conv1D weights transposed)."""
    e = config.emb_dim
    yield "transformer.tok_emb.weight", tensors["wte.weight"]
    yield "transformer.pos_emb.weight", tensors["wpe.weight"]
    for i in range(config.n_layers):
        ours, theirs = f"transformer.trf_blocks.{i}.", f"h.{i}."
        weight, bias = tensors[theirs + "attn.c_attn.weight"], tensors[theirs + "attn.c_attn.bias"]
        for j, name in enumerate(QKV):
            yield f"{ours}att.{name}.weight", weight[:, j * e : (j + 1) * e].t().contiguous()
            yield f"{ours}att.{name}.bias", bias[j * e : (j + 1) * e].clone()
        del weight, bias
        for our_name, their_name, conv in BLOCK_MAP:
            t = tensors[theirs + their_name]
            yield ours + our_name, t.t().contiguous() if conv else t
    yield "transformer.final_norm.scale", tensors["ln_f.weight"]
    yield "transformer.final_norm.shift", tensors["ln_f.bias"]
    if not config.tie_word_embeddings:
        yield "out_head.weight", tensors["lm_head.weight"]


def iter_scratchgpt_to_gpt2(tensors: Tensors, config: ScratchGPTConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """GPT-2 tensors (with the `transformer.` prefix) from ScratchGPT ones: the inverse mapping."""
    yield "transformer.wte.weight", tensors["transformer.tok_emb.weight"]
    yield "transformer.wpe.weight", tensors["transformer.pos_emb.weight"]
    for i in range(config.n_layers):
        ours, theirs = f"transformer.trf_blocks.{i}.", f"transformer.h.{i}."
        weights = [tensors[f"{ours}att.{n}.weight"] for n in QKV]
        yield theirs + "attn.c_attn.weight", torch.cat(weights, dim=0).t().contiguous()
        if config.qkv_bias:
            yield theirs + "attn.c_attn.bias", torch.cat([tensors[f"{ours}att.{n}.bias"] for n in QKV])
        else:  # no bias is a zero bias: the same function
            yield theirs + "attn.c_attn.bias", torch.zeros(3 * config.emb_dim, dtype=weights[0].dtype)
        del weights
        for our_name, their_name, conv in BLOCK_MAP:
            t = tensors[ours + our_name]
            yield theirs + their_name, t.t().contiguous() if conv else t
    yield "transformer.ln_f.weight", tensors["transformer.final_norm.scale"]
    yield "transformer.ln_f.bias", tensors["transformer.final_norm.shift"]
    if not config.tie_word_embeddings:
        yield "lm_head.weight", tensors["out_head.weight"]


def _assign(model_cls: type, config: Any, state: Iterator[tuple[str, torch.Tensor]]) -> nn.Module:
    """A model built on the meta device whose parameters become the given tensors (no second copy)."""
    with init_empty_weights():
        model = model_cls(config)
    model.load_state_dict(dict(state), strict=False, assign=True)
    model.tie_weights()
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if still_meta:  # a bug in a mapping, never a user error: the checks above ran first
        raise RuntimeError(f"conversion left parameters unset: {still_meta[:5]}")
    return model.eval()


# ----------------------------------------------------------------------------- GPT-2 <-> ScratchGPT


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _weights_file(folder: Path) -> Path:
    path = folder / "model.safetensors"
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(f"{folder}: no model.safetensors (found: {', '.join(found) or 'nothing'})")
    return path


def _gpt2_source(src: Any, config: GPT2Config | dict | None) -> tuple[Tensors, GPT2Config]:
    if isinstance(src, GPT2LMHeadModel):
        return Tensors(src, strip="transformer."), src.config
    if isinstance(src, dict):
        if config is None:
            raise ValueError("a GPT-2 state dict needs its config (config=GPT2Config(...))")
        g = config if isinstance(config, GPT2Config) else GPT2Config(**config)
        return Tensors(src, strip="transformer."), g
    folder = Path(src)
    if not folder.exists():
        if not is_hub_id(src):
            raise FileNotFoundError(f"GPT-2 checkpoint not found: {src}")
        from huggingface_hub import snapshot_download  # a Hub id (needs the network)

        folder = Path(snapshot_download(str(src), allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    raw = _read_config(folder)
    tensors = Tensors(_weights_file(folder), strip="transformer.")
    if raw.get("model_type") != "gpt2":
        layers = raw.get("n_layer", raw.get("num_hidden_layers", 1))
        probe = GPT2Config(n_layer=layers, tie_word_embeddings=True)
        what = f"{folder}: config.json has model_type {raw.get('model_type')!r}, not 'gpt2'"
        try:
            check_tensors(tensors, gpt2_shapes(probe), "GPT-2", ignore=(*GPT2_BUFFERS, "lm_head.weight"))
        except ValueError as err:
            raise ValueError(f"{what}; {err}") from None
        raise ValueError(what)
    return tensors, GPT2Config(**{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})


def gpt2_to_scratchgpt(
    src: str | Path | GPT2LMHeadModel | dict, config: GPT2Config | dict | None = None
) -> ScratchGPTForCausalLM:
    """A ScratchGPT causal LM with the weights of a transformers GPT-2 model.

    Args:
        src: A folder with `config.json` + `model.safetensors` (the `openai-community/gpt2*` layout), a
            Hub id (online only), a `GPT2LMHeadModel`, or a GPT-2 state dict (then `config` is required).
        config: The GPT-2 config of a state dict.

    Raises:
        ValueError: Another architecture (missing/unexpected keys listed), a tensor of the wrong shape,
            an unreadable safetensors file, or GPT-2 options ScratchGPT cannot express.
    """
    tensors, g = _gpt2_source(src, config)
    tied = g.tie_word_embeddings
    if not tied and "lm_head.weight" not in tensors.keys():  # files of tied models may omit the head
        g.tie_word_embeddings = tied = True
    ours = config_from_gpt2(g, tie_word_embeddings=tied)
    check_tensors(tensors, gpt2_shapes(g), "GPT-2", ignore=GPT2_BUFFERS + (("lm_head.weight",) if tied else ()))
    model = _assign(ScratchGPTForCausalLM, ours, iter_gpt2_to_scratchgpt(tensors, ours))
    return model


def scratchgpt_shapes(config: ScratchGPTConfig) -> dict[str, tuple[int, ...]]:
    """Expected tensor names and shapes of a ScratchGPT causal LM."""
    return model_shapes(ScratchGPTForCausalLM, config, tied_head="out_head.weight")


def _check_scratchgpt(tensors: Tensors, config: ScratchGPTConfig) -> None:
    tied_head = ("out_head.weight",) if config.tie_word_embeddings else ()  # a tied head may be saved or not
    check_tensors(tensors, scratchgpt_shapes(config), "ScratchGPT causal-LM", ignore=tied_head)


def _scratchgpt_source(src: Any, config: ScratchGPTConfig | None) -> tuple[Tensors, ScratchGPTConfig]:
    if isinstance(src, ScratchGPTForSequenceClassification):
        raise ValueError("export to GPT-2 takes a causal LM; this is a sequence classifier")
    if isinstance(src, ScratchGPTForCausalLM):
        return Tensors(src), src.config
    if isinstance(src, dict):
        if config is None:
            raise ValueError("a ScratchGPT state dict needs its config (config=ScratchGPTConfig(...))")
        tensors = Tensors(src)
        _check_scratchgpt(tensors, config)
        return tensors, config
    folder = Path(src)
    if not folder.is_dir():
        raise FileNotFoundError(f"ScratchGPT folder not found: {src}")
    raw = _read_config(folder)
    if raw.get("model_type") != ScratchGPTConfig.model_type:
        raise ValueError(f"{folder}: config.json has model_type {raw.get('model_type')!r}, not 'scratchgpt'")
    archs = raw.get("architectures") or ["ScratchGPTForCausalLM"]
    if archs != ["ScratchGPTForCausalLM"]:
        raise ValueError(f"{folder}: export to GPT-2 takes a causal LM; this folder holds {archs}")
    config = ScratchGPTConfig.from_pretrained(folder)
    tensors = Tensors(_weights_file(folder))
    _check_scratchgpt(tensors, config)
    return tensors, config


def scratchgpt_to_gpt2(
    src: str | Path | ScratchGPTForCausalLM | dict, config: ScratchGPTConfig | None = None
) -> GPT2LMHeadModel:
    """A transformers `GPT2LMHeadModel` with the weights of a ScratchGPT causal LM.

    Args:
        src: A ScratchGPT folder, a `ScratchGPTForCausalLM`, or its state dict (then `config` is required).
        config: The config of a state dict.

    Raises:
        ValueError: Not a ScratchGPT causal LM (a classifier, another model type), missing/unexpected
            keys or a tensor of the wrong shape.
    """
    tensors, config = _scratchgpt_source(src, config)
    return _assign(GPT2LMHeadModel, config_to_gpt2(config), iter_scratchgpt_to_gpt2(tensors, config))


# ----------------------------------------------------------------------------- the book's checkpoints


def load_book_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `GPTModel` state dict in the book's `model.pth`, or in `model_and_optimizer.pth`
    (`{"model_state_dict": ..., "optimizer_state_dict": ...}`); weights-only unpickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"book checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: refused or unreadable — not a weights-only PyTorch checkpoint ({first})") from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or a dict with 'model_state_dict')")
    return obj


def book_to_scratchgpt(
    state_dict: dict[str, torch.Tensor] | str | Path | nn.Module,
    preset: str = "gpt2-small",
    **overrides: Any,
) -> ScratchGPTForCausalLM | ScratchGPTForSequenceClassification:
    """A ScratchGPT model from the book's `GPTModel` weights.

    The vocabulary, context length and qkv bias are read off the tensors; the preset gives the rest;
    `overrides` win over both. A chapter-6 classifier (its `out_head` has a bias and `num_labels`
    rows) becomes a `ScratchGPTForSequenceClassification` whose `score` is that head.

    Raises:
        ValueError: Unknown preset, missing/unexpected keys, a tensor of the wrong shape.
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = load_book_state_dict(state_dict)
    tensors = Tensors(state_dict)
    keys = set(tensors.keys())
    for needed in ("tok_emb.weight", "pos_emb.weight", "out_head.weight"):
        if needed not in keys:
            raise ValueError(f"not a book GPTModel state dict: no {needed} (keys start {sorted(keys)[:5]})")
    inferred = {
        "vocab_size": tensors.shape("tok_emb.weight")[0],
        "context_length": tensors.shape("pos_emb.weight")[0],
        "qkv_bias": "trf_blocks.0.att.W_query.bias" in keys,
        "init_scheme": "book",
    }
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # GPT-2's 50256 does not fit a smaller vocabulary
        value = PRESETS[preset].get(name)
        if value is not None and value >= inferred["vocab_size"]:
            inferred[name] = None
    config = ScratchGPTConfig.from_preset(preset, **{**inferred, **overrides})
    classifier = "out_head.bias" in keys
    if classifier:
        config.num_labels = tensors.shape("out_head.weight")[0]
    model_cls = ScratchGPTForSequenceClassification if classifier else ScratchGPTForCausalLM
    expected = {}
    for key, shape in scratchgpt_shapes(config).items():
        if key.startswith("transformer."):
            expected[key[len("transformer.") :]] = shape
    head = {"out_head.weight": (config.num_labels, config.emb_dim), "out_head.bias": (config.num_labels,)}
    expected.update(head if classifier else {"out_head.weight": (config.vocab_size, config.emb_dim)})
    check_tensors(tensors, expected, "book GPTModel", ignore=(".att.mask",))

    def renamed() -> Iterator[tuple[str, torch.Tensor]]:
        for key in expected:
            target = ("score" + key[len("out_head") :]) if classifier and key.startswith("out_head") else key
            if not key.startswith("out_head"):
                target = "transformer." + key
            yield target, tensors[key]

    config.tie_word_embeddings = False
    return _assign(model_cls, config, renamed())
