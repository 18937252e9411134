"""Tokenizers (stage 1): the book's word-level tokenizer, a trained byte-level BPE, and GPT-2's.

* `SimpleTokenizer` — the readable regex tokenizer of chapter 2.3/2.4 with `[BOS]`, `[EOS]`,
  `[PAD]` and `[UNK]`.
* `train_bpe_tokenizer` — byte-level BPE trained with `tokenizers` (all 256 bytes in the base
  alphabet, so nothing is ever unknown), returned as a transformers fast tokenizer.
* `load_gpt2_tokenizer` — OpenAI's GPT-2 tokenizer built offline from its two published files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, GPT2Tokenizer, PreTrainedTokenizerFast

from .paths import local_or_hub
from .prompts import TEMPLATE_STYLES
from .prompts import chat_template as style_chat_template

EOT = "<|endoftext|>"
SIMPLE_SPECIAL_TOKENS = ("[BOS]", "[EOS]", "[PAD]", "[UNK]")
_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')
_SPACE_BEFORE_PUNCT = re.compile(r'\s+([,.:;?_!"()\'])')


def split_words(text: str) -> list[str]:
    """Split on whitespace and punctuation, keep the punctuation, drop the spaces (chapter 2.2)."""
    return [item.strip() for item in _SPLIT.split(text) if item.strip()]


class SimpleTokenizer:
    """The book's word-level tokenizer (`SimpleTokenizerV2`) with `[BOS]`, `[EOS]`, `[PAD]`, `[UNK]`.

    Args:
        vocab: Mapping token -> id. It must contain `[UNK]`; words not in it encode to `[UNK]`.
    """

    def __init__(self, vocab: Mapping[str, int]) -> None:
        if "[UNK]" not in vocab:
            raise ValueError("SimpleTokenizer vocab must contain the '[UNK]' token")
        self.str_to_int = dict(vocab)
        self.int_to_str = {i: s for s, i in self.str_to_int.items()}
        if len(self.int_to_str) != len(self.str_to_int):
            raise ValueError("SimpleTokenizer vocab maps two tokens to the same id")

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = SIMPLE_SPECIAL_TOKENS) -> SimpleTokenizer:
        """Build the vocabulary from `text`: its sorted unique words, then the special tokens."""
        words = sorted(set(split_words(text)))
        specials = [t for t in special_tokens if t not in words]
        return cls({token: i for i, token in enumerate(words + specials)})

    def __len__(self) -> int:
        return len(self.str_to_int)

    @property
    def vocab_size(self) -> int:
        return len(self.str_to_int)

    def _special_id(self, token: str) -> int | None:
        return self.str_to_int.get(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("[BOS]")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("[EOS]")

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("[PAD]")

    @property
    def unk_token_id(self) -> int:
        return self.str_to_int["[UNK]"]

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of `text`; unknown words become `[UNK]`."""
        unk = self.unk_token_id
        ids = [self.str_to_int.get(word, unk) for word in split_words(text)]
        if add_bos:
            ids.insert(0, self._required("[BOS]"))
        if add_eos:
            ids.append(self._required("[EOS]"))
        return ids

    def _required(self, token: str) -> int:
        if token not in self.str_to_int:
            raise ValueError(f"this SimpleTokenizer has no {token} token")
        return self.str_to_int[token]

    def decode(self, ids: Iterable[int]) -> str:
        """Join the tokens with spaces and remove the spaces before punctuation."""
        try:
            text = " ".join(self.int_to_str[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"token id {err.args[0]} is not in this SimpleTokenizer's vocabulary") from None
        return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _iter_texts(texts_or_files: str | os.PathLike | Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield texts; a `Path`, or a string naming an existing file, is read as UTF-8 text."""
    items = [texts_or_files] if isinstance(texts_or_files, (str, os.PathLike)) else texts_or_files
    for item in items:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and "\n" not in item and _is_file(item)):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer training file not found: {path}")
            try:
                yield path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: not UTF-8 text (byte offset {err.start}: {err.reason})") from None
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"expected text or a file path, got {type(item).__name__}")


def _is_file(candidate: str) -> bool:
    try:
        return len(candidate) < 4096 and Path(candidate).is_file()
    except OSError:
        return False


def train_bpe_tokenizer(
    texts_or_files: str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    special_tokens: Iterable[str] = (),
    chat_template: str | None = "alpaca",
) -> PreTrainedTokenizerFast:
    """Train a GPT-2 style byte-level BPE tokenizer with the `tokenizers` library.

    The base alphabet holds all 256 bytes, so `decode(encode(s)) == s` for any string and no
    `[UNK]` is needed. `<|endoftext|>` is id 0 and serves as bos, eos, pad and unk token.

    Args:
        texts_or_files: Texts, or paths of UTF-8 text files (`Path`s, or strings naming existing files).
        vocab_size: Largest vocabulary to learn (at least 257: the bytes and `<|endoftext|>`). A
            small corpus may give fewer tokens; `len(tokenizer)` tells.
        min_frequency: A pair must occur this often to be merged.
        model_max_length: Recorded in the tokenizer config (the model's context length).
        special_tokens: More special tokens, after `<|endoftext|>`.
        chat_template: The chat template for `apply_chat_template`: a style of `hf_scratchgpt.prompts`
            (`"alpaca"`, the book's format, by default; or `"phi3"`), a Jinja template, or None for none.

    Returns:
        A `PreTrainedTokenizerFast`; `save_pretrained` it and load it back with `AutoTokenizer`.

    Raises:
        ValueError: On a too-small `vocab_size`, no text at all, or a file that is not UTF-8.
        FileNotFoundError: If a named file does not exist.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [EOT, *[t for t in special_tokens if t != EOT]]
    minimum = 256 + len(specials)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(f"vocab_size must be an integer >= {minimum} (256 bytes + special tokens), got {vocab_size!r}")
    texts = [t for t in _iter_texts(texts_or_files) if t]
    if not texts:
        raise ValueError("no training text: every given text or file is empty")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is dropped
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        hf_tok.chat_template = style_chat_template(chat_template) if chat_template in TEMPLATE_STYLES else chat_template
    return hf_tok


def _gpt2_files(vocab_file: str | os.PathLike, merges_file: str | os.PathLike | None) -> tuple[Path, Path]:
    vocab_path = Path(vocab_file)
    if vocab_path.is_dir():
        folder = vocab_path
        vocab_path = next(
            (folder / n for n in ("encoder.json", "vocab.json") if (folder / n).is_file()), folder / "encoder.json"
        )
        if merges_file is None:
            merges_file = next(
                (folder / n for n in ("vocab.bpe", "merges.txt") if (folder / n).is_file()), folder / "vocab.bpe"
            )
    if merges_file is None:
        raise ValueError("give merges_file (GPT-2's vocab.bpe / merges.txt), or a folder as vocab_file")
    merges_path = Path(merges_file)
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise FileNotFoundError(f"GPT-2 tokenizer file not found: {path}")
    return vocab_path, merges_path


def load_gpt2_tokenizer(vocab_file: str | os.PathLike, merges_file: str | os.PathLike | None = None) -> GPT2Tokenizer:
    """OpenAI's GPT-2 tokenizer from its published files, with no download.

    Args:
        vocab_file: `encoder.json` (= Hugging Face's `vocab.json`), or a folder holding both files.
        merges_file: `vocab.bpe` (= `merges.txt`); found in the folder when `vocab_file` is one.

    Returns:
        A transformers `GPT2Tokenizer` (Rust backend); "Hello, I am" -> [15496, 11, 314, 716].

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If a file is not a GPT-2 vocabulary / merges file.
    """
    vocab_path, merges_path = _gpt2_files(vocab_file, merges_file)
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{vocab_path}: not a JSON vocabulary ({err})") from None
    if not isinstance(vocab, dict) or EOT not in vocab:
        raise ValueError(f"{vocab_path}: expected a JSON object token -> id containing {EOT!r}")
    merges = []
    for lineno, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line.startswith("#version"):
            continue
        pair = tuple(line.split(" "))
        if len(pair) != 2:
            raise ValueError(f"{merges_path}:{lineno}: expected two space-separated symbols, got {line!r}")
        merges.append(pair)
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)


# ----------------------------------------------------------------------------- the one tokenizer loader

GPT2_DIR_ENV = "SCRATCHGPT_GPT2_TOKENIZER"
GPT2_HUB_ID = "openai-community/gpt2"


def token_byte_lengths(tokenizer: Any) -> torch.Tensor:
    """`(len(tokenizer),)` UTF-8 bytes of text each token id stands for; special tokens count 0.

    Byte-level BPE (GPT-2's and ours) writes every byte as one character, so a token's length in
    characters is its length in bytes, also for tokens that hold part of a character; other
    tokenizers are measured by decoding each id. Summed over the tokens of a text (without special
    tokens) it is the text's length in bytes: the denominator of bits per byte.
    """
    from tokenizers import pre_tokenizers

    special = set(tokenizer.all_special_ids) | {i for i in tokenizer.added_tokens_decoder}
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())  # the 256 characters byte-level BPE writes bytes as
    lengths = torch.zeros(len(tokenizer), dtype=torch.long)
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or token is None:
            continue
        if all(c in alphabet for c in token):
            lengths[i] = len(token)
        else:
            lengths[i] = len(tokenizer.decode([i]).encode("utf-8"))
    return lengths


def has_tokenizer_files(folder: str | os.PathLike) -> bool:
    """Whether a folder holds a tokenizer (`tokenizer.json`, `vocab.json` + `merges.txt`, or GPT-2's own files)."""
    path = Path(folder)
    pairs = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))
    return (path / "tokenizer.json").is_file() or any((path / a).is_file() and (path / b).is_file() for a, b in pairs)


def load_tokenizer(spec: str | os.PathLike) -> Any:
    """Load a tokenizer from a tokenizer or model folder, GPT-2's own files, or a Hub id.

    A folder with `tokenizer.json` loads as a transformers fast tokenizer without consulting the
    folder's `config.json` (so a model folder with custom code asks no trust_remote_code question);
    a folder with `encoder.json` + `vocab.bpe` (or `vocab.json` + `merges.txt`) is GPT-2's.

    Args:
        spec: A folder, or a Hub id (see `hf_scratchgpt.paths`).

    Raises:
        FileNotFoundError: A local path that does not exist.
        ValueError: A folder that holds no tokenizer.
    """
    where = local_or_hub(spec, "tokenizer")
    if isinstance(where, str):
        try:
            return AutoTokenizer.from_pretrained(where)
        except OSError as err:
            raise FileNotFoundError(
                f"tokenizer {where!r} is neither a local folder nor reachable on the Hub ({err})"
            ) from None
    if not where.is_dir() or not has_tokenizer_files(where):
        raise ValueError(
            f"{where} holds no tokenizer (no tokenizer.json, vocab.json + merges.txt, or encoder.json + vocab.bpe); "
            "give a tokenizer folder (--tokenizer)"
        )
    if (where / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(where)
    return load_gpt2_tokenizer(where)


def append_eos_when_encoding(tokenizer: Any) -> Any:
    """Make `tokenizer(text)` end every text with the end-of-text token (in place; returns it).

    A classifier reads its input's last token; with this post-processor (saved in tokenizer.json)
    that token is always `<|endoftext|>`, seen after the whole text, whether the ids come from
    training, `scratchgpt classify`, `pipeline("text-classification")` or `AutoTokenizer` without
    this package. Truncation (`truncation=True, max_length=N`) keeps the first tokens and the end
    token. `add_special_tokens=False` leaves it out. Applying it twice changes nothing.

    Raises:
        ValueError: The tokenizer has no end-of-text token or no `tokenizers` backend.
    """
    from tokenizers import processors

    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if eos is None or eos_id is None or backend is None:
        raise ValueError(f"{type(tokenizer).__name__}: appending an end token needs a fast tokenizer with an eos token")
    if tokenizer("a")["input_ids"][-1:] == [eos_id] != tokenizer("a", add_special_tokens=False)["input_ids"][-1:]:
        return tokenizer  # already appends it
    template = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, eos_id)]
    )
    previous = backend.post_processor
    backend.post_processor = template if previous is None else processors.Sequence([previous, template])
    return tokenizer


def gpt2_tokenizer() -> Any:
    """GPT-2's tokenizer: from the folder in `$SCRATCHGPT_GPT2_TOKENIZER` (encoder.json + vocab.bpe),
    else `openai-community/gpt2` from the Hugging Face cache or Hub.

    Raises:
        FileNotFoundError: Neither is available (offline with nothing cached).
    """
    folder = os.environ.get(GPT2_DIR_ENV)
    if folder:
        return load_tokenizer(Path(folder))
    try:
        return load_tokenizer(GPT2_HUB_ID)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"GPT-2's tokenizer is not available offline: set ${GPT2_DIR_ENV} to a folder with encoder.json and "
            f"vocab.bpe (or vocab.json and merges.txt), or pass a tokenizer ({err})"
        ) from None


__all__ = [
    "EOT",
    "SimpleTokenizer",
    "split_words",
    "train_bpe_tokenizer",
    "load_gpt2_tokenizer",
    "load_tokenizer",
    "gpt2_tokenizer",
    "has_tokenizer_files",
]
